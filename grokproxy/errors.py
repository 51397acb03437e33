"""The one error shape of grokproxy, and the handlers that make every failure use it.

    {"error": {"message": "...", "type": "...", "code": "...", "param": null}}

Validation errors add `details`. No route ever answers with an HTML page or a traceback.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from flask import Flask, Response, jsonify
from marshmallow import ValidationError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# Statuses where retrying the same request cannot help: the SDKs honour x-should-retry.
NO_RETRY_STATUSES = frozenset({400, 401, 403, 404, 405, 413, 415})

HTTP_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "no_available_account",
    504: "upstream_error",
}

# Seconds a client should wait before retrying while the database is unreachable.
DATABASE_RETRY_AFTER = 5
# SQLite failures that mean "cannot use the file now", not "the query is wrong".
_SQLITE_UNAVAILABLE = (
    "unable to open database",
    "database is locked",
    "database is busy",
    "disk i/o error",
)


class APIError(Exception):
    """An error answer: status, OpenAI-style type and code, a message a person can act on."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.details = details
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "code": self.code,
            "param": self.param,
        }
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}

    def headers(self) -> dict[str, str]:
        """Headers that go with the answer (Retry-After, x-should-retry)."""
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, int(self.retry_after)))
        if self.status in NO_RETRY_STATUSES:
            headers["x-should-retry"] = "false"
        return headers


class BadRequest(APIError):
    """400: the request itself is wrong."""


class Unauthorized(APIError):
    """401: no or unknown credentials for this gateway (never used for a grok account's failure)."""

    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(APIError):
    """403: known caller, not allowed."""

    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(APIError):
    """404: nothing here (or nothing the caller may see)."""

    status = 404
    type = "not_found_error"
    code = "not_found"


class RateLimited(APIError):
    """429: every usable account is cooling; Retry-After says when one returns."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limited"


class UpstreamFailed(APIError):
    """502: grok.com failed or blocked us; the message says which."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamTimedOut(APIError):
    """504: grok.com did not answer within the request's time budget."""

    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


class NoAccount(APIError):
    """503: no account can serve this request."""

    status = 503
    type = "no_available_account"
    code = "no_available_account"


class DatabaseUnavailable(APIError):
    """503: the database cannot be reached right now; Retry-After says when to try again."""

    status = 503
    type = "service_unavailable"
    code = "database_unavailable"


def _driver_unavailable(error: BaseException) -> bool:
    if isinstance(error, sqlite3.OperationalError):
        return any(text in str(error).lower() for text in _SQLITE_UNAVAILABLE)
    try:
        import psycopg
    except ImportError:  # pragma: no cover (psycopg is a runtime dependency)
        return False
    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)


def database_unavailable(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) says the database is unreachable, not a wrong query."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, sa_exc.TimeoutError):
            return True  # every pooled connection is busy or being opened
        if isinstance(error, sa_exc.DBAPIError):
            if error.connection_invalidated:
                return True
            if error.orig is not None and _driver_unavailable(error.orig):
                return True
            if isinstance(error, sa_exc.InterfaceError) and not isinstance(
                error.orig, sqlite3.Error
            ):
                return True
        elif _driver_unavailable(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def error_response(error: APIError) -> Response:
    """Render an APIError as its JSON answer."""
    response = jsonify(error.body())
    response.status_code = error.status
    response.headers.update(error.headers())
    return response


def http_exception_error(exc: HTTPException) -> APIError:
    """Map a werkzeug HTTP exception (404, 405, 413 ...) onto the error shape."""
    status = exc.code or 500
    messages = {
        404: "no such route: check the path (chat is POST /v1/chat/completions)",
        405: f"method not allowed here; allowed: {', '.join(sorted(exc.valid_methods or []))}"
        if getattr(exc, "valid_methods", None)
        else "method not allowed here",
        413: "request body too large (MAX_REQUEST_BYTES)",
    }
    codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
    error = APIError(
        messages.get(status, exc.description or exc.name),
        code=codes.get(status, exc.name.lower().replace(" ", "_")),
        status=status,
    )
    error.type = HTTP_TYPES.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    return error


def register_error_handlers(app: Flask) -> None:
    """Make every error on every route answer in the one JSON shape."""

    @app.errorhandler(APIError)
    def _api_error(exc: APIError) -> Response:
        return error_response(exc)

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> Response:
        details = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        # One bad field: name it in `param`, as OpenAI does, so clients can point at it.
        fields = [name for name in details if name != "_schema"]
        param = fields[0] if len(fields) == 1 and len(details) == 1 else None
        return error_response(
            BadRequest(
                describe_validation(details), details=details, param=str(param) if param else None
            )
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        response = error_response(http_exception_error(exc))
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if database_unavailable(exc):
            return _database_unavailable(exc)
        # The traceback goes to the log only; the client learns nothing about the internals.
        log.exception("unexpected error")
        error = APIError(
            "internal error; the operator can find it in the server log",
            code="internal_error",
            status=500,
        )
        error.type = "server_error"
        return error_response(error)


def _database_unavailable(exc: Exception) -> Response:
    from .extensions import db

    # The class name only: driver messages can carry host names or credentials.
    log.warning("database unavailable: %s", type(exc).__name__)
    try:
        # Drop the session and its broken connection: the next request starts on a fresh one.
        db.session.remove()
    except Exception:
        log.warning("could not discard the database session after an outage", exc_info=True)
    return error_response(
        DatabaseUnavailable(
            "the database is unreachable right now; retry in a few seconds",
            retry_after=DATABASE_RETRY_AFTER,
        )
    )


def describe_validation(details: dict[str, Any]) -> str:
    """One-line summary of marshmallow messages: `field: problem; other: problem`."""
    parts = []
    for field, problems in details.items():
        if isinstance(problems, dict):
            problems = [f"{key}: {value}" for key, value in problems.items()]
        if isinstance(problems, list | tuple):
            problems = "; ".join(str(p) for p in problems)
        parts.append(f"{field}: {problems}")
    return "invalid request: " + "; ".join(parts) if parts else "invalid request"
