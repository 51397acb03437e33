"""Account health against the emulator: rate limits block the mode asked for until its reset,
dead tokens are marked invalid until re-added, Cloudflare / anti-bot rejections change no
account; tokens never leak."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from grokproxy.grok.client import Quota

# Every test here runs over both upstream transports (the WebSocket gateway and HTTP).
pytestmark = pytest.mark.usefixtures("transport")

TOKEN_A = "health-account-a-0123456789abcdef"
TOKEN_B = "health-account-b-0123456789abcdef"


@pytest.fixture
def gateway(make_gateway):
    """An empty pool over the emulator (tests add TOKEN_A then TOKEN_B), 2 s cooldowns."""
    return make_gateway(COOLDOWN_SECONDS=2)


def seconds_until(stamp: str) -> float:
    return (datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()) - time.time()


def test_rate_limited_mode_is_skipped_and_returns_after_its_reset(gateway, emu):
    gateway.add(TOKEN_A, TOKEN_B)
    emu.set_fault("ratelimited", token=TOKEN_A)

    # A is first in line, answers 429; the client gets B's answer and never notices.
    first = gateway.chat()
    assert first.status_code == 200
    assert first.get_json()["choices"][0]["message"]["content"]
    a = gateway.accounts()[0]
    # Only fast (grok-3's mode) is blocked; the account itself stays in rotation.
    assert a["status"] == "active" and a["modes"]["fast"]["state"] == "limited"
    assert a["modes"]["heavy"]["state"] == "ready"
    # The emulator's rate-limits gives no wait time, so COOLDOWN_SECONDS (2 s) applies (rounded
    # up to a whole second: a mode never returns before grok.com resets it).
    assert 0 < seconds_until(a["modes"]["fast"]["reset_at"]) <= 3.1
    assert "rate" in a["last_error"] and a["fail_count"] == 1

    for _ in range(3):
        gateway.chat()
    listing = gateway.accounts()
    assert listing[0]["use_count"] == 1 and listing[1]["use_count"] == 4

    emu.set_fault("none", token=TOKEN_A)
    time.sleep(max(0.0, seconds_until(a["modes"]["fast"]["reset_at"])) + 1.1)
    assert gateway.accounts()[0]["modes"]["fast"]["state"] == "ready"  # back by itself
    gateway.chat()
    listing = gateway.accounts()
    assert listing[0]["use_count"] == 2 and listing[0]["status"] == "active"


def test_the_upstream_wait_time_sets_the_reset(gateway, emu, monkeypatch):
    gateway.add(TOKEN_A, TOKEN_B)
    emu.set_fault("ratelimited", token=TOKEN_A)
    client = gateway.app.extensions["grokproxy.grok"]
    monkeypatch.setattr(client, "rate_limits", lambda token, mode, **_: Quota(0, 140, 7200, 300.0))
    gateway.chat()
    fast = gateway.accounts()[0]["modes"]["fast"]
    assert fast["state"] == "limited"
    assert 290 < seconds_until(fast["reset_at"]) <= 301


def test_all_accounts_limited_is_a_429_with_retry_after(gateway, emu):
    gateway.add(TOKEN_A, TOKEN_B)
    emu.set_fault("ratelimited", token=TOKEN_A)
    emu.set_fault("ratelimited", token=TOKEN_B)
    response = gateway.chat(status=429)
    assert 1 <= int(response.headers["Retry-After"]) <= 3
    assert "rate-limited for fast" in response.get_json()["error"]["message"]
    assert {item["modes"]["fast"]["state"] for item in gateway.accounts()} == {"limited"}


def test_invalid_token_is_marked_and_never_picked_again_until_readded(gateway, emu):
    gateway.add(TOKEN_A, TOKEN_B)
    emu.set_fault("invalid", token=TOKEN_A)
    gateway.chat()
    a = gateway.accounts()[0]
    assert a["status"] == "invalid" and a["use_count"] == 1

    emu.set_fault("none", token=TOKEN_A)  # healthy again upstream, but nobody re-added it
    for _ in range(4):
        gateway.chat()
    listing = gateway.accounts()
    assert listing[0]["status"] == "invalid" and listing[0]["use_count"] == 1
    assert listing[1]["use_count"] == 5

    assert gateway.add(TOKEN_A)["email_list"][0]["status"] == "updated"
    gateway.chat()
    listing = gateway.accounts()
    assert listing[0]["status"] == "active" and listing[0]["use_count"] == 2


def test_only_invalid_accounts_left_is_a_503(gateway, emu):
    gateway.add(TOKEN_A, TOKEN_B)
    emu.set_fault("invalid", token=TOKEN_A)
    emu.set_fault("invalid", token=TOKEN_B)
    gateway.chat(status=503)
    assert {item["status"] for item in gateway.accounts()} == {"invalid"}


@pytest.mark.parametrize("fault", ["antibot", "cloudflare"])
def test_anti_bot_and_cloudflare_rejections_change_no_account(gateway, emu, fault):
    gateway.add(TOKEN_A, TOKEN_B)
    emu.set_fault(fault, token=TOKEN_A)
    gateway.chat()
    a = gateway.accounts()[0]
    assert a["status"] == "active" and a["cooldown_until"] is None
