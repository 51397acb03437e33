"""OpenAI's Responses API: `POST /v1/responses` (streamed or not), `GET`/`DELETE` one response."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from .. import limits, relay, response_store
from ..auth import Caller, chat_caller
from ..bodies import json_body
from ..errors import BadRequest
from ..images import image_url_maker
from ..logs import note_model
from ..openai import SSE_KEEPALIVE
from ..responses_api import ResponseBuilder, call_history, load_request, sse_event
from ..schemas import ChatRequest
from ..turns import ReplyReader, model_spec

bp = Blueprint("responses", __name__)
log = logging.getLogger(__name__)


@bp.post("/v1/responses")
@bp.post("/responses")
def create_response():
    """Answer a Responses API request over one grok.com chat turn."""
    caller = chat_caller()
    req = load_request(json_body("the request body is empty: send a JSON Responses API request"))
    note_model(req.model)
    spec = model_spec(req.model)
    messages = req.messages
    previous = None
    if req.previous_response_id:
        previous = response_store.find(
            caller, req.previous_response_id, param="previous_response_id"
        )
        if previous.conversation_id is None:
            raise BadRequest(
                f"response {previous.id!r} cannot be continued: grok.com named no conversation "
                "for it; send the whole input instead",
                param="previous_response_id",
            )
        messages = call_history(previous.body) + messages
    chat = ChatRequest(
        model=spec.name,
        messages=messages,
        stream=req.stream,
        conversation_id=previous.conversation_id if previous else None,
        parent_message_id=previous.reply_id if previous else None,
        tool_config=req.tool_config,
    )
    with limits.admitted(caller) as admission:
        opened = relay.open_reply(caller, chat, spec, read_all=not req.stream)
    reader = ReplyReader(req.tool_config, _image_url_maker(opened), opened.prompt.text)
    builder = ResponseBuilder(req, reader, previous_response_id=previous.id if previous else None)
    if req.stream:
        response = _stream(caller, builder, opened, spec.mode)
    else:
        for event in opened.content_events():
            builder.feed(event)
        body = builder.complete()
        if req.store:
            response_store.save(
                caller,
                body,
                reader.conversation_id or opened.conversation_id,
                reader.message_id or opened.response_id,
                new=True,
            )
        response = jsonify(body)
    response.headers.update(admission.headers())
    return response


def _stream(caller: Caller, builder: ResponseBuilder, opened: relay.OpenedReply, mode: str):
    """Relay the reply as Responses stream events; the stored copy is final before the client
    reads `response.completed`, so its next request can continue from it at once."""
    items = relay.relay_stream(opened)
    app = current_app._get_current_object()
    store = builder.request.store
    reader = builder.reader

    def save(new: bool) -> None:
        with app.app_context():
            response_store.save(
                caller,
                builder.response(),
                reader.conversation_id or opened.conversation_id,
                reader.message_id or opened.response_id,
                new=new,
            )

    if store:
        save(new=True)  # GET sees it in progress while it streams

    def generate() -> Iterator[bytes]:
        try:
            yield b"".join(sse_event(e) for e in builder.start())
            for item in items:
                if item is relay.KEEPALIVE:
                    yield SSE_KEEPALIVE
                elif isinstance(item, relay.StreamFailed):
                    events = builder.fail(item.error)
                    if store:
                        save(new=False)
                    yield b"".join(sse_event(e) for e in events)
                    break
                else:
                    out = b"".join(sse_event(e) for event in item for e in builder.feed(event))
                    if out:
                        yield out
            else:
                events = builder.finish()
                if store:
                    save(new=False)
                yield b"".join(sse_event(e) for e in events)
        finally:
            items.close()  # the client hung up (GeneratorExit) or we are done: upstream closes

    response = Response(generate(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.call_on_close(lambda: relay.finish_reply(app, opened, mode))
    return response


@bp.get("/v1/responses/<response_id>")
@bp.get("/responses/<response_id>")
def get_response(response_id: str):
    """A stored response of this caller."""
    caller = chat_caller()
    return jsonify(response_store.find(caller, response_id).body)


@bp.delete("/v1/responses/<response_id>")
@bp.delete("/responses/<response_id>")
def delete_response(response_id: str):
    """Remove a stored response of this caller."""
    caller = chat_caller()
    response_store.remove(caller, response_id)
    return jsonify({"id": response_id, "object": "response.deleted", "deleted": True})


def _image_url_maker(opened: relay.OpenedReply):
    """Generated images are served by grokproxy (`/images/<signed>`), never by assets.grok.com."""
    base = current_app.config.get("PUBLIC_URL") or request.url_root
    prefix = base.rstrip("/") + url_for("images.image", signed="S")[:-1]
    return image_url_maker(prefix, opened.account_id, opened.token)
