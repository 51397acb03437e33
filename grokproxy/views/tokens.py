"""Admin API of the token pool: batch-add, list and delete accounts (`Bearer ADMIN_PASSWORD`)."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, jsonify, request

from .. import console, tokens
from ..auth import require_admin
from ..bodies import parse_json, read_body
from ..errors import BadRequest
from ..schemas_admin import BatchAddSchema, DeleteSchema, PageSchema, load

bp = Blueprint("tokens", __name__, url_prefix="/api")

_batch_add = BatchAddSchema()
_page = PageSchema()
_delete = DeleteSchema()


def _json_body() -> Any:
    """The JSON body, None when the request has none or is a form; 400 when it is not JSON."""
    data = read_body()
    if not data or not request.is_json:
        return None
    return parse_json(data)


def _form_list(name: str) -> list[str] | None:
    """A list field sent as form data: repeated fields, a JSON array, or one value per line."""
    values = request.form.getlist(name)
    if not values:
        return None
    if len(values) == 1:
        text = values[0].strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                raise BadRequest(f"{name} is not a valid JSON array", param=name) from None
            if not isinstance(parsed, list):
                raise BadRequest(f"{name} must be a list", param=name)
            return parsed
        return [part for part in text.replace(",", "\n").splitlines() if part.strip()]
    return values


def _body_with_list(name: str) -> Any:
    """The body of a route whose one field is a list, from JSON or form data."""
    body = _json_body()
    if body is not None:
        return body
    values = _form_list(name)
    return {} if values is None else {name: values}


@bp.post("/batch-add-grok-token")
@require_admin
def batch_add():
    """Check tokens upstream and store the good ones; answer what happened to each."""
    data = load(_batch_add, _body_with_list("sso_token_list"))
    return jsonify(tokens.add_tokens(data["sso_token_list"]).as_dict())


@bp.route("/get-grok-list", methods=["GET", "POST"])
@require_admin
def get_list():
    """One page of the pool; page/page_size from the query, form or JSON body."""
    body = _json_body()  # first: the size limit applies before form parsing reads the body
    params: dict[str, Any] = dict(request.args.items())
    params.update(request.form.items())
    if body is not None:
        if not isinstance(body, dict):
            load(_page, body)  # raises the "must be a JSON object" error
        params.update(body)
    data = load(_page, params)
    return jsonify(tokens.list_accounts(data["page"], data["page_size"]))


@bp.post("/delete-grok-token")
@require_admin
def delete_tokens():
    """Remove accounts by email_md5; answer which were deleted and which were unknown."""
    data = load(_delete, _body_with_list("email_md5_list"))
    return jsonify(tokens.delete_accounts(data["email_md5_list"]))


@bp.post("/disable-grok-token")
@require_admin
def disable_tokens():
    """Take accounts out of rotation by email_md5; they keep their data until enabled."""
    data = load(_delete, _body_with_list("email_md5_list"))
    return jsonify(console.set_disabled(data["email_md5_list"], True))


@bp.post("/enable-grok-token")
@require_admin
def enable_tokens():
    """Put disabled accounts back into rotation by email_md5."""
    data = load(_delete, _body_with_list("email_md5_list"))
    return jsonify(console.set_disabled(data["email_md5_list"], False))
