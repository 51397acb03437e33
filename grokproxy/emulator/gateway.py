"""grok.com's E4 chat gateway: `GET /ws/mgw/?uid=<userId>`, a WebSocket with Realtime-like events.

Every client message is `{"session_id": ..., "event": {"type": ..., ...}}` and every server
message `{"session_id": ..., "event": {...}}`, one JSON object per text message. One connection
carries many sessions, one per turn, in sequence or interleaved:

    session.create            -> session.created, conversation.attached
    conversation.item.create  -> conversation.item.added
    response.create           -> response.created, response.chunk..., response.done

Conversations are the HTTP routes' conversations (same store, same parent links), quotas and
faults are the account's, and every turn is listed in `/_emulator/streams`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from . import content
from . import frames as F
from .accounts import Account
from .app import (
    INVALID_CREDENTIALS,
    SPENDING_LIMIT,
    TOO_MANY,
    Config,
    Conversation,
    Emulator,
    _emu,
    authenticate,
    json_error,
)
from .dialects import GATEWAY_MODELS, MODE_PROFILE, image_count_for, wants_image

PATH = "/ws/mgw/"
SUBPROTOCOL = "json"

# Besides `workspace_ids`, these words in a prompt make the gateway search (deep search).
_SEARCH_WORDS = re.compile(r"search|latest|news", re.IGNORECASE)

_FLAGS = (
    "is_temporary",
    "keep_context",
    "disable_memory",
    "load_existing",
    "needs_history",
    "enable_image_generation",
)


class Refusal(Exception):
    """A client event the gateway answers with an `error` event (the connection stays open)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Turn:
    """The user item a session will answer."""

    item_id: str
    message: str
    file_ids: list[str]
    parent_response_id: str | None
    client_message_id: str | None


@dataclass
class Session:
    """One gateway session: one conversation, one turn."""

    session_id: str
    model: str
    x_grok: dict[str, Any]
    conv: Conversation
    new: bool
    turn: Turn | None = None
    answered: bool = False
    task: asyncio.Task | None = None

    def busy(self) -> bool:
        """Whether a reply of this session is still being sent."""
        return self.task is not None and not self.task.done()


@dataclass
class Reply:
    """What one accepted `response.create` streams."""

    response_id: str
    client_event_id: str | None
    cfg: Config
    dies: bool = False
    silent: bool = False
    degraded: bool = False
    noreasoning: bool = False
    delay: float = 0.0
    answer: list[str] = field(default_factory=list)
    script: tuple[str, int] | None = None  # a scripted answer (text, piece size)


def _event_id() -> str:
    return str(uuid.uuid4())


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class Connection:
    """One accepted socket: its sessions, its reply tasks and its idle clock."""

    def __init__(
        self, request: web.Request, ws: web.WebSocketResponse, account: Account, record: dict
    ) -> None:
        self.request = request
        self.emu: Emulator = _emu(request)
        self.ws = ws
        self.account = account
        self.record = record
        self.sessions: dict[str, Session] = {}
        self.send_lock = asyncio.Lock()
        self.last_activity = time.monotonic()
        self.streaming = 0  # replies sending events; an idle close waits for them
        self.dropped = False  # the server cut the connection (`dies`)
        self.idle_closed = False

    # --- sending -------------------------------------------------------------------------

    async def send(self, session_id: str | None, frame: F.Frame) -> None:
        """Send one server message."""
        async with self.send_lock:
            await self.ws.send_str(F.dumps(F.mgw_envelope(session_id, frame)))
        self.last_activity = time.monotonic()

    async def refuse(self, session_id: str | None, exc: Refusal, client_event_id: Any) -> None:
        """Answer a client event with an `error` event."""
        await self.send(
            session_id, F.mgw_error(exc.code, exc.message, _str_or_none(client_event_id))
        )

    # --- receiving -----------------------------------------------------------------------

    async def on_text(self, data: str) -> None:
        """Dispatch one client text message."""
        try:
            msg = json.loads(data)
        except ValueError:
            await self.refuse(None, Refusal("invalid_request", "message is not valid JSON"), None)
            return
        if not isinstance(msg, dict):
            refusal = Refusal("invalid_request", "message must be a JSON object")
            await self.refuse(None, refusal, None)
            return
        self.record["messages"].append(msg)
        # When each message came, in the emulator's one sequence: a connection carries many
        # turns, so a turn's place among every other connection's is its message's, not its
        # connection's.
        self.record.setdefault("arrivals", []).append(self.emu.next_id())
        sid = msg.get("session_id")
        event = msg.get("event")
        eid = event.get("event_id") if isinstance(event, dict) else None
        try:
            if sid is not None and not isinstance(sid, str):
                sid = None
                raise Refusal("invalid_request", "session_id must be a string")
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                raise Refusal("invalid_request", "message needs an 'event' object with a 'type'")
            kind = event["type"]
            if kind == "ping":
                return  # keep-alive: it only resets the idle clock, no pong is sent
            if kind == "session.create":
                sid = sid or str(uuid.uuid4())
                await self.session_create(sid, event)
            elif kind == "conversation.item.create":
                await self.item_create(self._session(sid), event)
            elif kind == "response.create":
                await self.response_create(self._session(sid), event)
            else:
                raise Refusal("invalid_request", f"unknown event type '{kind}'")
        except Refusal as exc:
            await self.refuse(sid, exc, eid)

    def _session(self, sid: str | None) -> Session:
        session = self.sessions.get(sid or "")
        if session is None:
            raise Refusal("invalid_request", f"unknown session '{sid}'")
        return session

    async def session_create(self, sid: str, event: dict[str, Any]) -> None:
        """`session.create`: a new conversation, or an existing one of this account."""
        old = self.sessions.get(sid)
        if old is not None and old.busy():
            raise Refusal("invalid_request", f"session '{sid}' is still answering")
        spec = event.get("session")
        if not isinstance(spec, dict):
            raise Refusal("invalid_request", "field 'session' must be an object")
        model = spec.get("model")
        if model not in GATEWAY_MODELS:
            raise Refusal("invalid_request", f"unknown model '{model}'")
        x_grok = spec.get("x_grok", {})
        if not isinstance(x_grok, dict):
            raise Refusal("invalid_request", "field 'session.x_grok' must be an object")
        for flag in _FLAGS:
            if x_grok.get(flag) is not None and not isinstance(x_grok[flag], bool):
                raise Refusal("invalid_request", f"field 'x_grok.{flag}' must be a boolean")
        workspaces = x_grok.get("workspace_ids")
        if workspaces is not None and not isinstance(workspaces, list):
            raise Refusal("invalid_request", "field 'x_grok.workspace_ids' must be a list")
        conv_id = x_grok.get("conversation_id")
        if conv_id is not None:
            conv = self.emu.conversations.get(conv_id) if isinstance(conv_id, str) else None
            if conv is None or conv.deleted or conv.owner_email != self.account.email:
                raise Refusal("conversation_not_found", f"conversation '{conv_id}' not found")
            new = False
        else:
            temporary = bool(x_grok.get("is_temporary"))
            conv = Conversation(str(uuid.uuid4()), self.account.email, time.time(), temporary)
            self.emu.conversations[conv.conversation_id] = conv
            new = True
        self.sessions[sid] = Session(sid, model, x_grok, conv, new)
        created = F.mgw_event(
            "session.created",
            client_event_id=_str_or_none(event.get("event_id")),
            session={"id": sid, "model": model},
        )
        await self.send(sid, created)
        attached = F.mgw_event("conversation.attached", conversation={"id": conv.conversation_id})
        await self.send(sid, attached)

    async def item_create(self, session: Session, event: dict[str, Any]) -> None:
        """`conversation.item.create`: the user's message (x_grok input chunks or Realtime)."""
        if session.answered or session.busy():
            raise Refusal("invalid_request", "this session has answered; create a new session")
        item = event.get("item")
        if (
            not isinstance(item, dict)
            or item.get("type") != "message"
            or item.get("role") != "user"
        ):
            raise Refusal("invalid_request", "field 'item' must be a user message")
        x_grok = item.get("x_grok", {})
        if not isinstance(x_grok, dict):
            raise Refusal("invalid_request", "field 'item.x_grok' must be an object")
        texts: list[str] = []
        files: list[str] = []
        for chunk in _list(x_grok, "input_chunks"):
            text = chunk.get("text") if isinstance(chunk, dict) else None
            mention = chunk.get("mention") if isinstance(chunk, dict) else None
            if isinstance(text, dict) and isinstance(text.get("text"), str):
                texts.append(text["text"])
            elif isinstance(mention, dict):
                file_id = mention.get("target", {}).get("file_mention", {}).get("file_id")
                if not isinstance(file_id, str) or not file_id:
                    raise Refusal("invalid_request", "a file mention needs a 'file_id'")
                files.append(file_id)
            else:
                raise Refusal("invalid_request", "unknown input chunk")
        for part in _list(item, "content"):
            if not isinstance(part, dict) or part.get("type") != "input_text":
                raise Refusal("invalid_request", "content parts must be 'input_text'")
            if not isinstance(part.get("text"), str):
                raise Refusal("invalid_request", "an 'input_text' part needs a 'text' string")
            texts.append(part["text"])
        message = "".join(texts)
        if not message.strip():
            raise Refusal("invalid_request", "the message has no text")
        for source in (item, x_grok):
            for file_id in _list(source, "file_attachment_ids"):
                if not isinstance(file_id, str) or not file_id:
                    raise Refusal("invalid_request", "file_attachment_ids must list file ids")
                if file_id not in files:
                    files.append(file_id)
        for file_id in files:
            if file_id not in self.account.uploads:
                raise Refusal("invalid_request", f"file attachment '{file_id}' not found")
        parent = item.get("parent_response_id", x_grok.get("parent_response_id"))
        if parent is not None and not (
            isinstance(parent, str) and session.conv.has_response(parent)
        ):
            raise Refusal("invalid_request", f"parent response '{parent}' not found")
        if parent is None and not session.new:
            raise Refusal("invalid_request", "parent_response_id is required to continue")
        session.turn = Turn(
            str(uuid.uuid4()), message, files, parent, _str_or_none(x_grok.get("client_message_id"))
        )
        fields: dict[str, Any] = {}
        if _str_or_none(event.get("event_id")):
            fields["client_event_id"] = event["event_id"]
        added = F.mgw_event(
            "conversation.item.added", **fields, item={"id": session.turn.item_id, "role": "user"}
        )
        await self.send(session.session_id, added)

    async def response_create(self, session: Session, event: dict[str, Any]) -> None:
        """`response.create`: quota and faults, then the reply in its own task."""
        if session.answered or session.busy():
            raise Refusal("invalid_request", "this session has answered; create a new session")
        if session.turn is None:
            raise Refusal("invalid_request", "no user item to respond to")
        eid = _str_or_none(event.get("event_id"))
        account = self.account
        fault = account.active_fault()
        if fault == "ratelimited":
            account.consume_fault()
            raise Refusal("rate_limit_exceeded", TOO_MANY)
        quota = account.quota(session.model, time.monotonic())
        if quota.remaining <= 0:
            raise Refusal("rate_limit_exceeded", TOO_MANY)
        if fault == "inband":
            account.consume_fault()
            raise Refusal("rate_limit_exceeded", TOO_MANY)
        if fault == "spending":
            account.consume_fault()
            raise Refusal("spending_limit", SPENDING_LIMIT)
        response_id = str(uuid.uuid4())
        sid = session.session_id
        if fault == "usagelimit":
            account.consume_fault()
            session.answered = True
            await self.send(
                sid,
                F.mgw_response("response.created", response_id, "in_progress", client_event_id=eid),
            )
            await self.send(sid, F.mgw_stream_error(response_id, F.USAGE_LIMIT_MESSAGE))
            await self.send(sid, F.mgw_response("response.done", response_id, "failed"))
            return
        quota.remaining -= 1
        session.answered = True
        cfg = self.emu._request_config(self.request)
        reply = Reply(response_id, eid, cfg, delay=cfg.first_byte_delay)
        # Only a reply that streams uses up a scripted answer (`silent` never streams).
        reply.script = None if fault == "silent" else account.take_script()
        if fault in ("slow", "dies", "silent", "degraded", "noreasoning"):
            account.consume_fault()
            reply.noreasoning = fault == "noreasoning"
            reply.dies = fault == "dies"
            reply.silent = fault == "silent"
            reply.degraded = fault == "degraded"
            if fault == "slow":
                reply.delay = max(reply.delay, cfg.slow_delay)
        session.task = asyncio.create_task(self.stream(session, reply))

    # --- replying ------------------------------------------------------------------------

    async def stream(self, session: Session, reply: Reply) -> None:
        """Send one reply, keeping its `/_emulator/streams` record up to date."""
        turn = session.turn
        assert turn is not None
        conv = session.conv
        conv.responses.append(
            {
                "responseId": turn.item_id,
                "sender": "human",
                "message": turn.message,
                "parentResponseId": turn.parent_response_id,
                "createTime": F.iso_time(time.time()),
                "model": MODE_PROFILE[session.model][0],
                "fileAttachments": turn.file_ids,
            }
        )
        stream = {
            "id": self.emu.next_id(),
            "path": PATH,
            "email": self.account.email,
            "conversationId": conv.conversation_id,
            "sessionId": session.session_id,
            "responseId": reply.response_id,
            "started": time.time(),
            "ended": None,
            "outcome": "streaming",
            "frames": 0,
        }
        self.emu.streams.append(stream)
        cfg = reply.cfg
        interval = 1.0 / cfg.tokens_per_second if cfg.tokens_per_second > 0 else 0.0
        cut = max(1, cfg.tokens // 2)  # `dies` cuts the connection after this many answer deltas
        answered = 0
        counted = False
        try:
            if reply.silent:
                await asyncio.Event().wait()  # accepted, never answered: only a close ends it
            self.streaming += 1
            counted = True
            if reply.delay > 0:
                await asyncio.sleep(reply.delay)
            for frame, paced, answer in self.plan(session, reply):
                if answer and reply.dies and answered >= cut:
                    self.dropped = True
                    stream["outcome"] = "dropped"
                    stream["ended"] = time.time()
                    if self.request.transport is not None:
                        self.request.transport.abort()  # no close frame: the TCP link just ends
                    return
                if paced and interval:
                    await asyncio.sleep(interval)
                await self.send(session.session_id, frame)
                stream["frames"] += 1
                answered += answer
        except (asyncio.CancelledError, ConnectionError):
            if stream["outcome"] == "streaming":
                stream["outcome"] = self._end_reason()
                stream["ended"] = time.time()
            raise
        finally:
            if counted:
                self.streaming -= 1
        stream["outcome"] = "completed"
        stream["ended"] = time.time()

    def _end_reason(self) -> str:
        if self.dropped:
            return "dropped"
        return "idle_closed" if self.idle_closed else "client_disconnected"

    def plan(self, session: Session, reply: Reply) -> Iterator[tuple[F.Frame, bool, bool]]:
        """Events of one reply in order; flags: paced like a token, counts as an answer delta."""
        turn = session.turn
        assert turn is not None
        rid = reply.response_id
        ids = {"response_id": rid}
        message = turn.message
        deep = bool(session.x_grok.get("workspace_ids")) or bool(_SEARCH_WORDS.search(message))
        searches = deep or reply.degraded
        thinking = (session.model in ("expert", "heavy") or searches) and not reply.noreasoning
        yield (
            F.mgw_response(
                "response.created", rid, "in_progress", client_event_id=reply.client_event_id
            ),
            False,
            False,
        )

        pages: list[dict[str, str]] = []
        post: dict[str, str] | None = None
        if thinking:
            notes = content.uses_notetaker(message)
            yield (
                F.mgw_phase_chunk("KIND_THINKING_START", **ids, event_id=_event_id()),
                False,
                False,
            )
            if notes:
                yield (
                    self._text("Thinking about your request", F.CHANNEL_NOTETAKER, rid),
                    True,
                    False,
                )
            for tok in content.thinking_tokens(message):
                yield self._text(tok, F.CHANNEL_ANALYSIS, rid), True, False
            if searches:
                query = (
                    content.DEGRADED_QUERY
                    if reply.degraded
                    else " ".join(content.prompt_words(message)[:8])
                )
                if notes:
                    yield self._text("Searching the web", F.CHANNEL_NOTETAKER, rid), True, False
                web_card = _event_id()
                yield (
                    F.mgw_tool_card_chunk(
                        web_card, "web_search", query, **ids, event_id=_event_id()
                    ),
                    False,
                    False,
                )
                pages = [
                    {"url": url, "title": title, "snippet": snippet}
                    for url, title, snippet in content.search_results(
                        query if reply.degraded else message
                    )
                ]
                yield (
                    F.mgw_web_results_chunk(web_card, pages, **ids, event_id=_event_id()),
                    False,
                    False,
                )
                if not reply.degraded:
                    x_card = _event_id()
                    yield (
                        F.mgw_tool_card_chunk(
                            x_card, "x_search", query, **ids, event_id=_event_id()
                        ),
                        False,
                        False,
                    )
                    digest = hashlib.sha256(message.encode()).hexdigest()
                    post = {
                        "userhandle": "grokemulator",
                        "name": "Grok Emulator",
                        "text": f"What people say about {query}",
                        "post_id": str(int(digest[:15], 16)),
                    }
                    yield (
                        F.mgw_x_result_chunk(
                            x_card,
                            post["userhandle"],
                            post["name"],
                            post["text"],
                            post["post_id"],
                            **ids,
                            event_id=_event_id(),
                        ),
                        False,
                        False,
                    )
                if notes:
                    yield self._text("Reading the sources", F.CHANNEL_NOTETAKER, rid), True, False
            yield (
                F.mgw_phase_chunk("KIND_RESPONSE_START", **ids, event_id=_event_id()),
                False,
                False,
            )

        n = reply.cfg.tokens
        if reply.script is not None:
            answer = content.scripted_tokens(*reply.script)
        elif reply.degraded:
            answer = content.degraded_tokens(n)
        else:
            answer = content.answer_tokens(message, n)
        # Citation 0 (a web page) has its card before the answer; citation 1 (an X post) has its
        # tag cut across two deltas and its card only after the tag, as live streams do.
        citations: dict[int, list[tuple[F.Frame, bool, bool]]] = {}
        # A scripted answer is sent verbatim: no citation markup is woven into it.
        if deep and not reply.degraded and post is not None and reply.script is None:
            x_url = f"https://x.com/{post['userhandle']}/status/{post['post_id']}"
            cited = [
                (
                    uuid.uuid4().hex[:8],
                    pages[0]["url"],
                    pages[0]["title"],
                    "CITATION_KIND_WEB_PAGE",
                ),
                (uuid.uuid4().hex[:8], x_url, post["name"], "CITATION_KIND_X_POST"),
            ]
            first_card, url0, title0, _ = cited[0]
            yield F.mgw_citation_card(rid, first_card, url0, title0), False, False
            late_card: tuple[F.Frame, bool, bool] | None = None
            for i, (card_id, url, title, kind) in enumerate(cited):
                pos = min(len(answer), (i + 1) * max(1, len(answer) // 3))
                tag = F.inline_citation(card_id, i)
                pieces = [tag] if i == 0 else [tag[:40], tag[40:]]
                events = [(self._answer(p, rid, reply), True, True) for p in pieces]
                events.append(
                    (
                        F.mgw_citation_chunk(card_id, kind, url, i, **ids, event_id=_event_id()),
                        False,
                        False,
                    )
                )
                citations.setdefault(pos, []).extend(events)
                if i == 1:
                    late_card = (F.mgw_citation_card(rid, card_id, url, title), False, False)
            # The late card follows the tag by two answer deltas (or ends the answer).
            late_pos = min(len(answer), max(1, len(answer) // 3) * 2 + 2)
            if late_card is not None:
                citations.setdefault(late_pos, []).append(late_card)

        text: list[str] = []
        for i, tok in enumerate(answer, start=1):
            text.append(tok)
            yield self._answer(tok, rid, reply), True, True
            for event, paced, is_answer in citations.get(i, []):
                if is_answer:
                    text.append(_answer_text(event))
                yield event, paced, is_answer
        full = "".join(text)
        if reply.cfg.ws_text_format == "delta":
            yield F.mgw_text_done(rid, full), False, False

        image_urls: list[str] = []
        x_grok = session.x_grok
        if x_grok.get("enable_image_generation") and wants_image(message):
            for index in range(image_count_for(x_grok.get("image_generation_count"))):
                image_id = str(uuid.uuid4())
                path = f"users/{self.account.user_id}/generated/{image_id}/image.png"
                png = content.png_image(f"{message}#{index}")
                self.emu.assets[path] = (self.account.user_id, png, "image/png")
                image_urls.append(path)
                yield F.mgw_image_card(rid, image_id, path), True, False

        conv = session.conv
        conv.responses.append(
            {
                "responseId": rid,
                "sender": "assistant",
                "message": full,
                "parentResponseId": turn.item_id,
                "createTime": F.iso_time(time.time()),
                "model": MODE_PROFILE[session.model][0],
                "generatedImageUrls": image_urls,
            }
        )
        if session.new:
            conv.title = content.title_for(message)
        yield F.mgw_response("response.done", rid, "completed"), False, False

    @staticmethod
    def _text(text: str, channel: str, response_id: str) -> F.Frame:
        return F.mgw_text_chunk(text, channel, response_id=response_id, event_id=_event_id())

    def _answer(self, text: str, response_id: str, reply: Reply) -> F.Frame:
        if reply.cfg.ws_text_format == "delta":
            return F.mgw_text_delta(response_id, text)
        return self._text(text, F.CHANNEL_RESPONSE, response_id)

    # --- lifetime ------------------------------------------------------------------------

    async def watch_idle(self) -> None:
        """Close the socket (code 1000) once nothing has moved for `ws_idle_timeout` seconds."""
        while not self.ws.closed:
            timeout = self.emu._request_config(self.request).ws_idle_timeout
            left = self.last_activity + timeout - time.monotonic()
            if left <= 0 and self.streaming == 0:
                self.idle_closed = True
                await self.ws.close(code=1000, message=b"idle timeout")
                return
            await asyncio.sleep(min(max(left, 0.05), 1.0))

    async def shutdown(self) -> None:
        """Stop every reply still running (the socket is gone)."""
        tasks = [s.task for s in self.sessions.values() if s.task is not None and not s.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _list(source: dict[str, Any], key: str) -> list[Any]:
    value = source.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Refusal("invalid_request", f"field '{key}' must be a list")
    return value


def _answer_text(event: F.Frame) -> str:
    body = event["event"]
    if "delta" in body:
        return body["delta"]
    return body["chunk"]["text"]["text"]


async def mgw_socket(request: web.Request) -> web.StreamResponse:
    """GET /ws/mgw/?uid=<userId>: refuse like REST (plain HTTP), else serve the socket."""
    record = request.get("record", {})
    record["messages"] = []
    account = authenticate(request)
    if isinstance(account, web.Response):
        return account
    uid = account.user_id
    if request.cookies.get("x-userid") != uid or request.query.get("uid") != uid:
        return json_error(403, 16, INVALID_CREDENTIALS)
    if not request.headers.get("Origin"):
        return json_error(400, 3, "the Origin header is required")
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    if SUBPROTOCOL not in offered:
        return json_error(400, 3, f"the WebSocket subprotocol '{SUBPROTOCOL}' is required")
    ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), max_msg_size=16 * 1024 * 1024)
    if not ws.can_prepare(request).ok:
        return json_error(400, 3, "expected a WebSocket upgrade")
    await ws.prepare(request)
    conn = Connection(request, ws, account, record)
    watchdog = asyncio.create_task(conn.watch_idle())
    try:
        async for msg in ws:
            conn.last_activity = time.monotonic()
            if msg.type is WSMsgType.TEXT:
                await conn.on_text(msg.data)
            elif msg.type is WSMsgType.BINARY:
                refusal = Refusal("invalid_request", "messages must be JSON text")
                await conn.refuse(None, refusal, None)
            else:
                break
    finally:
        if not conn.idle_closed:
            watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
        await conn.shutdown()
    return ws
