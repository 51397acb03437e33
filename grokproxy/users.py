"""Users of a share platform: bind a name to a pool account, a stable API key, one-time links.

A user is created (or updated) by the admin API, bound to one grok account, and given a personal
API key once; the key is stored encrypted and found by its keyed digest, so later logins return
the same key. Each login also answers a signed, expiring link; opening it signs the person in to
the web chat page. The link carries the user's `login_generation`, and using it bumps that
number, so a link works once (and using one retires every link issued before it). A sign-in
also bumps the user's `session_epoch`, which the session cookie carries and every web page checks:
signing out or signing in again ends every older session, a copied cookie included.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .crypto import SecretBox
from .errors import APIError, BadRequest, NotFound, UpstreamFailed
from .extensions import db
from .models import Account, User, utcnow

log = logging.getLogger(__name__)

API_KEY_PREFIX = "sk-"
# A different salt than Flask's session cookie: a login link can never pass for a session.
LINK_SALT = "grokproxy.login-link.v1"


@dataclass(frozen=True)
class LoginResult:
    """What a login answers: the user, the account's md5, the API key and the signed link."""

    user_id: int
    user_name: str
    email_md5: str
    api_key: str = field(repr=False)
    link_token: str = field(repr=False)
    link_expires_at: datetime


class LinkRefused(Exception):
    """A login link that cannot sign anyone in: `reason` is "used", "expired" or "invalid"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _secrets() -> SecretBox:
    return current_app.extensions["grokproxy.secrets"]


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=LINK_SALT)


def new_api_key() -> str:
    """A fresh personal API key: `sk-` and 256 random bits."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def login(user_name: str, email_md5: str) -> LoginResult:
    """Bind `user_name` to the pool account whose e-mail md5 is `email_md5` (404 if none)."""
    email_md5 = email_md5.strip().lower()
    account = db.session.scalars(select(Account).where(Account.email_md5 == email_md5)).first()
    if account is None:
        raise NotFound(
            "no account in the pool has this email_md5: add its SSO token with "
            "POST /api/batch-add-grok-token, or use POST /api/login-v2 with the token",
            code="account_not_found",
            param="email_md5",
        )
    return bind_user(user_name, account.id, account.email_md5)


def login_v2(user_name: str, sso_token: str) -> LoginResult:
    """Add or refresh `sso_token` in the pool (as batch-add does), then bind `user_name` to it."""
    from .tokens import add_tokens

    result = add_tokens([sso_token])
    if not result.email_list:
        raise _token_refused(result.failed[0] if result.failed else {})
    return login(user_name, result.email_list[0]["email_md5"])


def _token_refused(failure: dict) -> APIError:
    """Why login-v2 could not use the token: 400 when the token is bad, 502 when grok.com is."""
    code, reason = failure.get("code"), failure.get("error") or "the token could not be checked"
    if code in ("malformed", "invalid_token"):
        return BadRequest(
            f"invalid sso_token: {reason}", code="invalid_sso_token", param="sso_token"
        )
    if code in ("cloudflare", "anti_bot", "blocked"):
        return UpstreamFailed(
            f"could not check the sso_token, grok.com blocked us: {reason}",
            code="upstream_blocked",
        )
    if code == "internal_error":
        error = APIError(reason, code="internal_error", status=500)
        error.type = "server_error"
        return error
    return UpstreamFailed(f"could not check the sso_token: {reason}", code="upstream_error")


def bind_user(user_name: str, account_id: int, email_md5: str) -> LoginResult:
    """Create or update the user, bound to `account_id`; its API key never changes."""
    user, api_key = _upsert_user(user_name, account_id)
    token, expires_at = issue_link(user.id, user.login_generation)
    log.info("user %s bound to account %s; login link issued", user.id, account_id)
    return LoginResult(user.id, user.user_name, email_md5, api_key, token, expires_at)


def _upsert_user(user_name: str, account_id: int) -> tuple[User, str]:
    box = _secrets()
    for _ in range(3):
        # End any read left open, then take SQLite's write lock before reading: a read-then-write
        # on a stale snapshot would fail with "database is locked" (no-op on PostgreSQL).
        db.session.commit()
        db.session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        user = db.session.scalars(select(User).where(User.user_name == user_name)).first()
        if user is not None:
            api_key = box.decrypt(user.api_key_encrypted)
            user.account_id = account_id
            db.session.commit()
            return user, api_key
        api_key = new_api_key()
        user = User(
            user_name=user_name,
            account_id=account_id,
            api_key_encrypted=box.encrypt(api_key),
            api_key_digest=box.digest(api_key),
        )
        db.session.add(user)
        try:
            db.session.commit()
        except IntegrityError:
            # Another request created the same name at the same moment: update that one instead.
            db.session.rollback()
            continue
        return user, api_key
    raise RuntimeError("could not create or update the user after concurrent changes")


def issue_link(user_id: int, generation: int) -> tuple[str, datetime]:
    """A signed link token for this user and login generation, and when it expires."""
    token = _serializer().dumps({"u": user_id, "g": generation})
    ttl = current_app.config["LOGIN_LINK_TTL_SECONDS"]
    return token, utcnow() + timedelta(seconds=ttl)


def redeem_link(token: str) -> User:
    """Check a link token and use it up; returns the user it signs in, or raises LinkRefused."""
    try:
        data = _serializer().loads(token, max_age=current_app.config["LOGIN_LINK_TTL_SECONDS"])
    except SignatureExpired:
        raise LinkRefused("expired") from None
    except BadSignature:
        raise LinkRefused("invalid") from None
    if not isinstance(data, dict):
        raise LinkRefused("invalid")
    user_id, generation = data.get("u"), data.get("g")
    if not isinstance(user_id, int) or not isinstance(generation, int):
        raise LinkRefused("invalid")
    # One conditional UPDATE: of two browsers opening the same link at once, exactly one wins.
    result = db.session.execute(
        update(User)
        .where(User.id == user_id, User.login_generation == generation)
        .values(
            login_generation=generation + 1,
            # A new sign-in ends every earlier web session of this user.
            session_epoch=User.session_epoch + 1,
            last_login_at=utcnow(),
            updated_at=utcnow(),
        )
    )
    db.session.commit()
    if result.rowcount != 1:
        raise LinkRefused("used")
    user = db.session.get(User, user_id)
    if user is None:
        raise LinkRefused("used")
    log.info("user %s signed in with a login link", user_id)
    return user


def end_sessions(user_id: int) -> None:
    """Sign the user out everywhere: every web session started before now stops working."""
    db.session.execute(
        update(User)
        .where(User.id == user_id)
        .values(session_epoch=User.session_epoch + 1, updated_at=utcnow())
    )
    db.session.commit()
    log.info("user %s signed out: every earlier web session ended", user_id)


def user_api_key(user: User) -> str:
    """The user's API key in clear, for their own chat page."""
    return _secrets().decrypt(user.api_key_encrypted)
