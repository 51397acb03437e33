"""Who is calling: the admin, a pool API key, a logged-in user's key, or a raw SSO token."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from flask import current_app, request
from sqlalchemy import select

from .crypto import SecretBox, secrets_equal
from .errors import Forbidden, Unauthorized
from .extensions import db
from .grok.headers import normalize_token
from .models import User

CallerKind = Literal["pool", "user", "sso"]


@dataclass(frozen=True)
class Caller:
    """An authenticated chat caller and the conversation namespace it owns."""

    kind: CallerKind
    # Conversations are recorded under this key; only the same owner may continue them.
    owner: str
    user_id: int | None = None
    account_id: int | None = None  # the account a user is bound to
    sso_token: str | None = field(default=None, repr=False)  # kind "sso": the caller's own token


def _secrets() -> SecretBox:
    return current_app.extensions["grokproxy.secrets"]


def bearer_token() -> str | None:
    """The credential of `Authorization: Bearer <x>`, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value or None


def require_admin(view: Callable) -> Callable:
    """Guard an admin route with `Bearer ADMIN_PASSWORD` (403 while ADMIN_PASSWORD is unset)."""

    @functools.wraps(view)
    def guarded(*args, **kwargs):
        expected = current_app.config.get("ADMIN_PASSWORD")
        if not expected:
            raise Forbidden(
                "the admin API is disabled: set ADMIN_PASSWORD and send "
                "Authorization: Bearer <ADMIN_PASSWORD>",
                code="admin_disabled",
            )
        if not secrets_equal(bearer_token(), expected):
            raise Unauthorized(
                "the admin API needs Authorization: Bearer <ADMIN_PASSWORD>",
                code="invalid_admin_password",
            )
        return view(*args, **kwargs)

    return guarded


def looks_like_sso_token(value: str) -> bool:
    """A raw grok SSO cookie value rather than an API key (keys start with sk-)."""
    return not value.startswith("sk-") and len(value) >= 16 and not any(c.isspace() for c in value)


def chat_caller() -> Caller:
    """Authenticate a `/v1/*` request or raise 401."""
    token = bearer_token()
    if not token:
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    box = _secrets()
    digest = box.digest(token)
    for key in current_app.config.get("AUTHORIZATION") or ():
        if secrets_equal(token, key):
            return Caller("pool", owner=f"key:{digest[:40]}")
    user = db.session.scalars(select(User).where(User.api_key_digest == digest)).first()
    if user is not None:
        return Caller("user", owner=f"user:{user.id}", user_id=user.id, account_id=user.account_id)
    if current_app.config.get("ALLOW_SSO_BEARER") and looks_like_sso_token(token):
        sso = normalize_token(token)
        return Caller("sso", owner=f"sso:{box.digest(sso)[:40]}", sso_token=sso)
    raise Unauthorized("invalid API key")
