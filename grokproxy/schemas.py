"""Marshmallow schemas for request bodies.

`ChatRequestSchema` validates `POST /v1/chat/completions`. It accepts every shape that real
OpenAI clients send (see spec/clients.md §1.9) and ignores fields grok.com has no use for
(`temperature`, `max_tokens`, `user`, `tools`, ...), so no client ever gets a 400 for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
ID_MAX_LENGTH = 128

_IMAGE_URL_SCHEMES = ("data:", "http://", "https://")
# NUL cannot be stored in PostgreSQL text and a lone UTF-16 surrogate cannot be encoded as UTF-8
# at all: text holding either could never reach grok.com or the database.
_UNSENDABLE = re.compile("[\x00\ud800-\udfff]")
UNSENDABLE_TEXT = "Must not contain NUL characters or unpaired UTF-16 surrogates."
MAX_HOST_LENGTH = 253


def _sendable(text: str) -> str:
    if _UNSENDABLE.search(text):
        raise ValidationError(UNSENDABLE_TEXT)
    return text


def _check_http_url(url: str) -> None:
    """An http(s) image URL that can be fetched at all: valid port, host and IPv6 brackets."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port outside 0-65535)
        host = parts.hostname
    except ValueError:
        raise ValidationError(
            "image_url.url is not a valid URL (check the host and port)."
        ) from None
    if not host:
        raise ValidationError("image_url.url needs a host name.")
    try:
        ascii_host = host.encode("idna")  # refuses empty labels and labels over 63 characters
    except UnicodeError:
        raise ValidationError("image_url.url has an invalid host name.") from None
    if len(ascii_host) > MAX_HOST_LENGTH:
        raise ValidationError("image_url.url has a host name longer than 253 characters.")


class StrictBoolean(fields.Field):
    """A JSON boolean: unlike `fields.Boolean`, the strings "yes"/"1" and numbers are rejected."""

    default_error_messages = {"invalid": "Must be true or false."}  # noqa: RUF012

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class MessageContent(fields.Field):
    """`content`: a string, null, or a list of `text` / `image_url` parts (normalised on load).

    Parts come out as `{"type": "text", "text": str}` or
    `{"type": "image_url", "image_url": {"url": str, "detail": str | None}}`; a bare-string
    `image_url` is wrapped, and assistant `refusal` parts become text parts.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, str):
            return _sendable(value)
        if not isinstance(value, list):
            raise ValidationError("Must be a string or a list of content parts.")
        parts: list[dict[str, Any]] = []
        errors: dict[int, list[str]] = {}
        for index, raw in enumerate(value):
            try:
                parts.append(_load_part(raw))
            except ValidationError as err:
                errors[index] = err.messages if isinstance(err.messages, list) else [str(err)]
        if errors:
            raise ValidationError(errors)
        return parts


def _load_part(raw: Any) -> dict[str, Any]:
    """Validate and normalise one content part."""
    if not isinstance(raw, dict):
        raise ValidationError("Content part must be an object with a 'type'.")
    kind = raw.get("type")
    if kind == "text":
        text = raw.get("text")
        if not isinstance(text, str):
            raise ValidationError("Text part needs a string 'text'.")
        return {"type": "text", "text": _sendable(text)}
    if kind == "refusal":
        # Echoed assistant history may carry refusal parts; they read as plain text.
        text = raw.get("refusal")
        if not isinstance(text, str):
            raise ValidationError("Refusal part needs a string 'refusal'.")
        return {"type": "text", "text": _sendable(text)}
    if kind == "image_url":
        image = raw.get("image_url")
        detail = None
        if isinstance(image, dict):
            detail = image.get("detail")
            if detail is not None and not isinstance(detail, str):
                raise ValidationError("image_url.detail must be a string.")
            image = image.get("url")
        if not isinstance(image, str) or not image.strip():
            raise ValidationError("Image part needs 'image_url' as {\"url\": ...} or a URL string.")
        url = _sendable(image.strip())
        if not url.lower().startswith(_IMAGE_URL_SCHEMES):
            raise ValidationError("image_url.url must be a data: URL or an http(s) URL.")
        if not url.lower().startswith("data:"):
            _check_http_url(url)
        return {"type": "image_url", "image_url": {"url": url, "detail": detail}}
    if isinstance(kind, str):
        # Audio and file parts are rejected, not dropped: answering without the attachment the
        # user sent would be a wrong answer rather than a degraded one.
        raise ValidationError(
            f"Content part type {kind!r} is not supported; use 'text' or 'image_url'."
        )
    raise ValidationError("Content part must be an object with a 'type'.")


def has_content(content: Any) -> bool:
    """True when normalised message content carries non-blank text or an image."""
    if isinstance(content, str):
        return bool(content.strip())
    if isinstance(content, list):
        return any(part["type"] == "image_url" or part.get("text", "").strip() for part in content)
    return False


class MessageSchema(Schema):
    """One chat message; other fields (`name`, `tool_calls`, `reasoning_content`) are dropped."""

    class Meta:
        unknown = EXCLUDE

    error_messages = {"type": "Each message must be an object with 'role' and 'content'."}  # noqa: RUF012

    role = fields.String(
        required=True,
        error_messages={"required": "Every message needs a 'role'."},
        validate=validate.OneOf(ROLES, error="Must be one of: " + ", ".join(ROLES) + "."),
    )
    content = MessageContent(allow_none=True)

    @validates_schema
    def _content_present(self, data: dict[str, Any], **kwargs: Any) -> None:
        # Assistant turns that only made tool calls legitimately have null or missing content.
        if data.get("content") is None and data.get("role") not in (None, "assistant"):
            raise ValidationError(
                "Content is required (null is allowed only for assistant messages).", "content"
            )

    @post_load
    def _fill_content(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data.setdefault("content", None)
        return data


class StreamOptionsSchema(Schema):
    """`stream_options`: only `include_usage` matters to us."""

    class Meta:
        unknown = EXCLUDE

    include_usage = StrictBoolean(load_default=False, allow_none=True)


def _printable(value: str) -> None:
    # Ids are grok.com UUIDs: NUL, control characters and lone surrogates could not even be
    # stored (PostgreSQL refuses NUL; no database encodes a lone surrogate).
    if not value.isprintable():
        raise ValidationError("Must contain only printable characters.")


def _optional_id() -> fields.String:
    return fields.String(
        allow_none=True,
        validate=[
            validate.Length(
                min=1, max=ID_MAX_LENGTH, error=f"Must be 1 to {ID_MAX_LENGTH} characters."
            ),
            _printable,
        ],
    )


@dataclass
class ChatRequest:
    """A validated chat completion request, with messages normalised (see `MessageContent`)."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    conversation_id: str | None = None
    parent_message_id: str | None = None


class ChatRequestSchema(Schema):
    """Body of `POST /v1/chat/completions`; other OpenAI fields are accepted and ignored."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(
        required=True,
        validate=validate.Regexp(r"\S", error="Must be a non-empty model name."),
        error_messages={"required": "The model to use is required.", "null": "Must not be null."},
    )
    messages = fields.List(
        fields.Nested(MessageSchema),
        required=True,
        validate=validate.Length(min=1, error="Must contain at least one message."),
        error_messages={
            "required": "A list of messages is required.",
            "invalid": "Must be a list of message objects.",
        },
    )
    stream = StrictBoolean(load_default=False, allow_none=True)
    stream_options = fields.Nested(StreamOptionsSchema, allow_none=True)
    conversation_id = _optional_id()
    parent_message_id = _optional_id()

    @validates_schema
    def _needs_user_message(self, data: dict[str, Any], **kwargs: Any) -> None:
        messages = data.get("messages")
        if not messages:
            return  # already reported by the field validators
        if not any(m["role"] == "user" and has_content(m.get("content")) for m in messages):
            raise ValidationError(
                "At least one user message with non-empty content is required.", "messages"
            )

    @post_load
    def _make_request(self, data: dict[str, Any], **kwargs: Any) -> ChatRequest:
        options = data.get("stream_options") or {}
        return ChatRequest(
            model=data["model"].strip(),
            messages=data["messages"],
            stream=bool(data.get("stream")),
            include_usage=bool(options.get("include_usage")),
            conversation_id=data.get("conversation_id"),
            parent_message_id=data.get("parent_message_id"),
        )


# One instance for every request: building a Schema deep-copies its fields, which cost more than
# the validation itself. load() keeps no state on the instance, so threads can share it.
_CHAT_REQUEST_SCHEMA = ChatRequestSchema()


def load_chat_request(payload: Any) -> ChatRequest:
    """Validate a decoded JSON body into a `ChatRequest`; raises `ValidationError`."""
    if not isinstance(payload, dict):
        raise ValidationError({"_schema": ["The request body must be a JSON object."]})
    return _CHAT_REQUEST_SCHEMA.load(payload)
