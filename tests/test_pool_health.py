"""Account health against the emulator: rate limits cool an account, dead tokens are marked
invalid until re-added, Cloudflare / anti-bot rejections change no account; tokens never leak."""

from __future__ import annotations

import logging
import time
from datetime import datetime

import pytest

from grokproxy.grok.client import Quota

from conftest import POOL_KEY

TOKEN_A = "health-account-a-0123456789abcdef"
TOKEN_B = "health-account-b-0123456789abcdef"
CHAT = {"model": "grok-3", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def pool_app(make_app, emu):
    return make_app(GROK_BASE_URL=emu.base_url, GROK_ASSETS_URL=emu.assets_url, COOLDOWN_SECONDS=2)


@pytest.fixture
def gateway(pool_app, admin_headers, caplog):
    """Admin and chat calls on one app; on teardown no answer or log line may hold a token."""
    caplog.set_level(logging.DEBUG)
    client = pool_app.test_client()
    answers: list[str] = []

    class Gateway:
        app = pool_app

        def add(self, *tokens: str) -> dict:
            response = client.post(
                "/api/batch-add-grok-token",
                json={"sso_token_list": list(tokens)},
                headers=admin_headers,
            )
            answers.append(response.get_data(as_text=True))
            return response.get_json()

        def accounts(self) -> dict[str, dict]:
            """The listing by token: {"a": item, "b": item}."""
            response = client.get("/api/get-grok-list?page_size=100", headers=admin_headers)
            answers.append(response.get_data(as_text=True))
            items = response.get_json()["data"]
            return {"a": items[0], "b": items[1]}

        def chat(self):
            response = client.post(
                "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {POOL_KEY}"}
            )
            answers.append(response.get_data(as_text=True))
            return response

    yield Gateway()
    for text in answers + [record.getMessage() for record in caplog.records]:
        assert TOKEN_A not in text and TOKEN_B not in text


def seconds_until(stamp: str) -> float:
    return (datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()) - time.time()


def test_rate_limited_account_cools_is_skipped_and_returns_after_its_cooldown(gateway, emu):
    gateway.add(TOKEN_A, TOKEN_B)
    emu.set_fault("ratelimited", token=TOKEN_A)

    # A is first in line, answers 429; the client gets B's answer and never notices.
    first = gateway.chat()
    assert first.status_code == 200
    assert first.get_json()["choices"][0]["message"]["content"]
    a = gateway.accounts()["a"]
    assert a["status"] == "cooling"
    # The emulator's rate-limits gives no wait time, so COOLDOWN_SECONDS (2 s) applies.
    assert 0 < seconds_until(a["cooldown_until"]) <= 2.5
    assert "rate" in a["last_error"] and a["fail_count"] == 1

    for _ in range(3):
        assert gateway.chat().status_code == 200
    listing = gateway.accounts()
    assert listing["a"]["use_count"] == 1 and listing["b"]["use_count"] == 4

    emu.set_fault("none", token=TOKEN_A)
    time.sleep(max(0.0, seconds_until(a["cooldown_until"])) + 1.1)
    assert gateway.accounts()["a"]["status"] == "active"  # back by itself, listed as such
    assert gateway.chat().status_code == 200
    listing = gateway.accounts()
    assert listing["a"]["use_count"] == 2 and listing["a"]["status"] == "active"


def test_the_upstream_wait_time_sets_the_cooldown(gateway, emu, monkeypatch):
    gateway.add(TOKEN_A, TOKEN_B)
    emu.set_fault("ratelimited", token=TOKEN_A)
    client = gateway.app.extensions["grokproxy.grok"]
    monkeypatch.setattr(client, "rate_limits", lambda token, mode, **_: Quota(0, 140, 7200, 300.0))
    assert gateway.chat().status_code == 200
    a = gateway.accounts()["a"]
    assert a["status"] == "cooling"
    assert 290 < seconds_until(a["cooldown_until"]) <= 301


def test_all_accounts_cooling_is_a_429_with_retry_after(gateway, emu):
    gateway.add(TOKEN_A, TOKEN_B)
    emu.set_fault("ratelimited", token=TOKEN_A)
    emu.set_fault("ratelimited", token=TOKEN_B)
    response = gateway.chat()
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 3
    assert {item["status"] for item in gateway.accounts().values()} == {"cooling"}


def test_invalid_token_is_marked_and_never_picked_again_until_readded(gateway, emu):
    gateway.add(TOKEN_A, TOKEN_B)
    emu.set_fault("invalid", token=TOKEN_A)
    assert gateway.chat().status_code == 200
    a = gateway.accounts()["a"]
    assert a["status"] == "invalid" and a["use_count"] == 1

    emu.set_fault("none", token=TOKEN_A)  # healthy again upstream, but nobody re-added it
    for _ in range(4):
        assert gateway.chat().status_code == 200
    listing = gateway.accounts()
    assert listing["a"]["status"] == "invalid" and listing["a"]["use_count"] == 1
    assert listing["b"]["use_count"] == 5

    assert gateway.add(TOKEN_A)["email_list"][0]["status"] == "updated"
    assert gateway.chat().status_code == 200
    listing = gateway.accounts()
    assert listing["a"]["status"] == "active" and listing["a"]["use_count"] == 2


def test_only_invalid_accounts_left_is_a_503(gateway, emu):
    gateway.add(TOKEN_A, TOKEN_B)
    emu.set_fault("invalid", token=TOKEN_A)
    emu.set_fault("invalid", token=TOKEN_B)
    response = gateway.chat()
    assert response.status_code == 503
    assert {item["status"] for item in gateway.accounts().values()} == {"invalid"}


@pytest.mark.parametrize("fault", ["antibot", "cloudflare"])
def test_anti_bot_and_cloudflare_rejections_change_no_account(gateway, emu, fault):
    gateway.add(TOKEN_A, TOKEN_B)
    emu.set_fault(fault, token=TOKEN_A)
    assert gateway.chat().status_code == 200
    a = gateway.accounts()["a"]
    assert a["status"] == "active" and a["cooldown_until"] is None
