"""Stored Responses API answers: kept per caller, for GET and for `previous_response_id`.

A stored response belongs to the caller that created it (`Caller.owner`, as conversations do):
any other caller is told it does not exist. Writes are short Core statements on a connection of
their own, as the relay records conversations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update

from .auth import Caller
from .errors import NotFound
from .extensions import db, write_transaction
from .models import StoredResponse, utcnow

table = StoredResponse.__table__


@dataclass(frozen=True)
class Stored:
    """A stored response as the API needs it."""

    id: str
    conversation_id: str | None
    reply_id: str | None
    body: dict[str, Any]


def find(caller: Caller, response_id: str, param: str | None = None) -> Stored:
    """The caller's own stored response, or a 404 that says nothing about other callers'."""
    row = db.session.scalars(select(StoredResponse).where(StoredResponse.id == response_id)).first()
    if row is None or row.owner != caller.owner:
        raise NotFound(
            f"No response found with id {response_id!r}.",
            code="response_not_found",
            param=param,
        )
    return Stored(row.id, row.conversation_id, row.reply_id, dict(row.body))


def save(
    caller: Caller,
    body: dict[str, Any],
    conversation_id: str | None,
    reply_id: str | None,
    *,
    new: bool,
) -> None:
    """Insert (`new`) or update one response with where its conversation stands upstream."""
    now = utcnow()
    values = {
        "conversation_id": conversation_id,
        "reply_id": reply_id,
        "model": body["model"][:64],
        "body": body,
        "updated_at": now,
    }
    if new:
        statement = insert(table).values(
            id=body["id"], owner=caller.owner, created_at=now, **values
        )
    else:
        statement = update(table).where(table.c.id == body["id"]).values(**values)
    with write_transaction() as conn:
        conn.execute(statement)


def remove(caller: Caller, response_id: str) -> None:
    """Delete the caller's own stored response (404 when it has none by that id)."""
    find(caller, response_id)
    db.session.commit()  # end the read before the write transaction (SQLite locks)
    with write_transaction() as conn:
        conn.execute(delete(table).where(table.c.id == response_id))
