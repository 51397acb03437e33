"""The fake grok.com: aiohttp routes, in-memory state and the streaming engine.

grok.com routes (paths as upstream):
    POST /rest/app-chat/conversations/new                 NDJSON chat stream
    POST /rest/app-chat/conversations/{id}/responses      continuation (flattened frames)
    GET  /rest/app-chat/conversations/{id}/response-node  the conversation's response ids
    DELETE /rest/app-chat/conversations/soft/{id}         soft delete
    POST /rest/rate-limits                                quota of one mode
    GET  /rest/media/imagine/quota_info                   media quotas (static)
    GET  /api/auth/session                                identity or dead-token status
    POST /rest/app-chat/upload-file                       JSON/base64 upload
    POST /http/upload-file-v2/direct                      multipart upload
    GET  /assets/{path}                                   assets.grok.com stand-in (owner only)
    GET  /ws/mgw/?uid=<userId>                            E4 chat gateway (WebSocket, gateway.py)

Control routes live under `/_emulator/` (see README.md). Every non-control request is recorded
with its headers (never the cookie values) and JSON body.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from aiohttp import web

from . import content
from . import frames as F
from .accounts import FAULTS, Account, AccountBook
from .dialects import (
    DIALECTS,
    MODE_IDS,
    ChatRequest,
    InvalidBody,
    quota_mode_for_rate_limits,
    validate_chat,
)

INVALID_CREDENTIALS = "Failed to look up session ID. [WKE=unauthenticated:invalid-credentials]"
BLOCKED_USER = "User is blocked. [WKE=unauthenticated:blocked-user]"
NO_CREDENTIALS = "No credentials presented"
ANTI_BOT = "Request rejected by anti-bot rules."
TOO_MANY = "Too many requests"
SPENDING_LIMIT = "personal-team-blocked:spending-limit"
DOMAIN_REJECTED = (
    "[WKE=account:email-domain-rejected] bad-credentials: the account's e-mail domain is rejected"
)
WS_TEXT_FORMATS = ("chunk", "delta")

CLOUDFLARE_PAGE = """<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>\
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">\
<meta name="robots" content="noindex,nofollow"></head><body><div class="main-wrapper" \
role="main"><div class="main-content"><h1 class="zone-name-title h1">grok.com</h1>\
<h2 class="h2" id="challenge-running">Checking if the site connection is secure</h2>\
<noscript><div class="h2">Enable JavaScript and cookies to continue</div></noscript></div>\
</div><script src="/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1?ray=8f0e0c0d0e0f0a0b">\
</script></body></html>"""

_UNPARSED = object()  # body present but not JSON


@dataclass
class Config:
    """Reply size, pace and dialect; settable at start (CLI) and at run time (control API)."""

    tokens: int = 24
    tokens_per_second: float = 0.0  # 0 = no pacing
    first_byte_delay: float = 0.0
    dialect: str = "modes"
    slow_delay: float = 2.0  # first-byte delay of the `slow` fault
    ws_text_format: str = "chunk"  # socket answer text: `response.chunk` or output_text.delta
    ws_idle_timeout: float = 60.0  # the socket closes (1000) after this long without traffic


@dataclass
class Conversation:
    """A conversation with its turns, in order, each linked to its parent."""

    conversation_id: str
    owner_email: str
    created: float
    temporary: bool
    title: str = "New conversation"
    deleted: bool = False
    responses: list[dict[str, Any]] = field(default_factory=list)

    def has_response(self, response_id: str) -> bool:
        """Whether a responseId belongs to this conversation."""
        return any(r["responseId"] == response_id for r in self.responses)


def json_error(status: int, code: int, message: str) -> web.Response:
    """An upstream-shaped error body with an HTTP status."""
    return web.json_response(F.error_body(code, message), status=status, dumps=F.dumps)


def cloudflare_response() -> web.Response:
    """The Cloudflare interstitial that replaces any grok.com answer."""
    return web.Response(
        status=403,
        text=CLOUDFLARE_PAGE,
        content_type="text/html",
        headers={
            "server": "cloudflare",
            "cf-ray": "8f0e0c0d0e0f0a0b-FRA",
            "cf-mitigated": "challenge",
        },
    )


class Emulator:
    """All in-memory state of one emulator process."""

    def __init__(self, config: Config) -> None:
        self.initial = config
        self.reset()

    def reset(self) -> None:
        """Forget accounts, conversations, uploads, recordings; restore the start-up config."""
        self.config = replace(self.initial)
        self.accounts = AccountBook()
        self.conversations: dict[str, Conversation] = {}
        self.assets: dict[str, tuple[str, bytes, str]] = {}  # path -> (owner userId, bytes, type)
        self.requests: deque[dict[str, Any]] = deque(maxlen=20000)
        self.streams: deque[dict[str, Any]] = deque(maxlen=20000)
        self._seq = 0

    def next_id(self) -> int:
        """A process-wide increasing number for recordings and streams."""
        self._seq += 1
        return self._seq

    def record(self, request: web.Request, body: Any, account: Account | None) -> dict[str, Any]:
        """Keep what a request carried, minus cookie values and authorization."""
        headers = {
            k.lower(): v
            for k, v in request.headers.items()
            if k.lower() not in ("cookie", "authorization")
        }
        rec = {
            "id": self.next_id(),
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": headers,
            "cookies": sorted(request.cookies.keys()),
            "sso_rw_matches": bool(request.cookies.get("sso"))
            and request.cookies.get("sso") == request.cookies.get("sso-rw"),
            "body": None if body is _UNPARSED else body,
            "email": account.email if account else None,
        }
        self.requests.append(rec)
        return rec

    # --- streaming -------------------------------------------------------------------------

    def plan(
        self,
        *,
        account: Account,
        chat: ChatRequest,
        conv: Conversation,
        new: bool,
        user_rec: dict[str, Any],
        response_id: str,
        n_tokens: int,
        now: float,
        script: tuple[str, int] | None = None,
    ) -> Iterator[tuple[dict[str, Any], bool]]:
        """Frames of one reply in upstream order; the flag marks frames paced like tokens."""
        wrap = (lambda f: f) if new else F.flatten
        if new:
            yield F.conversation_frame(conv.conversation_id, conv.created, conv.temporary), False
        user = F.user_response(
            user_rec["responseId"], chat.message, now, chat.request_model, chat.file_attachments
        )
        yield wrap(F.user_response_frame(user)), False
        steer = "grok-4" if chat.quota_mode != "fast" else "grok-4-1"
        yield wrap(F.ui_layout_frame(response_id, F.ui_layout(chat.effort, steer, "SPLIT"))), False
        yield wrap(F.llm_info_frame(response_id)), False
        layout = F.ui_layout(chat.effort, None, "FUNCTION_CALL")
        yield wrap(F.ui_layout_frame(response_id, layout)), False

        results: list[dict[str, Any]] = []
        cards: list[str] = []
        if chat.thinking:
            yield (
                wrap(
                    F.token_frame(
                        response_id, "Thinking about your request", thinking=True, tag="header"
                    )
                ),
                True,
            )
            for tok in content.thinking_tokens(chat.message):
                yield wrap(F.token_frame(response_id, tok, thinking=True, tag="summary")), True
        if chat.deepsearch:
            card_id = str(uuid.uuid4())
            query = " ".join(content.prompt_words(chat.message)[:8])
            yield (
                wrap(F.token_frame(response_id, "Searching the web", thinking=True, tag="header")),
                True,
            )
            xml = F.tool_usage_card_xml(card_id, "web_search", {"query": query, "num_results": 10})
            yield (
                wrap(
                    F.token_frame(
                        response_id,
                        xml,
                        thinking=True,
                        tag="tool_usage_card",
                        tool_usage_card_id=card_id,
                    )
                ),
                True,
            )
            yield wrap(F.tool_usage_card_frame(response_id, card_id, query)), False
            for i, (url, title, preview) in enumerate(content.search_results(chat.message)):
                results.append(F.web_search_result(url, title, preview, citation_id=str(i)))
            yield wrap(F.web_search_results_frame(response_id, card_id, results)), False
            yield (
                wrap(
                    F.token_frame(response_id, "Reading the sources", thinking=True, tag="header")
                ),
                True,
            )
            for item in results:
                card = F.citation_card_json(uuid.uuid4().hex[:6], item["url"], item["title"])
                cards.append(card)
                yield wrap(F.card_attachment_frame(response_id, card)), False

        answer = (
            content.scripted_tokens(*script)
            if script is not None
            else content.answer_tokens(chat.message, n_tokens)
        )
        citations: dict[int, list[str]] = {}
        # A scripted answer is sent verbatim: no citation markup is woven into it.
        for i, card in enumerate(cards[:2] if script is None else []):
            markup = F.inline_citation(json.loads(card)["id"], i)
            pos = min(len(answer), (i + 1) * max(1, len(answer) // 3))
            # Real streams sometimes cut the markup across two tokens; do so for every second one.
            citations[pos] = [markup] if i % 2 == 0 else [markup[:40], markup[40:]]
        text: list[str] = []
        for i, tok in enumerate(answer, start=1):
            text.append(tok)
            yield wrap(F.token_frame(response_id, tok)), True
            for piece in citations.get(i, []):
                text.append(piece)
                yield wrap(F.token_frame(response_id, piece)), True

        image_urls: list[str] = []
        for index in range(chat.image_count):
            image_id = str(uuid.uuid4())
            image = content.png_image(f"{chat.message}#{index}")
            for part, progress in enumerate((25, 50, 75, 100)):
                suffix = "" if progress == 100 else f"-part-{part}"
                path = f"users/{account.user_id}/generated/{image_id}{suffix}/image.png"
                self.assets[path] = (account.user_id, image, "image/png")
                yield (
                    wrap(F.image_progress_frame(response_id, image_id, path, progress, index)),
                    True,
                )
            image_urls.append(path)

        yield wrap(F.soft_stop_frame(response_id)), False
        message = "".join(text)
        record = F.model_response(
            response_id=response_id,
            parent_response_id=user_rec["responseId"],
            message=message,
            created=time.time(),
            model="grok-3" if chat.quota_mode == "auto" else chat.request_model,
            request_model=chat.request_model,
            mode_label=chat.mode_label,
            request_mode=chat.request_mode,
            effort=chat.effort,
            trace_id=uuid.uuid4().hex,
            deepsearch_preset=chat.deepsearch_preset,
            generated_image_urls=image_urls,
            web_search_results=results,
            card_attachments_json=cards,
        )
        conv.responses.append(
            {
                "responseId": response_id,
                "sender": "assistant",
                "message": message,
                "parentResponseId": user_rec["responseId"],
                "createTime": record["createTime"],
                "model": record["model"],
                "generatedImageUrls": image_urls,
            }
        )
        yield wrap(F.model_response_frame(record)), False
        if new:
            conv.title = content.title_for(chat.message)
            yield F.title_frame(conv.title), False

    async def chat(
        self, request: web.Request, account: Account, chat: ChatRequest, conv: Conversation | None
    ) -> web.StreamResponse:
        """Apply faults and quota, then stream one reply."""
        cfg = self._request_config(request)
        fault = account.active_fault()
        now = time.monotonic()
        if fault == "ratelimited":
            account.consume_fault()
            return json_error(429, 8, TOO_MANY)
        quota = account.quota(chat.quota_mode, now)
        if quota.remaining <= 0:
            return json_error(429, 8, TOO_MANY)
        if fault == "spending":
            account.consume_fault()
            return json_error(402, 8, SPENDING_LIMIT)
        if fault == "inband":
            account.consume_fault()
            body = F.ndjson_line(F.error_body(8, TOO_MANY))
            return web.Response(status=200, body=body, content_type="application/json")
        new = conv is None
        if conv is None:
            conv = Conversation(str(uuid.uuid4()), account.email, time.time(), chat.temporary)
            self.conversations[conv.conversation_id] = conv
        if fault == "usagelimit":
            account.consume_fault()
            lines = (
                [F.conversation_frame(conv.conversation_id, conv.created, conv.temporary)]
                if new
                else []
            )
            lines.append(F.usage_limit_frame() if new else F.flatten(F.usage_limit_frame()))
            body = b"".join(F.ndjson_line(x) for x in lines)
            return web.Response(status=200, body=body, content_type="application/json")
        quota.remaining -= 1
        script = account.take_script()  # only a reply that streams uses up a scripted answer
        delay = cfg.first_byte_delay
        if fault == "slow":
            account.consume_fault()
            delay = max(delay, cfg.slow_delay)
        dies = fault == "dies"
        if dies:
            account.consume_fault()
        if fault == "noreasoning":
            account.consume_fault()
            chat.thinking = False  # the weak turn: a thinking mode that answers straight away

        user_rec = {
            "responseId": str(uuid.uuid4()),
            "sender": "human",
            "message": chat.message,
            "parentResponseId": chat.parent_response_id,
            "createTime": F.iso_time(time.time()),
            "model": chat.request_model,
            "fileAttachments": chat.file_attachments,
        }
        conv.responses.append(user_rec)
        stream = {
            "id": self.next_id(),
            "path": request.path,
            "email": account.email,
            "conversationId": conv.conversation_id,
            "started": time.time(),
            "ended": None,
            "outcome": "streaming",
            "frames": 0,
        }
        self.streams.append(stream)
        interval = 1.0 / cfg.tokens_per_second if cfg.tokens_per_second > 0 else 0.0
        frames = self.plan(
            account=account,
            chat=chat,
            conv=conv,
            new=new,
            user_rec=user_rec,
            response_id=str(uuid.uuid4()),
            n_tokens=cfg.tokens,
            now=time.time(),
            script=script,
        )
        cut = max(1, cfg.tokens // 2)  # the `dies` fault drops the line after this many tokens
        sent_tokens = 0
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            for frame, paced in frames:
                if paced:
                    if dies and sent_tokens >= cut:
                        stream["outcome"] = "dropped"
                        stream["ended"] = time.time()
                        if request.transport is not None:
                            request.transport.abort()
                        return resp
                    if interval:
                        await asyncio.sleep(interval)
                    sent_tokens += 1
                await resp.write(F.ndjson_line(frame))
                stream["frames"] += 1
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            stream["outcome"] = "client_disconnected"
            stream["ended"] = time.time()
            raise
        stream["outcome"] = "completed"
        stream["ended"] = time.time()
        return resp

    def _request_config(self, request: web.Request) -> Config:
        """The config, with per-request overrides from `x-emulator-*` headers."""
        cfg = replace(self.config)
        for header, attr, kind in (
            ("x-emulator-tokens", "tokens", int),
            ("x-emulator-tokens-per-second", "tokens_per_second", float),
            ("x-emulator-first-byte-delay", "first_byte_delay", float),
            ("x-emulator-ws-idle-timeout", "ws_idle_timeout", float),
        ):
            value = request.headers.get(header)
            if value:
                # A bad override is ignored: it is a test knob, not an upstream error.
                with contextlib.suppress(ValueError):
                    setattr(cfg, attr, kind(value))
        if request.headers.get("x-emulator-ws-text-format") in WS_TEXT_FORMATS:
            cfg.ws_text_format = request.headers["x-emulator-ws-text-format"]
        return cfg


EMULATOR = web.AppKey("emulator", Emulator)


def _emu(request: web.Request) -> Emulator:
    return request.app[EMULATOR]


def authenticate(request: web.Request) -> Account | web.Response:
    """The caller's account, or the error grok.com gives for its cookies or token state."""
    sso = request.cookies.get("sso")
    if not sso:
        return json_error(403, 16, NO_CREDENTIALS)
    if request.cookies.get("sso-rw") != sso:
        return json_error(403, 16, INVALID_CREDENTIALS)
    account = _emu(request).accounts.get(sso)
    fault = account.active_fault()
    answers = {
        "invalid": (403, 16, INVALID_CREDENTIALS),
        "blocked": (403, 16, BLOCKED_USER),
        "antibot": (403, 7, ANTI_BOT),
        "domainrejected": (403, 3, DOMAIN_REJECTED),
    }
    if fault in answers:
        account.consume_fault()
        return json_error(*answers[fault])
    return account


@web.middleware
async def record_and_screen(request: web.Request, handler: Any) -> web.StreamResponse:
    """Record grok.com requests and put Cloudflare in front of them."""
    if request.path.startswith("/_emulator/"):
        return await handler(request)
    emu = _emu(request)
    body: Any = None
    if not request.content_type.startswith("multipart/") and request.can_read_body:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = _UNPARSED
    request["json_body"] = body
    token = request.cookies.get("sso")
    account = emu.accounts.get(token) if token else None
    request["record"] = emu.record(request, body, account)
    if account is not None and account.active_fault() == "cloudflare":
        account.consume_fault()
        return cloudflare_response()
    return await handler(request)


def _gateway_refusal(request: web.Request, continuation: bool = False) -> web.Response | None:
    """In the `gateway` era HTTP text chat is refused as grok.com does; image generation works."""
    if _emu(request).config.dialect != "gateway":
        return None
    try:
        chat = validate_chat(_json(request), "gateway", continuation=continuation)
    except InvalidBody:
        chat = None  # grok.com's anti-bot screen answers before any body validation
    if chat is not None and chat.image_count > 0:
        return None
    return json_error(403, 7, ANTI_BOT)


def _check_attachments(account: Account, chat: ChatRequest) -> web.Response | None:
    for file_id in chat.file_attachments:
        if file_id not in account.uploads:
            return json_error(400, 3, f"file attachment '{file_id}' not found")
    return None


async def new_conversation(request: web.Request) -> web.StreamResponse:
    """POST /rest/app-chat/conversations/new."""
    account = authenticate(request)
    if isinstance(account, web.Response):
        return account
    emu = _emu(request)
    refused = _gateway_refusal(request)
    if refused is not None:
        return refused
    try:
        chat = validate_chat(_json(request), emu.config.dialect)
    except InvalidBody as exc:
        return json_error(400, 3, str(exc))
    return _check_attachments(account, chat) or await emu.chat(request, account, chat, None)


async def continue_conversation(request: web.Request) -> web.StreamResponse:
    """POST /rest/app-chat/conversations/{id}/responses."""
    account = authenticate(request)
    if isinstance(account, web.Response):
        return account
    emu = _emu(request)
    refused = _gateway_refusal(request, continuation=True)
    if refused is not None:
        return refused
    conv = emu.conversations.get(request.match_info["conversation_id"])
    if conv is None or conv.deleted or conv.owner_email != account.email:
        return json_error(404, 5, "Conversation not found")
    try:
        chat = validate_chat(_json(request), emu.config.dialect, continuation=True)
    except InvalidBody as exc:
        return json_error(400, 3, str(exc))
    if not conv.has_response(chat.parent_response_id or ""):
        return json_error(400, 3, f"parent response '{chat.parent_response_id}' not found")
    return _check_attachments(account, chat) or await emu.chat(request, account, chat, conv)


def _own_conversation(request: web.Request) -> Conversation | web.Response:
    account = authenticate(request)
    if isinstance(account, web.Response):
        return account
    conv = _emu(request).conversations.get(request.match_info["conversation_id"])
    if conv is None or conv.deleted or conv.owner_email != account.email:
        return json_error(404, 5, "Conversation not found")
    return conv


async def response_nodes(request: web.Request) -> web.Response:
    """GET /rest/app-chat/conversations/{id}/response-node."""
    conv = _own_conversation(request)
    if isinstance(conv, web.Response):
        return conv
    return web.json_response(F.response_nodes_body(conv.responses), dumps=F.dumps)


async def soft_delete(request: web.Request) -> web.Response:
    """DELETE /rest/app-chat/conversations/soft/{id}."""
    conv = _own_conversation(request)
    if isinstance(conv, web.Response):
        return conv
    conv.deleted = True
    return web.json_response({}, dumps=F.dumps)


def _json(request: web.Request) -> Any:
    body = request.get("json_body")
    if body is _UNPARSED:
        raise InvalidBody("request body is not valid JSON")
    return body


async def rate_limits(request: web.Request) -> web.Response:
    """POST /rest/rate-limits: one mode's window, E3 form or late-2025 form."""
    account = authenticate(request)
    if isinstance(account, web.Response):
        return account
    try:
        mode, late = quota_mode_for_rate_limits(_json(request))
    except InvalidBody as exc:
        return json_error(400, 3, str(exc))
    now = time.monotonic()
    quota = account.quota(mode, now)
    remaining = 0 if account.active_fault() == "ratelimited" else quota.remaining
    if late:
        wait = quota.wait_seconds(now) if remaining == quota.remaining else quota.window_seconds
        body = F.rate_limits_body_late_2025(quota.window_seconds, remaining, quota.total, wait)
    else:
        body = F.rate_limits_body(quota.window_seconds, remaining, quota.total)
    return web.json_response(body, dumps=F.dumps)


async def imagine_quota(request: web.Request) -> web.Response:
    """GET /rest/media/imagine/quota_info."""
    account = authenticate(request)
    if isinstance(account, web.Response):
        return account
    return web.json_response(F.imagine_quota_body(time.time()), dumps=F.dumps)


async def auth_session(request: web.Request) -> web.Response:
    """GET /api/auth/session: authenticated identity, or `unauthenticated` / `blocked`."""
    sso = request.cookies.get("sso")
    if not sso or request.cookies.get("sso-rw") != sso:
        return web.json_response(F.session_body("unauthenticated"), dumps=F.dumps)
    account = _emu(request).accounts.get(sso)
    fault = account.active_fault()
    if fault in ("invalid", "blocked", "domainrejected"):
        account.consume_fault()
        status = "blocked" if fault == "blocked" else "unauthenticated"
        return web.json_response(F.session_body(status), dumps=F.dumps)
    body = F.session_body("authenticated", account.user_id, account.email, account.org_id)
    return web.json_response(body, dumps=F.dumps)


def _store_upload(
    emu: Emulator, account: Account, name: str, mime: str, data: bytes
) -> tuple[str, str]:
    file_id = str(uuid.uuid4())
    uri = f"users/{account.user_id}/{file_id}/content"
    account.uploads[file_id] = {"fileName": name, "fileMimeType": mime, "size": len(data)}
    emu.assets[uri] = (account.user_id, data, mime or "application/octet-stream")
    return file_id, uri


async def upload_file(request: web.Request) -> web.Response:
    """POST /rest/app-chat/upload-file: `{fileName, fileMimeType, content:<base64>}`."""
    account = authenticate(request)
    if isinstance(account, web.Response):
        return account
    try:
        body = _json(request)
    except InvalidBody as exc:
        return json_error(400, 3, str(exc))
    if not isinstance(body, dict):
        return json_error(400, 3, "request body must be a JSON object")
    name, mime, data = body.get("fileName"), body.get("fileMimeType"), body.get("content")
    if not isinstance(name, str) or not name:
        return json_error(400, 3, "field 'fileName' must be a non-empty string")
    if not isinstance(mime, str):
        return json_error(400, 3, "field 'fileMimeType' must be a string")
    if not isinstance(data, str) or not data:
        return json_error(400, 3, "field 'content' must be non-empty base64")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return json_error(400, 3, "field 'content' is not valid base64")
    file_id, uri = _store_upload(_emu(request), account, name, mime, raw)
    return web.json_response(F.upload_body(file_id, uri), dumps=F.dumps)


async def upload_file_v2(request: web.Request) -> web.Response:
    """POST /http/upload-file-v2/direct: multipart field `file`."""
    account = authenticate(request)
    if isinstance(account, web.Response):
        return account
    if not request.content_type.startswith("multipart/"):
        return json_error(400, 3, "expected multipart/form-data")
    reader = await request.multipart()
    async for part in reader:
        if getattr(part, "name", None) == "file":
            data = await part.read()  # type: ignore[union-attr]
            mime = part.headers.get("Content-Type", "application/octet-stream")
            file_id, uri = _store_upload(
                _emu(request), account, part.filename or "file", mime, bytes(data)
            )
            return web.json_response(
                F.upload_v2_body(str(uuid.uuid4()), file_id, uri), dumps=F.dumps
            )
    return json_error(400, 3, "multipart field 'file' is required")


async def asset(request: web.Request) -> web.Response:
    """GET /assets/{path}: generated images and uploads, for their owner's cookie only."""
    sso = request.cookies.get("sso")
    if not sso or request.cookies.get("sso-rw") != sso:
        return json_error(403, 16, NO_CREDENTIALS if not sso else INVALID_CREDENTIALS)
    emu = _emu(request)
    found = emu.assets.get(request.match_info["path"])
    if found is None:
        return json_error(404, 5, "Asset not found")
    owner, data, mime = found
    if emu.accounts.get(sso).user_id != owner:
        return json_error(403, 7, "Permission denied")
    return web.Response(body=data, content_type=mime)


# --- control API ---------------------------------------------------------------------------


async def _control_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be JSON"})) from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be a JSON object"}))
    return body


def _control_account(emu: Emulator, body: dict[str, Any]) -> Account:
    account = emu.accounts.find(body.get("token"), body.get("email"))
    if account is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "give `token`, or the `email` of an account already seen"}),
            content_type="application/json",
        )
    return account


def _quota_view(account: Account) -> dict[str, Any]:
    now = time.monotonic()
    out = {}
    for mode, q in account.quotas.items():
        q.refresh(now)
        out[mode] = {
            "remaining": q.remaining,
            "total": q.total,
            "window_seconds": q.window_seconds,
            "wait_seconds": q.wait_seconds(now),
        }
    return out


async def control_health(request: web.Request) -> web.Response:
    """GET /_emulator/health."""
    return web.json_response({"ok": True, "config": asdict(_emu(request).config)})


async def control_reset(request: web.Request) -> web.Response:
    """POST /_emulator/reset."""
    _emu(request).reset()
    return web.json_response({"ok": True})


async def control_requests(request: web.Request) -> web.Response:
    """GET /_emulator/requests[?path=prefix]."""
    prefix = request.query.get("path")
    items = [r for r in _emu(request).requests if not prefix or r["path"].startswith(prefix)]
    return web.json_response(items, dumps=F.dumps)


async def control_quota(request: web.Request) -> web.Response:
    """POST /_emulator/quota: set one mode's remaining/total/window for an account."""
    emu = _emu(request)
    body = await _control_body(request)
    account = _control_account(emu, body)
    mode = body.get("mode")
    if mode not in MODE_IDS:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"mode must be one of {MODE_IDS}"}))
    now = time.monotonic()
    quota = account.quota(mode, now)
    if body.get("total") is not None:
        quota.total = int(body["total"])
    if body.get("window_seconds") is not None:
        quota.window_seconds = int(body["window_seconds"])
    quota.remaining = int(body["remaining"]) if body.get("remaining") is not None else quota.total
    quota.window_start = now
    return web.json_response({"email": account.email, "quotas": _quota_view(account)})


async def control_quota_get(request: web.Request) -> web.Response:
    """GET /_emulator/quota?token=|email=: the account's quota windows."""
    account = _control_account(_emu(request), dict(request.query))
    return web.json_response({"email": account.email, "quotas": _quota_view(account)})


async def control_fault(request: web.Request) -> web.Response:
    """POST /_emulator/fault: `fault` from FAULTS, "none" (healthy) or null (back to prefix)."""
    emu = _emu(request)
    body = await _control_body(request)
    account = _control_account(emu, body)
    fault = body.get("fault")
    if fault is not None and fault not in (*FAULTS, "none"):
        raise web.HTTPBadRequest(text=json.dumps({"error": f"fault must be one of {FAULTS}"}))
    times = body.get("times")
    account.fault = fault
    account.fault_times = int(times) if times is not None and fault is not None else None
    return web.json_response(
        {"email": account.email, "fault": account.active_fault(), "times": account.fault_times}
    )


async def control_script(request: web.Request) -> web.Response:
    """POST /_emulator/script: the answer texts of an account's next replies, in order."""
    emu = _emu(request)
    body = await _control_body(request)
    account = _control_account(emu, body)
    replies = body.get("replies")
    if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
        raise web.HTTPBadRequest(text=json.dumps({"error": "replies must be a list of strings"}))
    piece = body.get("piece_size", content.SCRIPT_PIECE)
    if not isinstance(piece, int) or isinstance(piece, bool) or piece < 1:
        raise web.HTTPBadRequest(text=json.dumps({"error": "piece_size must be an integer >= 1"}))
    if not body.get("append"):
        account.script.clear()
    account.script.extend((text, piece) for text in replies)
    return web.json_response({"email": account.email, "pending": len(account.script)})


async def control_config(request: web.Request) -> web.Response:
    """POST /_emulator/config: reply size and pace, dialect, slow_delay, ws_* socket options."""
    emu = _emu(request)
    body = await _control_body(request)
    cfg = replace(emu.config)
    try:
        for key, kind in (
            ("tokens", int),
            ("tokens_per_second", float),
            ("first_byte_delay", float),
            ("slow_delay", float),
            ("ws_idle_timeout", float),
        ):
            if body.get(key) is not None:
                setattr(cfg, key, kind(body[key]))
    except (TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": str(exc)})) from exc
    if body.get("dialect") is not None:
        if body["dialect"] not in DIALECTS:
            raise web.HTTPBadRequest(
                text=json.dumps({"error": f"dialect must be one of {DIALECTS}"})
            )
        cfg.dialect = body["dialect"]
    if body.get("ws_text_format") is not None:
        if body["ws_text_format"] not in WS_TEXT_FORMATS:
            raise web.HTTPBadRequest(
                text=json.dumps({"error": f"ws_text_format must be one of {WS_TEXT_FORMATS}"})
            )
        cfg.ws_text_format = body["ws_text_format"]
    if cfg.ws_idle_timeout <= 0:
        raise web.HTTPBadRequest(text=json.dumps({"error": "ws_idle_timeout must be > 0"}))
    if cfg.tokens < 1:
        raise web.HTTPBadRequest(text=json.dumps({"error": "tokens must be >= 1"}))
    emu.config = cfg
    return web.json_response(asdict(cfg))


async def control_conversation(request: web.Request) -> web.Response:
    """GET /_emulator/conversations/{id}: owner e-mail and every turn."""
    conv = _emu(request).conversations.get(request.match_info["conversation_id"])
    if conv is None:
        raise web.HTTPNotFound(text=json.dumps({"error": "unknown conversation"}))
    return web.json_response(
        {
            "conversationId": conv.conversation_id,
            "owner": conv.owner_email,
            "title": conv.title,
            "temporary": conv.temporary,
            "deleted": conv.deleted,
            "responses": conv.responses,
        },
        dumps=F.dumps,
    )


async def control_streams(request: web.Request) -> web.Response:
    """GET /_emulator/streams: every chat stream with its outcome."""
    return web.json_response(list(_emu(request).streams))


def create_app(config: Config | None = None) -> web.Application:
    """Build the emulator's aiohttp application."""
    app = web.Application(middlewares=[record_and_screen], client_max_size=64 * 1024 * 1024)
    app[EMULATOR] = Emulator(config or Config())
    conv = "/rest/app-chat/conversations"
    app.router.add_post(f"{conv}/new", new_conversation)
    app.router.add_post(f"{conv}/{{conversation_id}}/responses", continue_conversation)
    app.router.add_get(f"{conv}/{{conversation_id}}/response-node", response_nodes)
    app.router.add_delete(f"{conv}/soft/{{conversation_id}}", soft_delete)
    app.router.add_post("/rest/rate-limits", rate_limits)
    app.router.add_get("/rest/media/imagine/quota_info", imagine_quota)
    app.router.add_get("/api/auth/session", auth_session)
    app.router.add_post("/rest/app-chat/upload-file", upload_file)
    app.router.add_post("/http/upload-file-v2/direct", upload_file_v2)
    app.router.add_get("/assets/{path:.+}", asset)
    from .gateway import mgw_socket  # the gateway builds on this module

    app.router.add_get("/ws/mgw/", mgw_socket)
    app.router.add_get("/_emulator/health", control_health)
    app.router.add_post("/_emulator/reset", control_reset)
    app.router.add_get("/_emulator/requests", control_requests)
    app.router.add_post("/_emulator/quota", control_quota)
    app.router.add_get("/_emulator/quota", control_quota_get)
    app.router.add_post("/_emulator/fault", control_fault)
    app.router.add_post("/_emulator/config", control_config)
    app.router.add_post("/_emulator/script", control_script)
    app.router.add_get("/_emulator/conversations/{conversation_id}", control_conversation)
    app.router.add_get("/_emulator/streams", control_streams)
    return app
