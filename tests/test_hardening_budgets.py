"""Time budgets upstream and concurrency bounds: a silent grok.com costs a bounded wait, a 504,
and never every thread of a worker."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from grokproxy.concurrency import automatic_chat_limit

from conftest import ADMIN_PASSWORD, POOL_KEY, error_of, sso_jwt

ACCOUNTS = [sso_jwt(f"emu-budget-account-{i:04d}") for i in range(3)]
POOL = {"Authorization": f"Bearer {POOL_KEY}"}
pytestmark = pytest.mark.usefixtures("transport")


def ask(text: str = "hello", **extra) -> dict:
    return {"model": "grok-3", "messages": [{"role": "user", "content": text}], **extra}


@pytest.mark.parametrize("stream", [False, True])
def test_a_silent_grok_answers_504_within_the_total_budget(make_gateway, emu, stream):
    gateway = make_gateway(
        ACCOUNTS, UPSTREAM_FIRST_BYTE_TIMEOUT=1.0, UPSTREAM_TOTAL_TIMEOUT=2.5, MAX_ATTEMPTS=3
    )
    emu.configure(first_byte_delay=30)
    started = time.monotonic()
    response = gateway.chat(POOL_KEY, ask(stream=stream), 504)
    waited = time.monotonic() - started
    error = error_of(response, 504)
    assert error["code"] == "upstream_timeout" and error["type"] == "upstream_error"
    # Three attempts of 1 s would fit in the 2.5 s budget only partly: the budget ends it.
    assert 2.0 <= waited < 4.5, waited
    assert len(emu.chat_turns()) == 3


def test_failover_stops_when_the_budget_is_spent(make_gateway, emu):
    gateway = make_gateway(
        ACCOUNTS, UPSTREAM_FIRST_BYTE_TIMEOUT=1.5, UPSTREAM_TOTAL_TIMEOUT=2.0, MAX_ATTEMPTS=3
    )
    emu.configure(first_byte_delay=30)
    gateway.chat(POOL_KEY, ask(), 504)
    # The second attempt got the 0.5 s left; no third account was asked.
    assert len(emu.chat_turns()) == 2
    # Only the account that had a whole first-byte window is counted as failing.
    assert sorted(account["fail_count"] for account in gateway.accounts()) == [0, 0, 1]


def test_a_reply_that_flows_outlives_the_total_budget(make_gateway, emu):
    gateway = make_gateway(ACCOUNTS[:1], UPSTREAM_TOTAL_TIMEOUT=0.5, UPSTREAM_READ_TIMEOUT=5)
    emu.configure(tokens=8, tokens_per_second=4)  # about 2 s of answer, well past the budget
    body = gateway.chat(POOL_KEY, ask()).get_json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["content"]


def test_silence_mid_reply_ends_the_stream_with_an_upstream_timeout_event(make_gateway, emu):
    gateway = make_gateway(ACCOUNTS[:1], UPSTREAM_READ_TIMEOUT=0.6, SSE_KEEPALIVE_SECONDS=0.2)
    emu.configure(tokens=6, tokens_per_second=0.5)  # 2 s between tokens
    body = gateway.chat(POOL_KEY, ask(stream=True)).get_data(as_text=True)
    lines = [line for line in body.splitlines() if line]
    errors = [json.loads(line[6:]) for line in lines if line.startswith('data: {"error"')]
    assert errors and errors[-1]["error"]["code"] == "upstream_timeout"
    assert lines[-1] == "data: [DONE]"


def test_the_old_timeout_names_keep_working(make_app):
    app = make_app(UPSTREAM_CONNECT_TIMEOUT=3, UPSTREAM_READ_TIMEOUT=7)
    settings = app.extensions["grokproxy.grok"].settings
    assert (settings.connect_timeout, settings.read_timeout) == (3, 7)
    assert settings.first_byte_timeout == 15.0
    assert app.config["UPSTREAM_TOTAL_TIMEOUT"] == 40.0


def test_the_automatic_chat_limit_leaves_gthread_threads_for_other_routes():
    gthread = {"GUNICORN_WORKER_CLASS": "gthread"}
    assert automatic_chat_limit({**gthread, "GUNICORN_THREADS": "128"}) == 120
    assert automatic_chat_limit(gthread) == 120
    assert automatic_chat_limit({**gthread, "GUNICORN_THREADS": "4"}) == 3
    assert automatic_chat_limit({**gthread, "GUNICORN_THREADS": "1"}) == 1


def test_the_automatic_chat_limit_under_gevent_follows_worker_connections():
    # A gevent worker's room is its connections, whatever GUNICORN_THREADS says.
    assert automatic_chat_limit({"GUNICORN_THREADS": "4"}) == 1216
    assert automatic_chat_limit({"GUNICORN_WORKER_CONNECTIONS": "1280"}) == 1216
    assert automatic_chat_limit({"GUNICORN_WORKER_CONNECTIONS": "100"}) == 92
    assert automatic_chat_limit({"GUNICORN_WORKER_CONNECTIONS": "4"}) == 3
    assert automatic_chat_limit({"GUNICORN_WORKER_CONNECTIONS": "1"}) == 1


def test_chats_over_the_worker_limit_get_a_quick_503_and_health_still_answers(live, emu):
    _, url = live(ACCOUNTS, MAX_CONCURRENT_CHATS=2, MAX_CONCURRENT_PER_KEY=0)
    emu.configure(first_byte_delay=3)
    answers: list[requests.Response] = []

    def chat() -> None:
        answers.append(
            requests.post(f"{url}/v1/chat/completions", json=ask(), headers=POOL, timeout=30)
        )

    holders = [threading.Thread(target=chat) for _ in range(2)]
    for thread in holders:
        thread.start()
    deadline = time.monotonic() + 5
    while len(emu.chat_turns()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    refused = requests.post(f"{url}/v1/chat/completions", json=ask(), headers=POOL, timeout=5)
    assert time.monotonic() - started < 1.0
    error = error_of_response(refused, 503)
    assert error["code"] == "server_busy" and refused.headers["Retry-After"] == "2"
    assert requests.get(f"{url}/healthz", timeout=1).status_code == 200
    admin = {"Authorization": f"Bearer {ADMIN_PASSWORD}"}
    assert requests.get(f"{url}/api/get-grok-list", headers=admin, timeout=1).status_code == 200
    for thread in holders:
        thread.join()
    assert [a.status_code for a in answers] == [200, 200]
    # The slots came back: a new chat runs.
    emu.configure(first_byte_delay=0)
    ok = requests.post(f"{url}/v1/chat/completions", json=ask(), headers=POOL, timeout=10)
    assert ok.status_code == 200


def error_of_response(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()["error"]


def test_a_callers_chats_are_bounded_across_processes_with_a_429(make_gateway, emu, repo_root):
    import subprocess
    import sys

    from grokproxy import concurrency

    gateway = make_gateway(ACCOUNTS[:1], MAX_CONCURRENT_PER_KEY=1)
    with gateway.app.test_request_context():
        _, directory = concurrency._state(gateway.app)
    owner = "key:" + gateway.app.extensions["grokproxy.secrets"].digest(POOL_KEY)[:40]
    # Another worker of the same host holds this caller's only slot.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from grokproxy.concurrency import _lock_one; "
            "fd = _lock_one(sys.argv[1], sys.argv[2], 1); print(fd is not None, flush=True); "
            "time.sleep(30)",
            directory,
            owner,
        ],
        cwd=repo_root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "True"
        error = error_of(gateway.chat(POOL_KEY, ask(), 429), 429)
        assert error["code"] == "too_many_concurrent_requests"
        assert len(emu.chat_turns()) == 0, "a refused chat never reaches grok.com"
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the dead holder's lock: the caller's chat runs again.
    gateway.chat(POOL_KEY, ask())
