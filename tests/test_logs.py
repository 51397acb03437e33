"""Logging: secrets never reach a log line; one handler, one format; request ids; chat lines."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from grokproxy.logs import DATE_FORMAT, LOG_FORMAT, RedactingFilter, RequestIdFilter, redact

from conftest import POOL_KEY

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzZXNzaW9uX2lkIjoiYWJjIn0.c2lnbmF0dXJlLXRlc3Q"


@pytest.mark.parametrize(
    "secret",
    [
        JWT,
        "sso=abc123def456",
        "sso-rw=abc123def456",
        "cf_clearance=zzzzyyyyxxxx",
        "Bearer sk-user-0123456789abcdef",
        "sk-0123456789abcdefghij",
        "/login/Ijk4NzY1NDMyMSI.aBcDeFgHiJkLmNoP",
    ],
)
def test_secret_shapes_are_redacted(secret):
    assert secret not in redact(f"something happened with {secret} here")
    assert "[redacted]" in redact(f"something happened with {secret} here")


def test_plain_text_is_left_alone():
    line = "account 7 cooling for 900 s: rate_limited: Too many requests"
    assert redact(line) == line


def test_records_of_child_loggers_are_scrubbed(app, caplog):
    caplog.set_level(logging.INFO)
    logging.getLogger("grokproxy.relay").warning("upstream said %s", f"sso={JWT}")
    assert "upstream said" in caplog.text
    assert JWT not in caplog.text


# --- one handler, one format, request ids, chat summary lines ---------------------------------

REPO = Path(__file__).resolve().parent.parent
TOKEN = "emu-logged-account-secret-0001"


def our_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "grokproxy", False)]


@pytest.fixture
def lines():
    """Every log line, formatted and filtered the way grokproxy's own handler writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    handler.addFilter(RedactingFilter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: stream.getvalue().splitlines()
    root.removeHandler(handler)


@pytest.fixture
def chat_site(emu_app, add_accounts, serve):
    app = emu_app()
    [account_id] = add_accounts(app, [TOKEN])
    return serve(app), account_id


def test_apps_share_one_root_handler_and_flask_adds_none(make_app):
    first = make_app()
    second = make_app()
    assert len(our_handlers()) == 1
    assert first.logger.handlers == [] and second.logger.handlers == []
    [handler] = our_handlers()
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)


def test_a_cli_command_prints_each_log_line_once_in_one_format(tmp_path):
    env = {
        **os.environ,
        "GROKPROXY_INSTANCE_PATH": str(tmp_path / "instance"),
        "SECRET_KEY": "k" * 32,
    }
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [str(REPO / ".venv/bin/flask"), "--app", "wsgi", "upgrade-db"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    logged = done.stderr.splitlines()
    assert sum("schema is up to date" in line for line in logged) == 1
    assert sum("Running upgrade" in line for line in logged) >= 1
    shape = re.compile(r"^\[[\d :+-]+\] \[\d+\] \[[A-Z]+\] \[-\] [\w.]+: ")
    assert all(shape.match(line) for line in logged), logged
    assert len(logged) == len(set(logged))


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        ("client-id_1.2", "client-id_1.2"),
        ("a" * 128, "a" * 128),
        ("a" * 129, None),
        ("has space", None),
        ("semi;colon", None),
        (None, None),
    ],
)
def test_request_id_is_echoed_when_sane_and_made_otherwise(client, sent, echoed):
    headers = {"X-Request-Id": sent} if sent is not None else {}
    answer = client.get("/healthz", headers=headers)
    got = answer.headers["X-Request-Id"]
    if echoed is not None:
        assert got == echoed
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", got)


def test_every_line_of_a_request_carries_its_id(chat_site, lines, caplog):
    caplog.set_level(logging.DEBUG)
    url, _ = chat_site
    answer = requests.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {POOL_KEY}", "X-Request-Id": "req-every-line"},
        json={"model": "grok-3", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.headers["X-Request-Id"] == "req-every-line"
    wait_for_summaries(lines, 1)  # written after the body closed, so after the client read it
    ours = [line for line in lines() if "] grokproxy." in line or "] werkzeug:" in line]
    assert len(ours) >= 2  # at least the access line and the summary line
    assert all("[req-every-line]" in line for line in ours), ours


def summary_lines(all_lines: list[str]) -> list[str]:
    return [line for line in all_lines if "grokproxy.request: chat " in line]


def wait_for_summaries(lines, count: int) -> list[str]:
    """The server writes the summary after closing the body, so after the client has read it."""
    deadline = time.monotonic() + 5
    while len(summary_lines(lines())) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)  # a second, wrong line would show up now
    return summary_lines(lines())


def test_a_streamed_chat_logs_one_summary_line_timed_to_its_close(chat_site, emu, lines):
    emu.configure(tokens=8, tokens_per_second=20)  # about 0.4 s of stream after the first byte
    url, account_id = chat_site
    with requests.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {POOL_KEY}", "X-Request-Id": "req-stream"},
        json={"model": "grok-3", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        stream=True,
        timeout=30,
    ) as answer:
        body = answer.content.decode()
    assert "[DONE]" in body
    [line] = wait_for_summaries(lines, 1)
    assert "[req-stream]" in line
    assert "chat /v1/chat/completions model=grok-3 status=200" in line
    assert f"account={account_id} token=emu-lo…0001" in line
    ttfb = int(re.search(r"ttfb_ms=(\d+)", line).group(1))
    total = int(re.search(r"total_ms=(\d+)", line).group(1))
    assert total >= 300 and total > ttfb


def test_a_refused_chat_logs_its_summary_without_an_account(chat_site, lines):
    url, _ = chat_site
    answer = requests.post(
        f"{url}/chat/completions",
        headers={"Authorization": "Bearer sk-wrong-key-000000000000"},
        json={"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert answer.status_code == 401
    [line] = wait_for_summaries(lines, 1)
    # Refused before its body was read (limits before work), so the model is not known either.
    assert "chat /chat/completions model=- status=401 account=- token=-" in line


def test_no_token_or_key_in_the_log_lines_of_a_chat(chat_site, lines):
    url, _ = chat_site
    for stream in (False, True):
        requests.post(
            f"{url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {POOL_KEY}"},
            json={
                "model": "grok-3",
                "stream": stream,
                "messages": [{"role": "user", "content": "x"}],
            },
            timeout=30,
        ).raise_for_status()
    assert len(wait_for_summaries(lines, 2)) == 2
    text = "\n".join(lines())
    assert TOKEN not in text and POOL_KEY not in text


def test_a_chat_summary_is_not_written_for_other_routes(client, lines):
    client.get("/healthz")
    client.get("/v1/models", headers={"Authorization": f"Bearer {POOL_KEY}"})
    assert summary_lines(lines()) == []
