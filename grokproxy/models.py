"""Database models: grok accounts (the token pool), users bound to them, conversations, stored
Responses API answers."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db

if TYPE_CHECKING:
    from .crypto import SecretBox


def email_md5(email: str) -> str:
    """The account key: lower-case hex md5 of the trimmed, lower-cased e-mail."""
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp that always comes back timezone-aware UTC (SQLite stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite keeps the string as given; store it without offset so comparisons sort right.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AccountStatus:
    """Values of `Account.status`."""

    ACTIVE = "active"
    COOLING = "cooling"
    INVALID = "invalid"
    DISABLED = "disabled"


class TimestampMixin:
    """created_at / updated_at kept by the database layer."""

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Account(TimestampMixin, db.Model):
    """One grok.com account of the pool, keyed by the md5 of its e-mail."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_md5: Mapped[str] = mapped_column(String(32), unique=True)
    upstream_user_id: Mapped[str | None] = mapped_column(String(64))
    token_encrypted: Mapped[str] = mapped_column(Text)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    token_preview: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.ACTIVE, index=True)
    cooldown_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    fail_count: Mapped[int] = mapped_column(Integer, default=0)
    # Rotation order: the pick takes the account with the smallest value and gives it the next
    # number of a database-wide sequence, which makes rotation fair across processes and hosts.
    last_used_seq: Mapped[int] = mapped_column(BigInteger, default=0, index=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    # Last known quota per mode: {"fast": {"remaining", "total", "window_seconds", "reset_at"}}.
    quota: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    quota_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "free", "paid" or "heavy", read from the quota totals (None until a quota was read); the
    # pick never sends a mode to an account whose tier lacks it (see pool.TIER_MODES).
    tier: Mapped[str | None] = mapped_column(String(16))
    # Replies on this account that broke off mid-stream in a row; reset by a reply that ends
    # well. Enough of them in a row cool the account (STREAM_FAILURES_TO_COOL).
    stream_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    users: Mapped[list[User]] = relationship(back_populates="account", passive_deletes=True)

    @classmethod
    def for_token(
        cls, box: SecretBox, token: str, email: str, upstream_user_id: str | None = None
    ) -> Account:
        """A new active account holding `token` (encrypted, digested, previewed)."""
        from .crypto import preview

        return cls(
            email=email,
            email_md5=email_md5(email),
            upstream_user_id=upstream_user_id,
            token_encrypted=box.encrypt(token),
            token_digest=box.digest(token),
            token_preview=preview(token),
            status=AccountStatus.ACTIVE,
        )

    def __repr__(self) -> str:
        return f"<Account {self.id} {self.email_md5} {self.status}>"


class User(TimestampMixin, db.Model):
    """A person of a share platform, bound to one account, with a personal API key."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    api_key_encrypted: Mapped[str] = mapped_column(Text)
    api_key_digest: Mapped[str] = mapped_column(String(64), unique=True)
    # Bumped when a login link is used, so every link works once.
    login_generation: Mapped[int] = mapped_column(Integer, default=0)
    # Stored in the web session at sign-in; bumped by sign-out and by every new sign-in, which
    # ends every session (a copied cookie included) started before.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Requests a day; None follows USER_DAILY_LIMIT, 0 is unlimited.
    daily_limit: Mapped[int | None] = mapped_column(Integer)
    # Set when the operator revokes the user: the key was replaced by one nobody knows.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    account: Mapped[Account | None] = relationship(back_populates="users")

    def __repr__(self) -> str:
        return f"<User {self.id} {self.user_name!r}>"


class Conversation(TimestampMixin, db.Model):
    """An upstream conversation, its owner and the account that holds it."""

    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(128), unique=True)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    # Who may continue it: "user:<id>", "key:<digest>" (a pool API key) or "sso:<digest>".
    owner: Mapped[str] = mapped_column(String(80), index=True)
    last_response_id: Mapped[str | None] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(64))
    turns: Mapped[int] = mapped_column(Integer, default=1)

    def __repr__(self) -> str:
        return f"<Conversation {self.conversation_id} owner={self.owner}>"


class UsageCounter(db.Model):
    """Chat requests admitted for one caller on one day: the daily limits count here.

    One row per (scope, day), incremented by a single conditional upsert, so workers and hosts
    sharing the database never admit one request more than the limit.
    """

    __tablename__ = "usage_counters"

    # "user:<id>" or "key:<digest>" (a pool API key), as the caller's conversation owner.
    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    # The calendar day in LIMIT_TIMEZONE, ISO form (2026-08-01).
    day: Mapped[str] = mapped_column(String(10), primary_key=True, index=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RequestStat(db.Model):
    """Chat requests and error answers per UTC hour, for the operator's overview."""

    __tablename__ = "request_stats"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)


class AdminSession(db.Model):
    """A signed-in operator console session, found by the digest of its cookie's id."""

    __tablename__ = "admin_sessions"

    sid_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AdminSignInFailure(db.Model):
    """Wrong console passwords from one client address; kept in the database so every worker
    slows the same guesser down."""

    __tablename__ = "admin_signin_failures"

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChatThread(TimestampMixin, db.Model):
    """A conversation as the chat page shows it: its user, title and upstream conversation."""

    __tablename__ = "chat_threads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The upstream conversation it continues; a regenerated first answer starts a new one.
    conversation_id: Mapped[str] = mapped_column(String(128), index=True)
    title: Mapped[str] = mapped_column(String(200))
    # Where the title came from: "words" (the first message), "grok" (grok.com's) or "user".
    title_source: Mapped[str] = mapped_column(String(8), default="words")
    model: Mapped[str] = mapped_column(String(64))

    messages: Mapped[list[ChatMessage]] = relationship(
        back_populates="thread",
        order_by="ChatMessage.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    def __repr__(self) -> str:
        return f"<ChatThread {self.id} user={self.user_id} {self.conversation_id}>"


class ChatMessage(db.Model):
    """One turn of a chat page conversation: what the user sent or what came back."""

    __tablename__ = "chat_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread_id: Mapped[int] = mapped_column(
        ForeignKey("chat_threads.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))  # "user" or "assistant"
    content: Mapped[str] = mapped_column(Text, default="")
    reasoning: Mapped[str | None] = mapped_column(Text)
    # The upstream response id of an answer: the parent when the next answer is regenerated.
    response_id: Mapped[str | None] = mapped_column(String(128))
    # Attached images are not kept (they can be megabytes): only how many there were.
    image_count: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    thread: Mapped[ChatThread] = relationship(back_populates="messages")

    def __repr__(self) -> str:
        return f"<ChatMessage {self.id} {self.role} thread={self.thread_id}>"


class StoredResponse(db.Model):
    """A Responses API answer kept for GET and for `previous_response_id` (its caller's only)."""

    __tablename__ = "stored_responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # resp_…
    # The caller that created it, as `Conversation.owner`; nobody else may read or continue it.
    owner: Mapped[str] = mapped_column(String(80), index=True)
    # Where a continuation goes upstream: the grok conversation and this reply's responseId.
    conversation_id: Mapped[str | None] = mapped_column(String(128))
    reply_id: Mapped[str | None] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
