"""Run the emulator in a subprocess for tests and benchmarks, and drive its control API.

with running_emulator(tokens=8, dialect="modes") as emu:
    requests.post(emu.base_url + "/rest/app-chat/conversations/new", cookies=emu.cookies("t"), ...)
    emu.set_fault("dies", token="t", times=1)
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from .accounts import email_for, user_id_for

REPO_ROOT = Path(__file__).resolve().parents[2]


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds; reaps it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmulatorHandle:
    """Where a running emulator listens, plus typed wrappers around `/_emulator/`."""

    def __init__(self, base_url: str, process: subprocess.Popen | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.assets_url = f"{self.base_url}/assets"  # the value for GROK_ASSETS_URL
        self.process = process
        self.http = requests.Session()

    @staticmethod
    def cookies(token: str) -> dict[str, str]:
        """The cookies grok.com expects for an SSO token."""
        return {"sso": token, "sso-rw": token}

    @staticmethod
    def email(token: str) -> str:
        """The e-mail the emulator derives from a token."""
        return email_for(token)

    @staticmethod
    def user_id(token: str) -> str:
        """The userId the emulator derives from a token."""
        return user_id_for(token)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.http.request(method, f"{self.base_url}/_emulator/{path}", timeout=10, **kw)
        resp.raise_for_status()
        return resp.json()

    def healthy(self) -> bool:
        """Whether the emulator answers its health route."""
        try:
            return bool(self._call("GET", "health").get("ok"))
        except requests.RequestException:
            return False

    def reset(self) -> None:
        """Forget all state and restore the start-up config."""
        self._call("POST", "reset")

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """Recorded grok.com requests, optionally only those whose path starts with `path`."""
        return self._call("GET", "requests", params={"path": path} if path else None)

    def set_quota(
        self,
        mode: str,
        *,
        token: str | None = None,
        email: str | None = None,
        remaining: int | None = None,
        total: int | None = None,
        window_seconds: int | None = None,
    ) -> dict[str, Any]:
        """Set one mode's window for an account (by token, or e-mail of a seen account)."""
        body = {
            "token": token,
            "email": email,
            "mode": mode,
            "remaining": remaining,
            "total": total,
            "window_seconds": window_seconds,
        }
        return self._call("POST", "quota", json=body)

    def quotas(self, *, token: str | None = None, email: str | None = None) -> dict[str, Any]:
        """The account's quota windows by mode."""
        params = {"token": token} if token else {"email": email or ""}
        return self._call("GET", "quota", params=params)["quotas"]

    def set_fault(
        self,
        fault: str | None,
        *,
        token: str | None = None,
        email: str | None = None,
        times: int | None = None,
    ) -> dict[str, Any]:
        """Make an account misbehave (`None` goes back to its token prefix, "none" heals it)."""
        return self._call(
            "POST", "fault", json={"token": token, "email": email, "fault": fault, "times": times}
        )

    def script(
        self,
        replies: list[str],
        *,
        token: str | None = None,
        email: str | None = None,
        piece_size: int | None = None,
        append: bool = False,
    ) -> dict[str, Any]:
        """Give an account's next replies these answer texts, in order, over either transport.

        Each text is streamed verbatim in `piece_size`-character tokens (4 by default) at the
        configured pace; replacing what was scripted before unless `append`. Once the script
        is used up, replies are the usual echo again.
        """
        body: dict[str, Any] = {"token": token, "email": email, "replies": replies}
        if piece_size is not None:
            body["piece_size"] = piece_size
        if append:
            body["append"] = True
        return self._call("POST", "script", json=body)

    def configure(self, **options: Any) -> dict[str, Any]:
        """Change tokens, tokens_per_second, first_byte_delay, dialect or slow_delay."""
        return self._call("POST", "config", json=options)

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        """A conversation's owner e-mail and turns."""
        return self._call("GET", f"conversations/{conversation_id}")

    def streams(self) -> list[dict[str, Any]]:
        """Every chat stream since the last reset, with its outcome."""
        return self._call("GET", "streams")

    def chat_turns(self) -> list[dict[str, Any]]:
        """Every chat turn received, over HTTP or the gateway, in arrival order.

        Each is `{transport: "http" | "gateway", email, conversation_id (None when it started
        a conversation), parent_response_id, message, file_ids}`, so a test can say what
        grok.com was asked whichever transport asked it.
        """
        arrived: list[tuple[int, dict[str, Any]]] = []
        for record in self.requests():
            path, email = record["path"], record.get("email")
            if path.startswith(_CONVERSATIONS) and path.endswith(("/new", "/responses")):
                body = record.get("body") or {}
                arrived.append(
                    (
                        record["id"],
                        {
                            "transport": "http",
                            "email": email,
                            "conversation_id": None
                            if path.endswith("/new")
                            else path.split("/")[-2],
                            "parent_response_id": body.get("parentResponseId"),
                            "message": body.get("message"),
                            "file_ids": list(body.get("fileAttachments") or []),
                        },
                    )
                )
            elif path.startswith("/ws/mgw/"):
                arrived.extend(_gateway_turns(record, email))
        arrived.sort(key=lambda pair: pair[0])
        return [turn for _, turn in arrived]


_CONVERSATIONS = "/rest/app-chat/conversations/"


def _gateway_turns(record: dict[str, Any], email: str | None) -> list[tuple[int, dict[str, Any]]]:
    """The turns of one gateway connection, each user item with the session that holds it and
    when its message arrived (the connection's own id for recordings that do not say)."""
    messages = record.get("messages") or []
    arrivals = record.get("arrivals") or []
    continued: dict[Any, str | None] = {}  # session id -> the conversation it continues
    turns = []
    for index, message in enumerate(messages):
        event = message.get("event") or {}
        session_id = message.get("session_id")
        if event.get("type") == "session.create":
            x_grok = (event.get("session") or {}).get("x_grok") or {}
            continued[session_id] = x_grok.get("conversation_id")
        elif event.get("type") == "conversation.item.create":
            item = event.get("item") or {}
            x_grok = item.get("x_grok") or {}
            chunks = x_grok.get("input_chunks") or []
            text = "".join((c.get("text") or {}).get("text", "") for c in chunks)
            files = [
                c["mention"]["target"]["file_mention"]["file_id"] for c in chunks if "mention" in c
            ]
            arrival = arrivals[index] if index < len(arrivals) else record["id"]
            turns.append(
                (
                    arrival,
                    {
                        "transport": "gateway",
                        "email": email,
                        "conversation_id": continued.get(session_id),
                        "parent_response_id": item.get("parent_response_id")
                        or x_grok.get("parent_response_id"),
                        "message": text,
                        "file_ids": files,
                    },
                )
            )
    return turns


@contextlib.contextmanager
def running_emulator(**cli_options: Any) -> Iterator[EmulatorHandle]:
    """Start `python -m grokproxy.emulator` on a free port; stop it on exit.

    Keyword options are CLI flags: `tokens=8` becomes `--tokens 8`, `tokens_per_second=5`
    becomes `--tokens-per-second 5`; `host`/`port` may be given too.
    """
    options = dict(cli_options)
    host = options.pop("host", "127.0.0.1")
    port = int(options.pop("port", 0)) or free_port()
    args = [sys.executable, "-m", "grokproxy.emulator", "--host", host, "--port", str(port)]
    for key, value in options.items():
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    # stderr goes to a file, not a pipe: a pipe nobody reads would block a chatty emulator.
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        args, env=env, stdout=subprocess.DEVNULL, stderr=log
    )
    handle = EmulatorHandle(f"http://{host}:{port}", process)
    try:
        deadline = time.monotonic() + 15
        while not handle.healthy():
            if process.poll() is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")
                raise RuntimeError(f"emulator exited with {process.returncode}: {err[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("emulator did not answer within 15 s")
            time.sleep(0.05)
        yield handle
    finally:
        handle.http.close()
        stop_process(process, timeout=5)
        log.close()
