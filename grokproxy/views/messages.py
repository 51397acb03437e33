"""Anthropic's Messages API: `POST /v1/messages` (streamed or not) and `count_tokens`.

Errors on these routes are answered in Anthropic's shape (`{"type": "error", "error": ...}`),
which Anthropic's SDKs and Claude Code read; the status codes stay grokproxy's own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from .. import limits, relay
from ..anthropic_api import MessageBuilder, count_tokens, error_body, load_request, sse_event
from ..auth import chat_caller
from ..bodies import json_body
from ..errors import APIError, describe_validation, http_exception_error
from ..images import image_url_maker
from ..logs import note_model
from ..openai import SSE_KEEPALIVE
from ..schemas import ChatRequest
from ..turns import ReplyReader, model_names, resolve_model

bp = Blueprint("messages", __name__)
log = logging.getLogger(__name__)


def _anthropic_error(status: int, message: str, headers: dict[str, str] | None = None):
    response = jsonify(error_body(status, message))
    response.status_code = status
    response.headers.update(headers or {})
    return response


@bp.errorhandler(APIError)
def _api_error(exc: APIError):
    return _anthropic_error(exc.status, exc.message, exc.headers())


@bp.errorhandler(ValidationError)
def _validation_error(exc: ValidationError):
    details = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
    return _anthropic_error(400, describe_validation(details))


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    error = http_exception_error(exc)
    return _anthropic_error(error.status, error.message, error.headers())


def _caller():
    """The caller by `x-api-key` (as Anthropic's clients send it) or a Bearer, same keys."""
    key = request.headers.get("x-api-key", "").strip()
    if key and not request.headers.get("Authorization"):
        # One authentication path for every API: the key is read as the Bearer it stands for.
        request.environ["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return chat_caller()


def _spec(model: str):
    spec = resolve_model(model)
    if spec is None:
        raise APIError(
            f"model: {model!r} does not exist; available: {', '.join(model_names())}",
            status=404,
        )
    return spec


@bp.post("/v1/messages")
def create_message():
    """Answer an Anthropic Messages request over one grok.com chat turn."""
    caller = _caller()
    req = load_request(json_body("the request body is empty: send a JSON Messages request"))
    note_model(req.model)
    spec = _spec(req.model)
    chat = ChatRequest(
        model=spec.name, messages=req.messages, stream=req.stream, tool_config=req.tool_config
    )
    with limits.admitted(caller) as admission:
        opened = relay.open_reply(caller, chat, spec, read_all=not req.stream)
    reader = ReplyReader(req.tool_config, _image_url_maker(opened), opened.prompt.text)
    builder = MessageBuilder(req, reader)
    if req.stream:
        response = _stream(builder, opened, spec.mode)
    else:
        for event in opened.content_events():
            builder.feed(event)
        response = jsonify(builder.complete())
    response.headers.update(admission.headers())
    return response


@bp.post("/v1/messages/count_tokens")
def count_message_tokens():
    """The input token estimate a Messages request would report in its usage."""
    _caller()
    req = load_request(
        json_body("the request body is empty: send a JSON Messages request"), counting=True
    )
    _spec(req.model)
    return jsonify(count_tokens(req))


def _stream(builder: MessageBuilder, opened: relay.OpenedReply, mode: str) -> Response:
    """Relay the reply as Anthropic's stream events; no database work happens in here."""
    items = relay.relay_stream(opened)

    def generate() -> Iterator[bytes]:
        try:
            yield b"".join(sse_event(e) for e in builder.start())
            for item in items:
                if item is relay.KEEPALIVE:
                    yield SSE_KEEPALIVE
                elif isinstance(item, relay.StreamFailed):
                    yield sse_event(builder.error_event(item.error))
                    break
                else:
                    out = b"".join(sse_event(e) for event in item for e in builder.feed(event))
                    if out:
                        yield out
            else:
                yield b"".join(sse_event(e) for e in builder.finish())
        finally:
            items.close()  # the client hung up (GeneratorExit) or we are done: upstream closes

    response = Response(generate(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    app = current_app._get_current_object()
    response.call_on_close(lambda: relay.finish_reply(app, opened, mode))
    return response


def _image_url_maker(opened: relay.OpenedReply):
    """Generated images are served by grokproxy (`/images/<signed>`), never by assets.grok.com."""
    base = current_app.config.get("PUBLIC_URL") or request.url_root
    prefix = base.rstrip("/") + url_for("images.image", signed="S")[:-1]
    return image_url_maker(prefix, opened.account_id, opened.token)
