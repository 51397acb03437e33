"""`flask --app wsgi demo` as a newcomer runs it: it prints what it promises, the printed curl
chat and login link work, and Ctrl-C stops the gateway and the emulator, leaving no process."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time

import requests

FIELDS = ("base URL", "pool key", "admin password", "chat page", "try", "emulator")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone too: only its parent's wait is missing.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1].startswith("Z")


def read_banner(process: subprocess.Popen) -> dict[str, str]:
    """The printed `name: value` lines, read until the last one promised."""
    fields: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while "emulator" not in fields:
        assert time.monotonic() < deadline, f"demo printed only {fields}"
        line = process.stdout.readline()
        assert line, f"the demo stopped early: {process.stderr.read()}"
        match = re.match(r"^\s+([a-zA-Z ]+):\s+(.*)$", line)
        if match:
            fields[match.group(1)] = match.group(2)
    return fields


def test_demo_serves_a_chat_and_a_login_link_then_stops_on_ctrl_c(repo_root, tmp_path):
    env = {**os.environ, "GROKPROXY_INSTANCE_PATH": str(tmp_path / "instance")}
    for name in ("ADMIN_PASSWORD", "AUTHORIZATION", "DATABASE_URL", "GROK_DIALECT"):
        env.pop(name, None)
    env["GROK_DIALECT"] = "legacy"  # the emulator must be started in the app's dialect
    process = subprocess.Popen(
        [str(repo_root / ".venv/bin/flask"), "--app", "wsgi", "demo", "--port", "0"],
        cwd=repo_root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fields = read_banner(process)
        assert set(FIELDS) <= set(fields)
        base = fields["base URL"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base)
        assert fields["pool key"].startswith("sk-") and len(fields["admin password"]) >= 12
        emulator_pid = int(re.search(r"\(pid (\d+)\)", fields["emulator"]).group(1))

        # The printed curl line, run as requests.
        curl = shlex.split(fields["try"])
        assert curl[:2] == ["curl", "-sN"]
        url = curl[2]
        headers = dict(curl[i + 1].split(": ", 1) for i, arg in enumerate(curl) if arg == "-H")
        data = curl[curl.index("-d") + 1]
        assert headers["Authorization"] == f"Bearer {fields['pool key']}"
        with requests.post(url, headers=headers, data=data, stream=True, timeout=30) as answer:
            assert answer.status_code == 200
            body = answer.text
        assert '"content"' in body and "data: [DONE]" in body
        assert "hi" in body  # the emulator echoes the prompt

        # The admin password works and the accounts are there.
        listing = requests.get(
            base.removesuffix("/v1") + "/api/get-grok-list",
            headers={"Authorization": f"Bearer {fields['admin password']}"},
            timeout=30,
        ).json()
        assert listing["total"] >= 2

        # The login link signs in and lands on the chat page.
        browser = requests.Session()
        page = browser.get(fields["chat page"], timeout=30)
        assert page.status_code == 200 and page.url == base.removesuffix("/v1") + "/chat"
        assert "demo-user" in page.text
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert gone(process.pid)
    deadline = time.monotonic() + 5
    while not gone(emulator_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(emulator_pid), "the emulator outlived the demo"
    assert "Traceback" not in process.stderr.read()
