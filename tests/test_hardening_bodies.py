"""Request bodies: a 413 past MAX_REQUEST_BYTES in every framing, bounded reads, bounded nesting."""

from __future__ import annotations

import io
import json
import socket
from urllib.parse import urlsplit

import pytest
from test_server import gunicorn

from conftest import ADMIN_PASSWORD, POOL_KEY

LIMIT = 4096
POOL = {"Authorization": f"Bearer {POOL_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_PASSWORD}"}
# Every route that reads a JSON body, with the credential it needs.
JSON_ROUTES = [
    ("/v1/chat/completions", POOL),
    ("/api/batch-add-grok-token", ADMIN),
    ("/api/get-grok-list", ADMIN),
    ("/api/delete-grok-token", ADMIN),
    ("/api/login", ADMIN),
    ("/api/login-v2", ADMIN),
]


class CountingStream(io.RawIOBase):
    """An endless body that remembers how much of it was read."""

    def __init__(self):
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        buffer[: len(buffer)] = b" " * len(buffer)
        self.read_bytes += len(buffer)
        return len(buffer)


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()["error"]


def padded(size: int) -> bytes:
    """A valid chat body of exactly `size` bytes."""
    body = json.dumps({"model": "grok-3", "messages": [{"role": "user", "content": ""}]})
    return body.replace('"content": ""', '"content": "' + "x" * (size - len(body)) + '"').encode()


def raw_request(url: str, path: str, head: dict[str, str], body_parts: list[bytes]) -> bytes:
    """Send one request over a socket (whatever framing the parts make); return the answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in head.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            for part in body_parts:
                sock.sendall(part)
            # werkzeug's dev server drains unread input until EOF before it closes: say we are done.
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything: that is allowed
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


def chunked(data: bytes, size: int = 1000) -> list[bytes]:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]


@pytest.fixture
def small(make_app):
    return make_app(MAX_REQUEST_BYTES=LIMIT)


@pytest.mark.parametrize(("path", "auth"), JSON_ROUTES)
def test_a_content_length_over_the_limit_is_a_413_on_every_json_route(small, path, auth):
    body = b'{"a": "' + b"x" * LIMIT + b'"}'
    response = small.test_client().post(
        path, data=body, content_type="application/json", headers=auth
    )
    assert error_of(response, 413)["code"] == "request_too_large"


@pytest.mark.parametrize(("path", "auth"), JSON_ROUTES)
def test_a_streamed_body_over_the_limit_is_a_413_and_read_one_byte_past_it(small, path, auth):
    # A server that terminates the stream itself (chunked input) passes no Content-Length.
    stream = CountingStream()
    response = small.test_client().post(
        path,
        content_type="application/json",
        headers=auth,
        environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True},
    )
    assert error_of(response, 413)["code"] == "request_too_large"
    assert stream.read_bytes <= LIMIT + 1 + 64 * 1024  # at most one read buffer past the limit


def test_a_body_of_exactly_the_limit_is_read_in_both_framings(small):
    client = small.test_client()
    body = padded(LIMIT)
    # Valid JSON of exactly LIMIT bytes passes the size check and reaches model lookup.
    sized = client.post(
        "/v1/chat/completions",
        data=body.replace(b"grok-3", b"nomodl"),
        content_type="application/json",
        headers=POOL,
    )
    assert error_of(sized, 404)["code"] == "model_not_found"
    streamed = client.post(
        "/v1/chat/completions",
        content_type="application/json",
        headers=POOL,
        environ_overrides={
            "wsgi.input": io.BytesIO(body.replace(b"grok-3", b"nomodl")),
            "wsgi.input_terminated": True,
        },
    )
    assert error_of(streamed, 404)["code"] == "model_not_found"


def test_a_chunked_body_over_the_limit_is_a_413_under_the_werkzeug_server(small, serve):
    url = serve(small)
    head = {
        "Authorization": POOL["Authorization"],
        "Content-Type": "application/json",
        "Transfer-Encoding": "chunked",
    }
    answer = raw_request(url, "/v1/chat/completions", head, chunked(padded(LIMIT * 3)))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"request_too_large"' in answer


def test_a_chunked_body_over_the_limit_is_a_413_under_gunicorn(tmp_path, repo_root):
    env = {"MAX_REQUEST_BYTES": str(LIMIT), "AUTHORIZATION": POOL_KEY, "SECRET_KEY": "k" * 32}
    with gunicorn(tmp_path, repo_root, **env) as url:
        head = {
            "Authorization": POOL["Authorization"],
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        }
        answer = raw_request(url, "/v1/chat/completions", head, chunked(padded(LIMIT * 3)))
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b'"request_too_large"' in answer
        # No framing at all: the request has no body (RFC 9112), whatever bytes follow.
        head.pop("Transfer-Encoding")
        answer = raw_request(url, "/v1/chat/completions", head, [padded(LIMIT * 3)])
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert b"empty" in answer


@pytest.mark.parametrize(("path", "auth"), JSON_ROUTES)
@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_json_nested_a_thousand_deep_is_a_400_on_every_json_route(app, path, auth, opener):
    closer = b"]" if opener == b"[" else b"}"
    body = opener * 1000 + b"1" + closer * 1000
    response = app.test_client().post(
        path, data=body, content_type="application/json", headers=auth
    )
    error = error_of(response, 400)
    assert error["code"] == "json_too_deep"
    assert "100 levels" in error["message"]


def test_brackets_inside_strings_are_not_nesting(app):
    text = '[{"\\"[' * 2000
    body = {"model": "nomodel", "messages": [{"role": "user", "content": text}]}
    response = app.test_client().post("/v1/chat/completions", json=body, headers=POOL)
    assert error_of(response, 404)["code"] == "model_not_found"


def test_a_chunk_cut_short_is_a_400_and_never_reads_past_what_was_sent(make_app, serve):
    from flask import jsonify

    from grokproxy.bodies import read_body

    app = make_app(MAX_REQUEST_BYTES=LIMIT)

    @app.post("/_test/body-length")
    def body_length():
        return jsonify(length=len(read_body()))

    url = serve(app)
    head = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    # The chunk announces 1 MiB and three bytes arrive: werkzeug's dechunker used to report
    # 64 KiB per read, copied from past its buffer: heap bytes up to the limit (a 413 here), or
    # a segfault.
    for _ in range(20):
        answer = raw_request(url, "/_test/body-length", head, [b"100000\r\nabc"])
        assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
        assert b'"error"' in answer
    whole = raw_request(url, "/_test/body-length", head, chunked(b"x" * 3000, 7))
    assert whole.startswith(b"HTTP/1.1 200") and b'"length":3000' in whole.replace(b" ", b"")
