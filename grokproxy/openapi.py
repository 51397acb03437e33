"""grokproxy's own API as an OpenAPI 3.1 document, built from the schemas the routes validate with.

Request bodies are the marshmallow schemas the views load (grokproxy.schemas, schemas_admin,
schemas_login); answers are described by the schemas below. `OPERATIONS` names every documented
route by its Flask endpoint; `document(app)` walks the app's URL map, so a route added without an
entry here (or an entry whose route is gone) fails tests/test_openapi.py. The paths are the bare
ones even when MIRROR_API_PREFIX is set: the public document must not reveal the prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import INCLUDE, Schema, fields

from .schemas import ChatRequestSchema, MessageContent, StrictBoolean
from .schemas_admin import BatchAddSchema, DeleteSchema, PageSchema
from .schemas_login import LoginSchema, LoginV2Schema, UserName
from .schemas_users import DailyLimitSchema, UserNameSchema, UserPageSchema

OPENAPI_VERSION = "3.1.0"
# Browser pages (HTML, session cookie) and the static files: not an API, not documented.
UNDOCUMENTED_ENDPOINTS = frozenset(
    {"static", "web.sign_in_help", "web.open_login_link", "web.chat_page", "web.logout"}
)
# The blueprint-level routes of the browser apps: the operator console (`/admin`, its own
# session cookie and CSRF token) and the chat page's own history API (`/chat/api`, the web
# session): each is called by its own page only, so they are not a contract for integrators.
UNDOCUMENTED_PREFIXES = ("admin.", "web.")


def undocumented(endpoint: str) -> bool:
    """Whether a route's endpoint is a browser page or page API, left out of the document."""
    return endpoint in UNDOCUMENTED_ENDPOINTS or endpoint.startswith(UNDOCUMENTED_PREFIXES)


class _Open(Schema):
    # Answers may grow fields: clients must ignore what they do not know.
    class Meta:
        unknown = INCLUDE


class ErrorDetailSchema(_Open):
    message = fields.String(required=True)
    type = fields.String(required=True)
    code = fields.String(required=True, allow_none=True)
    param = fields.String(required=True, allow_none=True)


class ErrorSchema(_Open):
    """The one error shape of every JSON error answer."""

    error = fields.Nested(ErrorDetailSchema, required=True)


class ModelSchema(_Open):
    id = fields.String(required=True)
    object = fields.String(required=True, metadata={"enum": ["model"]})
    created = fields.Integer(required=True)
    owned_by = fields.String(required=True)


class ModelListSchema(_Open):
    object = fields.String(required=True, metadata={"enum": ["list"]})
    data = fields.List(fields.Nested(ModelSchema), required=True)


class ChatMessageSchema(_Open):
    role = fields.String(required=True)
    content = fields.String(allow_none=True)


class ChoiceSchema(_Open):
    index = fields.Integer(required=True)
    message = fields.Nested(ChatMessageSchema, required=True)
    finish_reason = fields.String(allow_none=True)


class ChatCompletionSchema(_Open):
    id = fields.String(required=True)
    object = fields.String(required=True, metadata={"enum": ["chat.completion"]})
    created = fields.Integer(required=True)
    model = fields.String(required=True)
    choices = fields.List(fields.Nested(ChoiceSchema), required=True)


class AddedAccountSchema(_Open):
    email = fields.String(required=True)
    email_md5 = fields.String(required=True)
    status = fields.String(required=True)


class BatchAddResultSchema(_Open):
    email_list = fields.List(fields.Nested(AddedAccountSchema), required=True)
    failed = fields.List(fields.Raw(), required=True)


class AccountPageSchema(_Open):
    total = fields.Integer(required=True)
    page = fields.Integer(required=True)
    page_size = fields.Integer(required=True)
    pages = fields.Integer(required=True)
    data = fields.List(fields.Dict(), required=True)


class DeleteResultSchema(_Open):
    deleted = fields.List(fields.String(), required=True)
    not_found = fields.List(fields.String(), required=True)


class LoginAnswerSchema(_Open):
    login_url = fields.String(required=True)
    login_url_absolute = fields.String()
    login_url_expires_at = fields.String(required=True)
    api_key = fields.String(required=True)
    user_name = fields.String(required=True)
    email_md5 = fields.String(required=True)


class ResponsesRequestDoc(_Open):
    """What `POST /v1/responses` reads (grokproxy.responses_api validates it in full)."""

    model = fields.String(required=True)
    input = fields.Raw(required=True, metadata={"description": "a string or a list of items"})
    instructions = fields.String()
    stream = StrictBoolean()
    store = StrictBoolean()
    previous_response_id = fields.String()
    tools = fields.List(fields.Dict())
    tool_choice = fields.Raw()
    reasoning = fields.Dict()
    metadata = fields.Dict()
    max_output_tokens = fields.Integer()


class ResponseObjectSchema(_Open):
    id = fields.String(required=True)
    object = fields.String(required=True)
    status = fields.String(required=True)
    model = fields.String(required=True)
    output = fields.List(fields.Dict(), required=True)


class ResponseDeletedSchema(_Open):
    id = fields.String(required=True)
    object = fields.String(required=True)
    deleted = fields.Boolean(required=True)


class MessagesRequestDoc(_Open):
    """What `POST /v1/messages` reads (grokproxy.anthropic_api validates it in full)."""

    model = fields.String(required=True)
    messages = fields.List(fields.Dict(), required=True)
    max_tokens = fields.Integer(required=True)
    system = fields.Raw()
    stream = StrictBoolean()
    tools = fields.List(fields.Dict())
    tool_choice = fields.Dict()
    thinking = fields.Dict()
    metadata = fields.Dict()


class CountTokensRequestDoc(_Open):
    model = fields.String(required=True)
    messages = fields.List(fields.Dict(), required=True)
    system = fields.Raw()
    tools = fields.List(fields.Dict())


class MessageObjectSchema(_Open):
    id = fields.String(required=True)
    type = fields.String(required=True)
    role = fields.String(required=True)
    model = fields.String(required=True)
    content = fields.List(fields.Dict(), required=True)
    stop_reason = fields.String(allow_none=True, required=True)
    usage = fields.Dict(required=True)


class TokenCountSchema(_Open):
    input_tokens = fields.Integer(required=True)


class AnthropicErrorDetailSchema(_Open):
    type = fields.String(required=True)
    message = fields.String(required=True)


class AnthropicErrorSchema(_Open):
    """Anthropic's error shape, the one error shape of the Messages routes."""

    type = fields.String(required=True, metadata={"enum": ["error"]})
    error = fields.Nested(AnthropicErrorDetailSchema, required=True)


class DisabledResultSchema(_Open):
    disabled = fields.List(fields.String(), required=True)
    not_found = fields.List(fields.String(), required=True)


class EnabledResultSchema(_Open):
    enabled = fields.List(fields.String(), required=True)
    not_found = fields.List(fields.String(), required=True)


class UserSchema(_Open):
    id = fields.Integer(required=True)
    user_name = fields.String(required=True)
    email = fields.String(allow_none=True, required=True)
    account_status = fields.String(allow_none=True, required=True)
    used_today = fields.Integer(required=True)
    daily_limit = fields.Integer(allow_none=True, required=True)
    daily_limit_override = fields.Integer(allow_none=True, required=True)
    last_activity_at = fields.String(allow_none=True, required=True)
    last_login_at = fields.String(allow_none=True, required=True)
    revoked = fields.Boolean(required=True)
    created_at = fields.String(allow_none=True, required=True)


class UserListSchema(_Open):
    total = fields.Integer(required=True)
    page = fields.Integer(required=True)
    page_size = fields.Integer(required=True)
    pages = fields.Integer(required=True)
    data = fields.List(fields.Nested(UserSchema), required=True)


class UserKeySchema(_Open):
    user_name = fields.String(required=True)
    api_key = fields.String(required=True)


class UserRevokedSchema(_Open):
    user_name = fields.String(required=True)
    revoked = fields.Boolean(required=True)


class UserLimitSchema(_Open):
    user_name = fields.String(required=True)
    daily_limit = fields.Integer(allow_none=True, required=True)
    daily_limit_override = fields.Integer(allow_none=True, required=True)


class UserLinkSchema(_Open):
    user_name = fields.String(required=True)
    login_url = fields.String(required=True)
    login_url_absolute = fields.String()
    login_url_expires_at = fields.String(required=True)


class DatabaseStatusSchema(_Open):
    ok = fields.Boolean(required=True)
    dialect = fields.String(required=True)
    error = fields.String()


class HealthSchema(_Open):
    status = fields.String(required=True, metadata={"enum": ["ok", "unavailable"]})
    database = fields.Nested(DatabaseStatusSchema, required=True)


@dataclass(frozen=True)
class Operation:
    """What the document says about one endpoint (all of its methods)."""

    summary: str
    tag: str
    auth: str | None  # "api", "admin", "metrics" or None
    answer: type[Schema] | str | None  # a schema, a media type, or None for no body
    body: type[Schema] | None = None
    stream: bool = False  # a text/event-stream answer besides the JSON one
    errors_only: bool = False  # every answer is an error (a route that points elsewhere)
    error: str = "Error"  # the error shape of its answers (Anthropic's on the Messages routes)


OPERATIONS: dict[str, Operation] = {
    "health.healthz": Operation(
        "Liveness and database reachability (503 when the database does not answer)",
        "health",
        None,
        HealthSchema,
    ),
    "metrics.scrape": Operation(
        "Prometheus metrics (Bearer METRICS_TOKEN when set)", "health", "metrics", "text/plain"
    ),
    "docs.openapi_document": Operation("This OpenAPI document", "docs", None, "application/json"),
    "docs.docs_page": Operation("This document as a readable page", "docs", None, "text/html"),
    "chat.list_models": Operation("The model catalog", "openai", "api", ModelListSchema),
    "chat.get_model": Operation("One model of the catalog", "openai", "api", ModelSchema),
    "chat.chat_completions": Operation(
        "Chat completion, streamed as server-sent events when `stream` is true",
        "openai",
        "api",
        ChatCompletionSchema,
        body=ChatRequestSchema,
        stream=True,
    ),
    "responses.create_response": Operation(
        "OpenAI's Responses API: a model response, streamed as its event sequence when "
        "`stream` is true",
        "openai",
        "api",
        ResponseObjectSchema,
        body=ResponsesRequestDoc,
        stream=True,
    ),
    "responses.get_response": Operation(
        "A stored response of this caller", "openai", "api", ResponseObjectSchema
    ),
    "responses.delete_response": Operation(
        "Delete a stored response of this caller", "openai", "api", ResponseDeletedSchema
    ),
    "messages.create_message": Operation(
        "Anthropic's Messages API: a message, streamed as Anthropic's events when `stream` is "
        "true; errors in Anthropic's shape",
        "anthropic",
        "api",
        MessageObjectSchema,
        body=MessagesRequestDoc,
        stream=True,
        error="AnthropicError",
    ),
    "messages.count_message_tokens": Operation(
        "The input token estimate of a Messages request (the same estimate as usage)",
        "anthropic",
        "api",
        TokenCountSchema,
        body=CountTokensRequestDoc,
        error="AnthropicError",
    ),
    "images.image": Operation(
        "A generated image; the signed link is the permission", "openai", None, "image/*"
    ),
    "tokens.batch_add": Operation(
        "Check SSO tokens upstream and add the good ones to the pool",
        "admin",
        "admin",
        BatchAddResultSchema,
        body=BatchAddSchema,
    ),
    "tokens.get_list": Operation(
        "One page of the pool (page and page_size from the query or a JSON body)",
        "admin",
        "admin",
        AccountPageSchema,
        body=PageSchema,
    ),
    "tokens.delete_tokens": Operation(
        "Delete accounts by email_md5",
        "admin",
        "admin",
        DeleteResultSchema,
        body=DeleteSchema,
    ),
    "tokens.disable_tokens": Operation(
        "Take accounts out of rotation by email_md5 (they keep their data until enabled)",
        "admin",
        "admin",
        DisabledResultSchema,
        body=DeleteSchema,
    ),
    "tokens.enable_tokens": Operation(
        "Put disabled accounts back into rotation by email_md5",
        "admin",
        "admin",
        EnabledResultSchema,
        body=DeleteSchema,
    ),
    "admin_api.api_user_list": Operation(
        "One page of users: account, today's use, daily limit, last activity",
        "admin",
        "admin",
        UserListSchema,
        body=UserPageSchema,
    ),
    "admin_api.api_rotate_key": Operation(
        "Give a user a new API key; the old one stops working at once",
        "admin",
        "admin",
        UserKeySchema,
        body=UserNameSchema,
    ),
    "admin_api.api_revoke_user": Operation(
        "Shut a user out: API key, web sessions and login links",
        "admin",
        "admin",
        UserRevokedSchema,
        body=UserNameSchema,
    ),
    "admin_api.api_set_daily_limit": Operation(
        "Set a user's daily limit (null: back to USER_DAILY_LIMIT; 0: unlimited)",
        "admin",
        "admin",
        UserLimitSchema,
        body=DailyLimitSchema,
    ),
    "admin_api.api_login_link": Operation(
        "A new one-time login link for a user",
        "admin",
        "admin",
        UserLinkSchema,
        body=UserNameSchema,
    ),
    "login.login": Operation(
        "Bind a user to a pool account; answers the user's API key and a login link",
        "admin",
        "admin",
        LoginAnswerSchema,
        body=LoginSchema,
    ),
    "login.login_v2": Operation(
        "Add or refresh an SSO token, bind a user to its account; answers key and link",
        "admin",
        "admin",
        LoginAnswerSchema,
        body=LoginV2Schema,
    ),
}

SECURITY_SCHEMES = {
    "api": {
        "type": "http",
        "scheme": "bearer",
        "description": "A pool key (AUTHORIZATION), a user's API key, or a raw SSO token.",
    },
    "admin": {"type": "http", "scheme": "bearer", "description": "ADMIN_PASSWORD."},
    "metrics": {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN, when set."},
}
_CONVERTER = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?([A-Za-z_]\w*)>")


def openapi_path(rule: str) -> str:
    """A werkzeug rule (`/models/<path:model_id>`) as an OpenAPI path (`/models/{model_id}`)."""
    return _CONVERTER.sub(r"{\1}", rule)


def documented_rules(app: Flask) -> list[tuple[str, str, str]]:
    """(OpenAPI path, method, endpoint) of every route the document must describe."""
    out = []
    for rule in app.url_map.iter_rules():
        if undocumented(rule.endpoint):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((openapi_path(rule.rule), method.lower(), rule.endpoint))
    return sorted(out)


def build_spec(app: Flask) -> APISpec:
    """The APISpec of every documented route of `app`."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="grokproxy",
        version="1",
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={
            "description": "grokproxy's own API: OpenAI-compatible chat and models over a pool "
            "of grok.com accounts, the admin API of the pool and its users, health and metrics. "
            "A deployment may serve the OpenAI-compatible routes under a secret path prefix."
        },
    )
    # Fields of our own whose JSON type marshmallow cannot tell apiSpec.
    plugin.map_to_openapi_type(StrictBoolean, "boolean", None)
    plugin.map_to_openapi_type(UserName, "string", None)
    plugin.map_to_openapi_type(MessageContent, None, None)
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    spec.components.schema("Error", schema=ErrorSchema)
    spec.components.schema("AnthropicError", schema=AnthropicErrorSchema)
    for path, method, endpoint in documented_rules(app):
        operation = OPERATIONS.get(endpoint)
        if operation is None:
            raise LookupError(f"route {method.upper()} {path} ({endpoint}) is not documented")
        spec.path(path=path, operations={method: _operation(path, method, endpoint, operation)})
    return spec


def _operation(path: str, method: str, endpoint: str, op: Operation) -> dict[str, Any]:
    error = {
        "description": "An error, in the one error shape"
        if op.error == "Error"
        else "An error, in Anthropic's error shape",
        "content": {"application/json": {"schema": op.error}},
    }
    responses: dict[str, Any] = {"default": error}
    if not op.errors_only:
        responses["200"] = {"description": "OK", "content": _answer_content(op)}
    out: dict[str, Any] = {
        "operationId": f"{method}_{endpoint.replace('.', '_')}_{_slug(path)}",
        "summary": op.summary,
        "tags": [op.tag],
        "responses": responses,
    }
    if op.auth is not None:
        out["security"] = [{op.auth: []}]
    params = re.findall(r"{(\w+)}", path)
    if params:
        out["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in params
        ]
    if op.body is not None and method == "get":
        out.setdefault("parameters", []).append({"in": "query", "schema": op.body})
    if op.body is not None and method != "get":
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": op.body}},
        }
    return out


def _answer_content(op: Operation) -> dict[str, Any]:
    if op.answer is None:
        return {}
    if isinstance(op.answer, str):
        schema: dict[str, Any] = {"type": "string"}
        if op.answer == "application/json":
            schema = {"type": "object"}
        return {op.answer: {"schema": schema}}
    content: dict[str, Any] = {"application/json": {"schema": op.answer}}
    if op.stream:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    return content


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of `app` as a dict (built once per app)."""
    cached = app.extensions.get("grokproxy.openapi")
    if cached is None:
        cached = build_spec(app).to_dict()
        app.extensions["grokproxy.openapi"] = cached
    return cached
