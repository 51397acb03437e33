"""A reply grok.com finished is delivered even when recording its conversation fails; the record
is written once the database is back."""

from __future__ import annotations

import contextlib
import json
import sqlite3

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from grokproxy import relay
from grokproxy.extensions import db
from grokproxy.models import Conversation

from conftest import POOL_KEY, sso_jwt

ACCOUNT = sso_jwt("emu-bookkeeping-account-0001")
pytestmark = pytest.mark.usefixtures("transport")


def ask(text: str, **extra) -> dict:
    return {"model": "grok-3", "messages": [{"role": "user", "content": text}], **extra}


@contextlib.contextmanager
def database_down():
    """What write_transaction raises when the database file cannot be opened."""
    orig = sqlite3.OperationalError("unable to open database file")
    raise sa_exc.OperationalError("BEGIN IMMEDIATE", {}, orig)
    yield  # pragma: no cover


def recorded(app) -> list[Conversation]:
    with app.app_context():
        return list(db.session.scalars(select(Conversation).order_by(Conversation.id)))


@pytest.fixture(autouse=True)
def _nothing_left_unrecorded():
    relay._unrecorded.clear()
    yield
    relay._unrecorded.clear()


@pytest.mark.parametrize("stream", [False, True])
def test_a_finished_reply_is_delivered_when_its_record_fails_and_recorded_later(
    make_gateway, emu, monkeypatch, stream
):
    gateway = make_gateway([ACCOUNT])
    with monkeypatch.context() as patch:
        patch.setattr(relay, "write_transaction", database_down)
        answer = gateway.chat(POOL_KEY, ask("hello", stream=stream))
    text = answer.get_data(as_text=True)
    if stream:
        assert "data: [DONE]" in text and '"error"' not in text
        content = "".join(
            (json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
            for line in text.splitlines()
            if line.startswith("data: {")
        )
        conversation_id = answer.headers["X-Conversation-Id"]
    else:
        body = answer.get_json()
        content = body["choices"][0]["message"]["content"]
        conversation_id = body["conversation_id"]
    assert content, "the answer grok.com gave reached the client"
    assert recorded(gateway.app) == []
    assert len(relay._unrecorded) == 1, "the record waits for the database"

    # The database is back: the next chat writes the kept record before its own.
    gateway.chat(POOL_KEY, ask("next"))
    rows = recorded(gateway.app)
    assert rows[0].conversation_id == conversation_id and len(rows) == 2
    # And the kept conversation can be continued.
    gateway.chat(POOL_KEY, ask("more", conversation_id=conversation_id))
