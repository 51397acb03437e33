"""OpenAI's Responses API over grok.com: request bodies in, `response` objects and events out.

Going up, `load_request` validates a `POST /v1/responses` body and turns its `input` items into
the normalised messages the shared prompt building reads (`grokproxy.openai.flatten_messages`),
its function tools into the tool protocol's `ToolConfig`. Coming down, a `ResponseBuilder`
turns the parts of a `grokproxy.turns.ReplyReader` into the stream events OpenAI sends
(`response.created` … `response.completed`, each with its `sequence_number`) and the final
`response` object. Pure translation: no Flask, no database (see `grokproxy.views.responses`).
"""

from __future__ import annotations

import copy
import json
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any

from . import tools
from .errors import BadRequest
from .schemas import FUNCTION_NAME, FUNCTION_NAME_RULE
from .turns import Call, Part, Reasoning, ReplyReader, Text

_ALPHABET = string.ascii_lowercase + string.digits
# Hosted tools grok.com covers on its own (it searches the web whenever it needs to): accepted
# and left out of the prompt, so clients that always send them (Codex) still work.
HOSTED_TOOLS = frozenset({"web_search", "web_search_preview", "web_search_preview_2025_03_11"})
ARGUMENT_PIECE = 16  # characters of a call's arguments per delta event
METADATA_MAX = 16


def new_id(prefix: str) -> str:
    """An OpenAI-style id: `prefix_` and 48 lower-case letters and digits."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(48))


@dataclass
class ResponsesRequest:
    """A validated `POST /v1/responses` body, its input as normalised chat messages."""

    model: str
    messages: list[dict[str, Any]]
    tool_config: tools.ToolConfig | None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    instructions: str | None = None
    summary: bool = False  # reasoning.summary asked for: the thinking becomes a summary
    reasoning: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    max_output_tokens: int | None = None
    echo: dict[str, Any] = field(default_factory=dict)  # tools, tool_choice... as answered back


def _bad(message: str, param: str) -> BadRequest:
    return BadRequest(message, param=param)


def _text_of(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _bad("Must be a string.", param)
    return value


def _content(content: Any, param: str, role: str) -> str | list[dict[str, Any]]:
    """Message content as the prompt builder reads it: a string or text / image_url parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad("Must be a string or a list of content parts.", param)
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise _bad("Each content part must be an object.", where)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "summary_text"):
            parts.append({"type": "text", "text": _text_of(part.get("text"), f"{where}.text")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": _text_of(part.get("refusal"), where)})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url.lower().startswith(
                ("data:", "http://", "https://")
            ):
                raise _bad(
                    "An input_image needs image_url: a data: URL or an http(s) URL "
                    "(file_id is not supported).",
                    f"{where}.image_url",
                )
            if role != "user":
                raise _bad("Only user messages may hold images.", where)
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise _bad(
                f"Content part type {kind!r} is not supported: use input_text or input_image.",
                f"{where}.type",
            )
    return parts


def _output_text(output: Any, param: str) -> str:
    """A function_call_output's output: a string, or text parts joined."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        texts = []
        for index, part in enumerate(output):
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text"):
                raise _bad("A function_call_output may hold only text parts.", f"{param}[{index}]")
            texts.append(_text_of(part.get("text"), f"{param}[{index}].text"))
        return "\n".join(texts)
    raise _bad("Must be a string or a list of input_text parts.", param)


def _arguments(value: Any, param: str) -> str:
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return _text_of(value, param)


def input_messages(items: Any) -> list[dict[str, Any]]:
    """The `input` (a string or a list of items) as normalised chat messages."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise _bad("Must be a string or a list of input items.", "input")
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise _bad("Each input item must be an object.", where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(
                    "role must be one of: user, assistant, system, developer.", f"{where}.role"
                )
            content = _content(item.get("content"), f"{where}.content", role)
            messages.append({"role": role, "content": content})
        elif kind == "function_call":
            name = item.get("name")
            if not isinstance(name, str) or not name:
                raise _bad("A function_call needs its function's name.", f"{where}.name")
            call = {
                "id": _text_of(item.get("call_id"), f"{where}.call_id"),
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": _arguments(item.get("arguments", "{}"), f"{where}.arguments"),
                },
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)  # one turn, several calls
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": _text_of(item.get("call_id"), f"{where}.call_id"),
                    "content": _output_text(item.get("output"), f"{where}.output"),
                }
            )
        elif kind == "reasoning":
            continue  # the model's own earlier thinking: grok.com has no use for it
        else:
            raise _bad(
                f"Input item type {kind!r} is not supported: use message, function_call, "
                "function_call_output or reasoning.",
                f"{where}.type",
            )
    return messages


def _tools(value: Any) -> tuple[list[tools.ToolSpec], list[dict[str, Any]]]:
    """Function tools as ToolSpecs, and as the response object echoes them."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        raise _bad("Must be a list of tool objects.", "tools")
    specs: list[tools.ToolSpec] = []
    echo: list[dict[str, Any]] = []
    for index, tool in enumerate(value):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise _bad("Each tool must be an object.", where)
        kind = tool.get("type")
        if kind in HOSTED_TOOLS:
            continue
        if kind != "function":
            raise _bad(
                f"Tool type {kind!r} is not supported: only function tools (and web_search, "
                "which grok does on its own).",
                f"{where}.type",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not FUNCTION_NAME.match(name):
            raise _bad(FUNCTION_NAME_RULE, f"{where}.name")
        if any(spec.name == name for spec in specs):
            raise _bad(f"Function name {name!r} is declared twice.", f"{where}.name")
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise _bad("Must be a string.", f"{where}.description")
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _bad("Must be a JSON Schema object.", f"{where}.parameters")
        strict = tool.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise _bad("Must be a boolean.", f"{where}.strict")
        specs.append(tools.ToolSpec(name, description, parameters, strict))
        echo.append(
            {
                "type": "function",
                "name": name,
                "description": description,
                "parameters": parameters,
                # OpenAI's Responses API treats function tools as strict unless told otherwise.
                "strict": True if strict is None else strict,
            }
        )
    return specs, echo


def _tool_choice(value: Any, specs: list[tools.ToolSpec]) -> tuple[str, Any]:
    """(the choice as ToolConfig reads it, as the response echoes it)."""
    if value is None:
        return "auto", "auto"
    if isinstance(value, str):
        if value not in tools.CHOICES:
            raise _bad("Must be none, auto, required, or a named function.", "tool_choice")
        if value == "required" and not specs:
            raise _bad("tool_choice required needs function tools to choose from.", "tool_choice")
        return value, value
    if isinstance(value, dict) and value.get("type") == "function":
        name = value.get("name")
        if not isinstance(name, str) or name not in {spec.name for spec in specs}:
            raise _bad(f"tool_choice names {name!r}, which is not among the tools.", "tool_choice")
        return name, {"type": "function", "name": name}
    raise _bad("Must be none, auto, required, or {'type': 'function', 'name': ...}.", "tool_choice")


def _optional(payload: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = payload.get(name)
    if value is None:
        return None
    # JSON true is no number: bool is an int subclass in Python.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _bad(f"Must be {what}.", name)
    return value


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > METADATA_MAX:
        raise _bad(f"Must be an object of at most {METADATA_MAX} string values.", "metadata")
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > 64 or len(item) > 512:
            raise _bad("Keys are strings of up to 64 characters, values up to 512.", "metadata")
    return dict(value)


def load_request(payload: Any) -> ResponsesRequest:
    """Validate a decoded `POST /v1/responses` body; BadRequest names the field."""
    if not isinstance(payload, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("The model to use is required.", "model")
    if "input" not in payload:
        raise _bad("input is required: a string or a list of input items.", "input")
    messages = input_messages(payload["input"])
    instructions = _optional(payload, "instructions", str, "a string")
    if instructions and instructions.strip():
        messages.insert(0, {"role": "system", "content": instructions})
    if not any(m["role"] in ("user", "tool") for m in messages):
        raise _bad("input needs a user message or a function_call_output.", "input")
    specs, tools_echo = _tools(payload.get("tools"))
    choice, choice_echo = _tool_choice(payload.get("tool_choice"), specs)
    parallel = _optional(payload, "parallel_tool_calls", bool, "true or false")
    tool_config = (
        tools.ToolConfig(tuple(specs), choice, True if parallel is None else parallel)
        if specs
        else None
    )
    reasoning = _optional(payload, "reasoning", dict, "an object")
    summary = bool(reasoning and (reasoning.get("summary") or reasoning.get("generate_summary")))
    max_output = _optional(payload, "max_output_tokens", int, "an integer")
    if max_output is not None and max_output < 1:
        raise _bad("Must be at least 1.", "max_output_tokens")
    previous = _optional(payload, "previous_response_id", str, "a response id")
    store = _optional(payload, "store", bool, "true or false")
    temperature = _optional(payload, "temperature", (int, float), "a number")
    top_p = _optional(payload, "top_p", (int, float), "a number")
    return ResponsesRequest(
        model=model.strip(),
        messages=messages,
        tool_config=tool_config,
        stream=bool(_optional(payload, "stream", bool, "true or false")),
        store=True if store is None else store,
        previous_response_id=previous,
        instructions=instructions,
        summary=summary,
        reasoning=(
            {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
            if reasoning
            else None
        ),
        metadata=_metadata(payload.get("metadata")),
        max_output_tokens=max_output,
        echo={
            "tools": tools_echo,
            "tool_choice": choice_echo,
            "parallel_tool_calls": True if parallel is None else parallel,
            "temperature": 1 if temperature is None else temperature,
            "top_p": 1 if top_p is None else top_p,
        },
    )


def call_history(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A stored response's function calls as the assistant turn they were, so the results
    sent with `previous_response_id` can be named in the prompt."""
    calls = [
        {
            "id": item["call_id"],
            "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]},
        }
        for item in response.get("output") or ()
        if item.get("type") == "function_call"
    ]
    return [{"role": "assistant", "content": None, "tool_calls": calls}] if calls else []


# ---------------------------------------------------------------------------------------------
# Coming down: parts -> events and the response object


def sse_event(event: dict[str, Any]) -> bytes:
    """One stream event as OpenAI frames it: an `event:` line naming its type, then the data."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


class ResponseBuilder:
    """Builds one `response` object and its stream events from a reply's parts.

    Output items follow the reply: a `reasoning` item (only when a summary was asked for; the
    thinking is its summary text), then `message` items with one `output_text` part (citations
    as `url_citation` annotations) and `function_call` items, in the order the model wrote
    them. Reasoning that arrives once the answer began is counted in usage but not shown: the
    summary is of the thinking before the answer.
    """

    def __init__(
        self,
        request: ResponsesRequest,
        reader: ReplyReader,
        response_id: str | None = None,
        previous_response_id: str | None = None,
    ) -> None:
        self.request = request
        self.reader = reader
        self.id = response_id or new_id("resp")
        self.previous_response_id = previous_response_id
        self.created_at = int(time.time())
        self.output: list[dict[str, Any]] = []
        self.status = "in_progress"
        self.error: dict[str, Any] | None = None
        self._sequence = 0
        self._open: dict[str, Any] | None = None  # the output item being written
        self._text: list[str] = []  # the open message's text
        self._summary = ""  # the open reasoning item's summary text
        self._answer_began = False

    # -- the response object ----------------------------------------------------------------

    def response(self) -> dict[str, Any]:
        """The `response` object as it stands (in progress, completed or failed)."""
        request = self.request
        done = self.status == "completed"
        body: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "background": False,
            "completed_at": int(time.time()) if done else None,
            "error": self.error,
            "incomplete_details": None,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "max_tool_calls": None,
            "model": request.model,
            "output": copy.deepcopy(self.output),
            "parallel_tool_calls": request.echo["parallel_tool_calls"],
            "previous_response_id": self.previous_response_id,
            "reasoning": request.reasoning,
            "service_tier": "default",
            "store": request.store,
            "temperature": request.echo["temperature"],
            "text": {"format": {"type": "text"}},
            "tool_choice": request.echo["tool_choice"],
            "tools": request.echo["tools"],
            "top_p": request.echo["top_p"],
            "truncation": "disabled",
            "metadata": dict(request.metadata),
        }
        if self.status != "in_progress":
            body["usage"] = self.usage()  # absent while in progress: the schema has no null
        return body

    def usage(self) -> dict[str, Any]:
        """Estimated token counts (grok.com reports none)."""
        prompt, output, reasoning = self.reader.usage()
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + output,
        }

    # -- events -----------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def start(self) -> list[dict[str, Any]]:
        """`response.created` and `response.in_progress`."""
        return [
            self._event("response.created", response=self.response()),
            self._event("response.in_progress", response=self.response()),
        ]

    def _add_item(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        self._open = item
        self.output.append(item)
        return [
            self._event(
                "response.output_item.added",
                output_index=len(self.output) - 1,
                item=copy.deepcopy(item),
            )
        ]

    def _close_item(self) -> list[dict[str, Any]]:
        item = self._open
        if item is None:
            return []
        self._open = None
        index = len(self.output) - 1
        events: list[dict[str, Any]] = []
        if item["type"] == "reasoning":
            text, self._summary = self._summary, ""
            part = {"type": "summary_text", "text": text}
            item["summary"] = [part]
            where = {"item_id": item["id"], "output_index": index, "summary_index": 0}
            events += [
                self._event("response.reasoning_summary_text.done", text=text, **where),
                self._event("response.reasoning_summary_part.done", part=part, **where),
            ]
        elif item["type"] == "message":
            text = "".join(self._text)
            self._text = []
            part = item["content"][0]
            part["text"] = text
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events += [
                self._event("response.output_text.done", text=text, logprobs=[], **where),
                self._event("response.content_part.done", part=copy.deepcopy(part), **where),
            ]
        item["status"] = "completed"
        events.append(
            self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item))
        )
        return events

    def _reasoning(self, text: str) -> list[dict[str, Any]]:
        if not self.request.summary or self._answer_began:
            return []
        events: list[dict[str, Any]] = []
        item = self._open
        index = len(self.output) - 1
        if item is None:
            item = {"id": new_id("rs"), "type": "reasoning", "summary": [], "status": "in_progress"}
            events += self._add_item(item)
            index = len(self.output) - 1
            events.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    item_id=item["id"],
                    output_index=index,
                    summary_index=0,
                    part={"type": "summary_text", "text": ""},
                )
            )
        self._summary += text
        events.append(
            self._event(
                "response.reasoning_summary_text.delta",
                item_id=item["id"],
                output_index=index,
                summary_index=0,
                delta=text,
            )
        )
        return events

    def _message_text(self, text: Text) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        item = self._open
        if item is None or item["type"] != "message":
            events += self._close_item()
            item = {
                "id": new_id("msg"),
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            events += self._add_item(item)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(part)
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=len(self.output) - 1,
                    content_index=0,
                    part=copy.deepcopy(part),
                )
            )
        where = {"item_id": item["id"], "output_index": len(self.output) - 1, "content_index": 0}
        start = len("".join(self._text))
        self._text.append(text.text)
        events.append(
            self._event("response.output_text.delta", delta=text.text, logprobs=[], **where)
        )
        if text.citation is not None:
            url, title = text.citation
            annotations = item["content"][0]["annotations"]
            annotation = {
                "type": "url_citation",
                "url": url,
                "title": title,
                "start_index": start + 1,  # the leading space is not part of the link
                "end_index": start + len(text.text),
            }
            annotations.append(annotation)
            events.append(
                self._event(
                    "response.output_text.annotation.added",
                    annotation_index=len(annotations) - 1,
                    annotation=dict(annotation),
                    **where,
                )
            )
        return events

    def _call(self, call: Call) -> list[dict[str, Any]]:
        events = self._close_item()
        item = {
            "id": new_id("fc"),
            "type": "function_call",
            "status": "in_progress",
            "call_id": tools.new_call_id(),
            "name": call.name,
            "arguments": "",
        }
        events += self._add_item(item)
        where = {"item_id": item["id"], "output_index": len(self.output) - 1}
        for i in range(0, len(call.arguments), ARGUMENT_PIECE):
            piece = call.arguments[i : i + ARGUMENT_PIECE]
            events.append(
                self._event("response.function_call_arguments.delta", delta=piece, **where)
            )
        item["arguments"] = call.arguments
        events.append(
            self._event(
                "response.function_call_arguments.done",
                name=call.name,
                arguments=call.arguments,
                **where,
            )
        )
        return events + self._close_item()

    def feed_parts(self, parts: list[Part]) -> list[dict[str, Any]]:
        """The events some reply parts turn into."""
        events: list[dict[str, Any]] = []
        for part in parts:
            if isinstance(part, Reasoning):
                events += self._reasoning(part.text)
            elif isinstance(part, Text):
                self._answer_began = True
                events += self._message_text(part)
            else:
                self._answer_began = True
                events += self._call(part)
        return events

    def feed(self, event: Any) -> list[dict[str, Any]]:
        """The events one grok event turns into."""
        return self.feed_parts(self.reader.feed(event))

    def finish(self) -> list[dict[str, Any]]:
        """The closing events, `response.completed` last."""
        events = self.feed_parts(self.reader.finish())
        events += self._close_item()
        self.status = "completed"
        events.append(self._event("response.completed", response=self.response()))
        return events

    def fail(self, error: dict[str, Any]) -> list[dict[str, Any]]:
        """After a mid-stream failure: the open item closed and `response.failed`."""
        events = self._close_item()
        self.status = "failed"
        rate_limited = error.get("type") == "rate_limit_error"
        self.error = {
            "code": "rate_limit_exceeded" if rate_limited else "server_error",
            "message": str(error.get("message") or "grok.com failed"),
        }
        events.append(self._event("response.failed", response=self.response()))
        return events

    def complete(self) -> dict[str, Any]:
        """Non-stream: the completed response object (every event was fed)."""
        self.finish()
        return self.response()
