"""The chat page's history: each user's conversations and the turns sent and received there.

The page records what it sent and what it got (the OpenAI stream carries the answer to the
browser, not to us), so history survives a reload and follows the user to another device. A
thread may only be recorded for an upstream conversation this user owns (grokproxy recorded it
when the turn was relayed), so nobody can file another person's conversation under their name.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import delete, select, update

from .errors import NotFound
from .extensions import db, write_transaction
from .models import Account, ChatMessage, ChatThread, Conversation, User, utcnow
from .upstream import grok_client, model_catalog

log = logging.getLogger(__name__)
threads = ChatThread.__table__

TITLE_MAX = 200
TITLE_WORDS = 6
CONTENT_MAX = 200_000
PAGE_SIZE = 200


class MessageSchema(Schema):
    """One turn as the page sends it."""

    role = fields.String(required=True, validate=validate.OneOf(("user", "assistant")))
    content = fields.String(load_default="", validate=validate.Length(max=CONTENT_MAX))
    reasoning = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=CONTENT_MAX)
    )
    response_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=128)
    )
    image_count = fields.Integer(load_default=0, validate=validate.Range(min=0, max=32))
    error = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))


class RecordSchema(Schema):
    """What the page records after (or while) a turn: the conversation and its new messages."""

    conversation_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    model = fields.String(required=True, validate=validate.Length(min=1, max=64))
    # Regenerate and edit replace the last exchange (from the last user message on).
    replace_last = fields.Boolean(load_default=False)
    messages = fields.List(
        fields.Nested(MessageSchema), required=True, validate=validate.Length(min=1, max=4)
    )


class RenameSchema(Schema):
    """A new title."""

    title = fields.String(required=True, validate=validate.Length(min=1, max=TITLE_MAX))


def load(schema: Schema, payload: Any) -> dict[str, Any]:
    """Validate a JSON body; a non-object is refused like any other bad field."""
    if not isinstance(payload, dict):
        raise ValidationError({"_schema": ["The request body must be a JSON object."]})
    return schema.load(payload)


def title_from_words(text: str) -> str:
    """A title from the first words of a message (the gateway sends grok's own title nowhere)."""
    words = re.sub(r"\s+", " ", text).strip().split(" ")
    title = " ".join(words[:TITLE_WORDS])
    if len(words) > TITLE_WORDS:
        title += "…"
    return title[:TITLE_MAX] or "New conversation"


def _summary(thread: ChatThread) -> dict[str, Any]:
    return {
        "id": thread.id,
        "conversation_id": thread.conversation_id,
        "title": thread.title,
        "title_source": thread.title_source,
        "model": thread.model,
        "created_at": thread.created_at.isoformat(),
        "updated_at": thread.updated_at.isoformat(),
    }


def _message(message: ChatMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "reasoning": message.reasoning,
        "response_id": message.response_id,
        "image_count": message.image_count,
        "error": message.error,
        "created_at": message.created_at.isoformat(),
    }


def list_threads(user: User) -> list[dict[str, Any]]:
    """The user's conversations, most recently used first."""
    rows = db.session.scalars(
        select(ChatThread)
        .where(ChatThread.user_id == user.id)
        .order_by(ChatThread.updated_at.desc(), ChatThread.id.desc())
        .limit(PAGE_SIZE)
    )
    return [_summary(thread) for thread in rows]


def _own_thread(user: User, thread_id: int) -> ChatThread:
    thread = db.session.get(ChatThread, thread_id)
    if thread is None or thread.user_id != user.id:
        raise NotFound("no such conversation", code="conversation_not_found", param="id")
    return thread


def get_thread(user: User, thread_id: int) -> dict[str, Any]:
    """One conversation with its messages in order."""
    thread = _own_thread(user, thread_id)
    return {**_summary(thread), "messages": [_message(m) for m in thread.messages]}


def _check_owned_upstream(user: User, conversation_id: str) -> None:
    owned = db.session.scalar(
        select(Conversation.id).where(
            Conversation.conversation_id == conversation_id,
            Conversation.owner == f"user:{user.id}",
        )
    )
    if owned is None:
        raise NotFound(
            "grokproxy relayed no such conversation for you",
            code="conversation_not_found",
            param="conversation_id",
        )


def record(user: User, thread_id: int | None, payload: Any) -> dict[str, Any]:
    """Append turns to a conversation (a new one when `thread_id` is None); returns its summary."""
    data = load(RecordSchema(), payload)
    _check_owned_upstream(user, data["conversation_id"])
    if thread_id is None:
        first_user = next((m for m in data["messages"] if m["role"] == "user"), None)
        thread = ChatThread(
            user_id=user.id,
            conversation_id=data["conversation_id"],
            title=title_from_words(first_user["content"] if first_user else ""),
            title_source="words",
            model=data["model"],
        )
        db.session.add(thread)
    else:
        thread = _own_thread(user, thread_id)
        if data["replace_last"]:
            last_user = max((m.id for m in thread.messages if m.role == "user"), default=None)
            if last_user is not None:
                db.session.execute(
                    delete(ChatMessage).where(
                        ChatMessage.thread_id == thread.id, ChatMessage.id >= last_user
                    )
                )
                db.session.expire(thread, ["messages"])
        thread.conversation_id = data["conversation_id"]
        thread.model = data["model"]
        thread.updated_at = utcnow()
    db.session.flush()
    for item in data["messages"]:
        db.session.add(ChatMessage(thread_id=thread.id, **item))
    db.session.commit()
    return _summary(thread)


def rename(user: User, thread_id: int, payload: Any) -> dict[str, Any]:
    """Give a conversation the user's own title (grok's later titles no longer replace it)."""
    data = load(RenameSchema(), payload)
    thread = _own_thread(user, thread_id)
    title = re.sub(r"\s+", " ", data["title"]).strip()
    if not title:
        raise ValidationError({"title": ["The title is blank."]})
    thread.title = title
    thread.title_source = "user"
    db.session.commit()
    return _summary(thread)


def remove(user: User, thread_id: int) -> dict[str, Any]:
    """Delete a conversation here, and soft-delete it on grok.com when the account still exists."""
    thread = _own_thread(user, thread_id)
    conversation_ids = {thread.conversation_id}
    db.session.delete(thread)
    db.session.commit()
    upstream_deleted = all(_delete_upstream(user, cid) for cid in conversation_ids)
    return {"id": thread_id, "deleted": True, "upstream_deleted": upstream_deleted}


def _delete_upstream(user: User, conversation_id: str) -> bool:
    account = db.session.get(Account, user.account_id) if user.account_id else None
    if account is None:
        return False
    try:
        token = current_app.extensions["grokproxy.secrets"].decrypt(account.token_encrypted)
        grok_client().delete_conversation(token, conversation_id)
    except Exception as exc:
        log.info("could not soft-delete a conversation on account %s: %s", account.id, exc)
        return False
    return True


def note_grok_title(conversation_id: str, title: str) -> None:
    """Store grok.com's title for a conversation, unless its user named it themselves."""
    title = re.sub(r"\s+", " ", title).strip()[:TITLE_MAX]
    if not title or not conversation_id:
        return
    with write_transaction() as conn:
        conn.execute(
            update(threads)
            .where(threads.c.conversation_id == conversation_id, threads.c.title_source != "user")
            .values(title=title, title_source="grok")
        )


def _describe(spec: Any) -> str:
    parts = []
    if spec.deepsearch:
        parts.append("deeper search" if spec.deepsearch == "deeper" else "deep search")
    if spec.thinking:
        parts.append("thinks first")
    parts.append(f"{spec.mode} mode")
    return ", ".join(parts).capitalize()


def page_models() -> dict[str, Any]:
    """The catalog for the page's picker: each model's short description and the default.

    The default is the first model of the newest generation in the catalog (grok-auto in the
    built-in one): grok-2 comes first only because the catalog is ordered by age.
    """
    specs = list(model_catalog())
    newest = max((spec.created for spec in specs), default=0)
    default = next((spec.name for spec in specs if spec.created == newest), None)
    return {
        "default": default,
        "data": [
            {
                "id": spec.name,
                "mode": spec.mode,
                "thinking": spec.thinking,
                "deepsearch": spec.deepsearch,
                "description": _describe(spec),
            }
            for spec in specs
        ],
    }
