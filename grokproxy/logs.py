"""grokproxy's logging: one handler and one format, secrets scrubbed, a request id on each line.

Every record reaches stderr once, through one handler on the root logger (Flask's own handler and
alembic's are kept out), in gunicorn's error-log format plus the logger name and the request id.
A WSGI middleware gives each request an id (the client's `X-Request-Id` when it is sane), echoes
it, records every request's metrics (grokproxy.metrics) and writes one summary line at the end of
each chat request, when its body is closed. `LOG_FORMAT=json` writes each record as one JSON
object instead.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask, g, has_request_context, request

from . import metrics

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
DATE_FORMAT_JSON = "%Y-%m-%dT%H:%M:%S%z"  # ISO 8601, what log shippers parse
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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, message (and the chat
    summary's fields when the record is one)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (the message already scrubbed by RedactingFilter)."""
        entry: dict[str, Any] = {
            "time": self.formatTime(record, DATE_FORMAT_JSON),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", NO_REQUEST),
            "pid": record.process,
            "message": record.getMessage(),
        }
        chat = getattr(record, "chat", None)
        if isinstance(chat, dict):
            entry.update(chat)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def gunicorn_json_logger() -> type:
    """gunicorn's Logger with JSON lines from its very first one (gunicorn.conf.py picks it when
    LOG_FORMAT=json; the app's own setup only comes after gunicorn has started logging)."""
    from gunicorn.glogging import Logger

    class JsonLogger(Logger):
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for handler in (*self.error_log.handlers, *self.access_log.handlers):
                handler.setFormatter(JsonFormatter())

    return JsonLogger


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


def make_formatter(style: str) -> logging.Formatter:
    """The formatter of LOG_FORMAT: `text` (gunicorn's layout) or `json` (one object a line)."""
    if style == "json":
        return JsonFormatter()
    return logging.Formatter(LOG_FORMAT, DATE_FORMAT)


def install_logging(level: str, style: str = "text") -> None:
    """One stderr handler on the root logger (replacing an earlier one of ours); level for ours.

    In `json` style gunicorn's own handlers (its error and access lines) write JSON too."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "grokproxy", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.grokproxy = True  # type: ignore[attr-defined]
    handler.setFormatter(make_formatter(style))
    root.addHandler(handler)
    if style == "json":
        for name in ("gunicorn.error", "gunicorn.access"):
            for theirs in logging.getLogger(name).handlers:
                theirs.setFormatter(JsonFormatter())
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
    """after_request: hand the middleware what it records after the body: the route (URL rule,
    never the raw path), the model label, and for a chat request what the views noted.

    Never reads the body itself: a request refused before its body was read (a bad key, a body
    over the limit) must stay unread."""
    environ = request.environ
    rule = request.url_rule
    environ["grokproxy.route"] = rule.rule if rule is not None else metrics.UNMATCHED_ROUTE
    served = dict(g.get("served") or {})
    if served.get("model"):
        environ["grokproxy.model_label"] = _model_label(served["model"])
    if request.path in CHAT_PATHS:
        environ["grokproxy.served"] = served
    return response


def _model_label(model: str) -> str:
    """A catalog name as it is; anything a client made up is `other` (bounded, never secret)."""
    from .upstream import model_catalog

    try:
        known = model_catalog().get(model) is not None
    except Exception:  # no catalog (a broken setup) must not break the answer
        known = False
    return model if known else "other"


class RequestLog:
    """WSGI middleware: request ids in and out, metrics of every request, one summary line per
    chat request at its end."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        started = time.monotonic()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ["grokproxy.request_id"] = request_id
        # Left set after the request: the server's access line, written after the body is
        # closed, still carries it; the next request on this thread sets its own.
        _request_id.set(request_id)
        chat = environ.get("PATH_INFO") in CHAT_PATHS and environ.get("REQUEST_METHOD") == "POST"
        timed = _TimedBody(environ, started, chat)

        def start(code: str, headers: list[tuple[str, str]], exc_info: Any = None):
            timed.status = code.split(" ", 1)[0]
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append((REQUEST_ID_HEADER, request_id))
            if chat and any(
                k.lower() == "content-type" and v.startswith("text/event-stream")
                for k, v in headers
            ):
                timed.stream_started()
            return start_response(code, headers, exc_info)

        try:
            timed.body = self.app(environ, start)
        except BaseException:
            timed.close()
            raise
        return timed


def _is_event_stream(name: str, value: str) -> bool:
    return name.lower() == "content-type" and value.startswith("text/event-stream")


class _TimedBody:
    """A response's iterable: notes the first byte; when closed, records the request's metrics
    and, for a chat request, logs its summary line."""

    def __init__(self, environ: dict[str, Any], started: float, chat: bool):
        self.body: Iterable[bytes] = ()
        self.environ = environ
        self.started = started
        self.chat = chat
        self.status = "-"
        self.first_byte: float | None = None
        self.streaming = False
        self.closed = False

    def stream_started(self) -> None:
        """The answer is a chat stream: it counts as open until closed."""
        if not self.streaming:
            self.streaming = True
            metrics.stream_opened()

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
            self._finish()

    def _finish(self) -> None:
        ended = time.monotonic()
        if self.streaming:
            metrics.stream_closed()
        served = self.environ.get("grokproxy.served") or {}
        ttfb = None if self.first_byte is None else self.first_byte - self.started
        try:
            metrics.observe_request(
                self.environ.get("grokproxy.route") or metrics.UNMATCHED_ROUTE,
                str(self.environ.get("REQUEST_METHOD", "-"))[:10],
                self.status,
                self.environ.get("grokproxy.model_label") or metrics.NO_MODEL,
                ttfb,
                ended - self.started,
            )
        except Exception:
            # The client has its answer; a metrics failure is for the log only.
            logging.getLogger(__name__).exception("could not record the request's metrics")
        if self.chat:
            self._log(served, ttfb, ended)

    def _log(self, served: dict[str, Any], ttfb: float | None, ended: float) -> None:
        account = served.get("account_id")
        fields = {
            "path": self.environ.get("PATH_INFO"),
            "model": served.get("model") or "-",
            "status": self.status,
            "account": "-" if account is None else account,
            "token": served.get("token_preview") or "-",
            "ttfb_ms": "-" if ttfb is None else round(ttfb * 1000),
            "total_ms": round((ended - self.started) * 1000),
        }
        request_log.info(
            "chat %s model=%s status=%s account=%s token=%s ttfb_ms=%s total_ms=%s",
            *fields.values(),
            extra={
                "request_id": self.environ.get("grokproxy.request_id", NO_REQUEST),
                "chat": fields,
            },
        )


def init_app(app: Flask) -> None:
    """Logging for one app: handler, level, filters, request ids and chat summary lines."""
    install_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    # Only now: with a handler on the root logger Flask adds no stderr handler of its own.
    app.logger.setLevel(app.config["LOG_LEVEL"])

    @app.before_request
    def _request_id_on_g() -> None:
        g.request_id = request.environ.get("grokproxy.request_id") or request_id_from(None)

    app.after_request(_collect_served)
    app.wsgi_app = RequestLog(app.wsgi_app)  # type: ignore[method-assign]
