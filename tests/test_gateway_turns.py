"""Failures only the WebSocket gateway has: degraded turns and silent sockets, through grokproxy."""

from __future__ import annotations

import time

import pytest

from grokproxy.extensions import db
from grokproxy.models import Account

DEGRADED = "emu-degraded-account-0001"
SILENT = "emu-silent-account-0002"
GOOD = "emu-good-account-0003"
CHAT = {"model": "grok-3", "messages": [{"role": "user", "content": "what is a comet"}]}


@pytest.fixture
def gateway_emu(emu):
    """The emulator as grok.com is today: chat only over the gateway."""
    emu.configure(dialect="gateway")
    return emu


def account(app, account_id: int) -> Account:
    with app.app_context():
        return db.session.get(Account, account_id)


@pytest.mark.parametrize("stream", [False, True])
def test_a_degraded_turn_is_retried_on_another_account_before_any_byte(
    make_gateway, gateway_emu, stream
):
    gateway = make_gateway([DEGRADED, GOOD])
    response = gateway.chat(body={**CHAT, "stream": stream})
    text = response.get_data(as_text=True)
    assert "comet" in text  # the good account's echo of the question
    assert "current information and recent sources" not in text
    emails = [t["email"] for t in gateway_emu.chat_turns()]
    assert emails == [gateway_emu.email(DEGRADED), gateway_emu.email(GOOD)]
    degraded = account(gateway.app, gateway.ids[0])
    assert degraded.fail_count == 1 and degraded.last_error.startswith("degraded: ")


def test_a_silent_gateway_times_out_and_the_next_account_answers(make_gateway, gateway_emu):
    gateway = make_gateway([SILENT, GOOD], UPSTREAM_FIRST_BYTE_TIMEOUT=1.0)
    started = time.monotonic()
    response = gateway.chat(body=CHAT)
    assert time.monotonic() - started < 5
    assert "comet" in response.get_json()["choices"][0]["message"]["content"]
    silent = account(gateway.app, gateway.ids[0])
    assert silent.fail_count == 1 and "sent no reply in time" in silent.last_error
    assert [s["email"] for s in gateway_emu.streams()][:1] == [gateway_emu.email(SILENT)]


def test_a_stream_from_a_silent_gateway_is_a_504_before_any_byte(make_gateway, gateway_emu):
    gateway = make_gateway([SILENT], UPSTREAM_FIRST_BYTE_TIMEOUT=1.0, SSE_KEEPALIVE_SECONDS=0.3)
    response = gateway.chat(body={**CHAT, "stream": True}, status=504)
    # No keep-alive committed the answer to the silent account: a clean JSON error instead.
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == "upstream_timeout"
