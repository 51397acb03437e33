"""Admin login routes: bind a user to an account and hand out its API key and login link."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from .. import users
from ..auth import require_admin
from ..bodies import parse_json, read_body
from ..errors import BadRequest
from ..schemas_login import LoginSchema, LoginV2Schema

bp = Blueprint("login", __name__)


def _body() -> dict[str, Any]:
    """The request's fields, from a JSON object or a form."""
    raw = read_body()  # first: the size limit applies before form parsing reads the body
    if request.form:
        return request.form.to_dict()
    if not raw.strip():
        return {}
    try:
        payload = parse_json(raw)
    except BadRequest as error:
        if error.code != "invalid_json":
            raise
        payload = None
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object or form data", code="invalid_json")
    return payload


def _answer(result: users.LoginResult):
    path = f"/login/{result.link_token}"
    body: dict[str, Any] = {
        "login_url": path,
        "api_key": result.api_key,
        "user_name": result.user_name,
        "email_md5": result.email_md5,
    }
    public_url = current_app.config.get("PUBLIC_URL")
    if public_url:
        body["login_url_absolute"] = public_url.rstrip("/") + path
    elif current_app.config["TRUSTED_PROXY_COUNT"]:
        # Host, port and scheme as the trusted proxy forwarded them (ProxyFix).
        body["login_url_absolute"] = request.host_url.rstrip("/") + path
    body["login_url_expires_at"] = result.link_expires_at.isoformat(timespec="seconds")
    response = jsonify(body)
    # The answer carries a key and a sign-in link: no cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/api/login")
@require_admin
def login():
    """Bind `user_name` to the pool account of `email_md5`."""
    data = LoginSchema().load(_body())
    return _answer(users.login(data["user_name"], data["email_md5"]))


@bp.post("/api/login-v2")
@require_admin
def login_v2():
    """Add or refresh `sso_token` in the pool, then bind `user_name` to its account."""
    data = LoginV2Schema().load(_body())
    return _answer(users.login_v2(data["user_name"], data["sso_token"]))
