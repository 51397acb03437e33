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
import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app, g, has_request_context
from sqlalchemy import Executable, bindparam, insert, select, update

from . import chat_history, metrics, pool
from .auth import Caller
from .concurrency import ChatSlot, claim_chat
from .crypto import preview
from .errors import (
    APIError,
    BadRequest,
    Forbidden,
    NoAccount,
    NotFound,
    UpstreamFailed,
    UpstreamTimedOut,
    database_unavailable,
)
from .errors import RateLimited as RateLimitedAnswer
from .extensions import db, end_read, write_transaction
from .grok import errors as grok_errors
from .grok.catalog import ModelSpec
from .grok.client import ChatTurn, ImageDownloadError, Reply
from .grok.events import (
    ConversationStarted,
    GrokEvent,
    Heartbeat,
    ReplyFinished,
    ReplyStarted,
    TextDelta,
    ThinkingDelta,
    TitleChanged,
    ToolStep,
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
MAX_UNRECORDED = 10_000  # conversation writes kept through a database outage
_UUID = re.compile(r"\A[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\Z")
# Events that show a thinking model reasoned (a deep-search step is reasoning too).
_REASONING = (ThinkingDelta, ToolStep)
USER_ACCOUNT_REMOVED = (
    "your grok account was removed from the gateway; ask the operator to log you in again"
)


class NoReasoning(grok_errors.UpstreamBroken):
    """A thinking model's reply began its answer with no reasoning at all: a weak turn that
    another account answers properly (caught before the first byte, counted on the account)."""

    kind = "no_reasoning"


@dataclass(frozen=True)
class Failure:
    """What one failed attempt said, for the final error: its kind and when it clears."""

    kind: str
    until: datetime | None = None


@dataclass
class Outcome:
    """How a relayed stream ended, filled in while it is relayed."""

    error: grok_errors.GrokError | None = None
    response_id: str | None = None
    title: str | None = None  # grok.com's title of a new conversation (HTTP dialects send one)


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
    slot: ChatSlot | None = field(default=None, repr=False)  # held until the stream ends

    def release_slot(self) -> None:
        """Free the chat's concurrency slot (idempotent)."""
        if self.slot is not None:
            self.slot.release()

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
                    elif isinstance(event, TitleChanged):
                        outcome.title = event.title
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
            opened.release_slot()

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
    """Open a chat turn upstream, failing over between pool accounts before the first byte.

    The chat holds a concurrency slot (concurrency.claim_chat: 429 or 503 when none is free) until
    a streamed reply ends (relay_stream, finish_reply), or until a whole reply has been read.
    """
    slot = claim_chat(caller.owner)
    try:
        opened = _open_reply(caller, chat, spec, read_all=read_all)
    except BaseException:
        slot.release()
        raise
    if read_all:
        slot.release()  # upstream is done: what is left is building the JSON answer
    else:
        opened.slot = slot
    return opened


def _open_reply(
    caller: Caller, chat: ChatRequest, spec: ModelSpec, *, read_all: bool
) -> OpenedReply:
    if caller.kind == "user" and caller.account_id is None:
        # Checked first: deleting the account also deleted the conversations it held.
        raise NoAccount(USER_ACCOUNT_REMOVED)
    _check_id_forms(chat)
    conversation = _conversation_of(caller, chat.conversation_id)
    # End the read transaction of authentication and lookup: none stays open while grok.com is
    # called, and on SQLite a later write on that stale snapshot would fail ("database is
    # locked") once the pool has committed its own write.
    end_read()
    if conversation is not None:
        prompt = _prompt(last_user_message, chat)
        parent = chat.parent_message_id or conversation.last_response_id
    else:
        prompt = _prompt(flatten_messages, chat)
        parent = None
    attachments = _fetch_images(prompt.images)
    message = _long_prompt(prompt.text, attachments, conversation is None)
    config = current_app.config
    heartbeat = None if read_all else config["SSE_KEEPALIVE_SECONDS"]
    conversation_id = conversation.conversation_id if conversation else None

    # One budget for every attempt until grok.com's answer starts (UPSTREAM_TOTAL_TIMEOUT).
    budget = float(config["UPSTREAM_TOTAL_TIMEOUT"])
    deadline = time.monotonic() + budget
    tried: list[int] = []
    failures: list[Failure] = []
    last_error: grok_errors.GrokError | None = None
    for _ in range(config["MAX_ATTEMPTS"]):
        if last_error is not None and time.monotonic() >= deadline:
            log.info("time budget of %g s spent after %d attempts", budget, len(tried))
            raise _final_answer(last_error, spec.mode, tried, failures)
        try:
            attempt = _next_attempt(caller, spec, conversation, tried)
        except APIError as exhausted:
            if last_error is None:
                raise
            raise _final_answer(last_error, spec.mode, tried, failures) from exhausted
        metrics.count_pick(caller.kind)
        if attempt.account_id is not None:
            tried.append(attempt.account_id)
        try:
            turn = ChatTurn(
                token=attempt.token,
                spec=spec,
                message=message,
                user_id=attempt.user_id,
                attachments=attachments,
                conversation_id=conversation_id,
                parent_response_id=parent,
                deadline=deadline,
            )
            # An attempt that started with less than a first-byte window left was cut short by
            # the request's budget: its timeout says nothing about the account.
            cut_short = deadline - time.monotonic() < float(config["UPSTREAM_FIRST_BYTE_TIMEOUT"])
            opened = _try(attempt, turn, prompt, heartbeat, read_all)
        except grok_errors.GrokError as exc:
            last_error = exc
            metrics.count_attempt(exc)
            if cut_short and isinstance(exc, grok_errors.UpstreamTimeout):
                log.info("attempt on account %s ran out of budget", attempt.account_id)
                failures.append(Failure(exc.kind))
            else:
                failures.append(_report(attempt, exc, spec.mode))
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
    raise _final_answer(last_error, spec.mode, tried, failures)


LONG_PROMPT_INSTRUCTION = (
    "The conversation so far is in the attached text file, too long to paste here. Read it "
    "whole, then answer its last user message as the assistant, without mentioning the file."
)


def _long_prompt(text: str, attachments: list[tuple[bytes, str]], flattened: bool) -> str:
    """The message to send: a flattened history above MAX_PROMPT_CHARS goes as an attached
    text file with a short instruction, as grok.com's own app does for long pastes."""
    if not flattened or len(text) <= current_app.config["MAX_PROMPT_CHARS"]:
        return text
    attachments.insert(0, (text.encode("utf-8", errors="replace"), "text/plain"))
    return LONG_PROMPT_INSTRUCTION


def _prompt(build, chat: ChatRequest) -> Prompt:
    try:
        return build(chat.messages, chat.tool_config)
    except ValueError as exc:
        raise BadRequest(str(exc), param="messages") from None


def _check_id_forms(chat: ChatRequest) -> None:
    """Conversation and reply ids are grok.com's UUIDs: anything else is the client's mistake,
    refused before any account is used (grok.com would only answer with an error of its own)."""
    for param, value in (
        ("conversation_id", chat.conversation_id),
        ("parent_message_id", chat.parent_message_id),
    ):
        if value is not None and not _UUID.match(value):
            raise BadRequest(
                f"{param} must be a UUID as grokproxy returned it (8-4-4-4-12 hex digits)",
                param=param,
            )


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
    # The quality guard: a thinking model whose answer starts with no reasoning before it is a
    # weak turn; it is still unsent here, so another account can answer instead.
    check_reasoning = _expects_reasoning(turn.spec)
    try:
        for batch in stream:
            if isinstance(batch, Heartbeat):
                # A silent upstream commits: keep-alives must be able to flow.
                opened.buffered.append(batch)
                break
            content = False
            for event in batch:
                if check_reasoning:
                    if isinstance(event, _REASONING):
                        check_reasoning = False
                    elif isinstance(event, TextDelta) and event.text.strip():
                        raise NoReasoning(
                            f"grok.com answered {turn.spec.name} with no reasoning at all "
                            "(a thinking model's weak turn)"
                        )
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
    if read_all and attempt.account_id is not None:
        # The whole reply is read: written with the request's other bookkeeping.
        statement, params = pool.success_statement(
            attempt.account_id, turn.spec.mode, db.engine.dialect.name
        )
        defer_write(statement, params, what=f"the reply on account {attempt.account_id}")
    return opened


def _expects_reasoning(spec: ModelSpec) -> bool:
    """Whether the quality guard may require reasoning before this model's answer."""
    config = current_app.config
    if not spec.thinking or not config["QUALITY_GUARD"]:
        return False
    if config["GROK_DIALECT"] == "legacy":
        # E1 asks for reasoning per request (isReasoning, a DeepSearch preset): trust that.
        legacy = spec.fields_for("legacy")
        return bool(legacy.get("isReasoning") or legacy.get("deepsearchPreset"))
    return True


def _may_fail_over(caller: Caller, conversation: Conversation | None, exc: Exception) -> bool:
    """Only pool callers on new conversations move to another account."""
    if caller.kind != "pool" or conversation is not None:
        return False
    return not isinstance(exc, grok_errors.ConversationNotFound | grok_errors.InvalidRequest)


def _report(attempt: Attempt, exc: grok_errors.GrokError, mode: str) -> Failure:
    """Record what the failure says about the account (nothing for Cloudflare/anti-bot)."""
    if isinstance(exc, grok_errors.RateLimited):
        failure = Failure("rate_limited")
    elif isinstance(exc, grok_errors.InvalidCredentials):
        failure = Failure("invalid")
    elif isinstance(exc, grok_errors.UpstreamBroken):
        failure = Failure(exc.kind)
    else:
        failure = Failure("blocked" if isinstance(exc, grok_errors.Blocked) else exc.kind)
    if attempt.account_id is None:
        return failure
    reason = f"{exc.kind}: {exc.message}"
    if isinstance(exc, grok_errors.RateLimited):
        # Only this mode is used up (or over its spending cap): the account's others go on.
        wait = exc.wait_seconds or _probe_wait(attempt, mode)
        until = pool.limit_mode(
            attempt.account_id, mode, wait or current_app.config["COOLDOWN_SECONDS"], reason
        )
        return Failure("rate_limited", until)
    if isinstance(exc, grok_errors.InvalidCredentials):
        pool.mark_invalid(attempt.account_id, reason)
    elif isinstance(exc, grok_errors.UpstreamBroken):
        pool.record_failure(attempt.account_id, reason)
    elif isinstance(exc, grok_errors.InvalidRequest | grok_errors.ConversationNotFound):
        # The client asked for something that is not there: nothing about the account.
        log.info("grok.com refused the request on account %s: %s", attempt.account_id, exc.kind)
    else:
        log.warning("grok.com refused a request on account %s: %s", attempt.account_id, reason)
    return failure


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


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _failure_phrase(kind: str, count: int, mode: str, until: datetime | None) -> str:
    """One part of a mixed final error, e.g. "2 accounts rate-limited for fast until 14:05 UTC"."""
    if kind == "rate_limited":
        when = f" until {pool.clock(until)}" if until else ""
        return _plural(count, "account", "accounts") + f" rate-limited for {mode}{when}"
    if kind == "invalid":
        return _plural(count, "account", "accounts") + " rejected (SSO token no longer valid)"
    if kind == "blocked":
        return _plural(count, "attempt", "attempts") + " blocked by Cloudflare or anti-bot rules"
    owner = _plural(count, "account's reply", "accounts' replies")
    if kind == "no_reasoning":
        return f"{owner} came with no reasoning"
    if kind == "degraded":
        return f"{owner} searched a placeholder query (a degraded turn)"
    return f"{owner} broke off"


def _final_answer(
    last: grok_errors.GrokError, mode: str, tried: list[int], failures: Sequence[Failure] = ()
) -> APIError:
    """After MAX_ATTEMPTS: why nobody could answer, each reason said when they differ."""
    kinds = {failure.kind for failure in failures}
    if len(kinds) > 1:
        return _mixed_answer(mode, failures)
    if not isinstance(last, grok_errors.RateLimited | grok_errors.InvalidCredentials):
        return answer_for(last, "grok.com")
    if not pool.has_usable(mode):
        return pool.exhausted_error(mode)
    if isinstance(last, grok_errors.RateLimited):
        return RateLimitedAnswer(
            f"the {len(tried)} accounts tried in turn were rate-limited for {mode} by grok.com; "
            "other accounts remain, so a retry uses them",
            retry_after=1,
        )
    return NoAccount(
        f"the {len(tried)} accounts tried in turn were rejected by grok.com and are now marked "
        "invalid; other accounts remain, so a retry uses them"
    )


def _mixed_answer(mode: str, failures: Sequence[Failure]) -> APIError:
    """Attempts that failed for different reasons: one part per reason, in order of first."""
    parts: dict[str, list[Failure]] = {}
    for failure in failures:
        parts.setdefault(failure.kind, []).append(failure)
    said = []
    for kind, group in parts.items():
        untils = [failure.until for failure in group if failure.until is not None]
        said.append(_failure_phrase(kind, len(group), mode, min(untils) if untils else None))
    message = f"no account could answer: {', '.join(said)}"
    if set(parts) <= {"rate_limited", "invalid"}:
        if not pool.has_usable(mode):
            exhausted = pool.exhausted_error(mode)
            exhausted.message = f"{message}; {exhausted.message}"
            return exhausted
        return RateLimitedAnswer(
            f"{message}; other accounts remain, so a retry uses them", retry_after=1
        )
    return UpstreamFailed(f"{message}; a retry tries other accounts", code="upstream_error")


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
    if isinstance(exc, grok_errors.UpstreamTimeout):
        return UpstreamTimedOut(f"grok.com did not answer in time: {exc.message}")
    if isinstance(exc, grok_errors.ParentNotFound):
        return BadRequest(
            "parent_message_id names no reply of this conversation: use a message_id grokproxy "
            "returned for it, or leave it out to continue below the last reply",
            code="parent_not_found",
            param="parent_message_id",
        )
    if isinstance(exc, grok_errors.InvalidRequest):
        return BadRequest(f"grok.com refused the request: {exc.message}", code="invalid_request")
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


# The conversation record's statements, built once: built per request (values() and a where
# clause each time) they cost more than their execution, cached compiled form or not.
_NEW_CONVERSATION = insert(conversations)
_NEXT_TURN = (
    update(conversations)
    .where(conversations.c.id == bindparam("row_id"))
    .values(
        last_response_id=bindparam("response_id"),
        turns=conversations.c.turns + 1,
        model=bindparam("chat_model"),
        updated_at=bindparam("now"),
    )
)


def _record_conversation(
    caller: Caller, chat: ChatRequest, opened: OpenedReply, known: Conversation | None
) -> None:
    """Remember who owns the conversation and where it lives, before the stream is relayed."""
    now = utcnow()
    if known is not None:
        statement, params = (
            _NEXT_TURN,
            {
                "row_id": known.id,
                "response_id": opened.response_id or known.last_response_id,
                "chat_model": chat.model,
                "now": now,
            },
        )
    elif opened.conversation_id:
        statement, params = (
            _NEW_CONVERSATION,
            {
                "conversation_id": opened.conversation_id,
                "account_id": opened.account_id,
                "owner": caller.owner,
                "last_response_id": opened.response_id,
                "model": chat.model,
                "turns": 1,
                "created_at": now,
                "updated_at": now,
            },
        )
    else:
        return
    _write_bookkeeping(statement, opened, params)


@dataclass
class _Write:
    """One bookkeeping statement a request owes the database."""

    statement: Executable
    params: dict[str, Any] | None
    what: str  # for the log: "conversation … on account 3"
    keep: bool  # a conversation record: kept through a database outage and written later


# Conversation writes that failed while grok.com's reply was already there: the reply is
# delivered anyway, and these are written by the next request that reaches the database. They
# live in this process only; a restart loses them, which its log line says.
_unrecorded: deque[_Write] = deque(maxlen=MAX_UNRECORDED)
_unrecorded_lock = threading.Lock()
_DEFERRED = "grokproxy_deferred_writes"  # flask.g: the request's writes still to make


def defer_write(
    statement: Executable, params: dict[str, Any] | None = None, *, what: str, keep: bool = False
) -> _Write | None:
    """Write `statement` with the request's other bookkeeping, in one transaction when the
    request is done (`write_deferred`, before the first byte of the answer); at once outside a
    request. Returns a handle for `cancel_write` (None when it was written at once).

    A non-stream chat made five write transactions of one statement each (daily count, pick,
    account success, conversation, overview count), each a BEGIN IMMEDIATE, commit and its share
    of SQLAlchemy's per-execution cost; three of them can wait for the end of the request.
    """
    write = _Write(statement, params, what, keep)
    if not has_request_context():
        _write_each([write])
        return None
    pending = g.get(_DEFERRED)
    if pending is None:
        pending = g.grokproxy_deferred_writes = []
    pending.append(write)
    return write


def cancel_write(write: _Write | None) -> None:
    """Take back a deferred write that was not made yet (a request that failed early)."""
    pending = g.get(_DEFERRED) if has_request_context() else None
    if pending and write in pending:
        pending.remove(write)


def write_deferred(_exc: BaseException | None = None) -> None:
    """The request's deferred writes, in one transaction (a teardown_request hook: the answer's
    status is known and counted, no byte of it is sent yet). Each is made on its own as before
    when the batch fails for a reason of one statement's own."""
    pending = g.pop(_DEFERRED, None)
    if not pending:
        return
    try:
        _flush_unrecorded()
        # Core, on its own connection: the ORM's unit of work cost more than the writes.
        with write_transaction() as conn:
            for write in pending:
                conn.execute(write.statement, write.params)
        return
    except Exception as exc:
        if database_unavailable(exc):
            for write in pending:
                _keep_for_later(write, exc)
            return
        log.info("bookkeeping batch failed (%s); writing each on its own", type(exc).__name__)
    _write_each(pending)


def _write_each(writes: list[_Write]) -> None:
    """Each write in a transaction of its own; when the database fails, keep conversation
    records for later and go on: the finished reply matters more than its bookkeeping."""
    for write in writes:
        try:
            _flush_unrecorded()
            with write_transaction() as conn:
                conn.execute(write.statement, write.params)
        except Exception as exc:
            if not database_unavailable(exc):
                log.exception("could not record %s; the reply is delivered unrecorded", write.what)
                continue
            _keep_for_later(write, exc)


def _keep_for_later(write: _Write, exc: Exception) -> None:
    """The database is unavailable: a conversation record waits for it, the rest is lost."""
    if not write.keep:
        log.warning("database unavailable (%s): %s is not recorded", type(exc).__name__, write.what)
        return
    with _unrecorded_lock:
        if len(_unrecorded) == _unrecorded.maxlen:
            log.error("lost bookkeeping: %s dropped (queue full)", _unrecorded[0].what)
        _unrecorded.append(write)
    log.warning(
        "database unavailable (%s): %s is recorded once it is back; the reply is delivered",
        type(exc).__name__,
        write.what,
    )


def _write_bookkeeping(
    statement: Executable, opened: OpenedReply, params: dict[str, Any] | None = None
) -> None:
    """Write a conversation record with the request's bookkeeping (kept through an outage)."""
    what = f"conversation {opened.conversation_id} on account {opened.account_id}"
    defer_write(statement, params, what=what, keep=True)


def _flush_unrecorded() -> None:
    """Write what an outage left unrecorded (oldest first); stops at the first failure."""
    while True:
        with _unrecorded_lock:
            if not _unrecorded:
                return
            write = _unrecorded[0]
        try:
            with write_transaction() as conn:
                conn.execute(write.statement, write.params)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            log.error("lost bookkeeping: %s could not be recorded after the outage", write.what)
        else:
            log.info("recorded %s after the database came back", write.what)
        with _unrecorded_lock:
            if _unrecorded and _unrecorded[0] is write:
                _unrecorded.popleft()


def finish_reply(app, opened: OpenedReply, mode: str) -> None:
    """After the stream: record a mid-stream failure and the final reply id (short transactions)."""
    opened.release_slot()
    with app.app_context():
        try:
            _record_outcome(opened, opened.outcome, mode)
        except Exception:
            # The client already has its answer; a bookkeeping failure is for the log only.
            log.exception("could not record how the stream on account %s ended", opened.account_id)


def _record_outcome(opened: OpenedReply, outcome: Outcome, mode: str) -> None:
    """A mid-stream failure counts against the account (broken ones in a row cool it), a reply
    that ended well spends its mode's query; a new reply id becomes the parent."""
    if outcome.response_id and opened.conversation_id and outcome.response_id != opened.response_id:
        # First: the next turn's parent matters more than the account's failure count.
        _write_bookkeeping(
            update(conversations)
            .where(conversations.c.conversation_id == opened.conversation_id)
            .values(last_response_id=outcome.response_id, updated_at=utcnow()),
            opened,
        )
    error = outcome.error
    if opened.account_id is not None:
        if error is None:
            pool.record_success(opened.account_id, mode)
        elif isinstance(error, grok_errors.UpstreamBroken):
            config = current_app.config
            pool.record_stream_failure(
                opened.account_id,
                f"{error.kind}: {error.message}",
                cool_after=config["STREAM_FAILURES_TO_COOL"],
                cool_seconds=config["STREAM_FAILURE_COOL_SECONDS"],
            )
        else:
            _report(Attempt(opened.token, opened.account_id, ""), error, mode)
    if outcome.title and opened.conversation_id:
        chat_history.note_grok_title(opened.conversation_id, outcome.title)
