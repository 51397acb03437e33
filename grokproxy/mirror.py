"""The original gateway's two switches for its OpenAI-compatible ("mirror") API.

`MIRROR_API_PREFIX` serves the API only under a secret path prefix (`/k3y/v1/chat/completions`):
a WSGI middleware strips the prefix, so routes, logs and metrics all see the bare path, and a
bare API path that did not come through the prefix answers the same 404 as any unknown URL.
`ENABLE_MIRROR_API=false` answers that 404 to API clients but keeps the signed-in chat page
working (its calls carry the session cookie) and leaves the admin API alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request, session
from werkzeug.exceptions import NotFound

PREFIXED = "grokproxy.api_prefixed"
HIDDEN = "grokproxy.api_hidden"
CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Expose-Headers",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
    "Access-Control-Max-Age",
)
_EXACT = frozenset({"/v1", "/chat/completions", "/models", "/responses"})
_UNDER = ("/v1/", "/models/")


def is_api_path(path: str) -> bool:
    """Whether `path` belongs to the OpenAI-compatible API (with or without /v1)."""
    return path in _EXACT or path.startswith(_UNDER)


class PrefixMiddleware:
    """Maps `<prefix>/v1/...` onto `/v1/...` and marks the request as having come that way."""

    def __init__(self, app: Callable[..., Iterable[bytes]], prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        path = environ.get("PATH_INFO") or "/"
        if path.startswith(self.prefix + "/"):
            rest = path[len(self.prefix) :]
            if is_api_path(rest):
                environ["PATH_INFO"] = rest
                environ[PREFIXED] = True
        return self.app(environ, start_response)


def _signed_in() -> bool:
    """A live web session of a user (the chat page's own calls)."""
    from .extensions import db
    from .models import User

    user_id = session.get("user_id")
    if not isinstance(user_id, int):
        return False
    user = db.session.get(User, user_id)
    return user is not None and session.get("session_epoch") == user.session_epoch


def init_app(app: Flask) -> None:
    """Install the prefix middleware, the gate on API paths and the chat page's prefix."""
    prefix = app.config.get("MIRROR_API_PREFIX")
    if prefix:
        app.wsgi_app = PrefixMiddleware(app.wsgi_app, prefix)  # type: ignore[method-assign]

    @app.before_request
    def _gate() -> None:
        if not is_api_path(request.path):
            return
        hidden = (prefix and not request.environ.get(PREFIXED)) or (
            not app.config["ENABLE_MIRROR_API"] and not _signed_in()
        )
        if hidden:
            request.environ[HIDDEN] = True
            raise NotFound()  # exactly what an unknown URL gets: nothing says an API is here

    # Registered before the chat blueprint's CORS hook, so it runs after it (Flask runs them in
    # reverse): an unknown URL carries no CORS headers, so a hidden API path carries none either.
    @app.after_request
    def _no_cors_when_hidden(response):
        if request.environ.get(HIDDEN):
            for name in CORS_HEADERS:
                response.headers.pop(name, None)
            response.headers.pop("Vary", None)
        return response

    @app.context_processor
    def _api_prefix() -> dict[str, str]:
        # Only the signed-in chat page renders it (templates/chat.html, data-api-prefix).
        return {"mirror_api_prefix": prefix or ""}
