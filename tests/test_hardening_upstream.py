"""Upstream answers a client caused stay client errors, and no message names our internals."""

from __future__ import annotations

import uuid

import pytest

from grokproxy.extensions import db
from grokproxy.models import Account

from conftest import POOL_KEY, error_of, sso_jwt

ACCOUNT = sso_jwt("emu-hardening-parent-0001")
pytestmark = pytest.mark.usefixtures("transport")


def ask(text: str, **extra) -> dict:
    return {"model": "grok-3", "messages": [{"role": "user", "content": text}], **extra}


def failures_of(app) -> int:
    with app.app_context():
        account = db.session.scalars(db.select(Account)).one()
        return account.fail_count


def test_an_unknown_parent_on_a_real_conversation_is_a_400_not_counted(make_gateway, emu):
    gateway = make_gateway([ACCOUNT])
    started = gateway.chat(POOL_KEY, ask("hello")).get_json()
    unknown_parent = str(uuid.uuid4())
    answer = gateway.chat(
        POOL_KEY,
        ask("more", conversation_id=started["conversation_id"], parent_message_id=unknown_parent),
        400,
    )
    error = error_of(answer, 400)
    assert error["param"] == "parent_message_id"
    assert error["code"] == "parent_not_found"
    assert answer.headers["x-should-retry"] == "false"
    assert failures_of(gateway.app) == 0, "a client's wrong parent is not the account's failure"
    # The conversation itself is fine: continuing below its real last reply works.
    gateway.chat(POOL_KEY, ask("again", conversation_id=started["conversation_id"]))


@pytest.mark.parametrize("field", ["conversation_id", "parent_message_id"])
@pytest.mark.parametrize("value", ["c-1", "not-a-uuid", "x" * 36])
def test_ids_that_are_not_uuids_are_a_400_before_grok_is_asked(make_gateway, emu, field, value):
    gateway = make_gateway([ACCOUNT])
    before = len(emu.chat_turns())
    answer = gateway.chat(POOL_KEY, ask("hello", **{field: value}), 400)
    error = error_of(answer, 400)
    assert error["param"] == field and "UUID" in error["message"]
    assert len(emu.chat_turns()) == before


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_grok_names_no_host_port_or_library_class(make_app, add_accounts, transport):
    port = closed_port()
    app = make_app(GROK_BASE_URL=f"http://127.0.0.1:{port}", GROK_DIALECT=transport)
    add_accounts(app, [ACCOUNT])
    answer = app.test_client().post(
        "/v1/chat/completions", json=ask("hello"), headers={"Authorization": f"Bearer {POOL_KEY}"}
    )
    error = error_of(answer, 502)
    message = error["message"]
    assert "grok.com" in message and "reach" in message
    for internal in ("127.0.0.1", str(port), "Error", "urllib3", "HTTPConnection", "Errno"):
        assert internal not in message, message
