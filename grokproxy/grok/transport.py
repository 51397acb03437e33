"""HTTP transport to grok.com: pooled requests, or curl_cffi with a browser TLS fingerprint.

Both sit behind one small interface (`Transport.request` -> `UpstreamResponse`) so the client
never cares which is in use. Every response is streamed, and `UpstreamResponse.close()` may be
called from any thread: it shuts the socket down first, so a reader blocked on a silent upstream
wakes at once and grok.com sees the TCP connection close immediately.

Under gevent workers (gunicorn.conf.py patches the standard library) requests' sockets yield to
the hub by themselves, but libcurl knows nothing of gevent: a transfer's `perform()` would stop
every greenlet of the worker for the whole of a stream. curl_cffi's transfers (and its WebSocket
handshake, `run_native`) therefore run on real OS threads, and their chunks cross back to the
waiting greenlet through `_HubChannel`, built on what gevent documents as safe to trigger from
another thread (a loop's `async_` watcher).
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import itertools
import logging
import os
import select
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .errors import UpstreamBroken, UpstreamTimeout, scrub
from .settings import GrokSettings

log = logging.getLogger(__name__)

# Many chat streams stay open at once; each holds one pooled connection for its whole life.
POOL_SIZE = 256
CHUNK_SIZE = 64 * 1024
# OS threads for curl_cffi under gevent: one per transfer in flight (a held stream keeps its own),
# started on demand; a worker holds at most its worker_connections streams.
NATIVE_THREADS = 4096
PROXY_PENALTY_SECONDS = 120.0  # after grok.com blocked a request made through the proxy
NETWORK_PENALTY_SECONDS = 30.0  # after the proxy itself failed (refused, timed out)


class BodyTooLarge(ValueError):
    """A response body exceeded the caller's size limit."""


def proxy_preview(proxy: str | None) -> str:
    """A proxy URL without its credentials, safe for messages."""
    if not proxy:
        return "direct"
    parts = urlsplit(proxy)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


class ProxyRotator:
    """Round-robin over PROXY_URL_POOL, skipping proxies that were recently blocked."""

    def __init__(self, urls: tuple[str, ...] | list[str]):
        self.urls = tuple(urls)
        self._counter = itertools.count()
        self._penalized: dict[str, float] = {}
        self._lock = threading.Lock()

    def next(self) -> str | None:
        """The proxy for the next request (None = direct, when no pool is configured)."""
        if not self.urls:
            return None
        now = time.monotonic()
        with self._lock:
            start = next(self._counter)
            for i in range(len(self.urls)):
                url = self.urls[(start + i) % len(self.urls)]
                if self._penalized.get(url, 0.0) <= now:
                    return url
            # Everything is penalized: use the one whose penalty ends first.
            return min(self.urls, key=lambda u: self._penalized.get(u, 0.0))

    def penalize(self, url: str | None, seconds: float = PROXY_PENALTY_SECONDS) -> None:
        """Skip `url` for a while (after grok.com blocked a request that went through it)."""
        if url and url in self.urls:
            with self._lock:
                self._penalized[url] = time.monotonic() + seconds


class UpstreamResponse:
    """A streamed HTTP response from either transport."""

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        chunks: Iterator[bytes],
        closer: Any,
        proxy: str | None,
        wait_readable: Callable[[float | None], bool] | None = None,
    ):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.proxy = proxy
        self._chunks = chunks
        self._closer = closer
        self._closed = threading.Event()
        self._aborted = False
        # `wait_readable(timeout)`: whether the next body read can return without waiting, after
        # waiting up to `timeout` seconds (None: forever). Only a transport that can tell
        # without consuming anything offers it; a reader can then keep time between reads on
        # its own thread instead of handing every chunk over from a reader thread.
        self.wait_readable = wait_readable

    @property
    def content_type(self) -> str:
        """The Content-Type header ('' when absent)."""
        return self.headers.get("content-type", "")

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed.is_set()

    @property
    def aborted(self) -> bool:
        """Whether close() cut the body off before its end."""
        return self._aborted

    def iter_chunks(self) -> Iterator[bytes]:
        """Body bytes as they arrive; ends quietly once close() was called."""
        try:
            for chunk in self._chunks:
                if self._closed.is_set():
                    return
                if chunk:
                    yield chunk
        except Exception as exc:
            if self._closed.is_set():
                return  # the reader was cut off on purpose
            # The library's words go to the log only: they name hosts, ports and classes.
            log.info("grok.com stream broke: %s: %s", type(exc).__name__, scrub(str(exc)))
            if _is_timeout(exc):
                raise UpstreamTimeout("grok.com stopped sending mid-stream (timed out)") from exc
            raise UpstreamBroken("the connection to grok.com broke mid-stream") from exc
        finally:
            if not self._closed.is_set():
                # Read to the end (or abandoned by the consumer): release, don't abort.
                self._closed.set()
                with contextlib.suppress(Exception):
                    self._closer(False)

    def read(self, max_bytes: int | None = None) -> bytes:
        """The whole body (raises BodyTooLarge past `max_bytes`)."""
        out = bytearray()
        for chunk in self.iter_chunks():
            out += chunk
            if max_bytes is not None and len(out) > max_bytes:
                self.close()
                raise BodyTooLarge(f"response body exceeds {max_bytes} bytes")
        return bytes(out)

    def text(self, max_bytes: int | None = 4 * 1024 * 1024) -> str:
        """The whole body decoded as UTF-8 (invalid bytes replaced)."""
        return self.read(max_bytes).decode("utf-8", errors="replace")

    def close(self) -> None:
        """Close the upstream connection now; safe from any thread and idempotent."""
        if self._closed.is_set():
            return
        self._aborted = True
        self._closed.set()
        with contextlib.suppress(Exception):
            self._closer(True)


def _is_timeout(exc: BaseException) -> bool:
    """Whether a library's exception (requests, urllib3, curl_cffi, socket) is a timeout."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, TimeoutError) or "timeout" in type(error).__name__.lower():
            return True
        if "timed out" in str(error).lower():  # curl_cffi: "Operation timed out after …"
            return True
        error = error.__cause__ or error.__context__
    return False


def _block_all_cookies() -> http.cookiejar.CookieJar:
    # The session is shared by every account: a Set-Cookie from one account's answer must never
    # ride along on another account's request, so the jar accepts nothing.
    jar = requests.cookies.RequestsCookieJar()
    jar.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return jar


def gevent_patched() -> bool:
    """Whether this process runs under gevent's monkey-patching (a gevent gunicorn worker)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


_native_pools: dict[int, Any] = {}


def _native_pool() -> Any:
    """This process's pool of real OS threads for libcurl (gevent only; remade after a fork)."""
    pool = _native_pools.get(os.getpid())
    if pool is None:
        from gevent.threadpool import ThreadPool

        pool = _native_pools[os.getpid()] = ThreadPool(NATIVE_THREADS)
    return pool


def run_native(call: Callable[[], Any]) -> Any:
    """`call()`, on an OS thread under gevent so a blocking libcurl call lets the other greenlets
    run meanwhile; directly otherwise. Its result is returned and its exception raised here."""
    if not gevent_patched():
        return call()
    return _native_pool().spawn(call).get()


class _HubChannel:
    """Items handed from an OS thread to one greenlet of the hub that made the channel.

    gevent's Event and queues are for greenlets of one thread only; a loop's `async_` watcher is
    the primitive gevent documents as safe to trigger from any thread. `put` appends (a deque's
    append is atomic) and triggers it; its callback, on the hub, wakes the reader."""

    def __init__(self) -> None:
        from gevent import get_hub
        from gevent.event import Event
        from gevent.monkey import get_original

        self._items: deque[Any] = deque()
        self._ready = Event()
        self._ended = False
        # A real lock (held for a few instructions): the hub must never close the watcher
        # between the thread's last `put` and its `send`.
        self._lock = get_original("_thread", "allocate_lock")()
        self._watcher = get_hub().loop.async_()
        self._watcher.start(self._wake)

    def put(self, item: Any, *, last: bool = False) -> None:
        """Hand `item` over (from any thread); `last` closes the channel after it."""
        with self._lock:
            self._items.append(item)
            self._ended = last
            self._watcher.send()

    def _wake(self) -> None:
        self._ready.set()
        with self._lock:
            if self._ended:  # nothing more will come: free the watcher, on the hub as it wants
                self._watcher.stop()
                self._watcher.close()

    def get(self, timeout: float | None = None) -> Any:
        """The next item; waits cooperatively. Raises TimeoutError after `timeout` seconds."""
        while not self._items:
            self._ready.clear()
            if self._items:
                break
            if not self._ready.wait(timeout):
                raise TimeoutError(f"no answer within {timeout:g} s")
        return self._items.popleft()


class _Failed:
    """A transfer's exception, carried through a _HubChannel."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Done:
    """A finished transfer's curl_cffi response, carried through a _HubChannel."""

    def __init__(self, response: Any) -> None:
        self.response = response


class Transport:
    """The process-wide HTTP client for grok.com (requests, or curl_cffi when impersonating)."""

    def __init__(self, settings: GrokSettings):
        self.settings = settings
        self.proxies = ProxyRotator(settings.proxy_urls)
        self.kind = "curl_cffi" if settings.impersonate else "requests"
        self._timeout = (settings.connect_timeout, settings.first_byte_timeout)
        if self.kind == "curl_cffi":
            from curl_cffi import requests as curl_requests

            self._curl_session = curl_requests.Session(impersonate=settings.impersonate)
            # curl_cffi runs every streamed transfer on its executor; the default pool is sized
            # for a few CPUs and would make concurrent streams queue behind each other.
            self._curl_session._executor = ThreadPoolExecutor(
                max_workers=POOL_SIZE, thread_name_prefix="grok-curl"
            )
        else:
            self._session = make_requests_session()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        data: bytes | None = None,
        use_proxy: bool = True,
        timeout: tuple[float, float] | None = None,
        deadline: float | None = None,
    ) -> UpstreamResponse:
        """Send one request; the body is streamed. Network failures raise UpstreamBroken.

        `timeout` is (connect, first byte): the answer's headers must come within the second.
        Then the body may be silent for UPSTREAM_READ_TIMEOUT between reads. `deadline` (a
        time.monotonic() instant) caps both: an attempt never outlives its request's budget.
        """
        proxy = self.proxies.next() if use_proxy else None
        timeout = budgeted(timeout or self._timeout, deadline)
        try:
            if self.kind == "curl_cffi" and gevent_patched():
                return self._curl_request_native(method, url, headers, json, data, proxy, timeout)
            if self.kind == "curl_cffi":
                return self._curl_request(method, url, headers, json, data, proxy, timeout)
            return self._requests_request(method, url, headers, json, data, proxy, timeout)
        except UpstreamBroken:
            raise
        except Exception as exc:
            # A proxy that cannot even complete the request is skipped for a short while.
            self.proxies.penalize(proxy, NETWORK_PENALTY_SECONDS)
            # Host, port, proxy and the library's words are for the operator's log only: the
            # message reaches API clients.
            log.warning(
                "%s %s via %s failed: %s: %s",
                method,
                urlsplit(url).path,
                proxy_preview(proxy),
                type(exc).__name__,
                scrub(str(exc)),
            )
            if _is_timeout(exc):
                raise UpstreamTimeout("grok.com did not answer in time (timed out)") from exc
            raise UpstreamBroken("grok.com could not be reached (the connection failed)") from exc

    def penalize_proxy(self, proxy: str | None) -> None:
        """Move away from `proxy` for a while (call it after a Blocked error)."""
        self.proxies.penalize(proxy)

    def _requests_request(self, method, url, headers, json, data, proxy, timeout):
        proxies = {"http": proxy, "https": proxy} if proxy else {}
        resp = self._session.request(
            method,
            url,
            headers=dict(headers),
            json=json,
            data=data,
            proxies=proxies,
            timeout=timeout,
            stream=True,
            allow_redirects=False,
        )
        raw = resp.raw
        # The headers came within the first-byte timeout; the body's reads get the idle one.
        with contextlib.suppress(Exception):
            _body_socket(raw).settimeout(self.settings.read_timeout)

        def chunks() -> Iterator[bytes]:
            while True:
                # read1 returns whatever arrived (up to CHUNK_SIZE) instead of waiting to fill
                # a buffer, which is what keeps token-by-token streaming live.
                chunk = raw.read1(CHUNK_SIZE, decode_content=True)
                if not chunk:
                    return
                yield chunk

        def close(abort: bool) -> None:
            if abort:
                # Both directions, on the socket itself: wakes a reader blocked in recv() on
                # another thread, and sends grok.com the FIN now, even while that reader still
                # holds a reference that would delay the descriptor's close. urllib3's public
                # shutdown() only stops reading, so its socket's shutdown is used when present.
                sock_shutdown = getattr(raw, "_sock_shutdown", None)
                with contextlib.suppress(Exception):
                    if sock_shutdown is not None:
                        sock_shutdown(socket.SHUT_RDWR)
                    else:
                        raw.shutdown()
            resp.close()

        return UpstreamResponse(
            resp.status_code, resp.headers, chunks(), close, proxy, _readiness_of(raw)
        )

    def _curl_arguments(self, method, url, headers, json, data, proxy, connect) -> dict:
        """What every curl_cffi transfer is sent with. curl has one silence limit for the whole
        transfer (connect + read): it gets the idle timeout."""
        return {
            "method": method,
            "url": url,
            "headers": dict(headers),
            "json": json,
            "data": data,
            "proxy": proxy,
            "timeout": (connect, self.settings.read_timeout),
            "allow_redirects": False,
            "discard_cookies": True,
        }

    def _curl_request(self, method, url, headers, json, data, proxy, timeout):
        connect, first_byte = timeout
        # curl has one silence limit for the whole transfer (connect + read): give it the idle
        # timeout, and wait for the headers here no longer than the first-byte timeout.
        started = _Started()

        def send() -> None:
            try:
                started.set(
                    self._curl_session.request(
                        **self._curl_arguments(method, url, headers, json, data, proxy, connect),
                        stream=True,
                    )
                )
            except BaseException as exc:  # handed to the waiting thread
                started.fail(exc)

        threading.Thread(target=send, daemon=True, name="grok-curl-send").start()
        resp = started.wait(connect + first_byte)
        curl = resp.curl

        def close(abort: bool) -> None:
            if not abort:
                resp.close()
                return
            # Shutting the socket down makes a silent transfer fail at once instead of at the
            # read timeout.
            _shutdown_active_socket(curl)
            # resp.close() joins the transfer thread; never make the caller wait for it.
            threading.Thread(target=resp.close, daemon=True, name="grok-curl-close").start()

        headers_map = {k: v for k, v in resp.headers.items() if v is not None}
        return UpstreamResponse(resp.status_code, headers_map, resp.iter_content(), close, proxy)

    def _curl_request_native(self, method, url, headers, json, data, proxy, timeout):
        """curl_cffi under gevent: the transfer runs whole on an OS thread of the native pool and
        writes each chunk into a _HubChannel; the greenlet reads them from there.

        curl_cffi's own streaming waits on threading primitives that gevent has turned into
        greenlet-only ones, so it is not used here: the transfer is a plain (non-stream) request
        whose body goes to a callback. The answer's status and headers are read from curl when
        the first body byte arrives; an answer without a body comes whole at the end."""
        from curl_cffi.const import CurlInfo

        connect, first_byte = timeout
        channel = _HubChannel()
        state = _NativeTransfer()
        session = self._curl_session

        def on_chunk(chunk: bytes) -> int:
            if state.stop:
                return 0xFFFFFFFF  # CURL_WRITEFUNC_ERROR: abort the transfer
            if not state.started:
                state.started = True
                curl = state.curl
                head = {"content-type": curl.getinfo(CurlInfo.CONTENT_TYPE) or ""}
                if isinstance(head["content-type"], bytes):
                    head["content-type"] = head["content-type"].decode("latin-1")
                length = curl.getinfo(CurlInfo.CONTENT_LENGTH_DOWNLOAD_T)
                if isinstance(length, int) and length >= 0:
                    head["content-length"] = str(length)
                channel.put((curl.getinfo(CurlInfo.RESPONSE_CODE), head))
            channel.put(chunk)
            return len(chunk)

        def transfer() -> None:
            # On an OS thread: the session hands each thread its own curl handle.
            state.curl = session.curl
            try:
                response = session.request(
                    **self._curl_arguments(method, url, headers, json, data, proxy, connect),
                    content_callback=on_chunk,
                )
            except BaseException as exc:  # handed to the waiting greenlet
                channel.put(_Failed(exc), last=True)
            else:
                channel.put(_Done(response), last=True)

        _native_pool().spawn(transfer)
        try:
            first = channel.get(connect + first_byte)
        except TimeoutError:
            state.abort()
            raise
        if isinstance(first, _Failed):
            raise first.error
        if isinstance(first, _Done):  # the whole answer, without a body
            answer = first.response
            head = {k: v for k, v in answer.headers.items() if v is not None}
            return UpstreamResponse(answer.status_code, head, iter(()), lambda _abort: None, proxy)
        status, head = first

        def chunks() -> Iterator[bytes]:
            while True:
                item = channel.get()
                if isinstance(item, _Failed):
                    raise item.error
                if isinstance(item, _Done):
                    return
                yield item

        def close(abort: bool) -> None:
            if abort:
                state.abort()
            else:  # read to the end, or left by its reader: nothing more is wanted
                state.stop = True

        return UpstreamResponse(status, head, chunks(), close, proxy)


class _NativeTransfer:
    """What the greenlet and the OS thread of one native curl transfer share."""

    def __init__(self) -> None:
        self.curl: Any = None
        self.started = False
        self.stop = False

    def abort(self) -> None:
        """End the transfer now: the write callback refuses the next chunk, and the socket is
        shut down so a silent upstream fails at once instead of at the read timeout."""
        self.stop = True
        curl = self.curl
        if curl is not None:
            _shutdown_active_socket(curl)


def _shutdown_active_socket(curl: Any) -> None:
    """Shut down both directions of a curl handle's connection (curl only checks its quit flag
    when data arrives); grok.com sees the close at once."""
    with contextlib.suppress(Exception):
        from curl_cffi.const import CurlInfo

        fd = curl.getinfo(CurlInfo.ACTIVESOCKET)
        if isinstance(fd, int) and fd >= 0:
            dup = socket.socket(fileno=os.dup(fd))
            try:
                dup.shutdown(socket.SHUT_RDWR)
            finally:
                dup.close()


def _readiness_of(raw: Any) -> Callable[[float | None], bool] | None:
    """A `wait_readable` for a urllib3 response body, or None when it cannot be told safely.

    Bytes can be waiting in three places before the socket: urllib3's decoded buffer,
    http.client's BufferedReader and (over TLS) OpenSSL's record buffer. A socket timeout cannot
    be used to wait instead: it leaves the BufferedReader unusable. So the reader's own buffer
    is peeked with the socket briefly non-blocking (peek never consumes, and a read that would
    block raises before touching the buffer), and only when nothing is buffered anywhere does
    poll() wait for the socket. A compressed body is left to the reader thread: its decoder can
    hold output that no peek sees.
    """
    try:
        decoded = raw._decoded_buffer
        http_response = raw._fp
    except AttributeError:
        return None
    sock = _body_socket(raw)
    if sock is None or http_response is None or raw.headers.get("content-encoding"):
        return None
    poller = select.poll()  # gevent's cooperative poll once the worker is monkey-patched
    poller.register(sock, select.POLLIN)

    def wait_readable(timeout: float | None) -> bool:
        fp = getattr(http_response, "fp", None)
        if len(decoded) or fp is None:
            return True  # buffered, or closed: the read returns (or fails) at once
        blocking = sock.gettimeout()
        try:
            sock.settimeout(0)
            if _body_ready(http_response, fp.peek(1)):
                return True
        except (BlockingIOError, ssl.SSLWantReadError):
            pass  # nothing buffered and nothing on the socket yet
        except (OSError, ValueError):
            return True  # broken or closed: the read reports it
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(blocking)
        if timeout is not None and timeout <= 0:
            return False
        try:
            return bool(poller.poll(None if timeout is None else timeout * 1000))
        except (OSError, ValueError):
            return True

    return wait_readable


def _body_socket(raw: Any) -> socket.socket | None:
    """The socket a urllib3 response body is read from: the connection's, or (when the answer
    ends with the connection, which http.client then lets go of) its reader's own."""
    connection = getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None:
        reader = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(reader, "raw", None), "_sock", None)
    return sock if hasattr(sock, "fileno") else None


def _body_ready(http_response: Any, buffered: bytes) -> bool:
    """Whether http.client can return body bytes from `buffered` without another socket read.

    A chunked body's reads stop at each chunk's end, so the buffer often holds just the chunk's
    closing CRLF, or part of the next size line: reading on would block until the next chunk.
    """
    if not buffered:
        return False
    left = getattr(http_response, "chunk_left", None)
    if not getattr(http_response, "chunked", False) or left:
        return True
    if left == 0:  # after a chunk: its CRLF, then the next size line
        buffered = buffered[2:]
    end = buffered.find(b"\n")
    if end < 0:
        return False
    try:
        size = int(buffered[:end].split(b";", 1)[0].strip(), 16)
    except ValueError:
        return True  # a broken size line: the read reports it
    rest = buffered[end + 1 :]
    # The last chunk (size 0) is followed by trailer lines up to an empty one.
    return bool(rest) if size else b"\n" in rest


class _Started:
    """The response of a request sent on another thread, or its failure, or a timeout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._response: Any = None
        self._error: BaseException | None = None
        self._abandoned = False

    def set(self, response: Any) -> None:
        with self._lock:
            self._response = response
            abandoned = self._abandoned
            self._done.set()
        if abandoned:  # nobody waits for it any more: let the transfer go
            with contextlib.suppress(Exception):
                response.close()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            self._error = error
            self._done.set()

    def wait(self, seconds: float) -> Any:
        if not self._done.wait(seconds):
            with self._lock:
                if not self._done.is_set():
                    self._abandoned = True
                    raise TimeoutError(f"no answer within {seconds:g} s")
        if self._error is not None:
            raise self._error
        return self._response


def budgeted(timeout: tuple[float, float], deadline: float | None) -> tuple[float, float]:
    """(connect, first byte) cut to what is left before `deadline`; none left is a timeout."""
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise UpstreamTimeout("the request's time budget for grok.com ran out")
    return (min(timeout[0], left), min(timeout[1], left))


def make_requests_session() -> requests.Session:
    """A requests.Session with a large connection pool, no retries, no env proxies, no cookies."""
    session = requests.Session()
    session.trust_env = False  # proxies come from PROXY_URL_POOL only, never from the env
    session.cookies = _block_all_cookies()
    adapter = HTTPAdapter(pool_connections=32, pool_maxsize=POOL_SIZE, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


_transports: dict[tuple, Transport] = {}
_transports_lock = threading.Lock()


def get_transport(settings: GrokSettings) -> Transport:
    """The shared Transport for these settings in this process (recreated after a fork)."""
    key = (
        os.getpid(),
        settings.impersonate,
        settings.proxy_urls,
        settings.connect_timeout,
        settings.first_byte_timeout,
        settings.read_timeout,
    )
    with _transports_lock:
        transport = _transports.get(key)
        if transport is None:
            transport = _transports[key] = Transport(settings)
        return transport
