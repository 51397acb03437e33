"""The worker models, on the real gunicorn with gunicorn.conf.py: gevent (the default) and gthread.

Both serve streamed and whole chat completions over both upstream transports (the gateway's
WebSocket, the `modes` HTTP chat) and both HTTP clients (requests; curl_cffi when
GROK_IMPERSONATE is set). Under gevent one worker holds many more streams at once than a gthread
worker has threads, and nothing the app does stops its hub: libcurl runs on OS threads, the
locks, sockets and psycopg's waits are gevent's. The database is the suite's (SQLite, or
PostgreSQL when TEST_DATABASE_URL is set).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import requests
from test_config import assert_one_line_error, run_entry_point
from test_hardening_accept import gunicorn_settings, read_gunicorn_conf
from test_server import gunicorn

from conftest import sso_jwt

TRANSPORTS = {"gateway": "gateway", "modes": "http"}  # GROK_DIALECT -> the emulator's record
CLIENTS = {"requests": {}, "curl_cffi": {"GROK_IMPERSONATE": "chrome136"}}
STREAMS = 40  # ten times the threads of the gthread worker test_server.gunicorn starts


@pytest.fixture
def served(database_template, emu, tmp_path, repo_root):
    """Factory: `served(worker_class, dialect, client, **env)` runs gunicorn against the emulator
    on the suite's database; a context manager yielding the base URL."""

    def start(worker_class: str, dialect: str, client: str, **env: str):
        emu.configure(dialect=dialect)
        if database_template["kind"] == "postgresql":
            env.setdefault("DATABASE_URL", database_template["url"])
        return gunicorn(
            tmp_path,
            repo_root,
            GUNICORN_WORKER_CLASS=worker_class,
            GROK_DIALECT=dialect,
            GROK_BASE_URL=emu.base_url,
            GROK_ASSETS_URL=emu.assets_url,
            **CLIENTS[client],
            **env,
        )

    return start


def chat(url: str, token: str, *, stream: bool, **kwargs) -> requests.Response:
    body = {"model": "grok-3", "stream": stream, "messages": [{"role": "user", "content": "x"}]}
    return requests.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {sso_jwt(token)}", "Connection": "close"},
        json=body,
        stream=stream,
        timeout=60,
        **kwargs,
    )


def stream_content(response: requests.Response) -> str:
    """The content of a streamed chat completion, after checking it ended with [DONE]."""
    assert response.status_code == 200, response.text
    text, done = "", False
    for line in response.iter_lines():
        if line == b"data: [DONE]":
            done = True
        elif line.startswith(b"data: "):
            for choice in json.loads(line[6:])["choices"]:
                text += choice["delta"].get("content") or ""
    assert done
    return text


def server_log(tmp_path: Path) -> str:
    return (tmp_path / "gunicorn.log").read_text(errors="replace")


def assert_clean_log(tmp_path: Path) -> None:
    """gunicorn's output holds no gevent patching warning, traceback or locked database."""
    log = server_log(tmp_path)
    for bad in ("MonkeyPatchWarning", "Traceback", "database is locked", "[ERROR]"):
        assert bad not in log, log


# --- the settings ---------------------------------------------------------------------------


def test_gevent_is_the_default_and_its_workers_hold_two_thousand_streams(repo_root, tmp_path):
    settings = gunicorn_settings(repo_root, tmp_path)
    assert settings["worker_class"] == "gevent"
    assert settings["workers"] == os.cpu_count()  # one per CPU: a worker is one thread
    # The workers run with what the file chose, and size their chat limit from it.
    assert settings["environ"]["GUNICORN_WORKER_CLASS"] == "gevent"
    assert settings["environ"]["GUNICORN_WORKER_CONNECTIONS"] == str(settings["worker_connections"])
    # Room for 2,000 streams and a fifth more (workers never split a burst evenly), and room
    # in every worker for the requests that are not chats.
    assert settings["workers"] * settings["chat_limit"] >= 2400
    assert settings["chat_limit"] < settings["worker_connections"]


def test_gthread_keeps_its_thread_sizing(repo_root, tmp_path):
    settings = gunicorn_settings(repo_root, tmp_path, GUNICORN_WORKER_CLASS="gthread")
    cpus = os.cpu_count()
    assert (settings["workers"], settings["threads"]) == (2 * cpus + 1, 128)
    assert settings["worker_connections"] == 136
    assert settings["chat_limit"] == 120


def test_an_unknown_worker_class_stops_gunicorn_with_one_line(repo_root, tmp_path):
    gunicorn_bin = str(repo_root / ".venv/bin/gunicorn")
    args = [gunicorn_bin, "-c", "gunicorn.conf.py", "--check-config", "wsgi:app"]
    done = run_entry_point(repo_root, tmp_path, args, {"GUNICORN_WORKER_CLASS": "eventlet"})
    assert_one_line_error(
        done, "GUNICORN_WORKER_CLASS must be one of gevent, gthread, got 'eventlet'"
    )


_AFTER_PATCHING = """
import json, runpy, sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import gunicorn.app.wsgiapp, gunicorn.arbiter  # what gunicorn imports before the file
    runpy.run_path(sys.argv[1])
    import grokproxy  # what on_starting imports, then the lazily imported clients
    import curl_cffi.requests.websockets, psycopg.waiting
    from grokproxy.extensions import SQLITE_WRITE_LOCK
    from grokproxy.grok.transport import gevent_patched
print(json.dumps({
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
    "write_lock": type(SQLITE_WRITE_LOCK._block).__module__,
    "psycopg_wait": psycopg.waiting.wait.__name__,
    "ws_selector": curl_cffi.requests.websockets.DefaultSelector.__module__,
    "gevent_patched": gevent_patched(),
}))
"""


def test_gevent_patches_before_the_app_creates_its_locks_and_picks_its_waits(repo_root, tmp_path):
    seen = read_gunicorn_conf(repo_root, tmp_path, _AFTER_PATCHING)
    assert not [w for w in seen["warnings"] if "MonkeyPatch" in w], seen["warnings"]
    # A real OS lock would stop every greenlet of the worker while one waits for it.
    assert seen["write_lock"].startswith("gevent")
    # psycopg chooses at import: its C wait would block the hub for every query.
    assert seen["psycopg_wait"] != "wait_c"
    # curl_cffi's WebSocket waits for data on this selector between non-blocking reads.
    assert seen["ws_selector"] == "gevent.selectors"
    assert seen["gevent_patched"] is True


# --- chats on the real server ---------------------------------------------------------------


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("dialect", sorted(TRANSPORTS))
def test_gthread_workers_serve_streamed_and_whole_chats(served, emu, tmp_path, dialect, client):
    with served("gthread", dialect, client, GUNICORN_WORKERS="1") as url:
        whole = chat(url, "emu-gthread-whole", stream=False)
        streamed = stream_content(chat(url, "emu-gthread-stream", stream=True))
    assert whole.status_code == 200, whole.text
    assert whole.json()["choices"][0]["message"]["content"]
    assert streamed
    assert [turn["transport"] for turn in emu.chat_turns()] == [TRANSPORTS[dialect]] * 2
    assert_clean_log(tmp_path)


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("dialect", sorted(TRANSPORTS))
def test_one_gevent_worker_holds_many_more_streams_at_once_than_threads(
    served, emu, tmp_path, dialect, client
):
    started = threading.Semaphore(0)
    release = threading.Event()
    firsts: list[int] = []
    failures: list[str] = []

    def one_stream(index: int) -> None:
        try:
            response = chat(url, f"emu-many-{index}", stream=True)
            assert response.status_code == 200, response.text
            # Kept: a dropped line iterator closes the response, and with it the connection.
            lines = response.iter_lines()
            while not next(lines).startswith(b'data: {"id"'):
                pass
            firsts.append(index)
            started.release()
            release.wait(60)
            response.close()
        except Exception as exc:  # reported below, with the others
            failures.append(f"{index}: {exc!r}")
            started.release()

    with served("gevent", dialect, client, GUNICORN_WORKERS="1") as url:
        whole = chat(url, "emu-many-whole", stream=False)
        assert whole.status_code == 200, whole.text
        assert whole.json()["choices"][0]["message"]["content"]
        assert stream_content(chat(url, "emu-many-stream", stream=True))
        # Replies of 100 s: no stream can end by itself while the others start.
        emu.configure(tokens=2000, tokens_per_second=20)
        threads = [threading.Thread(target=one_stream, args=(i,)) for i in range(STREAMS)]
        for thread in threads:
            thread.start()
        try:
            # Bounded: a worker serving them one after the other would never get there.
            for _ in range(STREAMS):
                assert started.acquire(timeout=60), f"{len(firsts)} of {STREAMS} streams started"
            assert not failures, failures
            open_upstream = [s for s in emu.streams() if s["outcome"] == "streaming"]
        finally:
            release.set()
            for thread in threads:
                thread.join(60)
    # One worker with one OS thread held them all at once, each with its upstream open.
    assert sorted(firsts) == list(range(STREAMS))
    assert len(open_upstream) == STREAMS
    turns = emu.chat_turns()
    assert [turn["transport"] for turn in turns] == [TRANSPORTS[dialect]] * (STREAMS + 2)
    assert_clean_log(tmp_path)


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("dialect", sorted(TRANSPORTS))
def test_under_gevent_keep_alives_flow_and_a_hang_up_closes_upstream(
    served, emu, tmp_path, dialect, client
):
    emu.configure(tokens=3, tokens_per_second=2)
    with served(
        "gevent", dialect, client, GUNICORN_WORKERS="1", SSE_KEEPALIVE_SECONDS="0.2"
    ) as url:
        # Half a second of silence between tokens: comments keep the client's stream alive.
        lines = [line for line in chat(url, "emu-keepalive", stream=True).iter_lines() if line]
        assert b": keep-alive" in lines and lines[-1] == b"data: [DONE]"

        emu.configure(tokens=400, tokens_per_second=20)
        response = chat(url, "emu-hang-up", stream=True)
        reader = response.iter_lines()
        assert any(next(reader).startswith(b"data: {") for _ in range(6))
        response.close()
        hung_up = time.monotonic()
        while True:
            stream = emu.streams()[-1]
            if stream["outcome"] != "streaming":
                break
            assert time.monotonic() - hung_up < 2.0, "upstream still streaming after 2 s"
            time.sleep(0.05)
    assert stream["outcome"] == "client_disconnected"
    assert_clean_log(tmp_path)


def test_concurrent_writes_from_two_gevent_workers_all_succeed(served, emu, tmp_path):
    # Every chat writes (the account's bookkeeping, the hourly stats); two workers contend for
    # the database (on SQLite, one write lock on one file).
    answers: list[int] = []

    def one_chat(index: int) -> None:
        answers.append(chat(url, f"emu-writes-{index % 8}", stream=False).status_code)

    with served("gevent", "gateway", "requests", GUNICORN_WORKERS="2") as url:
        threads = [threading.Thread(target=one_chat, args=(i,)) for i in range(48)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert answers == [200] * 48
    assert_clean_log(tmp_path)
