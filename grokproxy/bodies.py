"""Request bodies: read at most MAX_REQUEST_BYTES in any framing, JSON nested a bounded depth.

Every route with a body reads it through `read_body` (and JSON through `json_body` /
`parse_json`), always after the caller was authenticated, so an anonymous request never costs a
body read. Beyond the limit the answer is a 413 whether the body came with a Content-Length,
chunked, or (under a server that terminates the stream) until EOF: werkzeug refuses an oversized
Content-Length before reading, and a stream is read to one byte past the limit, never further.
A request with neither Content-Length nor chunked framing has no body (RFC 9112 §6.3).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import BadRequest

# Deeper than any real request (tool JSON schemas included), far below where Python's
# recursive JSON decoder runs out of stack.
MAX_JSON_DEPTH = 100

# A JSON string, so that brackets inside strings are not counted as nesting.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
for _opener in b"[{":
    _STEP[_opener] = 1
for _closer in b"]}":
    _STEP[_closer] = -1


class _WholeReads:
    """The werkzeug dev server's socket file, made to fail when a chunk is cut short.

    Its DechunkedInput writes a short read into the caller's bytearray (which shrinks) yet
    reports the full chunk length: CPython then copies that many bytes from past the buffer, so
    a truncated chunked body read heap memory or crashed the process (found by bench/fuzz.py).
    """

    def __init__(self, rfile):
        self._rfile = rfile

    def read(self, size: int = -1) -> bytes:
        data = self._rfile.read(size)
        if size is not None and size >= 0 and len(data) < size:
            raise OSError("the chunked body ended inside a chunk")
        return data

    def readline(self, size: int = -1) -> bytes:
        return self._rfile.readline(size)


def _guard_dev_server_dechunking() -> None:
    from werkzeug.serving import DechunkedInput

    stream = request.environ.get("wsgi.input")
    rfile = getattr(stream, "_rfile", None)
    if (
        isinstance(stream, DechunkedInput)
        and rfile is not None
        and not isinstance(rfile, _WholeReads)
    ):
        stream._rfile = _WholeReads(rfile)


def read_body() -> bytes:
    """The raw request body; 413 `request_too_large` when it exceeds MAX_REQUEST_BYTES."""
    limit = current_app.config["MAX_REQUEST_BYTES"]
    _guard_dev_server_dechunking()
    if "stream" not in request.__dict__:
        # One byte of slack: werkzeug's capped stream stops silently at its limit, so reading one
        # byte past ours is how a chunked body that is too large tells itself apart.
        request.max_content_length = limit + 1
    data = request.get_data(cache=True)
    if len(data) > limit:
        raise RequestEntityTooLarge()
    return data


def nests_deeper_than(data: bytes, limit: int) -> bool:
    """True when arrays and objects in `data` nest more than `limit` deep (strings ignored)."""
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False  # cannot nest deeper than it has openers: the common case, no scan
    return max(accumulate(map(_STEP.__getitem__, brackets))) > limit


def parse_json(data: bytes) -> Any:
    """Decode a JSON body; 400 when it is not JSON or nests deeper than MAX_JSON_DEPTH."""
    if nests_deeper_than(data, MAX_JSON_DEPTH):
        raise BadRequest(
            f"the request body nests arrays or objects deeper than {MAX_JSON_DEPTH} levels",
            code="json_too_deep",
        )
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise BadRequest("the request body is not valid JSON", code="invalid_json") from None


def json_body(empty_message: str) -> Any:
    """The request body decoded as JSON whatever its Content-Type; 400 `empty_message` if none."""
    data = read_body()
    if not data.strip():
        raise BadRequest(empty_message)
    return parse_json(data)
