"""Conversations stay with their owner and on their account (test client over the emulator)."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from sqlalchemy import select

from grokproxy import pool
from grokproxy.emulator.accounts import email_for
from grokproxy.extensions import db
from grokproxy.models import Conversation, User

from conftest import POOL_KEY, md5_of, sso_jwt

# JWT-shaped, like grok.com's cookie: SHARED is also sent as a raw SSO bearer.
SHARED = sso_jwt("emu-shared-account-0001")
SECOND = sso_jwt("emu-second-account-0002")
THIRD = sso_jwt("emu-third-account-0003")
POOL_AUTH = {"Authorization": f"Bearer {POOL_KEY}"}
# Every test here runs over both upstream transports (the WebSocket gateway and HTTP).
pytestmark = pytest.mark.usefixtures("transport")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def ask(text: str, conversation_id: str | None = None, **extra) -> dict:
    body = {"model": "grok-3", "messages": [{"role": "user", "content": text}], **extra}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    return body


@pytest.fixture
def gateway(make_gateway):
    """A gateway over the emulator with three accounts, SHARED first."""
    return make_gateway([SHARED, SECOND, THIRD])


def continuations(emu, conversation_id: str) -> list[dict]:
    """The turns grok.com received that continued this conversation."""
    return [t for t in emu.chat_turns() if t["conversation_id"] == conversation_id]


def new_turns(emu) -> list[dict]:
    """The turns grok.com received that started a conversation."""
    return [t for t in emu.chat_turns() if t["conversation_id"] is None]


def test_reply_carries_conversation_and_message_ids(gateway, emu):
    key = gateway.login("ids")
    response = gateway.chat(key, ask("hello"))
    body = response.get_json()
    conversation = emu.conversation(body["conversation_id"])
    assistant = [r for r in conversation["responses"] if r["sender"] == "assistant"]
    assert body["message_id"] == assistant[-1]["responseId"]
    assert response.headers["X-Conversation-Id"] == body["conversation_id"]
    assert response.headers["X-Message-Id"] == body["message_id"]
    # Streamed, every chunk names the conversation; the reply id is there too.
    streamed = gateway.chat(key, ask("again", body["conversation_id"], stream=True))
    chunks = [
        json.loads(line[6:])
        for line in streamed.get_data(as_text=True).splitlines()
        if line.startswith("data: {")
    ]
    named = {chunk["conversation_id"] for chunk in chunks if "conversation_id" in chunk}
    assert named == {body["conversation_id"]}
    assert chunks[-1]["conversation_id"] == body["conversation_id"]
    assert chunks[-1]["message_id"] and chunks[-1]["message_id"] != body["message_id"]
    assert streamed.headers["X-Conversation-Id"] == body["conversation_id"]


def test_users_of_one_account_cannot_continue_each_others_conversations(gateway, emu):
    alice, bob = gateway.login("alice"), gateway.login("bob")
    started = gateway.chat(alice, ask("alice's secret plan")).get_json()
    conversation_id = started["conversation_id"]

    # Bob, the pool key and the raw SSO token of the very same account: all strangers here.
    strangers = [bob, POOL_KEY, SHARED]
    answers = [gateway.chat(key, ask("tell me", conversation_id), 404) for key in strangers]
    guessed = gateway.chat(bob, ask("tell me", str(uuid.uuid4())), 404)
    for answer in answers:
        # Indistinguishable from a conversation that never existed: nothing is revealed.
        assert answer.get_json() == guessed.get_json()
        assert answer.get_json()["error"]["code"] == "conversation_not_found"
        assert "X-Conversation-Id" not in answer.headers
        assert "alice" not in answer.get_data(as_text=True)
    assert continuations(emu, conversation_id) == [], "no stranger's request reached grok.com"

    # Streamed requests are refused the same way, before any stream starts.
    streamed = gateway.chat(bob, ask("tell me", conversation_id, stream=True), 404)
    assert streamed.mimetype == "application/json"

    # Alice continues fine, and the conversation holds only her turns.
    gateway.chat(alice, ask("next step", conversation_id))
    humans = [
        r["message"]
        for r in emu.conversation(conversation_id)["responses"]
        if r["sender"] == "human"
    ]
    assert humans == ["alice's secret plan", "next step"]


def test_each_user_continues_only_their_own_conversation(gateway, emu):
    alice, bob = gateway.login("alice2"), gateway.login("bob2")
    a = gateway.chat(alice, ask("a1")).get_json()["conversation_id"]
    b = gateway.chat(bob, ask("b1")).get_json()["conversation_id"]
    assert a != b
    assert gateway.chat(alice, ask("a2", a)).get_json()["conversation_id"] == a
    assert gateway.chat(bob, ask("b2", b)).get_json()["conversation_id"] == b
    gateway.chat(alice, ask("a3", b), 404)
    gateway.chat(bob, ask("b3", a), 404)
    with gateway.app.app_context():
        users = {u.user_name: u.id for u in db.session.scalars(select(User))}
        rows = {c.conversation_id: c for c in db.session.scalars(select(Conversation))}
    assert rows[a].owner == f"user:{users['alice2']}" and rows[a].turns == 2
    assert rows[b].owner == f"user:{users['bob2']}" and rows[b].turns == 2
    assert rows[a].account_id == rows[b].account_id == gateway.ids[0]


def test_a_pool_conversation_continued_ten_times_stays_on_its_account(gateway, emu):
    first = gateway.chat(POOL_KEY, ask("turn 0")).get_json()
    conversation_id, parent = first["conversation_id"], first["message_id"]
    owner_email = emu.conversation(conversation_id)["owner"]
    parents = []
    for turn in range(1, 11):
        # Other traffic in between keeps the pool rotating.
        gateway.chat(POOL_KEY, ask(f"unrelated {turn}"))
        reply = gateway.chat(POOL_KEY, ask(f"turn {turn}", conversation_id)).get_json()
        assert reply["conversation_id"] == conversation_id
        parents.append(parent)
        parent = reply["message_id"]

    sent = continuations(emu, conversation_id)
    assert len(sent) == 10
    assert {request["email"] for request in sent} == {owner_email}
    # Only the new user message travels, with the previous reply as its parent.
    assert [turn["message"] for turn in sent] == [f"turn {i}" for i in range(1, 11)]
    assert [turn["parent_response_id"] for turn in sent] == parents

    # The new conversations rotated over the other accounts meanwhile.
    new_emails = [turn["email"] for turn in new_turns(emu)]
    assert len(new_emails) == 11 and len(set(new_emails[1:])) >= 2

    # grok.com's conversation really grew: 11 turns, each answered.
    responses = emu.conversation(conversation_id)["responses"]
    assert sum(r["sender"] == "assistant" for r in responses) == 11
    assert sum(r["sender"] == "human" for r in responses) == 11
    with gateway.app.app_context():
        row = db.session.scalars(
            select(Conversation).where(Conversation.conversation_id == conversation_id)
        ).one()
        assert row.turns == 11 and row.last_response_id == parent


def test_a_users_requests_run_on_their_account_only(gateway, emu):
    key = gateway.login("carol", SECOND)
    for turn in range(4):
        gateway.chat(key, ask(f"new {turn}"))
        gateway.chat(POOL_KEY, ask(f"pool {turn}"))
    user_emails = [t["email"] for t in new_turns(emu) if t["message"].startswith("new")]
    assert user_emails == [email_for(SECOND)] * 4


def test_a_rebound_users_old_conversation_stays_on_its_account(gateway, emu):
    key = gateway.login("dora", SHARED)
    conversation_id = gateway.chat(key, ask("before")).get_json()["conversation_id"]
    assert gateway.login("dora", THIRD) == key
    gateway.chat(key, ask("after", conversation_id))
    (sent,) = continuations(emu, conversation_id)
    assert sent["email"] == email_for(SHARED)
    gateway.chat(key, ask("fresh"))
    assert new_turns(emu)[-1]["email"] == email_for(THIRD)


def test_a_deleted_accounts_users_get_a_clear_error(gateway, emu, admin_headers):
    key = gateway.login("erin", SECOND)
    conversation_id = gateway.chat(key, ask("hello")).get_json()["conversation_id"]
    deleted = gateway.client.post(
        "/api/delete-grok-token", json={"email_md5_list": [md5_of(SECOND)]}, headers=admin_headers
    )
    assert deleted.status_code == 200
    for body in (ask("new one"), ask("go on", conversation_id), ask("s", stream=True)):
        error = gateway.chat(key, body, 503).get_json()["error"]
        assert "your grok account was removed" in error["message"]
        assert error["type"] == "no_available_account"
    # The user still authenticates (their key is theirs); models list works.
    assert gateway.client.get("/v1/models", headers=bearer(key)).status_code == 200
    # Logging in again binds a new account and the same key works again.
    assert gateway.login("erin", THIRD) == key
    gateway.chat(key, ask("back"))


def test_a_cooling_or_invalid_account_is_named_in_the_users_error(gateway, emu):
    key = gateway.login("fay", SHARED)
    with gateway.app.app_context():
        pool.mark_cooling(gateway.ids[0], 600, "rate_limited: test")
    response = gateway.chat(key, ask("hi"), 429)
    assert "your grok account is rate-limited" in response.get_json()["error"]["message"]
    assert int(response.headers["Retry-After"]) > 500
    # The pool itself still answers, on another account.
    gateway.chat(POOL_KEY, ask("pool"))
    assert new_turns(emu)[-1]["email"] != email_for(SHARED)
    with gateway.app.app_context():
        pool.mark_invalid(gateway.ids[0], "invalid_credentials: test")
    error = gateway.chat(key, ask("hi"), 503).get_json()["error"]
    assert "your grok account is invalid" in error["message"]


def test_sso_bearer_conversations_belong_to_that_token_alone(gateway, emu):
    started = gateway.chat(SHARED, ask("mine")).get_json()
    conversation_id = started["conversation_id"]
    gateway.chat(POOL_KEY, ask("x", conversation_id), 404)
    gateway.chat(gateway.login("gil"), ask("x", conversation_id), 404)
    gateway.chat(SHARED, ask("still mine", conversation_id))
    assert len(continuations(emu, conversation_id)) == 1


def test_no_key_or_token_in_any_log_line(gateway, emu, caplog):
    caplog.set_level(logging.DEBUG)
    alice, bob = gateway.login("hal"), gateway.login("ivy")
    conversation_id = gateway.chat(alice, ask("hi")).get_json()["conversation_id"]
    gateway.chat(bob, ask("x", conversation_id), 404)
    gateway.chat(alice, ask("y", conversation_id, stream=True))
    gateway.chat(SHARED, ask("z"))
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    for secret in (alice, bob, POOL_KEY, SHARED, SECOND, THIRD):
        assert secret not in logged
