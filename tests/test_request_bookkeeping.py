"""What a chat request asks of the database, counted through SQLAlchemy's events: a non-timed
guard for the per-request cost. A pool key's chat makes the pick before grok.com is called and
one transaction for everything after (daily count, the account's success, the conversation, the
overview's count); a user's chat adds its key lookup and the daily-limit check."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from grokproxy import limits
from grokproxy.extensions import db

from conftest import CHAT, POOL_KEY, error_of

TOKEN = "emu-bookkeeping-count-0001"
pytestmark = pytest.mark.usefixtures("transport")


@contextlib.contextmanager
def transactions() -> Iterator[list[list[str]]]:
    """Every transaction SQLAlchemy runs meanwhile, as the statements run in it (a statement
    outside a transaction opens a group of its own). The PostgreSQL pick runs on a raw driver
    connection, outside these events."""
    groups: list[list[str]] = []
    open_on: dict[int, list[str]] = {}

    def began(conn) -> None:
        open_on[id(conn)] = group = []
        groups.append(group)

    def ended(conn) -> None:
        open_on.pop(id(conn), None)

    def executed(conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("BEGIN"):
            return  # SQLite's explicit BEGIN, sent from the begin event
        group = open_on.get(id(conn))
        if group is None:
            groups.append([statement])
        else:
            group.append(statement)

    listeners = [("begin", began), ("commit", ended), ("rollback", ended)]
    listeners.append(("before_cursor_execute", executed))
    for name, listener in listeners:
        event.listen(Engine, name, listener)
    try:
        yield groups
    finally:
        for name, listener in listeners:
            event.remove(Engine, name, listener)


def tables(statements: list[str]) -> list[str]:
    """The table each statement writes or reads first, in order."""
    found = []
    for statement in statements:
        match = re.search(r"\b(?:INSERT INTO|UPDATE|FROM)\s+(\w+)", statement, re.IGNORECASE)
        found.append(match.group(1) if match else statement.split()[0])
    return found


def postgres(app) -> bool:
    with app.app_context():
        return db.engine.dialect.name == "postgresql"


BATCH = ["usage_counters", "accounts", "conversations", "request_stats"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_pool_key_chat_writes_its_bookkeeping_in_one_transaction(make_gateway, stream):
    gateway = make_gateway([TOKEN])
    gateway.chat()  # warm: the first request of a process also reads the schema and catalog
    with transactions() as seen:
        answer = gateway.chat(body={**CHAT, "stream": stream})
        answer.get_data()
        answer.close()  # a stream records its end as the server closes it
    pick = [] if postgres(gateway.app) else [["accounts"]]
    if stream:
        # The account's success is recorded when the stream ends, after the answer's bytes.
        assert [tables(group) for group in seen] == [
            *pick,
            ["usage_counters", "conversations", "request_stats"],
            ["accounts"],
            *([["chat_threads"]] if len(seen) == len(pick) + 3 else []),  # grok.com's title
        ]
    else:
        assert [tables(group) for group in seen] == [*pick, BATCH]


def test_a_user_chat_reads_its_key_once_and_checks_its_limit_before_grok(make_gateway):
    gateway = make_gateway([TOKEN], USER_DAILY_LIMIT=10)
    key = gateway.login("counted")
    gateway.chat(key)
    with transactions() as seen:
        answer = gateway.chat(key)
    assert answer.headers["x-ratelimit-remaining-requests"] == "8"
    assert [tables(group) for group in seen] == [
        ["users"],  # id, account and daily limit in one select
        ["usage_counters"],  # the limit is checked (and counted) before grok.com is called
        ["accounts", "accounts"],  # the claim: its row, then its rotation stamp
        ["accounts", "conversations", "request_stats"],
    ]


def test_an_unlimited_callers_failed_request_is_not_counted_but_its_error_is(make_gateway):
    gateway = make_gateway(["emu-invalid-bookkeeping-0001"])
    error_of(gateway.chat(status=503), 503)
    gateway.chat(body={**CHAT, "model": "no-such-model"}, status=404)
    with gateway.app.app_context():
        counted = db.session.execute(db.text("SELECT count(*) FROM usage_counters")).scalar()
        assert counted == 0, "a request grok.com never answered is not counted"
        assert sum(errors for _, _, errors in limits.hourly(1)) == 2
    gateway.add(TOKEN)
    gateway.chat()
    with gateway.app.app_context():
        assert list(limits.usage_today([f"key:{_digest(gateway.app)}"]).values()) == [1]
        assert [(r, e) for _, r, e in limits.hourly(1)] == [(3, 2)]


def _digest(app) -> str:
    return app.extensions["grokproxy.secrets"].digest(POOL_KEY)[:40]
