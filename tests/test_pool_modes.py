"""Per-mode truth about each account, against the emulator over both transports: a used-up mode
blocks only itself, windows come back at their reset, stored counts follow grok.com's, tiers gate
modes, and the final error names every reason."""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest

from grokproxy.commands import _refresh_loop
from grokproxy.emulator.accounts import email_for

pytestmark = pytest.mark.usefixtures("transport")

TOKEN_A = "modes-account-a-0123456789abcdef"
TOKEN_B = "modes-account-b-0123456789abcdef"
FREE = "emu-free-modes-0123456789abcdef"
FAST = {"model": "grok-3", "messages": [{"role": "user", "content": "hello"}]}
HEAVY = {"model": "grok-heavy", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def gateway(make_gateway):
    """An empty pool over the emulator, 2 s cooldowns (tests add accounts through batch-add,
    which reads each account's quotas and tier)."""
    return make_gateway(COOLDOWN_SECONDS=2)


def seconds_until(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - time.time()


def by_email(gateway) -> dict[str, dict]:
    return {item["email"]: item for item in gateway.accounts()}


def test_fast_used_up_on_every_account_still_answers_heavy(gateway, emu):
    gateway.add(TOKEN_A, TOKEN_B)
    for token in (TOKEN_A, TOKEN_B):
        emu.set_quota("fast", token=token, remaining=0)

    error = gateway.chat(body=FAST, status=429).get_json()["error"]
    assert "rate-limited for fast" in error["message"]
    heavy = gateway.chat(body=HEAVY)
    assert heavy.get_json()["choices"][0]["message"]["content"]

    for item in gateway.accounts():
        assert item["status"] == "active"  # a used-up mode never takes the account out
        assert item["modes"]["fast"]["state"] == "limited"
        assert item["modes"]["heavy"]["state"] == "ready"
        assert item["modes"]["expert"]["state"] == "ready"


def test_a_window_that_resets_brings_the_mode_back_with_no_failed_request(gateway, emu):
    gateway.add(TOKEN_A)
    emu.set_quota("fast", token=TOKEN_A, remaining=0, window_seconds=2)
    gateway.chat(body=FAST, status=429)
    (limited,) = gateway.accounts()
    assert limited["modes"]["fast"]["state"] == "limited"
    reset = limited["modes"]["fast"]["reset_at"]

    time.sleep(max(0.0, seconds_until(reset)) + 0.6)
    # Back in the listing and the pick at its reset time, before any request tried it.
    assert gateway.accounts()[0]["modes"]["fast"]["state"] == "ready"
    asked_before = len(emu.chat_turns())
    gateway.chat(body=FAST)
    assert len(emu.chat_turns()) == asked_before + 1  # one turn, and it was answered


def test_stored_remaining_count_follows_the_emulator_within_the_refresh_interval(make_gateway, emu):
    gateway = make_gateway(QUOTA_REFRESH_SECONDS=1)
    gateway.add(TOKEN_A)
    for stream in (False, True, False):
        response = gateway.chat(body={**FAST, "stream": stream})
        response.close()  # a streamed reply records how it ended when it is closed
    upstream = emu.quotas(token=TOKEN_A)["fast"]["remaining"]
    assert upstream == 137
    assert gateway.accounts()[0]["modes"]["fast"]["remaining"] == upstream

    # The account is used elsewhere (the grok.com app): only a quota read can know.
    emu.set_quota("fast", token=TOKEN_A, remaining=42)
    time.sleep(1.1)
    with gateway.app.app_context():
        _refresh_loop(tick=0.1, ticks=1)
    assert gateway.accounts()[0]["modes"]["fast"]["remaining"] == 42


def test_a_free_tier_account_is_never_sent_heavy(gateway, emu):
    gateway.add(FREE, TOKEN_B)
    free, paid = gateway.accounts()
    assert free["tier"] == "free" and paid["tier"] == "heavy"
    assert free["modes"]["heavy"]["state"] == "unavailable"
    assert free["modes"]["fast"]["state"] == "ready"

    for _ in range(4):
        gateway.chat(body=HEAVY)
    asked = [turn["email"] for turn in emu.chat_turns()]
    assert asked == [email_for(TOKEN_B)] * 4
    gateway.chat(body=FAST)
    gateway.chat(body=FAST)
    assert email_for(FREE) in [turn["email"] for turn in emu.chat_turns()[4:]]


def test_models_list_only_what_the_pool_can_serve(make_gateway):
    from conftest import POOL_KEY

    auth = {"Authorization": f"Bearer {POOL_KEY}"}
    gateway = make_gateway()
    gateway.add(FREE)
    listed = {m["id"] for m in gateway.client.get("/v1/models", headers=auth).get_json()["data"]}
    assert {"grok-3", "grok-fast", "grok-auto"} <= listed
    assert not listed & {"grok-heavy", "grok-4", "grok-expert"}
    error = gateway.chat(body=HEAVY, status=503).get_json()["error"]
    assert "no account in the pool has the heavy mode" in error["message"]

    everything = make_gateway(MODELS_LIST_ALL=True)
    everything.add(FREE)
    data = everything.client.get("/v1/models", headers=auth).get_json()["data"]
    assert "grok-heavy" in {m["id"] for m in data}


def test_mixed_failures_are_each_named_in_the_final_error(gateway, emu):
    gateway.add(TOKEN_A, "emu-dies-b-0123456789abcdef", TOKEN_B)
    # Rate-limited after their quotas were read: the pick tries them, grok.com answers 429.
    emu.set_fault("ratelimited", token=TOKEN_A)
    emu.set_fault("ratelimited", token=TOKEN_B)
    error = gateway.chat(body=FAST, status=502).get_json()["error"]
    message = error["message"]
    assert re.search(r"2 accounts rate-limited for fast until \d\d:\d\d UTC", message), message
    assert "1 account's reply broke off" in message
