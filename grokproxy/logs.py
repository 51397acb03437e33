"""grokproxy's logging: one handler and one format, secrets scrubbed, a request id on each line.

Every record reaches stderr once, through one handler on the root logger (Flask's own handler and
alembic's are kept out), in gunicorn's error-log format plus the logger name and the request id.
A WSGI middleware gives each request an id (the client's `X-Request-Id` when it is sane), echoes
it, and writes one summary line at the end of each chat request, when its body is closed.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask, g, has_request_context, request

# JWTs (sso cookies are HS256 JWTs), cookie pairs, bearer credentials, sk- keys, login links.
SECRET_PATTERNS = (
    re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]{4,}"),
    re.compile(r"(?i)\b(sso(?:-rw)?|cf_clearance)=[^;\s\"']+"),
    re.compile(r"(?i)\bbearer\s+[^\s\"',]+"),
    re.compile(r"\bsk-[\w-]{8,}"),
    re.compile(r"/login/[\w.-]{16,}"),
)

LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] [%(request_id)s] %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"  # gunicorn's, so its lines and ours read alike
REQUEST_ID_HEADER = "X-Request-Id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
NO_REQUEST = "-"

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("grokproxy_request_id")
request_log = logging.getLogger("grokproxy.request")


def redact(text: str) -> str:
    """Replace every secret-shaped run in `text` with a marker."""
    for pattern in SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


class RedactingFilter(logging.Filter):
    """Formats the record's message once and scrubs it before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being served (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


_FILTER = RedactingFilter()
_REQUEST_ID_FILTER = RequestIdFilter()
# Loggers that see request data. A logger's own filters do not apply to its children's records,
# so the filter also goes on every handler those records reach.
WATCHED_LOGGERS = ("", "grokproxy", "gunicorn.error", "gunicorn.access", "werkzeug")


def current_request_id() -> str:
    """The id of the request this thread serves, or `-`."""
    if has_request_context():
        request_id = g.get("request_id")
        if request_id:
            return request_id
    return _request_id.get(NO_REQUEST)


def request_id_from(value: str | None) -> str:
    """The client's request id when it is short and plain, else a fresh one."""
    if value and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def install_logging(level: str) -> None:
    """One stderr handler on the root logger (replacing an earlier one of ours); level for ours."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "grokproxy", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.grokproxy = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    root.addHandler(handler)
    logging.getLogger("grokproxy").setLevel(level)
    # alembic's own logging setup is skipped when ours is in place (migrations/env.py): keep its
    # "Running upgrade" lines, which are INFO.
    alembic = logging.getLogger("alembic.runtime.migration")
    if alembic.level == logging.NOTSET:
        alembic.setLevel(logging.INFO)
    install_redaction()


def install_redaction() -> None:
    """Attach the secret and request-id filters to the watched loggers and all their handlers."""
    for name in WATCHED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            for one in (_FILTER, _REQUEST_ID_FILTER):
                if one not in handler.filters:
                    handler.addFilter(one)


def note_model(model: str) -> None:
    """Record the model a chat request asked for, for its summary log line."""
    g.served = {**(g.get("served") or {}), "model": model[:100]}


def note_served(account_id: int | None, token_preview: str, model: str) -> None:
    """Record which account served this request, for its summary log line (never the token)."""
    g.served = {"account_id": account_id, "token_preview": token_preview, "model": model}


def _collect_served(response: Any) -> Any:
    """after_request: hand what the views noted to the middleware, which logs after the body.

    Never reads the body itself: a request refused before its body was read (a bad key, a body
    over the limit) must stay unread."""
    if request.path in CHAT_PATHS:
        request.environ["grokproxy.served"] = dict(g.get("served") or {})
    return response


class RequestLog:
    """WSGI middleware: request ids in and out, one summary line per chat request at its end."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        started = time.monotonic()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ["grokproxy.request_id"] = request_id
        # Left set after the request: the server's access line, written after the body is
        # closed, still carries it; the next request on this thread sets its own.
        _request_id.set(request_id)
        status: list[str] = []

        def start(code: str, headers: list[tuple[str, str]], exc_info: Any = None):
            status[:] = [code]
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(code, headers, exc_info)

        body = self.app(environ, start)
        if environ.get("PATH_INFO") not in CHAT_PATHS or environ.get("REQUEST_METHOD") != "POST":
            return body
        return _TimedBody(body, environ, started, status)


class _TimedBody:
    """The chat response's iterable: notes the first byte, logs the summary when closed."""

    def __init__(self, body: Iterable[bytes], environ: dict[str, Any], started: float, status):
        self.body = body
        self.environ = environ
        self.started = started
        self.status = status
        self.first_byte: float | None = None
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.body:
            if self.first_byte is None and chunk:
                self.first_byte = time.monotonic()
            yield chunk

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self._log()

    def _log(self) -> None:
        ended = time.monotonic()
        served = self.environ.get("grokproxy.served") or {}
        account = served.get("account_id")
        ttfb = "-" if self.first_byte is None else f"{(self.first_byte - self.started) * 1000:.0f}"
        request_log.info(
            "chat %s model=%s status=%s account=%s token=%s ttfb_ms=%s total_ms=%.0f",
            self.environ.get("PATH_INFO"),
            served.get("model") or "-",
            (self.status[0].split(" ", 1)[0] if self.status else "-"),
            "-" if account is None else account,
            served.get("token_preview") or "-",
            ttfb,
            (ended - self.started) * 1000,
            extra={"request_id": self.environ.get("grokproxy.request_id", NO_REQUEST)},
        )


def init_app(app: Flask) -> None:
    """Logging for one app: handler, level, filters, request ids and chat summary lines."""
    install_logging(app.config["LOG_LEVEL"])
    # Only now: with a handler on the root logger Flask adds no stderr handler of its own.
    app.logger.setLevel(app.config["LOG_LEVEL"])

    @app.before_request
    def _request_id_on_g() -> None:
        g.request_id = request.environ.get("grokproxy.request_id") or request_id_from(None)

    app.after_request(_collect_served)
    app.wsgi_app = RequestLog(app.wsgi_app)  # type: ignore[method-assign]
