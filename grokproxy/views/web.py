"""grokproxy's own web pages: the login link, the chat page and sign-out (HTML, not JSON)."""

from __future__ import annotations

from datetime import timedelta

from flask import (
    Blueprint,
    Response,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from .. import chat_history, users
from ..bodies import json_body
from ..errors import Forbidden, Unauthorized
from ..extensions import db
from ..models import Account, User

bp = Blueprint("web", __name__)

# Inline scripts and styles are never used, so the policy can forbid them outright.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
REFUSALS = {
    "used": (
        410,
        "This login link was already used",
        "Each login link signs you in once. Ask for a new link, or go to the chat page if this "
        "browser is still signed in.",
    ),
    "expired": (
        410,
        "This login link has expired",
        "Login links are valid for a limited time. Ask for a new link.",
    ),
    "invalid": (
        400,
        "This login link is not valid",
        "The link is incomplete or was changed. Copy the whole link you were given, or ask for "
        "a new one.",
    ),
}


@bp.record_once
def _session_cookie_settings(state) -> None:
    """Session cookies: HTTP-only, SameSite=Lax, Secure when the public URL is https."""
    config = state.app.config
    public_url = (config.get("PUBLIC_URL") or "").lower()
    config["SESSION_COOKIE_NAME"] = "grokproxy_session"
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"
    config["SESSION_COOKIE_SECURE"] = public_url.startswith("https://")
    config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=config["SESSION_LIFETIME_SECONDS"])
    # The cookie's signed timestamp stays that of the sign-in, so the lifetime is absolute: a
    # stolen cookie does not live on by being used.
    config["SESSION_REFRESH_EACH_REQUEST"] = False


def _page(template: str, status: int = 200, **context) -> Response:
    response = make_response(render_template(template, **context), status)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _signed_in_user() -> User | None:
    user_id = session.get("user_id")
    if not isinstance(user_id, int):
        return None
    user = db.session.get(User, user_id)
    if user is None or session.get("session_epoch") != user.session_epoch:
        # Signed out, or signed in again since: this session (or a copy of it) is over.
        session.clear()
        return None
    return user


@bp.get("/login/")
@bp.get("/login")
def sign_in_help():
    """Where a visitor without a session lands: how to sign in."""
    return _page("signin.html")


# `path:` so that a link mangled with a slash still gets the polite page, not a JSON 404.
@bp.get("/login/<path:link_token>")
def open_login_link(link_token: str):
    """Use a login link: start a session for its user and go to the chat page."""
    try:
        user = users.redeem_link(link_token)
    except users.LinkRefused as refused:
        status, title, advice = REFUSALS[refused.reason]
        return _page("link_refused.html", status, title=title, advice=advice)
    session.clear()
    session.permanent = True
    session["user_id"] = user.id
    session["session_epoch"] = user.session_epoch
    response = redirect(url_for("web.chat_page"), code=303)
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/chat")
def chat_page():
    """The chat page of the signed-in user."""
    user = _signed_in_user()
    if user is None:
        return redirect(url_for("web.sign_in_help"), code=303)
    account = db.session.get(Account, user.account_id) if user.account_id else None
    # No API base URL from the server: the page derives it from the browser's own location, so
    # it is right behind any proxy, port or path prefix without PUBLIC_URL.
    return _page(
        "chat.html", user_name=user.user_name, api_key=users.user_api_key(user), account=account
    )


@bp.post("/logout")
def logout():
    """End the session, and every other session of the same user (copied cookies included)."""
    user = _signed_in_user()
    if user is not None:
        users.end_sessions(user.id)
    session.clear()
    return redirect(url_for("web.sign_in_help", signed_out=1), code=303)


# ---- the chat page's own API: its history, under the web session -----------------------------

# Sent by the page on every change: a cross-site form cannot set it, and a cross-site script
# would need a CORS preflight these routes never grant.
PAGE_HEADER = "X-Chat-Page"


def _api_user() -> User:
    user = _signed_in_user()
    if user is None:
        raise Unauthorized("you are signed out: open your login link again", code="signed_out")
    if request.method != "GET" and request.headers.get(PAGE_HEADER) != "1":
        raise Forbidden(f"changes need the {PAGE_HEADER}: 1 header the chat page sends")
    return user


def _api(payload: dict, status: int = 200) -> Response:
    response = jsonify(payload)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _body() -> object:
    return json_body("the request body is empty: send a JSON object")


@bp.get("/chat/api/conversations")
def list_conversations():
    """The signed-in user's conversations, most recent first."""
    return _api({"data": chat_history.list_threads(_api_user())})


@bp.post("/chat/api/conversations")
def create_conversation():
    """Record the first turn of a conversation the page started."""
    user = _api_user()
    return _api(chat_history.record(user, None, _body()), 201)


@bp.get("/chat/api/conversations/<int:thread_id>")
def get_conversation(thread_id: int):
    """One conversation with its messages."""
    return _api(chat_history.get_thread(_api_user(), thread_id))


@bp.post("/chat/api/conversations/<int:thread_id>/messages")
def add_messages(thread_id: int):
    """Record more turns of a conversation (or replace its last exchange)."""
    user = _api_user()
    return _api(chat_history.record(user, thread_id, _body()))


@bp.patch("/chat/api/conversations/<int:thread_id>")
def rename_conversation(thread_id: int):
    """Rename a conversation."""
    user = _api_user()
    return _api(chat_history.rename(user, thread_id, _body()))


@bp.delete("/chat/api/conversations/<int:thread_id>")
def delete_conversation(thread_id: int):
    """Delete a conversation here and, best effort, on grok.com."""
    return _api(chat_history.remove(_api_user(), thread_id))


@bp.get("/chat/api/models")
def page_models():
    """The models for the page's picker, each with a short description, and the default."""
    _api_user()
    return _api(chat_history.page_models())
