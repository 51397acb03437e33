"""GrokClient: the calls grokproxy makes to grok.com, returning typed results or GrokErrors."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import queue
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urljoin, urlsplit

from urllib3 import encode_multipart_formdata

from . import gateway
from .catalog import ModelSpec
from .errors import (
    Blocked,
    CloudflareChallenge,
    ConversationNotFound,
    GrokError,
    InvalidCredentials,
    UpstreamBroken,
    UpstreamTimeout,
    classify_error_object,
    classify_http_error,
    looks_like_cloudflare,
)
from .events import GrokEvent, Heartbeat
from .frames import FrameParser
from .headers import build_headers, normalize_token
from .payload import build_chat_body
from .settings import GrokSettings
from .transport import (
    NETWORK_PENALTY_SECONDS,
    BodyTooLarge,
    Transport,
    UpstreamResponse,
    get_transport,
    make_requests_session,
)

_ERROR_BODY_LIMIT = 64 * 1024
_JSON_BODY_LIMIT = 4 * 1024 * 1024
_CONVERSATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_IMAGE_MAGIC = (
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"RIFF",  # webp
    b"BM",
)


@dataclass(frozen=True, slots=True)
class AccountIdentity:
    """Who an SSO token belongs to (from GET /api/auth/session)."""

    email: str
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Quota:
    """One mode's quota from POST /rest/rate-limits (None where upstream did not say)."""

    remaining: int | None
    total: int | None
    window_seconds: int | None
    wait_seconds: float | None = None


@dataclass(slots=True)
class Asset:
    """A streamed file from GROK_ASSETS_URL; call close() when done."""

    status: int
    content_type: str
    content_length: int | None
    chunks: Iterator[bytes]
    close: Callable[[], None]


@dataclass(frozen=True, slots=True)
class DownloadedImage:
    """An image fetched from a client-supplied http(s) URL."""

    data: bytes
    content_type: str


class ImageDownloadError(ValueError):
    """A client-supplied image URL could not be used (bad scheme, private host, too big …)."""


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One chat turn to open upstream: who sends it, to which model, what, and where."""

    token: str = field(repr=False)
    spec: ModelSpec
    message: str
    user_id: str | None = None  # the account's grok userId; looked up when unknown
    attachments: Sequence[tuple[bytes, str]] = ()  # (data, mime type) uploaded for this turn
    conversation_id: str | None = None  # continue this conversation ...
    parent_response_id: str | None = None  # ... below this reply
    # time.monotonic() instant past which no attempt of this request may wait for grok.com.
    deadline: float | None = None


def attachment_name(index: int, mime: str) -> str:
    """The file name an attachment is uploaded under: a text file (a long prompt) or an image."""
    if mime.startswith("text/"):
        return f"conversation-{index + 1}.txt"
    return f"image-{index + 1}.{mime.split('/')[-1]}"


class Reply(Protocol):
    """An open chat reply of either transport (HTTP NDJSON stream or gateway socket)."""

    @property
    def closed(self) -> bool:
        """Whether we cut the reply off ourselves."""
        ...

    def close(self) -> None:
        """Hang up at once (safe from any thread, idempotent)."""
        ...

    def batches(self, heartbeat: float | None = None) -> Iterator[list[GrokEvent] | Heartbeat]:
        """The reply's events grouped by what arrived together (see UpstreamReply.batches)."""
        ...


_EOF = object()
_USER_IDS_KEPT = 4096


class UpstreamReply:
    """An open HTTP chat stream from grok.com: iterate batches(), close() to hang up."""

    def __init__(
        self,
        response: UpstreamResponse,
        *,
        first_byte_by: float | None = None,
        idle_timeout: float | None = None,
    ):
        self._response = response
        # time.monotonic() instant by which the reply's first body byte must have come.
        self._first_byte_by = first_byte_by
        self._idle_timeout = idle_timeout

    @property
    def closed(self) -> bool:
        """Whether close() was called (the stream was cut off by us)."""
        return self._response.aborted

    def close(self) -> None:
        """Close the upstream connection at once (safe from any thread, idempotent)."""
        self._response.close()

    def batches(self, heartbeat: float | None = None) -> Iterator[list[GrokEvent] | Heartbeat]:
        """Parsed events grouped by what arrived together; with `heartbeat`, a Heartbeat
        whenever upstream is silent that long once the reply has begun.

        A relay writes one batch with one write, so a busy server makes fewer, larger writes
        instead of falling behind. In-band errors, truncation and timeouts (no first byte in
        time, or silence past the idle timeout) raise GrokError (after the events before them).
        Closing the generator (GeneratorExit, e.g. the HTTP client hung up) closes the upstream
        connection.
        """
        parser = FrameParser()
        try:
            for chunk in self._relay(heartbeat):
                if chunk is _HEARTBEAT:
                    yield Heartbeat()
                    continue
                events = parser.feed(chunk)
                if events:
                    yield events
            if self._response.aborted:
                return  # we hung up ourselves: not a truncated stream
            tail: list[GrokEvent] = []
            try:
                tail.extend(parser.finish())
            except GrokError:
                if tail:
                    yield tail
                raise
            if tail:
                yield tail
        finally:
            self.close()

    def _relay(self, heartbeat: float | None) -> Iterator[Any]:
        """Body chunks, and _HEARTBEAT whenever upstream was silent `heartbeat` seconds; a
        silent upstream never blocks past a heartbeat or a timeout.

        Before the first byte no heartbeat is made: until grok.com answers, the attempt can
        still fail over, and a keep-alive would commit the client's answer to this account.
        """
        if self._response.wait_readable is not None:
            return self._relay_inline(heartbeat, self._response.wait_readable)
        return self._relay_threaded(heartbeat)

    def _wait_limit(
        self, started: bool, last_heard: float, last_beat: float, heartbeat: float | None
    ) -> float | None:
        """Seconds until the next timeout or heartbeat is due (None: no limit)."""
        now = time.monotonic()
        if not started:
            return None if self._first_byte_by is None else max(0.0, self._first_byte_by - now)
        limits = []
        if self._idle_timeout is not None:
            limits.append(last_heard + self._idle_timeout - now)
        if heartbeat is not None:
            limits.append(max(last_heard, last_beat) + heartbeat - now)
        return max(0.0, min(limits)) if limits else None

    def _silence(self, started: bool, last_heard: float) -> None:
        """Raise the timeout a silence has reached, if it reached one (else a heartbeat is due)."""
        if not started:
            self.close()
            raise UpstreamTimeout("grok.com accepted the chat turn but sent no reply in time")
        if self._idle_timeout is not None and time.monotonic() - last_heard >= self._idle_timeout:
            self.close()
            raise UpstreamTimeout(f"grok.com sent nothing for {self._idle_timeout:g} s mid-reply")

    def _relay_inline(
        self, heartbeat: float | None, wait_readable: Callable[[float | None], bool]
    ) -> Iterator[Any]:
        """Read on this thread, waiting for the socket between reads: no reader thread, and no
        hand-off of every chunk between two threads (most of a held stream's CPU otherwise).
        What is readable at once after a chunk joins it, as the reader thread's queue would."""
        chunks = self._response.iter_chunks()
        started = False
        last_heard = last_beat = time.monotonic()
        try:
            while True:
                if not wait_readable(self._wait_limit(started, last_heard, last_beat, heartbeat)):
                    self._silence(started, last_heard)
                    last_beat = time.monotonic()
                    yield _HEARTBEAT
                    continue
                chunk = next(chunks, None)
                if chunk is None:
                    return
                started = True
                last_heard = time.monotonic()
                data = [chunk]
                while wait_readable(0):
                    more = next(chunks, None)
                    if more is None:
                        yield b"".join(data)
                        return
                    data.append(more)
                yield data[0] if len(data) == 1 else b"".join(data)
        finally:
            if not self._response.closed:
                self.close()  # abandoned mid-body: hang up rather than release the connection

    def _relay_threaded(self, heartbeat: float | None) -> Iterator[Any]:
        """Chunks read on a helper thread, for a transport whose reads cannot be waited for
        (curl_cffi's). Whatever queued up while the consumer was busy comes out joined."""
        chunks: queue.Queue[Any] = queue.Queue()

        def reader() -> None:
            try:
                for chunk in self._response.iter_chunks():
                    chunks.put(chunk)
            except BaseException as exc:  # handed to the consumer thread
                chunks.put(exc)
            finally:
                chunks.put(_EOF)

        threading.Thread(target=reader, name="grok-stream-reader", daemon=True).start()
        started = False
        last_heard = last_beat = time.monotonic()
        while True:
            wait = self._wait_limit(started, last_heard, last_beat, heartbeat)
            try:
                items = [chunks.get(timeout=wait)]
            except queue.Empty:
                self._silence(started, last_heard)
                last_beat = time.monotonic()
                yield _HEARTBEAT
                continue
            started = True
            last_heard = time.monotonic()
            with contextlib.suppress(queue.Empty):
                while True:
                    items.append(chunks.get_nowait())
            data = []
            for item in items:
                if item is _EOF or isinstance(item, BaseException):
                    if data:
                        yield b"".join(data)
                    if item is _EOF:
                        return
                    raise item
                data.append(item)
            yield b"".join(data)


_HEARTBEAT = object()


class GrokClient:
    """Talks to grok.com for one process: chat streams, identity, quota, uploads, assets."""

    def __init__(self, settings: GrokSettings, transport: Transport | None = None):
        self.settings = settings
        self.transport = transport or get_transport(settings)
        self._download_session = None
        self._user_ids: OrderedDict[str, str] = OrderedDict()
        self._user_ids_lock = threading.Lock()

    # ---- chat --------------------------------------------------------------------------------

    def open_turn(self, turn: ChatTurn) -> Reply:
        """Open one chat turn over the configured transport (GROK_DIALECT) and return its reply.

        Attachments are uploaded first (uploads belong to one account). Every failure before
        the reply is open raises the GrokError that says whose fault it was.
        """
        token = _clean_token(turn.token)
        file_ids = [
            self.upload_file(token, attachment_name(i, mime), mime, data, deadline=turn.deadline)
            for i, (data, mime) in enumerate(turn.attachments)
        ]
        settings = self.settings
        if settings.dialect != "gateway":
            body = build_chat_body(
                turn.spec,
                settings.dialect,
                turn.message,
                temporary=settings.temporary,
                file_ids=file_ids,
                parent_response_id=turn.parent_response_id,
            )
            return self.open_chat(token, body, turn.conversation_id, deadline=turn.deadline)
        if turn.conversation_id is not None and not _CONVERSATION_ID.match(turn.conversation_id):
            raise ValueError("conversation id has unexpected characters")
        user_id = turn.user_id or self.user_id_of(token, deadline=turn.deadline)
        gateway_turn = gateway.GatewayTurn(
            token=token,
            user_id=user_id,
            model=str(turn.spec.fields_for("gateway").get("model") or turn.spec.mode),
            message=turn.message,
            temporary=settings.temporary,
            file_ids=file_ids,
            conversation_id=turn.conversation_id,
            parent_response_id=turn.parent_response_id,
            deepsearch=bool(turn.spec.deepsearch),
        )
        proxy = self.transport.proxies.next()
        try:
            return gateway.open_turn(settings, proxy, gateway_turn, deadline=turn.deadline)
        except Blocked:
            self.transport.penalize_proxy(proxy)
            raise
        except UpstreamBroken:
            self.transport.proxies.penalize(proxy, NETWORK_PENALTY_SECONDS)
            raise

    def user_id_of(self, token: str, *, deadline: float | None = None) -> str:
        """The grok userId of a token (the gateway needs it), remembered per process."""
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._user_ids_lock:
            known = self._user_ids.get(key)
            if known is not None:
                self._user_ids.move_to_end(key)
                return known
        user_id = self.auth_session(token, deadline=deadline).user_id
        if not user_id:
            raise UpstreamBroken("grok.com's auth session did not name the account's user id")
        with self._user_ids_lock:
            self._user_ids[key] = user_id
            while len(self._user_ids) > _USER_IDS_KEPT:
                self._user_ids.popitem(last=False)
        return user_id

    def open_chat(
        self,
        token: str,
        body: dict[str, Any],
        conversation_id: str | None = None,
        *,
        deadline: float | None = None,
    ) -> UpstreamReply:
        """POST a chat turn (new conversation, or a continuation) and return the open stream.

        Its headers and its first body byte must each come within UPSTREAM_FIRST_BYTE_TIMEOUT
        of sending (and before `deadline`); then UPSTREAM_READ_TIMEOUT of silence ends it.
        """
        token = _clean_token(token)
        if conversation_id is None:
            path, referer = "/rest/app-chat/conversations/new", "/"
        else:
            if not _CONVERSATION_ID.match(conversation_id):
                raise ValueError("conversation id has unexpected characters")
            path = f"/rest/app-chat/conversations/{quote(conversation_id)}/responses"
            referer = f"/c/{quote(conversation_id)}"
        headers = build_headers(self.settings, token, referer_path=referer)
        sent = time.monotonic()
        response = self._send(
            "POST", self.settings.base_url + path, headers, json=body, deadline=deadline
        )
        if "text/html" in response.content_type.lower():
            # A 200 HTML page is a challenge/interstitial, never a chat stream.
            self._raise_for(response, force=True)
        first_byte_by = sent + self.settings.first_byte_timeout
        if deadline is not None:
            first_byte_by = min(first_byte_by, deadline)
        return UpstreamReply(
            response, first_byte_by=first_byte_by, idle_timeout=self.settings.read_timeout
        )

    # ---- account -----------------------------------------------------------------------------

    def auth_session(self, token: str, *, deadline: float | None = None) -> AccountIdentity:
        """The account behind a token (GET /api/auth/session); dead tokens raise."""
        token = _clean_token(token)
        headers = build_headers(self.settings, token, json_body=False, accept="application/json")
        data = self._json("GET", "/api/auth/session", headers, deadline=deadline)
        if not isinstance(data, dict):
            raise UpstreamBroken("grok.com auth session answer is not a JSON object")
        status = str(data.get("status") or "").lower()
        if status in ("unauthenticated", "blocked"):
            raise InvalidCredentials(f"grok.com auth session says the account is {status}")
        session = data.get("session") if isinstance(data.get("session"), dict) else {}
        user = data.get("user") if isinstance(data.get("user"), dict) else {}
        email = _first_str(session.get("email"), user.get("email"), data.get("email"))
        user_id = _first_str(
            session.get("userId"), user.get("userId"), user.get("id"), data.get("userId")
        )
        if not email:
            if status and status != "authenticated":
                raise InvalidCredentials(f"grok.com auth session status is {status!r}")
            raise UpstreamBroken("grok.com auth session carried no e-mail")
        return AccountIdentity(email.strip(), user_id)

    def rate_limits(self, token: str, mode: str, *, timeout: float | None = None) -> Quota:
        """Remaining quota of one mode (POST /rest/rate-limits, E3 and late-2025 shapes).

        `timeout` caps connect and read (a probe during failover must not stall the request).
        """
        token = _clean_token(token)
        headers = build_headers(self.settings, token)
        data = self._json(
            "POST",
            "/rest/rate-limits",
            headers,
            body={"modelName": mode},
            timeout=(timeout, timeout) if timeout else None,
        )
        if not isinstance(data, dict):
            raise UpstreamBroken("grok.com rate-limits answer is not a JSON object")
        remaining = _first_int(data.get("remainingQueries"), data.get("remainingTokens"))
        total = _first_int(data.get("totalQueries"), data.get("totalTokens"))
        window = _first_int(data.get("windowSizeSeconds"))
        wait = data.get("waitTimeSeconds")
        wait_seconds = float(wait) if isinstance(wait, int | float) and wait >= 0 else None
        if remaining is None and total is None and window is None:
            raise UpstreamBroken("grok.com rate-limits answer has no quota fields")
        return Quota(remaining, total, window, wait_seconds)

    def delete_conversation(self, token: str, conversation_id: str) -> None:
        """Soft-delete a conversation upstream (DELETE /rest/app-chat/conversations/soft/{id})."""
        token = _clean_token(token)
        headers = build_headers(self.settings, token, json_body=False, accept="application/json")
        path = f"/rest/app-chat/conversations/soft/{quote(conversation_id, safe='')}"
        self._send("DELETE", self.settings.base_url + path, headers).close()

    def upload_file(
        self, token: str, filename: str, mime: str, data: bytes, *, deadline: float | None = None
    ) -> str:
        """Upload a file and return its fileMetadataId (multipart v2 route, old JSON one on 404).

        A 404 or 5xx from the upload routes is grok.com's failure, never "not found" to our
        client: it raises UpstreamBroken.
        """
        token = _clean_token(token)
        headers = build_headers(self.settings, token, json_body=False, accept="application/json")
        body, content_type = encode_multipart_formdata(
            {"file": (filename, data, mime or "application/octet-stream")}
        )
        headers["Content-Type"] = content_type
        path = "/http/upload-file-v2/direct"
        response = self.transport.request(
            "POST", self.settings.base_url + path, headers=headers, data=body, deadline=deadline
        )
        if response.status == 404:
            # The v2 route is not deployed for this account/region: use the JSON route.
            response.close()
            path = "/rest/app-chat/upload-file"
            headers = build_headers(self.settings, token)
            legacy = {
                "fileName": filename,
                "fileMimeType": mime,
                "content": base64.b64encode(data).decode("ascii"),
            }
            response = self.transport.request(
                "POST",
                self.settings.base_url + path,
                headers=headers,
                json=legacy,
                deadline=deadline,
            )
        if not 200 <= response.status < 300:
            try:
                self._raise_for(response)
            except ConversationNotFound as exc:
                raise UpstreamBroken(
                    f"grok.com upload route {path} answered HTTP 404", status=404
                ) from exc
        answer = self._answer_json(response, path)
        if isinstance(answer, dict):
            if answer.get("terminalError"):
                raise classify_error_object(
                    answer["terminalError"], status=response.status, where=f"grok.com {path}"
                )
            meta = (
                answer.get("fileMetadata") if isinstance(answer.get("fileMetadata"), dict) else {}
            )
            file_id = _first_str(meta.get("fileMetadataId"), answer.get("fileMetadataId"))
            if file_id:
                return file_id
        raise UpstreamBroken(f"grok.com {path} answer has no fileMetadataId")

    # ---- files -------------------------------------------------------------------------------

    def fetch_asset(self, token: str, path: str) -> Asset:
        """Stream a generated file from GROK_ASSETS_URL with the account's cookie."""
        token = _clean_token(token)
        base = self.settings.assets_url.rstrip("/")
        if path.startswith(base + "/"):
            path = path[len(base) + 1 :]
        path = path.lstrip("/")
        if not path or "://" in path or ".." in path.split("/") or "\\" in path:
            raise ValueError("asset path must be a relative path on the assets host")
        headers = build_headers(
            self.settings,
            token,
            json_body=False,
            accept="image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
            same_origin=False,
        )
        headers["Sec-Fetch-Dest"] = "image"
        headers["Sec-Fetch-Mode"] = "no-cors"
        response = self._send("GET", f"{base}/{quote(path, safe='/-_.~')}", headers)
        length = response.headers.get("content-length")
        return Asset(
            status=response.status,
            content_type=response.content_type,
            content_length=int(length) if length and length.isdigit() else None,
            chunks=response.iter_chunks(),
            close=response.close,
        )

    def download_image(
        self, url: str, max_bytes: int, *, allow_private: bool = False
    ) -> DownloadedImage:
        """Fetch an http(s) image a client referenced (size-limited, public hosts only)."""
        if self._download_session is None:
            self._download_session = make_requests_session()
        session = self._download_session
        timeout = (self.settings.connect_timeout, min(self.settings.read_timeout, 30.0))
        for _ in range(4):  # the URL itself plus up to 3 redirects, each one checked
            _check_public_url(url, allow_private)
            try:
                resp = session.get(
                    url,
                    headers={"User-Agent": self.settings.user_agent, "Accept": "image/*"},
                    timeout=timeout,
                    stream=True,
                    allow_redirects=False,
                )
            except Exception as exc:
                raise ImageDownloadError(f"could not fetch image ({_failure(exc)})") from exc
            with resp:
                if resp.is_redirect and resp.headers.get("location"):
                    url = urljoin(url, resp.headers["location"])
                    continue
                if resp.status_code != 200:
                    raise ImageDownloadError(f"image URL answered HTTP {resp.status_code}")
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise ImageDownloadError(f"image is larger than {max_bytes} bytes")
                data = bytearray()
                try:
                    for chunk in resp.iter_content(64 * 1024):
                        data += chunk
                        if len(data) > max_bytes:
                            raise ImageDownloadError(f"image is larger than {max_bytes} bytes")
                except ImageDownloadError:
                    raise
                except Exception as exc:
                    raise ImageDownloadError(f"image download broke ({_failure(exc)})") from exc
                content_type = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                if not content_type.startswith("image/"):
                    if not bytes(data[:12]).startswith(_IMAGE_MAGIC):
                        raise ImageDownloadError("URL did not return an image")
                    content_type = "application/octet-stream"
                return DownloadedImage(bytes(data), content_type)
        raise ImageDownloadError("image URL redirected too many times")

    # ---- plumbing ----------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        json: Any = None,
        timeout: tuple[float, float] | None = None,
        deadline: float | None = None,
    ) -> UpstreamResponse:
        response = self.transport.request(
            method, url, headers=headers, json=json, timeout=timeout, deadline=deadline
        )
        if not 200 <= response.status < 300:
            self._raise_for(response)
        return response

    def _raise_for(self, response: UpstreamResponse, force: bool = False) -> None:
        try:
            body = response.read(_ERROR_BODY_LIMIT)
        except BodyTooLarge:
            body = b""
        except GrokError:
            body = b""
        finally:
            response.close()
        text = body.decode("utf-8", errors="replace")
        if force and 200 <= response.status < 300:
            if looks_like_cloudflare(response.content_type, text):
                error: GrokError = CloudflareChallenge(
                    "grok.com answered with a Cloudflare challenge page "
                    "(change proxy/IP or refresh GROK_CF_CLEARANCE)",
                    status=response.status,
                )
            else:
                error = UpstreamBroken(
                    f"grok.com answered HTTP {response.status} with an HTML page, not a stream",
                    status=response.status,
                )
        else:
            error = classify_http_error(response.status, response.content_type, text)
        if isinstance(error, Blocked):
            self.transport.penalize_proxy(response.proxy)
        raise error

    def _json(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any = None,
        timeout: tuple[float, float] | None = None,
        deadline: float | None = None,
    ) -> Any:
        response = self._send(
            method,
            self.settings.base_url + path,
            headers,
            json=body,
            timeout=timeout,
            deadline=deadline,
        )
        return self._answer_json(response, path)

    def _answer_json(self, response: UpstreamResponse, path: str) -> Any:
        """The JSON of a 2xx answer; a challenge page or a body that is not JSON raises."""
        try:
            text = response.text(_JSON_BODY_LIMIT)
        except BodyTooLarge as exc:
            raise UpstreamBroken(f"grok.com {path} answer is too large") from exc
        if looks_like_cloudflare(response.content_type, text):
            self.transport.penalize_proxy(response.proxy)
            raise CloudflareChallenge(
                f"grok.com {path} answered with a Cloudflare challenge page",
                status=response.status,
            )
        try:
            return json.loads(text)
        except ValueError as exc:
            raise UpstreamBroken(f"grok.com {path} answer is not JSON") from exc


def _failure(exc: Exception) -> str:
    # A client reads this: what went wrong, never the library's class or the address it tried.
    return "timed out" if "timeout" in type(exc).__name__.lower() else "connection failed"


def _clean_token(token: str) -> str:
    try:
        return normalize_token(token)
    except ValueError as exc:
        raise InvalidCredentials(f"unusable SSO token: {exc}") from exc


def _first_str(*values: Any) -> str | None:
    for value in values:
        if isinstance(value, str) and value.strip():
            return value
    return None


def _first_int(*values: Any) -> int | None:
    for value in values:
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            return int(value)
    return None


def _check_public_url(url: str, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageDownloadError("image URL must be http or https")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ImageDownloadError("image host does not resolve") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global or address.is_multicast:
            # Refusing internal addresses keeps clients from using us to reach our own network.
            raise ImageDownloadError("image URL points at a private or reserved address")
