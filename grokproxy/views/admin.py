"""The operator console (`/admin`): sign-in, overview, accounts and users pages, their actions;
and the admin API's user routes (`Bearer ADMIN_PASSWORD`).

The console keeps its own cookie, apart from the users' chat session: HttpOnly, SameSite=Strict,
Secure over https, no Path (the browser scopes it to the console's folder, whatever prefix a
proxy adds). It holds a signed random id; the session is signed in only while the digest of that
id is in `admin_sessions`, so signing out ends it on every worker. Every request that changes
something must carry the id's CSRF token (a form field or `X-CSRF-Token`) and must not come from
another site (Sec-Fetch-Site, else Origin). Wrong passwords are counted per client address in the
database; from the fifth on, that address waits longer and longer before it may try again.

All URLs in the pages are relative, so the console works behind a proxy without PUBLIC_URL.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
)
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from .. import console, limits, tokens, users
from ..auth import require_admin
from ..bodies import parse_json, read_body
from ..crypto import secrets_equal
from ..errors import BadRequest, Forbidden, Unauthorized
from ..extensions import db, write_transaction
from ..models import AdminSession, AdminSignInFailure, utcnow
from ..schemas_admin import DeleteSchema, load
from ..schemas_users import DailyLimitSchema, UserNameSchema, UserPageSchema

# The console's own copy of the static route (/admin/static/...): its pages then link their CSS
# and script relatively, without leaving the console's folder.
bp = Blueprint(
    "admin",
    __name__,
    url_prefix="/admin",
    static_folder=str(Path(__file__).resolve().parent.parent / "static"),
    static_url_path="/static",
)
api = Blueprint("admin_api", __name__, url_prefix="/api")
log = logging.getLogger(__name__)

COOKIE = "grokproxy_admin"
COOKIE_SALT = "grokproxy.admin-session.v1"
CSRF_HEADER = "X-CSRF-Token"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Wrong passwords an address may send before it is slowed down, and how: the fifth wrong one
# blocks it for BASE seconds, each further one doubles the wait, up to MAX.
FREE_ATTEMPTS = 5
SLOWDOWN_BASE_SECONDS = 30
SLOWDOWN_MAX_SECONDS = 3600
PAGE_SIZE = 50
ACCOUNT_ACTIONS = ("disable", "enable", "recheck", "delete")
USER_ACTIONS = ("rotate", "revoke", "link", "limit")
CHAT_ENDPOINTS = frozenset({"chat.chat_completions"})


# --- the console's session -------------------------------------------------------------------


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=COOKIE_SALT)


def _digest(sid: str) -> str:
    return current_app.extensions["grokproxy.secrets"].digest("admin-session:" + sid)


def csrf_token(sid: str) -> str:
    """The CSRF token that goes with a cookie id (a keyed digest: no server state needed)."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, b"admin-csrf:" + sid.encode(), hashlib.sha256).hexdigest()


def _cookie_sid() -> str | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        sid = _serializer().loads(raw)
    except BadSignature:
        return None
    return sid if isinstance(sid, str) and len(sid) >= 32 else None


def _signed_in(sid: str | None) -> bool:
    if sid is None:
        return False
    expires = db.session.scalar(
        select(AdminSession.expires_at).where(AdminSession.sid_digest == _digest(sid))
    )
    db.session.commit()
    return expires is not None and expires > utcnow()


def _secure() -> bool:
    public_url = (current_app.config.get("PUBLIC_URL") or "").lower()
    # request.is_secure follows X-Forwarded-Proto only when TRUSTED_PROXY_COUNT trusts it.
    return public_url.startswith("https://") or request.is_secure


def _set_cookie(response: Response, sid: str, max_age: int | None) -> None:
    response.set_cookie(
        COOKIE,
        _serializer().dumps(sid),
        max_age=max_age,
        path=None,
        secure=_secure(),
        httponly=True,
        samesite="Strict",
    )


def _page(template: str, status: int = 200, sid: str | None = None, **context: Any) -> Response:
    fresh = sid is None
    sid = sid or secrets.token_urlsafe(32)
    body = render_template(template, csrf=csrf_token(sid), **context)
    response = make_response(body, status)
    if fresh:
        _set_cookie(response, sid, None)  # a pre-sign-in id: the sign-in form's CSRF token
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _from_this_site() -> bool:
    """False for a request another site's page made the browser send."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser, or a browser too old to say: the CSRF token still decides
    allowed = {request.host.lower()}
    public_url = current_app.config.get("PUBLIC_URL")
    if public_url:
        allowed.add(urlsplit(public_url).netloc.lower())
    return urlsplit(origin).netloc.lower() in allowed


def _csrf_ok(sid: str | None) -> bool:
    if sid is None or not _from_this_site():
        return False
    given = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token")
    return secrets_equal(given, csrf_token(sid))


def _client() -> str:
    return (request.remote_addr or "unknown")[:64]


def _console_enabled() -> bool:
    return bool(current_app.config.get("ADMIN_PASSWORD"))


def _disabled_page() -> Response:
    return _page(
        "admin/signin.html",
        403,
        error="The console is off: set ADMIN_PASSWORD and restart grokproxy.",
        enabled=False,
    )


@bp.before_request
def _guard():
    """Every console route: console on, signed in (but the sign-in itself), CSRF on changes."""
    if request.endpoint in ("admin.root", "admin.sign_in_form", "admin.sign_in", "admin.static"):
        return None
    if not _console_enabled():
        if request.path.startswith("/admin/api/"):
            raise Forbidden("the console is off: set ADMIN_PASSWORD", code="admin_disabled")
        return _disabled_page()
    sid = _cookie_sid()
    if not _signed_in(sid):
        if request.method != "GET" or request.path.startswith("/admin/api/"):
            raise Unauthorized("sign in to the console first", code="admin_signin_required")
        return redirect("./", code=303)
    if request.method not in ("GET", "HEAD") and not _csrf_ok(sid):
        raise Forbidden(
            "refused: the request carries no valid CSRF token or comes from another site",
            code="csrf_refused",
        )
    request.environ["grokproxy.admin_sid"] = sid
    return None


def _sid() -> str:
    return request.environ["grokproxy.admin_sid"]


# --- sign-in and sign-out --------------------------------------------------------------------


@bp.get("")
def root():
    """`/admin` without the slash: the pages' relative links need the folder form."""
    return redirect("admin/", code=308)


@bp.get("/")
def sign_in_form():
    """The overview when signed in, else the password form."""
    if not _console_enabled():
        return _disabled_page()
    sid = _cookie_sid()
    if _signed_in(sid):
        return _page("admin/overview.html", sid=sid, data=console.overview(), nav="overview")
    return _page("admin/signin.html", sid=sid, enabled=True)


def _blocked_for(client: str) -> int:
    """Seconds this address must still wait before its next password (0: may try now)."""
    until = db.session.scalar(
        select(AdminSignInFailure.blocked_until).where(AdminSignInFailure.client == client)
    )
    db.session.commit()
    now = utcnow()
    return max(1, int((until - now).total_seconds() + 0.999)) if until and until > now else 0


def _count_failure(client: str) -> int:
    """One more wrong password from `client`: counted atomically; returns the wait it earned."""
    now = utcnow()
    with write_transaction() as conn:
        insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
            AdminSignInFailure
        )
        failures = conn.execute(
            insert.values(client=client, failures=1, updated_at=now)
            .on_conflict_do_update(
                index_elements=[AdminSignInFailure.client],
                set_={"failures": AdminSignInFailure.failures + 1, "updated_at": now},
            )
            .returning(AdminSignInFailure.failures)
        ).scalar_one()
        if failures < FREE_ATTEMPTS:
            return 0
        wait = min(SLOWDOWN_MAX_SECONDS, SLOWDOWN_BASE_SECONDS * 2 ** (failures - FREE_ATTEMPTS))
        conn.execute(
            AdminSignInFailure.__table__.update()
            .where(AdminSignInFailure.client == client)
            .values(blocked_until=now + timedelta(seconds=wait))
        )
    log.warning("console: %s wrong passwords from %s; slowed for %s s", failures, client, wait)
    return wait


@bp.post("/login")
def sign_in():
    """Check the password once; a good one starts a session under a new cookie id."""
    if not _console_enabled():
        return _disabled_page()
    sid = _cookie_sid()
    if not _csrf_ok(sid):
        return _page(
            "admin/signin.html",
            403,
            error="The sign-in form had expired or came from another site. Try again.",
            enabled=True,
        )
    client = _client()
    wait = _blocked_for(client)
    if wait:
        response = _page(
            "admin/signin.html",
            429,
            sid=sid,
            error=f"Too many wrong passwords. Wait {wait} s, then try again.",
            enabled=True,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    password = request.form.get("password", "")
    if not secrets_equal(password, current_app.config["ADMIN_PASSWORD"]):
        wait = _count_failure(client)
        message = "Wrong password."
        if wait:
            message += f" Too many wrong passwords: wait {wait} s before the next try."
        response = _page("admin/signin.html", 401, sid=sid, error=message, enabled=True)
        if wait:
            response.headers["Retry-After"] = str(wait)
        return response
    lifetime = int(current_app.config["ADMIN_SESSION_SECONDS"])
    new_sid = secrets.token_urlsafe(32)  # never the pre-sign-in id: no session fixation
    now = utcnow()
    with write_transaction() as conn:
        conn.execute(delete(AdminSignInFailure).where(AdminSignInFailure.client == client))
        conn.execute(delete(AdminSession).where(AdminSession.expires_at <= now))
        conn.execute(
            AdminSession.__table__.insert().values(
                sid_digest=_digest(new_sid),
                created_at=now,
                expires_at=now + timedelta(seconds=lifetime),
            )
        )
    log.info("console: operator signed in from %s", client)
    response = redirect("./", code=303)
    _set_cookie(response, new_sid, lifetime)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/logout")
def sign_out():
    """End this console session on every worker."""
    with write_transaction() as conn:
        conn.execute(delete(AdminSession).where(AdminSession.sid_digest == _digest(_sid())))
    response = redirect("./", code=303)
    response.delete_cookie(COOKIE, path=None, secure=_secure(), httponly=True, samesite="Strict")
    return response


# --- pages -----------------------------------------------------------------------------------


def _int_arg(name: str, default: int, least: int = 1, most: int = 1_000_000) -> int:
    try:
        value = int(request.args.get(name, default))
    except ValueError:
        return default
    return min(max(value, least), most)


@bp.get("/accounts")
def accounts_page():
    """The pool as a table: filter by status, sort, page; add tokens; act on a selection."""
    status = request.args.get("status") or None
    if status not in (None, *console.STATUSES):
        status = None
    sort = request.args.get("sort", "id")
    if sort not in console.SORTS:
        sort = "id"
    descending = request.args.get("dir") == "desc"
    search = (request.args.get("q") or "").strip()[:100] or None
    listing = console.list_accounts(
        _int_arg("page", 1),
        _int_arg("page_size", PAGE_SIZE, most=500),
        status=status,
        sort=sort,
        descending=descending,
        search=search,
    )
    return _page(
        "admin/accounts.html",
        sid=_sid(),
        nav="accounts",
        listing=listing,
        shown_status=status,
        sort=sort,
        descending=descending,
        search=search or "",
        statuses=console.STATUSES,
        counts=console.overview()["accounts"],
    )


@bp.get("/users")
def users_page():
    """Users with their account, today's use, limit and last activity; per-user actions."""
    search = (request.args.get("q") or "").strip()[:64] or None
    listing = users.list_users(_int_arg("page", 1), PAGE_SIZE, search)
    return _page(
        "admin/users.html",
        sid=_sid(),
        nav="users",
        listing=listing,
        search=search or "",
        default_limit=current_app.config["USER_DAILY_LIMIT"],
    )


# --- the console's actions (JSON, CSRF-checked by _guard) --------------------------------------


def _json_object() -> dict[str, Any]:
    raw = read_body()
    payload = parse_json(raw) if raw.strip() else {}
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_json")
    return payload


def per_token_results(raw_list: list[Any], result: tokens.BatchResult) -> list[dict[str, Any]]:
    """One result per input token, in input order: batch-add stores the good ones in input
    order and names each failure's index, so the stored entries fill the remaining indexes."""
    failed = {entry["index"]: entry for entry in result.failed}
    stored = iter(result.email_list)
    results = []
    for index in range(len(raw_list)):
        if index in failed:
            entry = failed[index]
            results.append(
                {
                    "index": index,
                    "status": "failed",
                    "code": entry["code"],
                    "error": entry["error"],
                    "token_preview": entry["token_preview"],
                }
            )
        else:
            entry = next(stored)
            results.append({"index": index, **entry})
    return results


@bp.post("/api/tokens")
def add_tokens():
    """Check and store a chunk of tokens; the page sends chunks and shows each result."""
    body = _json_object()
    raw = body.get("tokens")
    if not isinstance(raw, list) or not 1 <= len(raw) <= tokens.MAX_BATCH:
        raise BadRequest(f"tokens must be a list of 1 to {tokens.MAX_BATCH} tokens", param="tokens")
    result = tokens.add_tokens(raw)
    return jsonify({"results": per_token_results(raw, result)})


@bp.post("/api/accounts")
def account_action():
    """Disable, enable, re-check or delete the selected accounts."""
    body = _json_object()
    action = body.get("action")
    if action not in ACCOUNT_ACTIONS:
        raise BadRequest(f"action must be one of {', '.join(ACCOUNT_ACTIONS)}", param="action")
    md5_list = load(DeleteSchema(), body)["email_md5_list"]
    if action == "disable":
        return jsonify(console.set_disabled(md5_list, True))
    if action == "enable":
        return jsonify(console.set_disabled(md5_list, False))
    if action == "recheck":
        return jsonify({"results": console.recheck(md5_list)})
    return jsonify(tokens.delete_accounts(md5_list))


@bp.post("/api/users")
def user_action():
    """Rotate a user's key, revoke the user, set the daily limit or make a new login link."""
    body = _json_object()
    action = body.get("action")
    if action not in USER_ACTIONS:
        raise BadRequest(f"action must be one of {', '.join(USER_ACTIONS)}", param="action")
    return _user_answer(action, body)


def _user_answer(action: str, body: dict[str, Any]) -> Response:
    """The one implementation of the user actions, for the console and the admin API."""
    if action == "limit":
        data = load(DailyLimitSchema(), body)
        user = users.set_daily_limit(data["user_name"], data["daily_limit"])
        answer: dict[str, Any] = {
            "user_name": user.user_name,
            "daily_limit": users.effective_limit(user),
            "daily_limit_override": user.daily_limit,
        }
    else:
        name = load(UserNameSchema(), body)["user_name"]
        if action == "rotate":
            answer = {"user_name": name, "api_key": users.rotate_key(name)}
        elif action == "revoke":
            users.revoke_user(name)
            answer = {"user_name": name, "revoked": True}
        else:
            user, token, expires_at = users.new_login_link(name)
            answer = {
                "user_name": user.user_name,
                "login_url": f"/login/{token}",
                "login_url_expires_at": expires_at.isoformat(timespec="seconds"),
            }
            public_url = current_app.config.get("PUBLIC_URL")
            if public_url:
                answer["login_url_absolute"] = public_url.rstrip("/") + answer["login_url"]
    response = jsonify(answer)
    response.headers["Cache-Control"] = "no-store"  # keys and sign-in links
    return response


# --- the admin API's user routes (Bearer ADMIN_PASSWORD, as the other /api routes) -------------


def _api_body() -> dict[str, Any]:
    raw = read_body()
    if request.form:
        return request.form.to_dict()
    return _json_object() if raw.strip() else {}


@api.route("/get-user-list", methods=["GET", "POST"])
@require_admin
def api_user_list():
    """One page of users: account, today's use, limit, last activity."""
    params: dict[str, Any] = dict(request.args.items())
    params.update(_api_body())
    data = load(UserPageSchema(), params)
    search = params.get("q") if isinstance(params.get("q"), str) else None
    return jsonify(users.list_users(data["page"], data["page_size"], search))


@api.post("/rotate-user-key")
@require_admin
def api_rotate_key():
    """A new API key for the user; the old one is refused at once."""
    return _user_answer("rotate", _api_body())


@api.post("/revoke-user")
@require_admin
def api_revoke_user():
    """Shut the user out: key, web sessions and login links."""
    return _user_answer("revoke", _api_body())


@api.post("/set-user-daily-limit")
@require_admin
def api_set_daily_limit():
    """The user's own daily limit (null: USER_DAILY_LIMIT; 0: unlimited)."""
    return _user_answer("limit", _api_body())


@api.post("/user-login-link")
@require_admin
def api_login_link():
    """A new one-time login link for an existing user."""
    return _user_answer("link", _api_body())


# --- request statistics of the overview -------------------------------------------------------


@bp.after_app_request
def _count_chat_request(response: Response) -> Response:
    """One per-hour count per chat request, and whether it was answered with an error."""
    if request.endpoint in CHAT_ENDPOINTS:
        try:
            limits.record_request(response.status_code >= 400)
        except Exception:
            # The overview loses one count; the chat answer must not fail for it.
            log.warning("could not count a chat request for the overview", exc_info=True)
    return response
