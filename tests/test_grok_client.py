"""GrokClient and its transports against tiny local servers (no emulator, no network)."""

from __future__ import annotations

import base64
import http.client
import json
import select
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from grokproxy.grok.client import GrokClient, ImageDownloadError, Quota, UpstreamReply
from grokproxy.grok.errors import (
    CloudflareChallenge,
    ConversationNotFound,
    InvalidCredentials,
    RateLimited,
    UpstreamBroken,
)
from grokproxy.grok.events import (
    ConversationStarted,
    Heartbeat,
    ReplyFinished,
    StreamEnd,
    TextDelta,
)
from grokproxy.grok.settings import GrokSettings
from grokproxy.grok.transport import ProxyRotator, Transport, UpstreamResponse

from conftest import reply_events, sample_bytes

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzZXNzaW9uX2lkIjoidGVzdCJ9.c2lnbmF0dXJl"
TRANSPORTS = [None, "chrome136"]  # plain requests, curl_cffi impersonation
JSON = "application/json"


def first_line(name: str) -> bytes:
    body = sample_bytes(name)
    return body.strip().splitlines()[0] if name.endswith("ndjson") else body


class FakeGrok:
    """State shared with the handler: what was asked, and when clients hung up."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.disconnected = threading.Event()
        self.routes: dict[str, tuple[int, str, bytes]] = {}
        self.resume = threading.Event()  # ends the pause of a /pause stream


def make_handler(fake: FakeGrok) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _record(self) -> bytes:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            fake.requests.append(
                {"method": self.command, "path": self.path, "headers": dict(self.headers),
                 "body": body}
            )  # fmt: skip
            return body

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._record()
            self._route()

        def do_POST(self) -> None:
            self._record()
            self._route()

        def _route(self) -> None:
            path = urlsplit(self.path).path
            if path in fake.routes:
                self._send(*fake.routes[path])
                return
            if "/stall" in path:
                self._stall()
                return
            if "/pause" in path:
                self._pause()
                return
            self._send(404, "application/json", b'{"error":{"code":5,"message":"not found"}}')

        def _stall(self) -> None:
            # Headers and one frame, then silence until the client hangs up (at most 10 s).
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(first_line("real-capture-2026-03-08-new-conversation-auto.ndjson"))
            self.wfile.write(b"\n")
            self.wfile.flush()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ready, _, _ = select.select([self.connection], [], [], 0.05)
                if ready and not self.connection.recv(1):
                    fake.disconnected.set()
                    return

        def _pause(self) -> None:
            # A chunked HTTP/1.1 stream, one frame per chunk: the first, a silence until the
            # test resumes it (the first chunk's closing CRLF already sent), then the rest.
            lines = CAPTURE.strip().splitlines(keepends=True)
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            self.wfile.write(b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")

            def chunk(data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            chunk(lines[0])
            fake.resume.wait(10)
            for line in lines[1:]:
                chunk(line)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler


@pytest.fixture
def fake_grok() -> Iterator[tuple[FakeGrok, str]]:
    fake = FakeGrok()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def client_for(base_url: str, impersonate: str | None = None, **extra: Any) -> GrokClient:
    settings = GrokSettings(
        base_url=base_url,
        assets_url=base_url + "/assets",
        impersonate=impersonate,
        connect_timeout=2.0,
        read_timeout=15.0,
        **extra,
    )
    return GrokClient(settings, Transport(settings))


CAPTURE = sample_bytes("real-capture-2026-03-08-new-conversation-auto.ndjson")


# ---- chat streams ---------------------------------------------------------------------------


@pytest.mark.parametrize("impersonate", TRANSPORTS)
def test_open_chat_streams_the_capture_and_sends_browser_headers(fake_grok, impersonate):
    fake, url = fake_grok
    fake.routes["/rest/app-chat/conversations/new"] = (200, "application/json", CAPTURE)
    client = client_for(url, impersonate, statsig_id="c3RhdA==")
    reply = client.open_chat(f"sso={TOKEN};", {"message": "hi", "modeId": "fast"})
    events = list(reply_events(reply))
    assert isinstance(events[0], ConversationStarted)
    assert isinstance(events[-1], type(events[-1]))  # TitleChanged ends the capture
    finished = next(e for e in events if isinstance(e, ReplyFinished))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == finished.message
    sent = fake.requests[-1]
    assert json.loads(sent["body"]) == {"message": "hi", "modeId": "fast"}
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert headers["cookie"] == f"sso={TOKEN}; sso-rw={TOKEN}"
    assert headers["x-statsig-id"] == "c3RhdA=="
    assert headers["origin"] == url and headers["user-agent"].startswith("Mozilla/5.0")
    assert len(headers["x-xai-request-id"]) == 36


def test_continuation_posts_to_the_conversation_responses(fake_grok):
    fake, url = fake_grok
    flat = b"".join(
        json.dumps(x).encode() + b"\n"
        for x in (
            {"result": {"token": "ok", "responseId": "a2"}},
            {"result": {"modelResponse": {"responseId": "a2", "message": "ok"}}},
        )
    )
    fake.routes["/rest/app-chat/conversations/c-1/responses"] = (200, "application/json", flat)
    reply = client_for(url).open_chat(TOKEN, {"message": "x"}, conversation_id="c-1")
    events = list(reply_events(reply))
    assert events[-2:] == [StreamEnd(), ReplyFinished("a2", "ok", None, ())]
    assert fake.requests[-1]["headers"]["Referer"].endswith("/c/c-1")


@pytest.mark.parametrize(
    ("status", "ctype", "body", "cls"),
    [
        (429, JSON, sample_bytes("error-too-many-requests-code8.json"), RateLimited),
        (403, JSON, sample_bytes("error-invalid-sso-code16.json"), InvalidCredentials),
        (403, "text/html", b"<html><title>Just a moment...</title></html>", CloudflareChallenge),
        (200, "text/html", b"<html><title>Just a moment...</title></html>", CloudflareChallenge),
        (404, "application/json", b'{"error":{"code":5,"message":"nope"}}', ConversationNotFound),
        (500, "text/plain", b"boom", UpstreamBroken),
    ],
)
@pytest.mark.parametrize("impersonate", TRANSPORTS)
def test_non_2xx_answers_raise_classified_errors(fake_grok, impersonate, status, ctype, body, cls):
    fake, url = fake_grok
    fake.routes["/rest/app-chat/conversations/new"] = (status, ctype, body)
    with pytest.raises(cls) as info:
        client_for(url, impersonate).open_chat(TOKEN, {"message": "x"})
    assert TOKEN not in str(info.value)


def test_in_band_error_with_http_200_raises_while_iterating(fake_grok):
    fake, url = fake_grok
    fake.routes["/rest/app-chat/conversations/new"] = (
        200, "application/json", sample_bytes("error-usage-limit-in-stream.json"),
    )  # fmt: skip
    reply = client_for(url).open_chat(TOKEN, {"message": "x"})
    with pytest.raises(RateLimited):
        list(reply_events(reply))


def test_connection_refused_is_upstream_broken_without_secrets():
    client = client_for("http://127.0.0.1:9", proxy_urls=())
    with pytest.raises(UpstreamBroken) as info:
        client.open_chat(TOKEN, {"message": "x"})
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("impersonate", TRANSPORTS)
def test_close_from_another_thread_unblocks_the_reader_and_drops_the_connection(
    fake_grok, impersonate
):
    fake, url = fake_grok
    reply = client_for(url, impersonate).open_chat(TOKEN, {"message": "x"}, conversation_id="stall")
    fake.requests.clear()
    seen: list[Any] = []
    done = threading.Event()

    def consume() -> None:
        try:
            for event in reply_events(reply):
                seen.append(event)
        finally:
            done.set()

    threading.Thread(target=consume, daemon=True).start()
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert isinstance(seen[0], ConversationStarted)
    started = time.monotonic()
    reply.close()
    assert done.wait(2.0), "reader still blocked after close()"
    assert fake.disconnected.wait(2.0), "upstream did not see the connection close"
    assert time.monotonic() - started < 1.5
    assert reply.closed


@pytest.mark.parametrize("impersonate", TRANSPORTS)
def test_heartbeats_flow_while_upstream_is_silent_and_generator_close_hangs_up(
    fake_grok, impersonate
):
    fake, url = fake_grok
    reply = client_for(url, impersonate).open_chat(TOKEN, {"message": "x"}, conversation_id="stall")
    stream = reply_events(reply, heartbeat=0.2)
    assert isinstance(next(stream), ConversationStarted)
    started = time.monotonic()
    assert isinstance(next(stream), Heartbeat)
    assert isinstance(next(stream), Heartbeat)
    assert time.monotonic() - started < 1.5
    stream.close()  # what Flask does when the HTTP client hangs up (GeneratorExit)
    assert fake.disconnected.wait(2.0)
    assert reply.closed


@pytest.mark.parametrize("impersonate", TRANSPORTS)
def test_heartbeats_flow_between_chunks_of_a_chunked_stream_and_the_rest_follows(
    fake_grok, impersonate
):
    # A silence right after a chunk (only its closing CRLF buffered) must not block the read.
    fake, url = fake_grok
    reply = client_for(url, impersonate).open_chat(TOKEN, {"message": "x"}, conversation_id="pause")
    stream = reply_events(reply, heartbeat=0.1)
    assert isinstance(next(stream), ConversationStarted)
    assert isinstance(next(stream), Heartbeat)
    assert isinstance(next(stream), Heartbeat)
    fake.resume.set()
    rest = [event for event in stream if not isinstance(event, Heartbeat)]
    whole = client_for(url, impersonate).open_chat(TOKEN, {"message": "x"}, conversation_id="pause")
    expected = [e for e in reply_events(whole) if not isinstance(e, ConversationStarted)]
    assert rest == expected
    assert not reply.closed  # read to its end, not cut off


def test_plain_http_stream_is_read_without_a_reader_thread(fake_grok):
    # The requests transport waits for its socket on the consumer's thread (no hand-off).
    fake, url = fake_grok
    reply = client_for(url).open_chat(TOKEN, {"message": "x"}, conversation_id="stall")
    stream = reply_events(reply, heartbeat=0.1)
    assert isinstance(next(stream), ConversationStarted)
    assert isinstance(next(stream), Heartbeat)
    assert not [t for t in threading.enumerate() if t.name == "grok-stream-reader"]
    stream.close()
    assert fake.disconnected.wait(2.0)
    assert reply.closed


# ---- account calls ----------------------------------------------------------------------------


def session_bodies() -> list[bytes]:
    text = sample_bytes("auth-session-responses.jsonl").decode()
    lines = text.splitlines()
    single = [line.encode() for line in lines[:5]]
    return [*single, "\n".join(lines[5:]).encode()]


@pytest.mark.parametrize(
    ("index", "outcome"),
    [
        (0, InvalidCredentials),  # blocked
        (1, InvalidCredentials),  # blocked, even with an e-mail
        (2, InvalidCredentials),  # unauthenticated
        (3, InvalidCredentials),
        (4, UpstreamBroken),  # {}: no identity, not proof the token is dead
        (5, ("a@example.com", "user-1")),
    ],
)
def test_auth_session_parses_every_sample_body(fake_grok, index, outcome):
    fake, url = fake_grok
    fake.routes["/api/auth/session"] = (200, "application/json", session_bodies()[index])
    client = client_for(url)
    if isinstance(outcome, tuple):
        identity = client.auth_session(TOKEN)
        assert (identity.email, identity.user_id) == outcome
        assert fake.requests[-1]["method"] == "GET"
    else:
        with pytest.raises(outcome):
            client.auth_session(TOKEN)


def test_auth_session_falls_back_to_user_email(fake_grok):
    fake, url = fake_grok
    body = b'{"status":"authenticated","user":{"id":"u9","email":"b@example.com"}}'
    fake.routes["/api/auth/session"] = (200, "application/json", body)
    identity = client_for(url).auth_session(TOKEN)
    assert (identity.email, identity.user_id) == ("b@example.com", "u9")


def test_rate_limits_reads_the_e3_shape(fake_grok):
    fake, url = fake_grok
    fake.routes["/rest/rate-limits"] = (
        200, "application/json", sample_bytes("rate-limits-response-mode-auto-era.json"),
    )  # fmt: skip
    quota = client_for(url).rate_limits(TOKEN, "fast")
    assert quota == Quota(remaining=20, total=20, window_seconds=72000, wait_seconds=None)
    assert json.loads(fake.requests[-1]["body"]) == {"modelName": "fast"}


def test_rate_limits_reads_the_late_2025_shape(fake_grok):
    fake, url = fake_grok
    body = {
        "windowSizeSeconds": 7200,
        "remainingTokens": 0,
        "totalTokens": 80,
        "waitTimeSeconds": 345,
        "lowEffortRateLimits": {"remainingQueries": 0, "cost": 1},
    }
    fake.routes["/rest/rate-limits"] = (200, "application/json", json.dumps(body).encode())
    assert client_for(url).rate_limits(TOKEN, "grok-4") == Quota(0, 80, 7200, 345.0)  # fmt: skip


def test_upload_falls_back_to_the_json_route_when_v2_answers_404(fake_grok):
    fake, url = fake_grok
    fake.routes["/rest/app-chat/upload-file"] = (
        200, "application/json", b'{"fileMetadataId":"file-1","fileUri":"users/u/file-1"}',
    )  # fmt: skip
    file_id = client_for(url).upload_file(TOKEN, "a.png", "image/png", b"\x89PNGdata")
    assert file_id == "file-1"
    assert [r["path"] for r in fake.requests] == [
        "/http/upload-file-v2/direct",
        "/rest/app-chat/upload-file",
    ]
    sent = json.loads(fake.requests[-1]["body"])
    assert sent["fileName"] == "a.png" and sent["fileMimeType"] == "image/png"
    assert base64.b64decode(sent["content"]) == b"\x89PNGdata"


@pytest.mark.parametrize("impersonate", TRANSPORTS)
def test_upload_v2_sends_multipart_and_reads_the_file_metadata(fake_grok, impersonate):
    fake, url = fake_grok
    fake.routes["/http/upload-file-v2/direct"] = (
        200, "application/json", sample_bytes("upload-file-v2-direct-response.json"),
    )  # fmt: skip
    file_id = client_for(url, impersonate).upload_file(TOKEN, "a.txt", "text/plain", b"hello")
    assert file_id == "file_meta_1"
    (sent,) = fake.requests
    assert sent["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="a.txt"' in sent["body"]
    assert b"Content-Type: text/plain" in sent["body"] and b"\r\n\r\nhello\r\n" in sent["body"]


@pytest.mark.parametrize(
    "v2",
    [
        (404, "application/json", b'{"error":{"code":5,"message":"not found"}}'),
        (500, "text/plain", b"upstream exploded"),
        (200, "application/json", b"{}"),
    ],
)
def test_upload_failures_are_upstream_broken_never_not_found(fake_grok, v2):
    fake, url = fake_grok
    fake.routes["/http/upload-file-v2/direct"] = v2
    with pytest.raises(UpstreamBroken) as caught:
        client_for(url).upload_file(TOKEN, "a.png", "image/png", b"x")
    assert not isinstance(caught.value, ConversationNotFound)
    assert TOKEN not in str(caught.value)


def test_upload_5xx_does_not_fall_back(fake_grok):
    fake, url = fake_grok
    fake.routes["/http/upload-file-v2/direct"] = (503, "text/plain", b"busy")
    with pytest.raises(UpstreamBroken):
        client_for(url).upload_file(TOKEN, "a.png", "image/png", b"x")
    assert [r["path"] for r in fake.requests] == ["/http/upload-file-v2/direct"]


@pytest.mark.parametrize(
    ("terminal", "cls"),
    [
        ({"code": 8, "message": "Too many requests"}, RateLimited),
        ({"code": 16, "message": "[WKE=unauthenticated:invalid-credentials]"}, InvalidCredentials),
        ("file type not allowed", UpstreamBroken),
    ],
)
def test_upload_terminal_error_is_classified(fake_grok, terminal, cls):
    fake, url = fake_grok
    body = json.dumps({"terminalError": terminal}).encode()
    fake.routes["/http/upload-file-v2/direct"] = (200, "application/json", body)
    with pytest.raises(cls):
        client_for(url).upload_file(TOKEN, "a.png", "image/png", b"x")


def test_fetch_asset_streams_with_the_cookie(fake_grok):
    fake, url = fake_grok
    fake.routes["/assets/users/u/img.jpg"] = (200, "image/jpeg", b"\xff\xd8\xffjpeg")
    asset = client_for(url).fetch_asset(TOKEN, "users/u/img.jpg")
    assert (asset.status, asset.content_type, asset.content_length) == (200, "image/jpeg", 7)
    assert b"".join(asset.chunks) == b"\xff\xd8\xffjpeg"
    asset.close()
    assert fake.requests[-1]["headers"]["Cookie"].startswith(f"sso={TOKEN}")
    with pytest.raises(ValueError):
        client_for(url).fetch_asset(TOKEN, "../etc/passwd")


# ---- client-supplied image URLs ----------------------------------------------------------------


def test_download_image_fetches_and_limits_size(fake_grok):
    fake, url = fake_grok
    png = b"\x89PNG" + b"0" * 100
    fake.routes["/img.png"] = (200, "image/png", png)
    fake.routes["/page"] = (200, "text/html", b"<html></html>")
    client = client_for(url)
    image = client.download_image(url + "/img.png", 1000, allow_private=True)
    assert (image.data, image.content_type) == (png, "image/png")
    with pytest.raises(ImageDownloadError, match="larger"):
        client.download_image(url + "/img.png", 50, allow_private=True)
    with pytest.raises(ImageDownloadError, match="not return an image"):
        client.download_image(url + "/page", 1000, allow_private=True)


@pytest.mark.parametrize(
    "bad", ["ftp://example.com/a.png", "file:///etc/passwd", "http://127.0.0.1/a.png",
            "http://169.254.169.254/latest", "http://[::1]/x", "http://10.1.2.3/x"],
)  # fmt: skip
def test_download_image_refuses_other_schemes_and_private_hosts(bad):
    with pytest.raises(ImageDownloadError):
        client_for("http://127.0.0.1:9").download_image(bad, 1000)


# ---- transport details ---------------------------------------------------------------------


def test_proxy_rotator_goes_round_robin_and_skips_blocked_proxies():
    rotator = ProxyRotator(("http://a:1", "http://b:2", "socks5h://c:3"))
    assert [rotator.next() for _ in range(6)] == ["http://a:1", "http://b:2", "socks5h://c:3"] * 2
    rotator.penalize("http://b:2")
    assert "http://b:2" not in {rotator.next() for _ in range(6)}
    assert ProxyRotator(()).next() is None


def test_requests_transport_passes_the_rotated_proxy_for_both_schemes(monkeypatch):
    settings = GrokSettings(proxy_urls=("socks5h://p1:1080", "http://p2:8080"))
    transport = Transport(settings)
    seen: list[dict] = []

    def fake_request(method, url, **kw):
        seen.append(kw["proxies"])
        raise OSError("stop here")

    monkeypatch.setattr(transport._session, "request", fake_request)
    for _ in range(3):
        with pytest.raises(UpstreamBroken):
            transport.request("GET", "https://grok.com/x", headers={})
    assert seen == [
        {"http": "socks5h://p1:1080", "https": "socks5h://p1:1080"},
        {"http": "http://p2:8080", "https": "http://p2:8080"},
        {"http": "socks5h://p1:1080", "https": "socks5h://p1:1080"},
    ]


class _ForwardProxy(BaseHTTPRequestHandler):
    """A minimal plain-HTTP forward proxy that remembers what went through it."""

    seen: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        type(self).seen.append(self.path)
        target = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        conn.request(self.command, target.path or "/", body=body, headers=headers)
        upstream = conn.getresponse()
        data = upstream.read()
        self.send_response(upstream.status)
        self.send_header("Content-Type", upstream.getheader("Content-Type", ""))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = _forward


@pytest.mark.parametrize("impersonate", TRANSPORTS)
def test_requests_really_go_through_a_configured_http_proxy(fake_grok, impersonate):
    fake, url = fake_grok
    fake.routes["/rest/rate-limits"] = (
        200, "application/json", sample_bytes("rate-limits-response-mode-auto-era.json"),
    )  # fmt: skip
    _ForwardProxy.seen = []
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _ForwardProxy)
    threading.Thread(target=proxy.serve_forever, args=(0.05,), daemon=True).start()
    try:
        client = client_for(url, impersonate, proxy_urls=(f"http://127.0.0.1:{proxy.server_port}",))
        assert client.rate_limits(TOKEN, "fast").remaining == 20
        assert _ForwardProxy.seen == [url + "/rest/rate-limits"]
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_impersonate_selects_curl_cffi_and_plain_uses_requests():
    assert Transport(GrokSettings()).kind == "requests"
    curl = Transport(GrokSettings(impersonate="chrome136"))
    assert curl.kind == "curl_cffi"
    from curl_cffi import requests as curl_requests

    assert isinstance(curl._curl_session, curl_requests.Session)
    assert curl._curl_session._executor._max_workers >= 64


def test_upstream_reply_close_is_idempotent():
    closed: list[bool] = []
    response = UpstreamResponse(200, {}, iter([b""]), closed.append, None)
    reply = UpstreamReply(response)
    reply.close()
    reply.close()
    assert closed == [True]
