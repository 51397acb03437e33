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
from sqlalchemy import func, select, update
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
            user.revoked_at = None  # binding a revoked user again is the operator's act
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


def find_user(user_name: str) -> User:
    """The user called `user_name`, or 404 user_not_found."""
    user = db.session.scalars(select(User).where(User.user_name == user_name)).first()
    if user is None:
        raise NotFound(f"no user is called {user_name!r}", code="user_not_found", param="user_name")
    return user


def rotate_key(user_name: str) -> str:
    """Give the user a new API key; the old one is refused from the next request on."""
    user = find_user(user_name)
    api_key = new_api_key()
    box = _secrets()
    user.api_key_encrypted = box.encrypt(api_key)
    user.api_key_digest = box.digest(api_key)
    user.revoked_at = None
    db.session.commit()
    log.info("user %s has a new API key; the old one stopped working", user.id)
    return api_key


def revoke_user(user_name: str) -> None:
    """Shut a user out: API key, web sessions and login links all stop working at once.

    The row stays (its id owns the user's conversations, and SQLite could hand a deleted id to
    the next user); the key is replaced by one nobody was given. Binding the user again with
    /api/login, or rotating the key, lets the person back in.
    """
    user = find_user(user_name)
    box = _secrets()
    unknown = new_api_key()
    user.api_key_encrypted = box.encrypt(unknown)
    user.api_key_digest = box.digest(unknown)
    user.session_epoch = User.session_epoch + 1
    user.login_generation = User.login_generation + 1
    user.revoked_at = utcnow()
    db.session.commit()
    log.info("user %s revoked: key, sessions and login links ended", user.id)


def set_daily_limit(user_name: str, limit: int | None) -> User:
    """Set the user's own daily limit (None: follow USER_DAILY_LIMIT; 0: unlimited)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise BadRequest(
            "daily_limit must be a whole number of at least 0, or null for the default",
            param="daily_limit",
        )
    user = find_user(user_name)
    user.daily_limit = limit
    db.session.commit()
    log.info("user %s daily limit set to %s", user.id, "default" if limit is None else limit)
    return user


def new_login_link(user_name: str) -> tuple[User, str, datetime]:
    """A fresh one-time login link for the user (earlier unused links stay valid until used)."""
    user = find_user(user_name)
    if user.revoked_at is not None:
        raise APIError(
            f"user {user_name!r} is revoked: rotate its key or bind it again first",
            code="user_revoked",
            param="user_name",
            status=409,
        )
    token, expires_at = issue_link(user.id, user.login_generation)
    log.info("user %s: new login link issued", user.id)
    return user, token, expires_at


def effective_limit(user: User) -> int:
    """The user's daily limit in force (0: unlimited)."""
    default = current_app.config["USER_DAILY_LIMIT"]
    return int(default if user.daily_limit is None else user.daily_limit)


def list_users(page: int = 1, page_size: int = 50, search: str | None = None) -> dict:
    """One page of users with their account, today's use, limit and last activity."""
    from . import limits

    query = select(User)
    count = select(func.count()).select_from(User)
    if search:
        pattern = f"%{search.strip()}%"
        query = query.where(User.user_name.ilike(pattern))
        count = count.where(User.user_name.ilike(pattern))
    total = db.session.scalar(count) or 0
    rows = list(
        db.session.scalars(query.order_by(User.id).limit(page_size).offset((page - 1) * page_size))
    )
    scopes = [f"user:{user.id}" for user in rows]
    used = limits.usage_today(scopes)
    seen = limits.last_activity(scopes)
    accounts = {
        account.id: account
        for account in db.session.scalars(
            select(Account).where(Account.id.in_({u.account_id for u in rows if u.account_id}))
        )
    }
    data = []
    for user in rows:
        account = accounts.get(user.account_id) if user.account_id else None
        scope = f"user:{user.id}"
        activity = max(
            (moment for moment in (seen.get(scope), user.last_login_at) if moment), default=None
        )
        data.append(
            {
                "id": user.id,
                "user_name": user.user_name,
                "email": account.email if account else None,
                "email_md5": account.email_md5 if account else None,
                "account_status": account.status if account else None,
                "used_today": used.get(scope, 0),
                "daily_limit": effective_limit(user),
                "daily_limit_override": user.daily_limit,
                "last_activity_at": _iso(activity),
                "last_login_at": _iso(user.last_login_at),
                "revoked": user.revoked_at is not None,
                "created_at": _iso(user.created_at),
            }
        )
    db.session.commit()
    return {
        "total": total,
        "page": page,
        "page_size": page_size,
        "pages": -(-total // page_size) if total else 0,
        "data": data,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment else None
