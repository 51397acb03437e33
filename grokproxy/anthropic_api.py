"""Anthropic's Messages API over grok.com: request bodies in, `message` objects and events out.

Going up, `load_request` validates a `POST /v1/messages` body (as Anthropic does: `max_tokens`
is required) and turns its content blocks into the normalised messages the shared prompt
building reads (`grokproxy.openai.flatten_messages`): `tool_use` blocks become earlier calls and
`tool_result` blocks their results, in the tool protocol's form. Coming down, a
`MessageBuilder` turns the parts of a `grokproxy.turns.ReplyReader` into Anthropic's stream
events (`message_start` … `message_stop`) and the final `message` object. Errors are answered
in Anthropic's shape (`error_body`). Pure translation: no Flask, no database.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import string
from dataclasses import dataclass
from typing import Any

from . import tools
from .errors import BadRequest
from .openai import estimate_tokens, flatten_messages
from .schemas import FUNCTION_NAME, FUNCTION_NAME_RULE
from .turns import Call, Part, Reasoning, ReplyReader, Text

_ALPHABET = string.ascii_letters + string.digits
# Server tools grok.com covers on its own (it searches whenever it needs to): left out.
SERVER_TOOL_PREFIXES = ("web_search_", "web_fetch_")
ARGUMENT_PIECE = 16  # characters of a call's input JSON per input_json_delta

# Anthropic's error type for each status grokproxy answers.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def new_id(prefix: str) -> str:
    """An Anthropic-style id: `prefix_01` and 22 letters and digits."""
    return f"{prefix}_01" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


def error_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error shape for an answer of `status`."""
    kind = ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


@dataclass
class MessagesRequest:
    """A validated `POST /v1/messages` body, its messages normalised for the prompt builder."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int
    tool_config: tools.ToolConfig | None
    stream: bool = False
    thinking: bool = False  # thinking enabled: the reasoning is answered as thinking blocks


def _bad(message: str, param: str | None = None) -> BadRequest:
    return BadRequest(f"{param}: {message}" if param else message, param=param)


def _string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _bad("Field required to be a string.", param)
    return value


def _image(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _bad("An image block needs a source.", f"{param}.source")
    kind = source.get("type")
    if kind == "base64":
        media = _string(source.get("media_type"), f"{param}.source.media_type")
        data = _string(source.get("data"), f"{param}.source.data")
        try:
            base64.b64decode(data, validate=True)
        except ValueError:
            raise _bad("The image data is not valid base64.", f"{param}.source.data") from None
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url":
        url = _string(source.get("url"), f"{param}.source.url")
        if not url.lower().startswith(("http://", "https://")):
            raise _bad("An image URL must be http(s).", f"{param}.source.url")
        return {"type": "image_url", "image_url": {"url": url}}
    raise _bad("An image source is base64 or url.", f"{param}.source.type")


def _result_content(content: Any, param: str) -> str | list[dict[str, Any]]:
    """A tool_result's content: a string, or text and image parts (images are attached)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad("Must be a string or a list of text and image blocks.", param)
    parts = []
    for index, block in enumerate(content):
        where = f"{param}.{index}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": _string(block.get("text"), f"{where}.text")})
        elif kind == "image":
            parts.append(_image(block, where))
        else:
            raise _bad("A tool result may hold only text and image blocks.", where)
    return parts


def _blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _bad("Must be a string or a list of content blocks.", param)
    for index, block in enumerate(content):
        if not isinstance(block, dict):
            raise _bad("Each content block must be an object.", f"{param}.{index}")
    return content


def _user_turn(content: Any, param: str) -> list[dict[str, Any]]:
    """A user message: its tool results (each a tool message), then its text and images."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(_blocks(content, param)):
        where = f"{param}.{index}"
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": _string(block.get("text"), f"{where}.text")})
        elif kind == "image":
            parts.append(_image(block, where))
        elif kind == "tool_result":
            result = _result_content(block.get("content"), f"{where}.content")
            if block.get("is_error"):
                # The model must know the call failed; the protocol has no error field.
                error = {"type": "text", "text": "Error:"}
                result = f"Error: {result}" if isinstance(result, str) else [error, *result]
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": _string(block.get("tool_use_id"), f"{where}.tool_use_id"),
                    "content": result,
                }
            )
        else:
            raise _bad(f"Block type {kind!r} is not supported in a user turn.", f"{where}.type")
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant_turn(content: Any, param: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(_blocks(content, param)):
        where = f"{param}.{index}"
        kind = block.get("type")
        if kind == "text":
            texts.append(_string(block.get("text"), f"{where}.text"))
        elif kind == "tool_use":
            arguments = block.get("input", {})
            if not isinstance(arguments, dict):
                raise _bad("A tool_use input must be an object.", f"{where}.input")
            calls.append(
                {
                    "id": _string(block.get("id"), f"{where}.id"),
                    "type": "function",
                    "function": {
                        "name": _string(block.get("name"), f"{where}.name"),
                        "arguments": json.dumps(arguments, ensure_ascii=False),
                    },
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # earlier thinking: grok.com has no use for it
        else:
            raise _bad(
                f"Block type {kind!r} is not supported in an assistant turn.", f"{where}.type"
            )
    message: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _system(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for index, block in enumerate(value):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise _bad("System blocks must be text blocks.", f"system.{index}")
            texts.append(_string(block.get("text"), f"system.{index}.text"))
        return "\n\n".join(texts)
    raise _bad("Must be a string or a list of text blocks.", "system")


def _tools(value: Any) -> list[tools.ToolSpec]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad("Must be a list of tools.", "tools")
    specs: list[tools.ToolSpec] = []
    for index, tool in enumerate(value):
        where = f"tools.{index}"
        if not isinstance(tool, dict):
            raise _bad("Each tool must be an object.", where)
        kind = tool.get("type")
        if isinstance(kind, str) and kind.startswith(SERVER_TOOL_PREFIXES):
            continue
        if kind not in (None, "custom"):
            raise _bad(f"Tool type {kind!r} is not supported: only custom tools.", f"{where}.type")
        name = tool.get("name")
        if not isinstance(name, str) or not FUNCTION_NAME.match(name):
            raise _bad(FUNCTION_NAME_RULE, f"{where}.name")
        if any(spec.name == name for spec in specs):
            raise _bad(f"Tool name {name!r} is declared twice.", f"{where}.name")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _bad(
                "A tool needs an input_schema object (a JSON Schema).", f"{where}.input_schema"
            )
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise _bad("Must be a string.", f"{where}.description")
        specs.append(tools.ToolSpec(name, description, schema))
    return specs


def _tool_choice(value: Any, specs: list[tools.ToolSpec]) -> tuple[str, bool]:
    """(the choice as ToolConfig reads it, whether parallel calls are allowed)."""
    if value is None:
        return "auto", True
    if not isinstance(value, dict):
        raise _bad("Must be an object with a type.", "tool_choice")
    kind = value.get("type")
    parallel = not value.get("disable_parallel_tool_use", False)
    if kind in ("auto", "none"):
        return kind, parallel
    if kind == "any":
        if not specs:
            raise _bad("tool_choice any needs tools to choose from.", "tool_choice")
        return "required", parallel
    if kind == "tool":
        name = value.get("name")
        if name not in {spec.name for spec in specs}:
            raise _bad(f"tool_choice names {name!r}, which is not among the tools.", "tool_choice")
        return name, parallel
    raise _bad("type must be auto, any, tool or none.", "tool_choice.type")


def load_request(payload: Any, *, counting: bool = False) -> MessagesRequest:
    """Validate a decoded Messages body (`counting`: a count_tokens body, no max_tokens)."""
    if not isinstance(payload, dict):
        raise _bad("The request body must be a JSON object.")
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("Field required.", "model")
    max_tokens = payload.get("max_tokens")
    if not counting and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        raise _bad("Field required: an integer of at least 1.", "max_tokens")
    raw = payload.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _bad("Field required: a non-empty list of messages.", "messages")
    messages: list[dict[str, Any]] = []
    system = _system(payload.get("system"))
    if system and system.strip():
        messages.append({"role": "system", "content": system})
    for index, message in enumerate(raw):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise _bad("Each message must be an object.", where)
        role = message.get("role")
        if role == "user":
            messages += _user_turn(message.get("content"), f"{where}.content")
        elif role == "assistant":
            messages.append(_assistant_turn(message.get("content"), f"{where}.content"))
        else:
            raise _bad("role must be user or assistant.", f"{where}.role")
    if raw[0].get("role") != "user" or not any(m["role"] in ("user", "tool") for m in messages):
        raise _bad("The first message must be a user message.", "messages")
    specs = _tools(payload.get("tools"))
    choice, parallel = _tool_choice(payload.get("tool_choice"), specs)
    thinking = payload.get("thinking")
    if thinking is not None and not isinstance(thinking, dict):
        raise _bad("Must be an object.", "thinking")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("Must be true or false.", "stream")
    return MessagesRequest(
        model=model.strip(),
        messages=messages,
        max_tokens=max_tokens if isinstance(max_tokens, int) else 0,
        tool_config=tools.ToolConfig(tuple(specs), choice, parallel) if specs else None,
        stream=stream,
        thinking=bool(thinking) and thinking.get("type") in ("enabled", "adaptive"),
    )


# ---------------------------------------------------------------------------------------------
# Coming down: parts -> events and the message object


def sse_event(event: dict[str, Any]) -> bytes:
    """One stream event as Anthropic frames it: an `event:` line naming its type, then data."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def _signature(text: str) -> str:
    # Anthropic's signature proves the thinking is the model's; grok has none to give, so this
    # is an opaque digest of the text, enough for clients that require the field.
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


class MessageBuilder:
    """Builds one `message` object and its stream events from a reply's parts.

    Content blocks follow the reply: a `thinking` block (only when thinking was enabled), then
    `text` and `tool_use` blocks in the order the model wrote them. Reasoning that arrives once
    the answer began is counted in usage but not shown.
    """

    def __init__(self, request: MessagesRequest, reader: ReplyReader) -> None:
        self.request = request
        self.reader = reader
        self.id = new_id("msg")
        self.content: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None
        self._answer_began = False
        self._calls = 0

    def _usage(self, final: bool) -> dict[str, Any]:
        prompt, output, _ = self.reader.usage()
        return {
            "input_tokens": prompt,
            "output_tokens": output if final else 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }

    def _stop_reason(self) -> str:
        return "tool_use" if self._calls else "end_turn"

    def message(self) -> dict[str, Any]:
        """The `message` object of the whole reply (every part fed)."""
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.request.model,
            "content": copy.deepcopy(self.content),
            "stop_reason": self._stop_reason(),
            "stop_sequence": None,
            "usage": self._usage(final=True),
        }

    def start(self) -> list[dict[str, Any]]:
        """`message_start` (content empty, no stop reason yet) and a `ping`."""
        message = self.message()
        message.update(content=[], stop_reason=None, usage=self._usage(final=False))
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _begin(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close()
        self.content.append(block)
        self._open = block
        return [
            *events,
            {
                "type": "content_block_start",
                "index": len(self.content) - 1,
                "content_block": copy.deepcopy(block),
            },
        ]

    def _close(self) -> list[dict[str, Any]]:
        block = self._open
        if block is None:
            return []
        self._open = None
        index = len(self.content) - 1
        events = []
        if block["type"] == "thinking":
            block["signature"] = _signature(block["thinking"])
            events.append(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "signature_delta", "signature": block["signature"]},
                }
            )
        events.append({"type": "content_block_stop", "index": index})
        return events

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": len(self.content) - 1, "delta": delta}

    def feed_parts(self, parts: list[Part]) -> list[dict[str, Any]]:
        """The events some reply parts turn into."""
        events: list[dict[str, Any]] = []
        for part in parts:
            if isinstance(part, Reasoning):
                if not self.request.thinking or self._answer_began:
                    continue
                if self._open is None:
                    events += self._begin({"type": "thinking", "thinking": "", "signature": ""})
                self._open["thinking"] += part.text
                events.append(self._delta({"type": "thinking_delta", "thinking": part.text}))
            elif isinstance(part, Text):
                self._answer_began = True
                if self._open is None or self._open["type"] != "text":
                    events += self._begin({"type": "text", "text": ""})
                self._open["text"] += part.text
                events.append(self._delta({"type": "text_delta", "text": part.text}))
            else:
                self._answer_began = True
                events += self._call(part)
        return events

    def _call(self, call: Call) -> list[dict[str, Any]]:
        self._calls += 1
        block = {"type": "tool_use", "id": new_id("toolu"), "name": call.name, "input": {}}
        events = self._begin(block)
        events += [
            self._delta(
                {"type": "input_json_delta", "partial_json": call.arguments[i : i + ARGUMENT_PIECE]}
            )
            for i in range(0, len(call.arguments), ARGUMENT_PIECE)
        ]
        block["input"] = json.loads(call.arguments)
        return events + self._close()

    def feed(self, event: Any) -> list[dict[str, Any]]:
        """The events one grok event turns into."""
        return self.feed_parts(self.reader.feed(event))

    def finish(self) -> list[dict[str, Any]]:
        """The closing events: the last block's stop, `message_delta`, `message_stop`."""
        events = self.feed_parts(self.reader.finish()) + self._close()
        usage = self._usage(final=True)
        return [
            *events,
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason(), "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
            {"type": "message_stop"},
        ]

    def complete(self) -> dict[str, Any]:
        """Non-stream: the message object (every event was fed)."""
        self.feed_parts(self.reader.finish())
        self._close()
        return self.message()

    @staticmethod
    def error_event(error: dict[str, Any]) -> dict[str, Any]:
        """The `error` event for a failure after the stream started."""
        overloaded = error.get("type") in ("rate_limit_error", "no_available_account")
        return {
            "type": "error",
            "error": {
                "type": "overloaded_error" if overloaded else "api_error",
                "message": str(error.get("message") or "grok.com failed"),
            },
        }


def count_tokens(request: MessagesRequest) -> dict[str, int]:
    """count_tokens' answer: the estimate usage reports, of the prompt a new turn sends."""
    try:
        prompt = flatten_messages(request.messages, request.tool_config)
    except ValueError as exc:
        raise _bad(str(exc), "messages") from None
    return {"input_tokens": estimate_tokens(prompt.text)}
