"""One chat turn against grok.com: choose the account, open the reply, fail over, relay, record.

The view hands over a validated request and gets back an `OpenedReply`: an upstream reply that
has already produced its first real event (pre-read), so every failure that can still be
answered with a clean JSON error, or retried on the next account, happened here. The view then
relays `relay_stream(opened)` without any database work or knowledge of grok.com's errors;
`finish_reply` records how it ended. Which transport carries the turn (HTTP NDJSON or the
WebSocket gateway) is the grok adapter's business: this module only opens a `ChatTurn`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from sqlalchemy import insert, select, update

from . import metrics, pool
from .auth import Caller
from .crypto import preview
from .errors import APIError, BadRequest, Forbidden, NoAccount, NotFound, UpstreamFailed
from .errors import RateLimited as RateLimitedAnswer
from .extensions import db, write_transaction
from .grok import errors as grok_errors
from .grok.catalog import ModelSpec
from .grok.client import ChatTurn, ImageDownloadError, Reply
from .grok.events import (
    ConversationStarted,
    GrokEvent,
    Heartbeat,
    ReplyFinished,
    ReplyStarted,
    UserTurn,
)
from .logs import note_served
from .models import Conversation, utcnow
from .openai import ImageInput, Prompt, flatten_messages, last_user_message
from .schemas import ChatRequest
from .tokens import quota_entry
from .upstream import grok_client

log = logging.getLogger(__name__)
conversations = Conversation.__table__

# Events that carry nothing a client sees: pre-reading continues past them.
_PREAMBLE = (ConversationStarted, UserTurn, ReplyStarted)
RATE_LIMIT_PROBE_TIMEOUT = 5.0
MAX_IMAGE_BYTES = 10 * 1024 * 1024
USER_ACCOUNT_REMOVED = (
    "your grok account was removed from the gateway; ask the operator to log you in again"
)


@dataclass
class Outcome:
    """How a relayed stream ended, filled in while it is relayed."""

    error: grok_errors.GrokError | None = None
    response_id: str | None = None


@dataclass
class OpenedReply:
    """An upstream reply ready to relay: the events read so far and the rest of the stream."""

    reply: Reply
    buffered: list[GrokEvent | Heartbeat]
    rest: Iterator[list[GrokEvent] | Heartbeat]  # batches still to come (Reply.batches)
    prompt: Prompt
    account_id: int | None
    token: str = field(repr=False)
    conversation_id: str | None = None
    response_id: str | None = None
    outcome: Outcome = field(default_factory=Outcome)

    def batches(self) -> Iterator[list[GrokEvent | Heartbeat] | Heartbeat]:
        """The reply in batches of events that arrived together, the pre-read ones first."""
        if self.buffered:
            first, self.buffered = self.buffered, []
            yield first
        yield from self.rest

    def content_events(self) -> Iterator[GrokEvent]:
        """Every event of a reply read whole (non-stream), keep-alives left out."""
        for batch in self.batches():
            if not isinstance(batch, Heartbeat):
                yield from (event for event in batch if not isinstance(event, Heartbeat))


class _KeepAlive:
    def __repr__(self) -> str:
        return "KEEPALIVE"


KEEPALIVE = _KeepAlive()  # relay_stream yields it while grok.com is silent


@dataclass(frozen=True)
class StreamFailed:
    """relay_stream's last item when grok.com failed after bytes were sent: the error body."""

    error: dict[str, Any]


def relay_stream(opened: OpenedReply) -> Iterator[list[GrokEvent] | _KeepAlive | StreamFailed]:
    """The rest of a streamed reply: event batches (one client write each), KEEPALIVE while
    grok.com is silent, and a final StreamFailed if it broke. Records the reply's outcome and
    closes upstream when done or abandoned (the client hung up)."""
    app = current_app._get_current_object()  # the stream runs after the request context

    def items() -> Iterator[list[GrokEvent] | _KeepAlive | StreamFailed]:
        outcome = opened.outcome
        try:
            for batch in opened.batches():
                if isinstance(batch, Heartbeat):
                    yield KEEPALIVE
                    continue
                events: list[GrokEvent] = []
                for event in batch:
                    if isinstance(event, Heartbeat):  # a pre-read batch can end with one
                        if events:
                            yield events
                            events = []
                        yield KEEPALIVE
                        continue
                    if isinstance(event, ReplyStarted | ReplyFinished):
                        outcome.response_id = event.response_id
                    events.append(event)
                if events:
                    yield events
        except grok_errors.GrokError as exc:
            outcome.error = exc
            log.info("upstream failed mid-stream on account %s: %s", opened.account_id, exc.kind)
            with app.app_context():
                yield StreamFailed(answer_for(exc, "grok.com").body()["error"])
        finally:
            # Also reached on GeneratorExit when the client hangs up: close upstream at once.
            opened.reply.close()

    return items()


@dataclass
class Attempt:
    """Where one try goes: an account of the pool (or a caller's own token)."""

    token: str = field(repr=False)
    account_id: int | None
    who: str  # how the account is named in errors: "your account", "the pool account" ...
    user_id: str | None = None  # the account's grok userId, when known


def open_reply(
    caller: Caller, chat: ChatRequest, spec: ModelSpec, *, read_all: bool
) -> OpenedReply:
    """Open a chat turn upstream, failing over between pool accounts before the first byte."""
    if caller.kind == "user" and caller.account_id is None:
        # Checked first: deleting the account also deleted the conversations it held.
        raise NoAccount(USER_ACCOUNT_REMOVED)
    conversation = _conversation_of(caller, chat.conversation_id)
    # End the read transaction of authentication and lookup: none stays open while grok.com is
    # called, and on SQLite a later write on that stale snapshot would fail ("database is
    # locked") once the pool has committed its own write.
    db.session.commit()
    if conversation is not None:
        prompt = _prompt(last_user_message, chat.messages)
        parent = chat.parent_message_id or conversation.last_response_id
    else:
        prompt = _prompt(flatten_messages, chat.messages)
        parent = None
    attachments = _fetch_images(prompt.images)
    config = current_app.config
    heartbeat = None if read_all else config["SSE_KEEPALIVE_SECONDS"]
    conversation_id = conversation.conversation_id if conversation else None

    tried: list[int] = []
    last_error: grok_errors.GrokError | None = None
    for _ in range(config["MAX_ATTEMPTS"]):
        try:
            attempt = _next_attempt(caller, spec, conversation, tried)
        except APIError as exhausted:
            if last_error is None:
                raise
            raise _final_answer(last_error, spec.mode, tried) from exhausted
        metrics.count_pick(caller.kind)
        if attempt.account_id is not None:
            tried.append(attempt.account_id)
        try:
            turn = ChatTurn(
                token=attempt.token,
                spec=spec,
                message=prompt.text,
                user_id=attempt.user_id,
                attachments=attachments,
                conversation_id=conversation_id,
                parent_response_id=parent,
            )
            opened = _try(attempt, turn, prompt, heartbeat, read_all)
        except grok_errors.GrokError as exc:
            last_error = exc
            metrics.count_attempt(exc)
            _report(attempt, exc, spec.mode)
            if not _may_fail_over(caller, conversation, exc):
                raise answer_for(exc, attempt.who) from None
            log.info(
                "attempt on account %s failed (%s); trying the next", attempt.account_id, exc.kind
            )
            metrics.count_failover()
            continue
        metrics.count_attempt()
        _record_conversation(caller, chat, opened, conversation)
        note_served(attempt.account_id, preview(attempt.token), spec.name)
        return opened
    assert last_error is not None
    raise _final_answer(last_error, spec.mode, tried)


def _prompt(build, messages: list[dict[str, Any]]) -> Prompt:
    try:
        return build(messages)
    except ValueError as exc:
        raise BadRequest(str(exc), param="messages") from None


def _conversation_of(caller: Caller, conversation_id: str | None) -> Conversation | None:
    """The caller's own recorded conversation, or 404 that reveals nothing about others'."""
    if conversation_id is None:
        return None
    row = db.session.scalars(
        select(Conversation).where(Conversation.conversation_id == conversation_id)
    ).first()
    if row is None or row.owner != caller.owner:
        raise NotFound(
            "conversation not found: continue only conversations this API key started",
            code="conversation_not_found",
            param="conversation_id",
        )
    if caller.kind != "sso" and row.account_id is None:
        raise NoAccount("the account holding this conversation was deleted from the pool")
    db.session.expunge(row)  # keeps its loaded values past the commit that ends the read
    return row


def _fetch_images(images: list[ImageInput]) -> list[tuple[bytes, str]]:
    """Image bytes to upload, fetched once for every attempt (http(s) URLs downloaded)."""
    out = []
    for index, image in enumerate(images):
        if image.data is not None:
            out.append((image.data, image.mime_type or "image/png"))
            continue
        try:
            downloaded = grok_client().download_image(image.url or "", MAX_IMAGE_BYTES)
        except ImageDownloadError as exc:
            raise BadRequest(f"image {index + 1}: {exc}", param="messages") from None
        out.append((downloaded.data, downloaded.content_type))
    return out


def _next_attempt(
    caller: Caller, spec: ModelSpec, conversation: Conversation | None, tried: list[int]
) -> Attempt:
    if caller.kind == "sso":
        return Attempt(caller.sso_token or "", None, "this SSO token")
    if conversation is not None:
        who = "the account holding this conversation"
        lease = pool.claim_account(conversation.account_id, spec.mode, who=who)
    elif caller.kind == "user":
        if caller.account_id is None:
            raise NoAccount(USER_ACCOUNT_REMOVED)
        who = "your grok account"
        lease = pool.claim_account(caller.account_id, spec.mode, who=who)
    else:
        who = "the pool account"
        lease = pool.pick_account(spec.mode, exclude=tried)
    return Attempt(lease.token, lease.account_id, who, lease.upstream_user_id)


def _try(
    attempt: Attempt,
    turn: ChatTurn,
    prompt: Prompt,
    heartbeat: float | None,
    read_all: bool,
) -> OpenedReply:
    """One upstream call; raises GrokError for anything that happens before the first content."""
    reply = grok_client().open_turn(turn)
    stream = reply.batches(heartbeat=heartbeat)
    conversation_id = turn.conversation_id
    opened = OpenedReply(
        reply,
        [],
        stream,
        prompt,
        attempt.account_id,
        attempt.token,
        conversation_id=conversation_id,
    )
    if conversation_id:
        # Continuations carry no conversation frame; the reply still names its conversation.
        opened.buffered.append(ConversationStarted(conversation_id))
    try:
        for batch in stream:
            if isinstance(batch, Heartbeat):
                # A silent upstream commits: keep-alives must be able to flow.
                opened.buffered.append(batch)
                break
            content = False
            for event in batch:
                opened.buffered.append(event)
                if isinstance(event, ConversationStarted):
                    opened.conversation_id = event.conversation_id
                elif isinstance(event, ReplyStarted | ReplyFinished):
                    opened.response_id = event.response_id
                content = content or not isinstance(event, _PREAMBLE)
            if content and not read_all:
                break  # the first content commits
    except BaseException:
        reply.close()
        raise
    return opened


def _may_fail_over(caller: Caller, conversation: Conversation | None, exc: Exception) -> bool:
    """Only pool callers on new conversations move to another account."""
    if caller.kind != "pool" or conversation is not None:
        return False
    return not isinstance(exc, grok_errors.ConversationNotFound)


def _report(attempt: Attempt, exc: grok_errors.GrokError, mode: str) -> None:
    """Record what the failure says about the account (nothing for Cloudflare/anti-bot)."""
    if attempt.account_id is None:
        return
    reason = f"{exc.kind}: {exc.message}"
    if isinstance(exc, grok_errors.RateLimited):
        wait = exc.wait_seconds or _probe_wait(attempt, mode)
        pool.mark_cooling(
            attempt.account_id, wait or current_app.config["COOLDOWN_SECONDS"], reason
        )
    elif isinstance(exc, grok_errors.InvalidCredentials):
        pool.mark_invalid(attempt.account_id, reason)
    elif isinstance(exc, grok_errors.UpstreamBroken):
        pool.record_failure(attempt.account_id, reason)
    else:
        log.warning("grok.com refused a request on account %s: %s", attempt.account_id, reason)


def _probe_wait(attempt: Attempt, mode: str) -> float | None:
    """Ask grok.com how long the rate limit lasts, and remember the mode's quota."""
    try:
        quota = grok_client().rate_limits(attempt.token, mode, timeout=RATE_LIMIT_PROBE_TIMEOUT)
    except grok_errors.GrokError as exc:
        log.info("rate-limit probe for account %s failed: %s", attempt.account_id, exc.kind)
        return None
    if attempt.account_id is not None and quota.remaining is not None:
        cooldown = float(current_app.config["COOLDOWN_SECONDS"])
        pool.store_quota(attempt.account_id, mode, quota_entry(quota, utcnow(), cooldown))
    return quota.wait_seconds


def answer_for(exc: grok_errors.GrokError, who: str) -> APIError:
    """The client's answer to an upstream failure no other account can fix."""
    if isinstance(exc, grok_errors.RateLimited):
        wait = exc.wait_seconds or current_app.config["COOLDOWN_SECONDS"]
        return RateLimitedAnswer(
            f"{who} is rate-limited by grok.com; try again later", retry_after=int(wait)
        )
    if isinstance(exc, grok_errors.InvalidCredentials):
        if who == "this SSO token":
            return Forbidden(
                "grok.com rejected this SSO token (expired or signed out)",
                code="invalid_sso_token",
            )
        return NoAccount(f"{who} was rejected by grok.com (its SSO token is no longer valid)")
    if isinstance(exc, grok_errors.ConversationNotFound):
        return NotFound(
            "grok.com no longer has this conversation",
            code="conversation_not_found",
            param="conversation_id",
        )
    if isinstance(exc, grok_errors.CloudflareChallenge):
        return UpstreamFailed(
            "grok.com blocked the request with a Cloudflare challenge: use a residential "
            "proxy (PROXY_URL_POOL), GROK_CF_CLEARANCE with a matching GROK_USER_AGENT, or "
            "GROK_IMPERSONATE",
            code="upstream_blocked",
        )
    if isinstance(exc, grok_errors.AntiBotRejected):
        return UpstreamFailed(
            "grok.com's anti-bot rules rejected the request: set GROK_STATSIG_ID or change "
            "the proxy",
            code="upstream_blocked",
        )
    return UpstreamFailed(f"grok.com failed: {exc.message}", code="upstream_error")


def _final_answer(last: grok_errors.GrokError, mode: str, tried: list[int]) -> APIError:
    """After MAX_ATTEMPTS: why nobody could answer."""
    if not isinstance(last, grok_errors.RateLimited | grok_errors.InvalidCredentials):
        return answer_for(last, "grok.com")
    if not pool.has_usable(mode):
        return pool.exhausted_error(mode)
    if isinstance(last, grok_errors.RateLimited):
        return RateLimitedAnswer(
            f"the {len(tried)} accounts tried in turn were rate-limited by grok.com and are "
            "cooling; other accounts remain, so a retry uses them",
            retry_after=1,
        )
    return NoAccount(
        f"the {len(tried)} accounts tried in turn were rejected by grok.com and are now marked "
        "invalid; other accounts remain, so a retry uses them"
    )


def _record_conversation(
    caller: Caller, chat: ChatRequest, opened: OpenedReply, known: Conversation | None
) -> None:
    """Remember who owns the conversation and where it lives, before the stream is relayed."""
    now = utcnow()
    if known is not None:
        statement = (
            update(conversations)
            .where(conversations.c.id == known.id)
            .values(
                last_response_id=opened.response_id or known.last_response_id,
                turns=conversations.c.turns + 1,
                model=chat.model,
                updated_at=now,
            )
        )
    elif opened.conversation_id:
        statement = insert(conversations).values(
            conversation_id=opened.conversation_id,
            account_id=opened.account_id,
            owner=caller.owner,
            last_response_id=opened.response_id,
            model=chat.model,
            turns=1,
            created_at=now,
            updated_at=now,
        )
    else:
        return
    # Core, on a connection of its own: the ORM's unit of work cost more than the write itself.
    with write_transaction() as conn:
        conn.execute(statement)


def finish_reply(app, opened: OpenedReply, mode: str) -> None:
    """After the stream: record a mid-stream failure and the final reply id (short transactions)."""
    with app.app_context():
        try:
            _record_outcome(opened, opened.outcome, mode)
        except Exception:
            # The client already has its answer; a bookkeeping failure is for the log only.
            log.exception("could not record how the stream on account %s ended", opened.account_id)


def _record_outcome(opened: OpenedReply, outcome: Outcome, mode: str) -> None:
    """A mid-stream failure counts against the account; a new reply id becomes the parent."""
    if outcome.error is not None:
        _report(Attempt(opened.token, opened.account_id, ""), outcome.error, mode)
    if outcome.response_id and opened.conversation_id and outcome.response_id != opened.response_id:
        with write_transaction() as conn:
            conn.execute(
                update(conversations)
                .where(conversations.c.conversation_id == opened.conversation_id)
                .values(last_response_id=outcome.response_id, updated_at=utcnow())
            )
