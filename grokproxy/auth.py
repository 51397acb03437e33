"""Who is calling: the admin, a pool API key, a logged-in user's key, or a raw SSO token."""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from flask import current_app, request
from sqlalchemy import select

from .crypto import SecretBox, secrets_equal
from .errors import Forbidden, Unauthorized
from .extensions import db
from .grok.headers import normalize_token
from .models import User

CallerKind = Literal["pool", "user", "sso"]
NOT_READ = object()  # Caller.daily_limit not read from the database

# grok.com's `sso` cookie is an HS256 JWT: three base64url segments, the payload holding
# `session_id`. The signature cannot be checked here (grok.com holds the key), but the shape is
# enough to turn away random bearers before they cost a body read or an upstream call.
SSO_TOKEN_MAX = 4096
_B64URL_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")
HS256_SIGNATURE_BYTES = 32


@dataclass(frozen=True)
class Caller:
    """An authenticated chat caller and the conversation namespace it owns."""

    kind: CallerKind
    # Conversations are recorded under this key; only the same owner may continue them.
    owner: str
    user_id: int | None = None
    account_id: int | None = None  # the account a user is bound to
    sso_token: str | None = field(default=None, repr=False)  # kind "sso": the caller's own token
    # kind "user": the user's own daily limit, read with the key (None: USER_DAILY_LIMIT applies);
    # NOT_READ for a Caller made without it, whose limit limits.limit_of then looks up.
    daily_limit: int | object | None = NOT_READ


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


def _b64url_decode(segment: str) -> bytes | None:
    if not _B64URL_SEGMENT.match(segment):
        return None
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except ValueError:
        return None


def _json_object(segment: str) -> dict[str, Any] | None:
    raw = _b64url_decode(segment)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def looks_like_sso_token(value: str) -> bool:
    """True for the shape of a grok.com `sso` cookie: an HS256 JWT with a `session_id` claim."""
    if len(value) > SSO_TOKEN_MAX or value.count(".") != 2:
        return False
    header_part, payload_part, signature_part = value.split(".")
    header, payload = _json_object(header_part), _json_object(payload_part)
    signature = _b64url_decode(signature_part)
    return (
        header is not None
        and header.get("alg") == "HS256"
        and payload is not None
        and isinstance(payload.get("session_id"), str)
        and bool(payload["session_id"])
        and signature is not None
        and len(signature) == HS256_SIGNATURE_BYTES
    )


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
    # Core and the three columns a chat needs (the daily limit too: limits.admit would read it
    # again): the ORM's identity map and the full row cost more than the lookup itself.
    user = db.session.execute(
        select(User.id, User.account_id, User.daily_limit).where(User.api_key_digest == digest)
    ).first()
    if user is not None:
        return Caller(
            "user",
            owner=f"user:{user.id}",
            user_id=user.id,
            account_id=user.account_id,
            daily_limit=user.daily_limit,
        )
    if current_app.config.get("ALLOW_SSO_BEARER"):
        try:
            sso = normalize_token(token)
        except ValueError:
            sso = None
        if sso is not None and looks_like_sso_token(sso):
            return Caller("sso", owner=f"sso:{box.digest(sso)[:40]}", sso_token=sso)
        raise Unauthorized(
            "invalid API key: send a key of this gateway, or a grok.com sso cookie value "
            "(a JWT: three base64url parts)"
        )
    raise Unauthorized("invalid API key")
