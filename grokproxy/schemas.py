"""Marshmallow schemas for request bodies.

`ChatRequestSchema` validates `POST /v1/chat/completions`. It accepts every shape that real
OpenAI clients send (text and image_url parts, data: or http(s) URLs, role developer) and
ignores fields grok.com has no use for (`temperature`, `max_tokens`, `user`, ...), so no
client ever gets a 400 for them. Tools
(`tools`, `tool_choice`, `parallel_tool_calls`, the legacy `functions` / `function_call`) are
validated and become a `grokproxy.tools.ToolConfig`: a bad tool definition is a 400 naming
the field.
"""

from __future__ import annotations

import json
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

from grokproxy.tools import CHOICES, ToolConfig, ToolSpec

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


# OpenAI's rule for function names.
FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
FUNCTION_NAME_RULE = "Must be 1 to 64 letters, digits, underscores or dashes."


class HistoryToolCalls(fields.Field):
    """An assistant message's `tool_calls`, normalised to `{id, type, function{name, arguments}}`.

    History is what clients echo back, so it is read leniently: an entry without a function
    name carries nothing the model could read and is skipped; object arguments are serialised.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValidationError("Must be a list of tool calls.")
        calls = []
        for index, raw in enumerate(value):
            if not isinstance(raw, dict):
                raise ValidationError({index: ["Each tool call must be an object."]})
            call = _history_call(raw.get("function"), raw.get("id"), index)
            if call is not None:
                calls.append(call)
        return calls


def _history_call(function: Any, call_id: Any, index: int | str) -> dict[str, Any] | None:
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return None
    arguments = function.get("arguments")
    if isinstance(arguments, dict | list):
        arguments = json.dumps(arguments, ensure_ascii=False)
    elif arguments is not None and not isinstance(arguments, str):
        raise ValidationError({index: ["function.arguments must be a JSON string."]})
    return {
        "id": call_id if isinstance(call_id, str) else None,
        "type": "function",
        "function": {"name": _sendable(function["name"]), "arguments": _sendable(arguments or "")},
    }


class MessageSchema(Schema):
    """One chat message; fields grok.com cannot use (`reasoning_content`, ...) are dropped.

    Kept for the tool protocol: an assistant's `tool_calls` (and legacy `function_call`, read
    as one tool call), a tool message's `tool_call_id`, and a function message's `name`.
    """

    class Meta:
        unknown = EXCLUDE

    error_messages = {"type": "Each message must be an object with 'role' and 'content'."}  # noqa: RUF012

    role = fields.String(
        required=True,
        error_messages={"required": "Every message needs a 'role'."},
        validate=validate.OneOf(ROLES, error="Must be one of: " + ", ".join(ROLES) + "."),
    )
    content = MessageContent(allow_none=True)
    tool_calls = HistoryToolCalls(allow_none=True)
    function_call = fields.Raw(allow_none=True)
    tool_call_id = fields.String(allow_none=True, validate=validate.Length(max=256))
    name = fields.String(allow_none=True, validate=validate.Length(max=256))

    @validates_schema
    def _content_present(self, data: dict[str, Any], **kwargs: Any) -> None:
        # Assistant turns that only made tool calls legitimately have null or missing content.
        if data.get("content") is None and data.get("role") not in (None, "assistant"):
            raise ValidationError(
                "Content is required (null is allowed only for assistant messages).", "content"
            )
        content = data.get("content")
        is_result = data.get("role") in ("tool", "function")
        if is_result and isinstance(content, list) and any(p["type"] != "text" for p in content):
            raise ValidationError("A tool result may hold only text parts.", "content")

    @post_load
    def _fill_content(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data.setdefault("content", None)
        role = data.get("role")
        calls = data.pop("tool_calls", None) or []
        legacy = data.pop("function_call", None)
        if role == "assistant" and legacy is not None:
            call = _history_call(legacy, None, "function_call")
            calls += [call] if call else []
        if role == "assistant" and calls:
            data["tool_calls"] = calls
        call_id = data.pop("tool_call_id", None)
        name = data.pop("name", None)
        if role in ("tool", "function"):
            if call_id:
                data["tool_call_id"] = _sendable(call_id)
            if name:
                data["name"] = _sendable(name)
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


def _json_schema(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError("Must be a JSON Schema object.")
    kind = value.get("type")
    if kind is not None and not isinstance(kind, str | list):
        raise ValidationError("type must be a string or a list of strings.")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise ValidationError("Must be plain JSON.") from None


class FunctionSchema(Schema):
    """A function definition: `tools[].function`, or one entry of the legacy `functions`."""

    class Meta:
        unknown = EXCLUDE

    name = fields.String(
        required=True,
        validate=validate.Regexp(FUNCTION_NAME, error=FUNCTION_NAME_RULE),
        error_messages={"required": "Every function needs a 'name'."},
    )
    description = fields.String(allow_none=True, validate=_sendable)
    parameters = fields.Raw(allow_none=True, validate=_json_schema)
    strict = StrictBoolean(allow_none=True)

    @post_load
    def _make_spec(self, data: dict[str, Any], **kwargs: Any) -> ToolSpec:
        return ToolSpec(
            name=data["name"],
            description=data.get("description"),
            parameters=data.get("parameters"),
            strict=data.get("strict"),
        )


class ToolSchema(Schema):
    """One entry of `tools`: only function tools exist over grok.com."""

    class Meta:
        unknown = EXCLUDE

    type = fields.String(
        required=True,
        validate=validate.Equal("function", error="Only 'function' tools are supported."),
        error_messages={"required": "Every tool needs a 'type' (\"function\")."},
    )
    function = fields.Nested(FunctionSchema)

    @validates_schema
    def _function_present(self, data: dict[str, Any], **kwargs: Any) -> None:
        # Checked after `type`: a tool of another type is told that, not that it lacks this.
        if "function" not in data:
            raise ValidationError("A function tool needs a 'function' object.", "function")


def _named_choice(value: Any, field_name: str) -> str:
    """The function name of a named `tool_choice` / `function_call`, or a ValidationError."""
    if field_name == "tool_choice":
        if value.get("type") != "function":
            raise ValidationError("A named tool_choice needs type 'function'.")
        value = value.get("function")
        if not isinstance(value, dict):
            raise ValidationError("A named tool_choice needs {'function': {'name': ...}}.")
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError("A named choice needs the function's 'name'.")
    return name


class ToolChoice(fields.Field):
    """`tool_choice` ("none", "auto", "required", a named function) or legacy `function_call`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            allowed = CHOICES if attr == "tool_choice" else ("none", "auto")
            if value not in allowed:
                raise ValidationError(f"Must be one of: {', '.join(allowed)}, or a named function.")
            return value
        if isinstance(value, dict):
            return {"name": _named_choice(value, attr or "tool_choice")}
        raise ValidationError("Must be a string or an object naming a function.")


@dataclass
class ChatRequest:
    """A validated chat completion request, with messages normalised (see `MessageContent`)."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    conversation_id: str | None = None
    parent_message_id: str | None = None
    tool_config: ToolConfig | None = None


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
    tools = fields.List(
        fields.Nested(ToolSchema),
        allow_none=True,
        validate=validate.Length(max=128, error="At most 128 tools."),
        error_messages={"invalid": "Must be a list of tool objects."},
    )
    tool_choice = ToolChoice(allow_none=True)
    parallel_tool_calls = StrictBoolean(allow_none=True)
    functions = fields.List(
        fields.Nested(FunctionSchema),
        allow_none=True,
        validate=validate.Length(max=128, error="At most 128 functions."),
        error_messages={"invalid": "Must be a list of function objects."},
    )
    function_call = ToolChoice(allow_none=True)

    @validates_schema
    def _tools_consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("tools") and data.get("functions"):
            raise ValidationError("Give tools or the legacy functions, not both.", "functions")
        for list_name in ("tools", "functions"):
            specs = _specs(data, list_name)
            seen: set[str] = set()
            for index, spec in enumerate(specs):
                if spec.name in seen:
                    problem = {"name": [f"Function name {spec.name!r} is declared twice."]}
                    where = {"function": problem} if list_name == "tools" else problem
                    raise ValidationError({index: where}, list_name)
                seen.add(spec.name)
        for choice_name, list_name in (("tool_choice", "tools"), ("function_call", "functions")):
            choice = data.get(choice_name)
            if choice is None or choice in ("none", "auto"):
                continue
            names = {spec.name for spec in _specs(data, list_name)}
            if not names:
                raise ValidationError(
                    f"{choice_name} {choice if isinstance(choice, str) else 'naming a function'}"
                    f" needs {list_name} to choose from.",
                    choice_name,
                )
            if isinstance(choice, dict) and choice["name"] not in names:
                raise ValidationError(
                    f"{choice_name} names {choice['name']!r}, which is not among the {list_name}.",
                    choice_name,
                )

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
        legacy = bool(data.get("functions")) and not data.get("tools")
        specs = _specs(data, "functions" if legacy else "tools")
        tool_config = None
        if specs:
            choice = data.get("function_call" if legacy else "tool_choice") or "auto"
            parallel = data.get("parallel_tool_calls")
            tool_config = ToolConfig(
                tools=tuple(specs),
                choice=choice["name"] if isinstance(choice, dict) else choice,
                parallel=True if parallel is None else parallel,
                legacy=legacy,
            )
        return ChatRequest(
            model=data["model"].strip(),
            messages=data["messages"],
            stream=bool(data.get("stream")),
            include_usage=bool(options.get("include_usage")),
            conversation_id=data.get("conversation_id"),
            parent_message_id=data.get("parent_message_id"),
            tool_config=tool_config,
        )


def _specs(data: dict[str, Any], list_name: str) -> list[ToolSpec]:
    """The ToolSpecs of `tools` (each entry's function) or of the legacy `functions`."""
    entries = data.get(list_name) or []
    return [entry["function"] if list_name == "tools" else entry for entry in entries]


# One instance for every request: building a Schema deep-copies its fields, which cost more than
# the validation itself. load() keeps no state on the instance, so threads can share it.
_CHAT_REQUEST_SCHEMA = ChatRequestSchema()


_TOOL_FIELDS = ("tools", "functions", "tool_choice", "function_call", "parallel_tool_calls")


def _flatten(path: str, messages: Any, out: dict[str, Any]) -> None:
    """Nested marshmallow messages as OpenAI-style paths: `tools[0].function.name`."""
    if not isinstance(messages, dict):
        out[path] = messages
        return
    for key, value in messages.items():
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            _flatten(f"{path}[{key}]", value, out)
        elif key == "_schema":
            _flatten(path, value, out)
        else:
            _flatten(f"{path}.{key}", value, out)


def load_chat_request(payload: Any) -> ChatRequest:
    """Validate a decoded JSON body into a `ChatRequest`; raises `ValidationError`.

    A bad tool definition is reported at its exact path (`tools[0].function.name`), so the
    error's `param` names the field, as OpenAI's does.
    """
    if not isinstance(payload, dict):
        raise ValidationError({"_schema": ["The request body must be a JSON object."]})
    try:
        return _CHAT_REQUEST_SCHEMA.load(payload)
    except ValidationError as err:
        if not isinstance(err.messages, dict) or not any(k in err.messages for k in _TOOL_FIELDS):
            raise
        flat: dict[str, Any] = {}
        for key, value in err.messages.items():
            if key in _TOOL_FIELDS:
                _flatten(str(key), value, flat)
            else:
                flat[key] = value
        raise ValidationError(flat) from None
