"""grok.com's WebSocket chat gateway (era E4, `wss://grok.com/ws/mgw/?uid=<userId>`).

One chat turn is one gateway session: `session.create` -> (`session.created`,
`conversation.attached`) -> `conversation.item.create` -> `response.create` -> server events until
`response.done` (docs/upstream.md §4.6-4.7). One connection carries many sessions in turn, so a
socket whose turn finished waits in a small per-process pool (`_SocketPool`) for the account's next
turn, pinged like the web app's, instead of a handshake per turn. The socket goes through curl_cffi
with the configured browser profile when GROK_IMPERSONATE is set (Cloudflare refuses non-browser TLS
fingerprints more often), and through the `websockets` library otherwise; both sit behind the small
`_Socket` interface below. Failures become the same GrokErrors as on HTTP, so the pool treats both
transports alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from .errors import GrokError, UpstreamBroken, UpstreamTimeout, classify_http_error, scrub
from .events import (
    ConversationStarted,
    GrokEvent,
    Heartbeat,
    ImageGenerated,
    TextDelta,
    ToolStep,
    UserTurn,
)
from .headers import build_cookie
from .mgw import GatewayParser
from .settings import GrokSettings
from .transport import run_native

log = logging.getLogger(__name__)

GATEWAY_PATH = "/ws/mgw/"
SUBPROTOCOL = "json"
# The web app pings about every 25 s; idle sockets are closed by the server.
PING_INTERVAL = 25.0
# Hang-up must reach grok.com at once: wait this long at most for its close frame.
CLOSE_TIMEOUT = 0.5
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# How long the first events of a reply may be held back while it is not yet known whether the
# turn is degraded (see GatewayReply._read).
DEGRADED_WINDOW = 2.0
_ERROR_BODY_LIMIT = 64 * 1024
_CAPABILITIES = ("conversation_attached", "custom_methods_v1")
# Idle sockets kept per account and per process: enough for an account's next turns, few enough
# that idle sockets stay a small part of the process's memory.
IDLE_PER_ACCOUNT = 2
IDLE_PER_PROCESS = 32
# A pooled socket's set-up must answer within this, else the turn dials a fresh socket.
REUSED_SETUP_TIMEOUT = 5.0
# Our own messages are compressed with a small window: they are a few hundred bytes, and a
# full-size deflate stream costs ~150 KiB per socket. Smaller than negotiated is always allowed
# (RFC 7692 §7.1.2.1), so the offer stays the browser's.
_SEND_WINDOW_BITS = 10
_SEND_MEM_LEVEL = 1


class _Closed(Exception):
    """The socket closed (by either side)."""


class DegradedTurn(UpstreamBroken):
    """The gateway searched a placeholder query, the sign of a turn that answers nonsense with
    status 200 (docs/upstream.md §4.7): it arrives before the answer, so another account can
    retry."""

    kind = "degraded"


@dataclass(frozen=True, slots=True)
class GatewayTurn:
    """What one turn sends: the account, its grok user id, the model and the message."""

    token: str
    user_id: str
    model: str  # the session.create model: auto, fast, expert or heavy
    message: str
    temporary: bool
    file_ids: Sequence[str] = ()
    conversation_id: str | None = None
    parent_response_id: str | None = None
    deepsearch: bool = False

    def __repr__(self) -> str:
        return f"GatewayTurn(model={self.model!r}, conversation_id={self.conversation_id!r})"


def gateway_url(base_url: str, user_id: str) -> str:
    """`wss://<host>/ws/mgw/?uid=<user id>` for an https base URL (ws:// for http)."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{GATEWAY_PATH}?uid={quote(user_id, safe='')}"


def handshake_headers(settings: GrokSettings, token: str, user_id: str) -> dict[str, str]:
    """Origin, browser User-Agent and the cookies the gateway checks (sso, sso-rw, x-userid)."""
    parts = urlsplit(settings.base_url)
    return {
        "Origin": f"{parts.scheme}://{parts.netloc}",
        "User-Agent": settings.user_agent,
        "Accept-Language": "en-US,en;q=0.9",
        "Cache-Control": "no-cache",
        "Pragma": "no-cache",
        "Cookie": f"{build_cookie(token, settings.cf_clearance)}; x-userid={user_id}",
    }


# ---- the two socket implementations ------------------------------------------------------------


class _Socket:
    """A connected WebSocket: text messages in and out, closable from any thread."""

    proxy: str | None = None
    # Whether the socket may wait in the pool for another turn (recv(0) must not block).
    poolable = False

    def send(self, text: str) -> None:
        raise NotImplementedError

    def drained(self) -> bool:
        """Drop what arrived while no turn read the socket; False when it has closed."""
        try:
            while self.recv(0) is not None:
                pass
        except _Closed:
            return False
        return True

    def recv(self, timeout: float) -> str | None:
        """The next text message, or None when nothing came within `timeout` seconds."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _WebsocketsSocket(_Socket):
    """The `websockets` library's threaded client."""

    poolable = True

    def __init__(self, conn: Any, proxy: str | None) -> None:
        self._conn = conn
        self.proxy = proxy

    def send(self, text: str) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            self._conn.send(text)
        except ConnectionClosed as exc:
            raise _Closed() from exc

    def recv(self, timeout: float) -> str | None:
        from websockets.exceptions import ConnectionClosed

        try:
            message = self._conn.recv(timeout=timeout)
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            raise _Closed() from exc
        return message if isinstance(message, str) else message.decode("utf-8", "replace")

    def close(self) -> None:
        # Shut the TCP socket down first: a reader blocked on another thread wakes at once and
        # grok.com sees the hang-up even if the close handshake never completes.
        with contextlib.suppress(Exception):
            self._conn.close(code=1000)
        with contextlib.suppress(Exception):
            self._conn.socket.shutdown(socket.SHUT_RDWR)


class _CurlSocket(_Socket):
    """curl_cffi's WebSocket, with the browser TLS fingerprint of GROK_IMPERSONATE."""

    def __init__(self, ws: Any, proxy: str | None) -> None:
        self._ws = ws
        self.proxy = proxy
        self._lock = threading.Lock()

    def send(self, text: str) -> None:
        from curl_cffi.const import CurlWsFlag

        try:
            self._ws.send(text.encode("utf-8"), CurlWsFlag.TEXT)
        except Exception as exc:
            raise _Closed() from exc

    def recv(self, timeout: float) -> str | None:
        from curl_cffi.requests.websockets import WebSocketClosed, WebSocketTimeout

        try:
            data, _flags = self._ws.recv(timeout=timeout)
        except WebSocketTimeout:
            return None
        except WebSocketClosed as exc:
            raise _Closed() from exc
        except Exception as exc:
            raise _Closed() from exc
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._ws.close()


def _connect(
    settings: GrokSettings, proxy: str | None, token: str, user_id: str, by: float
) -> _Socket:
    """Open the gateway socket by `by` (a time.monotonic() instant); a refused upgrade raises
    the GrokError its answer means."""
    url = gateway_url(settings.base_url, user_id)
    headers = handshake_headers(settings, token, user_id)
    left = by - time.monotonic()
    if left <= 0:
        raise UpstreamTimeout("the request's time budget for grok.com ran out")
    # Connecting and the upgrade's answer (the handshake's first byte) share one limit here.
    timeout = (min(settings.connect_timeout, left), left)
    if settings.impersonate:
        return _connect_curl(settings, url, headers, proxy, timeout)
    return _connect_websockets(settings, url, headers, proxy, timeout)


def _connect_websockets(
    settings: GrokSettings,
    url: str,
    headers: dict[str, str],
    proxy: str | None,
    timeout: tuple[float, float],
) -> _Socket:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    origin = headers.pop("Origin")
    user_agent = headers.pop("User-Agent")
    try:
        conn = connect(
            url,
            origin=origin,
            user_agent_header=user_agent,
            additional_headers=headers,
            subprotocols=[SUBPROTOCOL],
            proxy=proxy,  # None: never a proxy from the environment, only PROXY_URL_POOL
            open_timeout=timeout[1],
            # The gateway has its own `ping` event; protocol pings would only add traffic.
            ping_interval=None,
            close_timeout=CLOSE_TIMEOUT,
            max_size=MAX_MESSAGE_BYTES,
            extensions=[_deflate_offer()],  # the browser's permessage-deflate offer
            legacy=True,  # the connection outlives this call; GatewayReply closes it
        )
    except InvalidStatus as exc:
        response = exc.response
        content_type = response.headers.get("Content-Type", "")
        body = bytes(response.body or b"")[:_ERROR_BODY_LIMIT].decode("utf-8", "replace")
        raise _refused(response.status_code, content_type, body) from None
    except Exception as exc:
        raise _network_error(exc, proxy) from None
    return _WebsocketsSocket(conn, proxy)


def _deflate_offer() -> Any:
    """permessage-deflate offered as websockets (and browsers) do, compressing what we send
    with a small window (_SEND_WINDOW_BITS)."""
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

    class _SmallSendWindow(ClientPerMessageDeflateFactory):
        def process_response_params(self, params: Any, accepted: Any) -> Any:
            extension = super().process_response_params(params, accepted)
            bits = min(_SEND_WINDOW_BITS, extension.local_max_window_bits)
            extension.local_max_window_bits = bits
            extension.compress_settings = {"memLevel": _SEND_MEM_LEVEL}
            if not extension.local_no_context_takeover:
                extension.encoder = zlib.compressobj(wbits=-bits, memLevel=_SEND_MEM_LEVEL)
            return extension

    return _SmallSendWindow(compress_settings={"memLevel": _SEND_MEM_LEVEL})


def _connect_curl(
    settings: GrokSettings,
    url: str,
    headers: dict[str, str],
    proxy: str | None,
    timeout: tuple[float, float],
) -> _Socket:
    from curl_cffi import requests as curl_requests

    session = curl_requests.Session(impersonate=settings.impersonate)
    try:
        # The handshake is one blocking libcurl perform(): under gevent it runs on an OS thread
        # (run_native), or it would stop the worker's every greenlet until grok.com answers.
        # Afterwards recv and send wait on selectors, which gevent's patching makes cooperative.
        ws = run_native(
            lambda: session.ws_connect(
                url,
                headers={**headers, "Sec-WebSocket-Protocol": SUBPROTOCOL},
                proxy=proxy,
                timeout=timeout,
                max_message_size=MAX_MESSAGE_BYTES,
            )
        )
    except Exception as exc:
        refused = _REFUSED_UPGRADE.search(str(exc))
        if refused is None:
            raise _network_error(exc, proxy) from None
        # libcurl keeps only the status of a refused upgrade. The refusal's body says whose
        # fault it is (a Cloudflare page, anti-bot code 7, a dead session's code 16), and the
        # same request without the upgrade gets the same answer: ask once more to read it.
        raise _diagnose(session, url, headers, proxy, timeout, int(refused.group(1))) from None
    return _CurlSocket(ws, proxy)


_REFUSED_UPGRADE = re.compile(r"Refused WebSocket upgrade: (\d{3})")


def _diagnose(
    session: Any,
    url: str,
    headers: dict[str, str],
    proxy: str | None,
    timeout: tuple[float, float],
    status: int,
) -> GrokError:
    http_url = "http" + url[2:]  # ws:// -> http://, wss:// -> https://
    try:
        answer = run_native(
            lambda: session.get(http_url, headers=headers, proxy=proxy, timeout=timeout)
        )
    except Exception:
        return _refused(status, "", "")
    if answer.status_code != status:
        return _refused(status, "", "")
    body = (answer.content or b"")[:_ERROR_BODY_LIMIT].decode("utf-8", "replace")
    return _refused(status, answer.headers.get("content-type") or "", body)


def _refused(status: int, content_type: str, body: str) -> GrokError:
    if status == 404:
        # No conversation is named in the upgrade: a 404 means no gateway at this address.
        return UpstreamBroken(f"grok.com has no chat gateway at {GATEWAY_PATH} (HTTP 404)")
    error = classify_http_error(status, content_type, body)
    error.message = f"grok.com's chat gateway refused the connection: {error.message}"
    return error


def _network_error(exc: Exception, proxy: str | None) -> UpstreamBroken:
    # The library's class and words name hosts and ports: the log has them, clients do not.
    log.warning("chat gateway connection failed: %s: %s", type(exc).__name__, scrub(str(exc)))
    via = " through a proxy" if proxy else ""
    name = type(exc).__name__.lower()
    if "timeout" in name or "timed out" in str(exc).lower():
        return UpstreamTimeout(f"grok.com's chat gateway did not answer{via} in time (timed out)")
    return UpstreamBroken(f"grok.com's chat gateway could not be reached{via} (connection failed)")


# ---- idle sockets between turns ----------------------------------------------------------------


def pool_key(settings: GrokSettings, proxy: str | None, token: str, user_id: str) -> tuple:
    """Which sockets a turn may take over: the same account (token and user id), origin, proxy
    and TLS client. The token is kept only as a digest."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    return (settings.base_url, digest, user_id, proxy, settings.impersonate)


class _SocketPool:
    """Idle gateway sockets of one process, waiting for their account's next turn.

    A socket is in here only between turns: take() removes it, so two turns never share one.
    A janitor thread (a greenlet under gevent) pings idle sockets every PING_INTERVAL as the web
    app does (docs/upstream.md §4.6), drops those the server closed and closes those idle longer
    than `idle_seconds`; it ends when the pool is empty.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # key -> [[socket, idle since, last ping, idle limit]], oldest first.
        self._idle: dict[tuple, list[list[Any]]] = {}
        self._count = 0
        self._janitor: threading.Thread | None = None
        self._pid = os.getpid()

    def _forked(self) -> None:
        # A forked worker inherits the parent's idle sockets: they are the parent's to use.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._idle.clear()
            self._count = 0
            self._janitor = None

    def take(self, key: tuple, idle_seconds: float) -> _Socket | None:
        """The newest idle socket of `key` that is still open, or None."""
        while True:
            with self._lock:
                self._forked()
                entries = self._idle.get(key)
                if not entries:
                    return None
                sock, since, _, limit = entries.pop()
                self._count -= 1
                if not entries:
                    del self._idle[key]
            if time.monotonic() - since < min(limit, idle_seconds) and sock.drained():
                return sock
            sock.close()

    def put(self, key: tuple, sock: _Socket, idle_seconds: float) -> None:
        """Keep `sock` for `key`'s next turn (the oldest idle ones go when over the limits)."""
        now = time.monotonic()
        dropped: list[_Socket] = []
        with self._lock:
            self._forked()
            entries = self._idle.setdefault(key, [])
            if len(entries) >= IDLE_PER_ACCOUNT:
                dropped.append(entries.pop(0)[0])  # the account's oldest idle socket
                self._count -= 1
            if self._count >= IDLE_PER_PROCESS:
                # Full: the newcomer goes, not the oldest. Accounts take turns round-robin, so
                # evicting the oldest would drop each socket just before its account's next
                # turn once more accounts rotate than sockets fit; this way some always hit.
                dropped.append(sock)
                if not entries:
                    del self._idle[key]
            else:
                entries.append([sock, now, now, idle_seconds])
                self._count += 1
            if self._janitor is None and self._count:
                self._janitor = threading.Thread(
                    target=self._tend, name="grok-gateway-idle", daemon=True
                )
                self._janitor.start()
        for old in dropped:
            old.close()

    def idle_count(self) -> int:
        """How many sockets wait in the pool."""
        with self._lock:
            return self._count

    def clear(self) -> None:
        """Close every idle socket."""
        with self._lock:
            entries = [entry for group in self._idle.values() for entry in group]
            self._idle.clear()
            self._count = 0
        for entry in entries:
            entry[0].close()

    def _tend(self) -> None:
        while True:
            with self._lock:
                shortest = min((e[3] for g in self._idle.values() for e in g), default=1.0)
            time.sleep(max(0.05, min(1.0, PING_INTERVAL / 4, shortest / 4)))
            now = time.monotonic()
            expired: list[_Socket] = []
            due: list[list[Any]] = []
            with self._lock:
                if self._pid != os.getpid() or not self._count:
                    self._janitor = None
                    return
                for key in list(self._idle):
                    keep = []
                    for entry in self._idle[key]:
                        if now - entry[1] >= entry[3]:
                            expired.append(entry[0])
                        elif now - entry[2] >= PING_INTERVAL:
                            due.append([key, *entry])  # out of the pool while it is pinged
                        else:
                            keep.append(entry)
                    self._count -= len(self._idle[key]) - len(keep)
                    if keep:
                        self._idle[key] = keep
                    else:
                        del self._idle[key]
            for sock in expired:
                sock.close()
            back = []
            for key, sock, since, _, limit in due:
                try:
                    sock.send(_PING)
                except _Closed:
                    sock.close()
                    continue
                if sock.drained():  # what came meanwhile is no turn's, and a close shows here
                    back.append((key, [sock, since, now, limit]))
                else:
                    sock.close()
            with self._lock:
                for key, entry in back:
                    self._idle.setdefault(key, []).insert(0, entry)
                    self._count += 1


_PING = json.dumps({"event": {"type": "ping"}})
_POOL = _SocketPool()


def idle_sockets() -> int:
    """Gateway sockets of this process waiting for their account's next turn."""
    return _POOL.idle_count()


def close_idle_sockets() -> None:
    """Close every idle gateway socket of this process."""
    _POOL.clear()


# ---- one turn ----------------------------------------------------------------------------------


def _envelope(session_id: str, event_type: str, **fields: Any) -> str:
    event = {"type": event_type, "event_id": str(uuid.uuid4()), **fields}
    return json.dumps({"session_id": session_id, "event": event}, ensure_ascii=False)


def session_create(session_id: str, turn: GatewayTurn) -> str:
    """The `session.create` message of a turn (new conversation, or continuing one)."""
    x_grok: dict[str, Any] = {
        "protocol_capabilities": list(_CAPABILITIES),
        "use_chunk": True,
        "enable_side_by_side": False,
        "enable_image_generation": True,
        "image_generation_count": 2,
        "disable_text_follow_ups": True,
        "disable_artifact": False,
        "force_concise": False,
    }
    if turn.conversation_id:
        x_grok.update(conversation_id=turn.conversation_id, load_existing=True, needs_history=True)
    else:
        x_grok.update(
            is_temporary=turn.temporary,
            keep_context=not turn.temporary,
            disable_memory=turn.temporary,
        )
    if turn.deepsearch:
        # DeepSearch was selected by a workspace id since 2026-02 (docs/upstream.md §3.2); the
        # gateway's own switch was never published, so the same field rides along here.
        x_grok["workspace_ids"] = [str(uuid.uuid4())]
    return _envelope(session_id, "session.create", session={"model": turn.model, "x_grok": x_grok})


def item_create(session_id: str, turn: GatewayTurn) -> str:
    """The user message: `x_grok.input_chunks` (file mentions, then the text)."""
    chunks: list[dict[str, Any]] = [
        {"mention": {"target": {"file_mention": {"file_id": file_id}}}} for file_id in turn.file_ids
    ]
    chunks.append({"text": {"text": turn.message}})
    item: dict[str, Any] = {
        "type": "message",
        "role": "user",
        "x_grok": {"client_message_id": str(uuid.uuid4()), "input_chunks": chunks},
    }
    if turn.file_ids:
        item["file_attachment_ids"] = list(turn.file_ids)
    if turn.parent_response_id:
        item["parent_response_id"] = turn.parent_response_id
    return _envelope(session_id, "conversation.item.create", item=item)


def open_turn(
    settings: GrokSettings, proxy: str | None, turn: GatewayTurn, *, deadline: float | None = None
) -> GatewayReply:
    """Connect (or take the account's idle socket), create the session and send the message;
    the reply streams from here.

    The handshake, the session's set-up and the reply's first event must each come within
    UPSTREAM_FIRST_BYTE_TIMEOUT (and before `deadline`); then UPSTREAM_READ_TIMEOUT of
    silence ends the turn. A pooled socket the server closed (or that no longer answers) is
    dropped and a fresh one dialled: nothing has reached the client yet.
    """

    def by() -> float:
        limit = time.monotonic() + settings.first_byte_timeout
        return limit if deadline is None else min(limit, deadline)

    idle = settings.gateway_idle_seconds
    key = pool_key(settings, proxy, turn.token, turn.user_id) if idle > 0 else None
    sock = _POOL.take(key, idle) if key is not None else None
    while True:
        reused = sock is not None
        if sock is None:
            sock = _connect(settings, proxy, turn.token, turn.user_id, by())
        session_id = str(uuid.uuid4())
        reply = GatewayReply(
            sock,
            settings.read_timeout,
            detect_degraded=settings.quality_guard,
            session_id=session_id,
            pool_key=key if sock.poolable else None,
            idle_seconds=idle,
        )
        try:
            sock.send(session_create(session_id, turn))
            setup_by = by()
            if reused:
                setup_by = min(setup_by, time.monotonic() + REUSED_SETUP_TIMEOUT)
            reply.read_until_attached(setup_by)
            sock.send(item_create(session_id, turn))
            sock.send(_envelope(session_id, "response.create"))
            reply.sent_at = time.monotonic()
            reply.first_byte_by = by()
        except (_Closed, UpstreamTimeout) as exc:
            reply.close()
            if reused:
                log.debug("pooled gateway socket did not answer (%s): dialling afresh", exc)
                sock = None
                continue
            if isinstance(exc, UpstreamTimeout):
                raise
            raise UpstreamBroken(
                "grok.com's chat gateway closed the socket before the turn began"
            ) from None
        except BaseException:
            reply.close()
            raise
        return reply


# Events that acknowledge the turn's set-up rather than begin its reply.
_SET_UP = (ConversationStarted, UserTurn)
# Events after which a turn is known not to be degraded: the answer itself, or a real search.
_DECISIVE = (TextDelta, ToolStep, ImageGenerated)


class GatewayReply:
    """An open turn on the gateway: iterate batches(), close() to hang up (any thread)."""

    status = 200

    def __init__(
        self,
        sock: _Socket,
        read_timeout: float,
        *,
        detect_degraded: bool = True,
        session_id: str | None = None,
        pool_key: tuple | None = None,
        idle_seconds: float = 0.0,
    ) -> None:
        self._sock = sock
        self._read_timeout = read_timeout
        self._detect_degraded = detect_degraded
        # Only this session's messages count: a reused socket may still carry an earlier one's.
        self._parser = GatewayParser(session_id=session_id)
        self._pending: list[GrokEvent] = []  # events read while setting the session up
        self._aborted = False
        self._finished = False
        # Where the socket goes when the turn finished cleanly (None: it is closed).
        self._pool_key = pool_key
        self._idle_seconds = idle_seconds
        self._released = False
        self.proxy = sock.proxy
        self.sent_at = time.monotonic()
        # time.monotonic() instant by which the reply's first event must have come (None: the
        # idle timeout from the start).
        self.first_byte_by: float | None = None

    @property
    def closed(self) -> bool:
        """Whether close() was called (the turn was cut off by us)."""
        return self._aborted

    def close(self) -> None:
        """Close the socket at once; idempotent (a no-op once the socket went back to the pool,
        where it is no longer this turn's)."""
        if self._released:
            return
        if not self._finished:
            self._aborted = True
        self._sock.close()

    def _release(self) -> None:
        """After a finished turn: the socket waits in the pool for the account's next turn."""
        if self._pool_key is None or self._released or self._aborted or not self._finished:
            self.close()
            return
        self._released = True
        _POOL.put(self._pool_key, self._sock, self._idle_seconds)

    def read_until_attached(self, by: float | None = None) -> None:
        """Read the session's set-up events by `by` (a time.monotonic() instant; the idle
        timeout from now when None); errors (e.g. an unknown conversation) raise."""
        started = time.monotonic()
        deadline = started + self._read_timeout if by is None else by
        while self._parser.conversation_id is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise UpstreamTimeout(
                    f"grok.com's chat gateway did not attach a conversation within "
                    f"{deadline - started:.0f} s"
                )
            message = self._sock.recv(left)
            if message is not None:
                self._pending.extend(self._parser.feed(message))

    def batches(self, heartbeat: float | None = None) -> Iterator[list[GrokEvent] | Heartbeat]:
        """Events grouped by what arrived together; with `heartbeat`, a Heartbeat whenever the
        gateway is silent that long. Errors raise GrokError after the events before them."""
        try:
            if self._pending:
                first, self._pending = self._pending, []
                yield first
            yield from self._read(heartbeat)
        finally:
            self._release()

    def _read(self, heartbeat: float | None) -> Iterator[list[GrokEvent] | Heartbeat]:
        parser = self._parser
        last_heard = last_ping = last_beat = time.monotonic()
        # Until the reply's first event no heartbeat is made: the attempt can still fail over,
        # and a keep-alive would commit the client's answer to this account.
        waiting = self.first_byte_by is not None
        # A degraded turn shows itself by its first web search, before the answer (§4.7). Until
        # the answer, a tool step or DEGRADED_WINDOW seconds have come, events are held back, so
        # a degraded turn fails before anything reached the client and another account retries.
        held: list[GrokEvent] = []
        held_since: float | None = None
        deciding = self._detect_degraded
        while not parser.done:
            now = time.monotonic()
            silence_limit = self.first_byte_by if waiting else last_heard + self._read_timeout
            deadlines = [silence_limit, last_ping + PING_INTERVAL]
            if heartbeat is not None and not waiting:
                deadlines.append(max(last_heard, last_beat) + heartbeat)
            if held_since is not None:
                deadlines.append(held_since + DEGRADED_WINDOW)
            try:
                message = self._sock.recv(max(0.0, min(deadlines) - now))
            except _Closed:
                if self._aborted:
                    return
                break
            now = time.monotonic()
            if message is None:
                if waiting and now >= silence_limit:
                    raise UpstreamTimeout(
                        "grok.com's chat gateway accepted the turn but sent no reply in time"
                    )
                if not waiting and now - last_heard >= self._read_timeout:
                    raise UpstreamTimeout(
                        f"grok.com's chat gateway sent nothing for {self._read_timeout:g} s"
                    )
                if now - last_ping >= PING_INTERVAL:
                    last_ping = now
                    with contextlib.suppress(_Closed):
                        self._sock.send(json.dumps({"event": {"type": "ping"}}))
                if held_since is not None and now - held_since >= DEGRADED_WINDOW:
                    deciding, held_since = False, None
                    first, held = held, []
                    yield first
                elif (
                    heartbeat is not None
                    and not waiting
                    and now - max(last_heard, last_beat) >= heartbeat
                ):
                    last_beat = now
                    yield Heartbeat()
                continue
            last_heard = now
            events = parser.feed(message)
            # The acknowledgement of our own message is not the reply's first event.
            waiting = waiting and all(isinstance(e, _SET_UP) for e in events)
            # Whatever else already arrived joins this batch: one write for the lot.
            while not parser.done:
                try:
                    more = self._sock.recv(0)
                except _Closed:
                    break
                if more is None:
                    break
                events.extend(parser.feed(more))
            if self._detect_degraded and parser.degraded_query is not None:
                raise DegradedTurn(
                    "grok.com's gateway searched a placeholder query "
                    f"({parser.degraded_query!r}): a degraded turn"
                )
            if deciding:
                held.extend(events)
                if held_since is None and held:
                    held_since = now
                decided = parser.done or any(isinstance(e, _DECISIVE) for e in events)
                if not decided and (held_since is None or now - held_since < DEGRADED_WINDOW):
                    continue
                deciding, held_since = False, None
                events, held = held, []
            if events:
                yield events
        if self._aborted:
            return
        tail = parser.finish()  # raises when the socket closed before response.done
        self._finished = True
        if tail:
            yield tail
        if parser.unknown_types:
            log.debug("gateway event types ignored: %s", dict(parser.unknown_types))
