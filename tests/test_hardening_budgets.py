"""Time budgets upstream and concurrency bounds: a silent grok.com costs a bounded wait, a 504,
and never every thread of a worker."""

from __future__ import annotations

import json
import time

import pytest

from conftest import POOL_KEY, error_of, sso_jwt

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
