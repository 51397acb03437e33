"""OpenAI-compatible routes: chat completions (streamed or not), models, CORS for browsers."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from .. import limits, pool, relay
from ..auth import chat_caller
from ..bodies import json_body
from ..errors import NotFound
from ..images import image_url_maker
from ..logs import note_model
from ..openai import SSE_DONE, SSE_KEEPALIVE, CompletionBuilder, sse
from ..schemas import load_chat_request
from ..turns import model_spec
from ..upstream import model_catalog

bp = Blueprint("chat", __name__)
log = logging.getLogger(__name__)

# Paths that browsers call cross-origin: every OpenAI route, with and without the /v1 prefix.
CORS_PREFIXES = ("/v1/", "/chat/completions", "/models")
EXPOSED_HEADERS = (
    "X-Conversation-Id, X-Message-Id, Retry-After, x-should-retry, "
    "x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests"
)


def _is_cors_path(path: str) -> bool:
    return path.startswith(CORS_PREFIXES)


def _allowed_origin() -> str | None:
    origins = current_app.config["CORS_ORIGINS"]
    origin = request.headers.get("Origin")
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


@bp.before_app_request
def _preflight():
    """Answer CORS preflights on the OpenAI routes before auth (browsers send no credentials)."""
    if request.method != "OPTIONS" or not _is_cors_path(request.path):
        return None
    response = Response(status=204)
    origin = _allowed_origin()
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        # Reflect what the browser asks for: the JS SDK adds x-stainless-* headers.
        asked = request.headers.get("Access-Control-Request-Headers")
        response.headers["Access-Control-Allow-Headers"] = asked or "Authorization, Content-Type"
        response.headers["Access-Control-Max-Age"] = "86400"
        if origin != "*":
            response.headers["Vary"] = "Origin"
    return response


@bp.after_app_request
def _cors_headers(response: Response) -> Response:
    """CORS headers on every OpenAI-route answer, errors included."""
    if _is_cors_path(request.path) and "Access-Control-Allow-Origin" not in response.headers:
        origin = _allowed_origin()
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            if origin != "*":
                response.headers.add("Vary", "Origin")
    return response


@bp.get("/v1/models")
@bp.get("/models")
def list_models():
    """The catalog models some usable account can serve (all with MODELS_LIST_ALL), OpenAI's
    list shape. A caller with its own SSO token sees them all: its tier is not known here."""
    caller = chat_caller()
    specs = list(model_catalog())
    if caller.kind != "sso" and not current_app.config["MODELS_LIST_ALL"]:
        tiers = pool.servable_tiers()
        specs = [spec for spec in specs if any(pool.tier_has(t, spec.mode) for t in tiers)]
    return jsonify({"object": "list", "data": [_model(spec) for spec in specs]})


@bp.get("/v1/models/<path:model_id>")
@bp.get("/models/<path:model_id>")
def get_model(model_id: str):
    """One model of the catalog."""
    chat_caller()
    spec = model_catalog().get(model_id)
    if spec is None:
        raise NotFound(f"model {model_id!r} does not exist", code="model_not_found")
    return jsonify(_model(spec))


def _model(spec) -> dict:
    return {"id": spec.name, "object": "model", "created": spec.created, "owned_by": spec.owned_by}


@bp.post("/v1/chat/completions")
@bp.post("/chat/completions")
def chat_completions():
    """Translate an OpenAI chat request to grok.com and the answer back."""
    caller = chat_caller()
    payload = _json_body()
    chat = load_chat_request(payload)
    note_model(chat.model)
    spec = model_spec(chat.model)  # a catalog name, or one of GROK_MODEL_ALIASES
    with limits.admitted(caller) as admission:
        opened = relay.open_reply(caller, chat, spec, read_all=not chat.stream)
    builder = CompletionBuilder(
        chat.model,
        thinking_format=current_app.config["THINKING_FORMAT"],
        image_url=_image_url_maker(opened),
        include_usage=chat.include_usage,
        prompt_text=opened.prompt.text,
        tool_config=chat.tool_config,
    )
    response = (
        _complete(builder, opened) if not chat.stream else _stream(builder, opened, spec.mode)
    )
    response.headers.update(admission.headers())
    return response


def _json_body():
    return json_body("the request body is empty: send a JSON chat completion request")


def _id_headers(conversation_id: str | None, message_id: str | None) -> dict[str, str]:
    headers = {}
    if conversation_id:
        headers["X-Conversation-Id"] = conversation_id
    if message_id:
        headers["X-Message-Id"] = message_id
    return headers


def _complete(builder: CompletionBuilder, opened: relay.OpenedReply) -> Response:
    """Non-stream: every event was read during the attempt; build one chat.completion."""
    for event in opened.content_events():
        builder.feed(event)
    response = jsonify(builder.completion())
    response.headers.update(_id_headers(builder.conversation_id, builder.message_id))
    return response


def _stream(builder: CompletionBuilder, opened: relay.OpenedReply, mode: str) -> Response:
    """Relay the rest of the upstream reply as SSE; no database work happens in here."""
    items = relay.relay_stream(opened)

    def generate() -> Iterator[bytes]:
        try:
            yield sse(builder.start())
            for item in items:
                if item is relay.KEEPALIVE:
                    yield SSE_KEEPALIVE
                elif isinstance(item, relay.StreamFailed):
                    yield sse(builder.error_chunk(item.error))
                    break
                else:
                    # One write per batch: a busy server makes fewer, larger writes, not later.
                    out = b"".join(sse(chunk) for event in item for chunk in builder.feed(event))
                    if out:
                        yield out
            else:
                yield b"".join(sse(chunk) for chunk in builder.finish())
            yield SSE_DONE
        finally:
            items.close()  # the client hung up (GeneratorExit) or we are done: upstream closes

    response = Response(generate(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    # Ids known from the pre-read; the chunks carry them too once the builder has seen them.
    response.headers.update(_id_headers(opened.conversation_id, opened.response_id))
    app = current_app._get_current_object()
    response.call_on_close(lambda: relay.finish_reply(app, opened, mode))
    return response


def _image_url_maker(opened: relay.OpenedReply):
    """Generated images are served by grokproxy (`/images/<signed>`), never by assets.grok.com."""
    # Read now: the stream runs after the request context is gone.
    base = current_app.config.get("PUBLIC_URL") or request.url_root
    prefix = base.rstrip("/") + url_for("images.image", signed="S")[:-1]
    return image_url_maker(prefix, opened.account_id, opened.token)
