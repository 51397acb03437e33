"""The OpenAI side of the translation: messages -> grok prompt, grok events -> chat completions.

Pure functions and one builder class; no Flask, no HTTP. Going up, `flatten_messages` and
`last_user_message` turn validated OpenAI messages (see `grokproxy.schemas`) into a `Prompt`.
Coming down, a `CompletionBuilder` turns the typed events of `grokproxy.grok.events` into
`chat.completion.chunk` dicts (stream) or one `chat.completion` dict, and `sse` frames them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

from grokproxy import tools
from grokproxy.grok.events import (
    Citation,
    ConversationStarted,
    GrokEvent,
    ImageGenerated,
    ImageProgress,
    ModelInfo,
    ReplyFinished,
    ReplyStarted,
    SearchResults,
    TextDelta,
    ThinkingDelta,
    ToolStep,
)

THINKING_FORMATS = ("reasoning_content", "think_tags", "hidden")

SSE_DONE = b"data: [DONE]\n\n"
SSE_KEEPALIVE = b": keep-alive\n\n"

# How many search results of one batch are listed in the reasoning: enough to show what was
# read, few enough that a deep search with dozens of batches stays skimmable.
SEARCH_RESULTS_SHOWN = 5

# Characters of a call's arguments per streamed delta: OpenAI streams them in small pieces too.
ARGUMENT_PIECE = 16


# ---------------------------------------------------------------------------------------------
# Going up: messages -> prompt


@dataclass(frozen=True)
class ImageInput:
    """An image to attach upstream: decoded bytes from a data: URL, or an http(s) URL to fetch."""

    data: bytes | None = field(default=None, repr=False)  # may be megabytes: keep it out of logs
    mime_type: str | None = None
    url: str | None = None


@dataclass
class Prompt:
    """What goes upstream for one turn: the message text and the images to attach."""

    text: str
    images: list[ImageInput] = field(default_factory=list)


# Reasoning that clients echo back inside assistant content. Open WebUI stores it as
# <details type="reasoning">, LobeChat/Cherry/our own think_tags mode as <think>/<thinking>.
_ECHOED_REASONING = (
    re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>\s*", re.DOTALL | re.IGNORECASE),
    re.compile(
        r"<details\b[^>]*\btype=[\"']reasoning[\"'][^>]*>.*?</details>\s*",
        re.DOTALL | re.IGNORECASE,
    ),
)
# A reply cut off mid-thought leaves an unclosed <think> at the start: all of it is reasoning.
_UNCLOSED_THINK = re.compile(
    r"^\s*<think(?:ing)?>(?!.*</think(?:ing)?>).*", re.DOTALL | re.IGNORECASE
)

_ROLE_LABELS = {
    "system": "system",
    "developer": "system",  # newer OpenAI clients send developer where older ones sent system
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}


def strip_echoed_reasoning(text: str) -> str:
    """Remove reasoning blocks (`<think>`, `<details type="reasoning">`) from assistant text."""
    for pattern in _ECHOED_REASONING:
        text = pattern.sub("", text)
    return _UNCLOSED_THINK.sub("", text).strip()


def decode_data_url(url: str) -> ImageInput:
    """Decode a `data:` URL into bytes and mime type; raises ValueError when malformed."""
    if not url.lower().startswith("data:"):
        raise ValueError("not a data: URL")
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise ValueError("malformed data URL: no ',' between the header and the data")
    params = [p.strip() for p in header.split(";")]
    is_base64 = any(p.lower() == "base64" for p in params[1:])
    mime_type = params[0].lower() or "text/plain"
    if is_base64:
        # Clients wrap long base64 lines and some drop the padding or use the URL-safe alphabet.
        compact = re.sub(r"\s+", "", unquote_to_bytes(payload).decode("ascii", "replace"))
        compact = compact.replace("-", "+").replace("_", "/")
        compact += "=" * (-len(compact) % 4)
        try:
            data = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("malformed data URL: the base64 data is invalid") from exc
    else:
        data = unquote_to_bytes(payload)
    if not data:
        raise ValueError("malformed data URL: it carries no data")
    return ImageInput(data=data, mime_type=mime_type)


def _image_input(url: str) -> ImageInput:
    """An `ImageInput` for an image_url part: decoded when data:, kept as URL when http(s)."""
    url = url.strip()
    lowered = url.lower()
    if lowered.startswith("data:"):
        return decode_data_url(url)
    if lowered.startswith(("http://", "https://")):
        return ImageInput(url=url)
    raise ValueError("image URL must be a data: URL or an http(s) URL")


def _message_parts(message: dict[str, Any]) -> tuple[str, list[ImageInput]]:
    """The text of one message (text parts joined by newlines) and its images."""
    content = message.get("content")
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[ImageInput] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            texts.append(part.get("text") or "")
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str):
                images.append(_image_input(url))
    return "\n".join(t for t in texts if t), images


def _last_user_index(messages: list[dict[str, Any]]) -> int:
    """Index of the last user message; raises ValueError when there is none."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    raise ValueError("no user message")


def _call_names(messages: list[dict[str, Any]]) -> dict[str, str]:
    """The function name of every earlier call, by its id, so a tool result can be named."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or ():
            if call.get("id"):
                names[call["id"]] = call["function"]["name"]
    return names


def _message_block(
    message: dict[str, Any], names: dict[str, str], images: list[ImageInput]
) -> tuple[str, str] | None:
    """One history message as (label, text), its images appended to `images`; None if empty.

    Assistant tool calls and tool results are written in the tool protocol's own form (see
    `grokproxy.tools`), so an agent loop reads to the model as the calls it made.
    """
    role = message.get("role", "user")
    text, message_images = _message_parts(message)
    images.extend(message_images)
    label = _ROLE_LABELS.get(role, role)
    if role in ("tool", "function"):
        call_id = message.get("tool_call_id")
        name = message.get("name") or names.get(call_id or "")
        return label, tools.render_result(text, name, call_id)
    if role == "assistant":
        text = strip_echoed_reasoning(text)
        calls = [
            tools.render_call(c["function"]["name"], c["function"].get("arguments"))
            for c in message.get("tool_calls") or ()
        ]
        text = "\n".join(t for t in [text.strip(), *calls] if t)
    text = text.strip()
    return (label, text) if text else None


def _has_tool_turn(messages: list[dict[str, Any]]) -> bool:
    return any(m.get("role") in ("tool", "function") for m in messages)


def flatten_messages(
    messages: list[dict[str, Any]], tool_config: tools.ToolConfig | None = None
) -> Prompt:
    """Flatten a whole OpenAI history into one upstream message for a new conversation.

    Format: `[role]: text` blocks joined by blank lines, system and developer messages first
    (both labelled `[system]`), then the other turns in order, and the last user message last.
    A request that is a single user message (nothing else with content) goes up bare, exactly
    as the grok.com web app would send it. Reasoning that clients echo back in assistant turns
    (`<think>` / `<details type="reasoning">` blocks; `reasoning_content` never reaches here) is
    stripped. NextChat's `> `-quoted thinking cannot be told apart from a real quote and stays.
    Images of every message are attached, in order.

    With tools, the tool protocol (`grokproxy.tools.protocol_text`) is the first system block;
    earlier calls and results are written in its form. When tool results follow the last user
    message (an agent loop), every turn stays in its order, so the history ends on the results.
    """
    last_user = _last_user_index(messages)
    in_order = _has_tool_turn(messages[last_user + 1 :])
    names = _call_names(messages)
    protocol = tools.protocol_text(tool_config) if tool_config else None
    system_blocks: list[str] = [f"[system]: {protocol}"] if protocol else []
    turn_blocks: list[str] = []
    images: list[ImageInput] = []
    for index, message in enumerate(messages):
        if index == last_user and not in_order:
            continue
        block = _message_block(message, names, images)
        if block is None:
            continue
        label, text = block
        (system_blocks if label == "system" else turn_blocks).append(f"[{label}]: {text}")

    if in_order:
        return Prompt(text="\n\n".join(system_blocks + turn_blocks), images=images)
    final_text, final_images = _message_parts(messages[last_user])
    images.extend(final_images)
    final_text = final_text.strip()
    blocks = system_blocks + turn_blocks
    if not blocks:
        return Prompt(text=final_text, images=images)
    return Prompt(text="\n\n".join([*blocks, f"[user]: {final_text}"]), images=images)


def last_user_message(
    messages: list[dict[str, Any]], tool_config: tools.ToolConfig | None = None
) -> Prompt:
    """What is new since the last assistant turn, for continuing an upstream conversation.

    Usually the newest user message alone, bare. In an agent loop the new part is the tool
    results (and any user message after them): those go up as `[tool]` / `[user]` blocks, the
    tools themselves being already upstream from the conversation's first turn.
    """
    last_assistant = max(
        (i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1
    )
    new = messages[last_assistant + 1 :]
    reminder = tools.reminder_text(tool_config) if tool_config else None
    if not _has_tool_turn(new):
        text, images = _message_parts(messages[_last_user_index(messages)])
        text = text.strip()
        if reminder:
            text = f"[user]: {text}\n\n[system]: {reminder}"
        return Prompt(text=text, images=images)
    names = _call_names(messages)
    images: list[ImageInput] = []
    blocks = []
    for message in new:
        block = _message_block(message, names, images)
        if block is not None:
            blocks.append(f"[{block[0]}]: {block[1]}")
    if reminder:
        blocks.append(f"[system]: {reminder}")
    return Prompt(text="\n\n".join(blocks), images=images)


# ---------------------------------------------------------------------------------------------
# Coming down: events -> chunks


_CJK = re.compile(
    "[\u1100-\u11ff\u2e80-\u2fdf\u3000-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\uff00-\uffef\U00020000-\U0003134f]"
)


def estimate_tokens(text: str) -> int:
    """Estimate tokens: one per CJK character, one per 4 other characters (rounded up).

    Tokenizers give a CJK character about one token and English text about four characters per
    token; grok.com reports no counts, so this is only an estimate for `usage`.
    """
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    other = len(text) - cjk
    return cjk + (other + 3) // 4


def sse(obj: Any) -> bytes:
    """Frame one object as an SSE `data:` event (compact JSON, UTF-8, no id/event lines).

    orjson writes the same compact UTF-8 JSON as `json.dumps(ensure_ascii=False)` at a
    fraction of its cost, and a held stream encodes every chunk; what it refuses (a non-string
    key, an integer past 64 bits) falls back to the standard encoder.
    """
    try:
        return b"data: " + orjson.dumps(obj) + b"\n\n"
    except TypeError:
        payload = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        return b"data: " + payload.encode("utf-8") + b"\n\n"


# Grok markup that must never reach a client if the parser left it in a final message.
_GROK_MARKUP = re.compile(
    r"<grok:render\b.*?</grok:render>|<xai:tool_usage_card\b.*?</xai:tool_usage_card>",
    re.DOTALL,
)


def _markdown_title(title: str) -> str:
    """A link title safe inside `[...]`."""
    return re.sub(r"\s+", " ", title).replace("[", "(").replace("]", ")").strip()


def _block_separator(tail: str) -> str:
    """What to put before a new paragraph so it does not run into the text before it."""
    if not tail or tail.endswith("\n\n"):
        return ""
    return "\n" if tail.endswith("\n") else "\n\n"


class CompletionBuilder:
    """Builds the OpenAI reply for one grok reply: stream chunks and the non-stream completion.

    Rendering choices: tool steps become one reasoning paragraph (`web_search: query`); each
    search-results batch becomes up to five `- [title](url)` lines in the reasoning; the first
    progress event of a generated image becomes a `Generating image…` reasoning line; citations
    become ` [[n]](url)` in the content (plus `url_citation` annotations in the non-stream
    message); generated images become `![image](url)` paragraphs. With `think_tags`, thinking
    that arrives after the answer started is dropped, because clients only parse a `<think>`
    block at the start of the content.
    """

    def __init__(
        self,
        model: str,
        thinking_format: str = "reasoning_content",
        image_url: Callable[[str], str] = lambda path: path,
        include_usage: bool = False,
        prompt_text: str = "",
        tool_config: tools.ToolConfig | None = None,
    ) -> None:
        if thinking_format not in THINKING_FORMATS:
            raise ValueError(f"thinking_format must be one of {', '.join(THINKING_FORMATS)}")
        self.model = model
        self.thinking_format = thinking_format
        self.image_url = image_url
        self.include_usage = include_usage
        self.prompt_text = prompt_text
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.system_fingerprint: str | None = None
        self._conversation_id: str | None = None
        self._message_id: str | None = None
        self._content: list[str] = []  # everything sent as delta.content, think tags included
        self._answer: list[str] = []  # the answer alone, for usage
        self._reasoning: list[str] = []  # every reasoning text rendered, whatever the format
        self._reasoning_tail = ""  # the end of the reasoning shown so far, for separators
        self._annotations: list[dict[str, Any]] = []
        self._images_seen: set[str] = set()
        self._progress_seen: set[str] = set()
        self._saw_text = False
        self._answer_started = False
        self._think_open = False
        self._finished = False
        # Answer text is parsed for calls only when the model was offered tools.
        self.tool_config = tool_config
        self._parser = (
            tools.ToolCallParser(tool_config) if tool_config and tool_config.active else None
        )
        self._calls: list[dict[str, Any]] = []

    @property
    def conversation_id(self) -> str | None:
        """The upstream conversation id, once an event carried it."""
        return self._conversation_id

    @property
    def message_id(self) -> str | None:
        """The upstream responseId of this reply, once an event carried it."""
        return self._message_id

    # -- envelope -------------------------------------------------------------------------

    def _envelope(self, obj: str) -> dict[str, Any]:
        # Every field of OpenAI's own answer, null where grok has no value (the contract): the
        # fingerprint is null until grok names its model.
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
        }

    def _with_ids(self, body: dict[str, Any], always: bool = False) -> dict[str, Any]:
        if always or self._conversation_id is not None:
            body["conversation_id"] = self._conversation_id
        if always or self._message_id is not None:
            body["message_id"] = self._message_id
        return body

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        chunk = self._envelope("chat.completion.chunk")
        chunk["choices"] = [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        ]
        if self.include_usage:
            # OpenAI sends usage: null on every chunk but the last when usage was asked for.
            chunk["usage"] = None
        return self._with_ids(chunk)

    # -- content and reasoning primitives ---------------------------------------------------

    def _close_think(self) -> list[dict[str, Any]]:
        if not self._think_open:
            return []
        self._think_open = False
        # `</think>` ends its own chunk: NextChat only leaves thinking mode on such a chunk.
        self._content.append("\n</think>")
        return [self._chunk({"content": "\n</think>"})]

    def _emit_content(self, text: str, counted: bool = True) -> list[dict[str, Any]]:
        if not text:
            return []
        chunks = self._close_think()
        if chunks:
            text = "\n\n" + text  # keep the answer off the </think> line
        self._answer_started = True
        self._content.append(text)
        if counted:
            self._answer.append(text)
        chunks.append(self._chunk({"content": text}))
        return chunks

    def _emit_answer(self, text: str) -> list[dict[str, Any]]:
        """Model answer text: parsed for tool calls when tools were offered."""
        if self._parser is None:
            return self._emit_content(text)
        # Usage counts what the model wrote, calls included, whatever becomes of it.
        self._answer.append(text)
        return self._emit_pieces(self._parser.feed(text))

    def _emit_pieces(
        self, pieces: list[tools.TextPiece | tools.ParsedCall]
    ) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for piece in pieces:
            if isinstance(piece, tools.TextPiece):
                chunks += self._emit_content(piece.text, counted=False)
            else:
                chunks += self._emit_call(piece)
        return chunks

    def _emit_call(self, call: tools.ParsedCall) -> list[dict[str, Any]]:
        """A call as OpenAI streams it: id, type and name first, then the arguments in pieces."""
        config = self.tool_config
        assert config is not None
        if self._calls and (config.legacy or not config.parallel):
            return []  # one call was asked for: the first one stands
        chunks = self._close_think()
        self._answer_started = True
        index = len(self._calls)
        self._calls.append({"id": tools.new_call_id(), "name": call.name, "args": call.arguments})
        pieces = [
            call.arguments[i : i + ARGUMENT_PIECE]
            for i in range(0, len(call.arguments), ARGUMENT_PIECE)
        ]
        if config.legacy:
            chunks.append(self._chunk({"function_call": {"name": call.name, "arguments": ""}}))
            chunks += [self._chunk({"function_call": {"arguments": p}}) for p in pieces]
            return chunks
        head = {
            "index": index,
            "id": self._calls[-1]["id"],
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        chunks.append(self._chunk({"tool_calls": [head]}))
        chunks += [
            self._chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]})
            for p in pieces
        ]
        return chunks

    def _flush_answer(self) -> list[dict[str, Any]]:
        return self._emit_pieces(self._parser.flush()) if self._parser is not None else []

    def _finish_reason(self) -> str:
        if not self._calls:
            return "stop"
        legacy = self.tool_config is not None and self.tool_config.legacy
        return "function_call" if legacy else "tool_calls"

    def _content_block(self, text: str) -> list[dict[str, Any]]:
        """Content as its own paragraph (images), separated from the answer before it."""
        tail = "".join(self._content[-2:])
        return self._emit_content(_block_separator(tail) + text)

    def _emit_reasoning(self, text: str) -> list[dict[str, Any]]:
        if not text:
            return []
        self._reasoning.append(text)
        self._reasoning_tail = (self._reasoning_tail + text)[-2:]
        if self.thinking_format == "hidden":
            return []
        if self.thinking_format == "reasoning_content":
            return [self._chunk({"reasoning_content": text})]
        # think_tags: the block must open the content, so late thinking has nowhere to go.
        if self._answer_started and not self._think_open:
            return []
        chunks: list[dict[str, Any]] = []
        if not self._think_open:
            self._think_open = True
            self._answer_started = True
            self._content.append("<think>\n")
            chunks.append(self._chunk({"content": "<think>\n"}))
        self._content.append(text)
        chunks.append(self._chunk({"content": text}))
        return chunks

    def _reasoning_block(self, text: str) -> list[dict[str, Any]]:
        """A reasoning paragraph (tool step, sources) that does not run into the thinking text."""
        return self._emit_reasoning(_block_separator(self._reasoning_tail) + text + "\n\n")

    # -- public API ---------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """The first chunk: the assistant role with empty content."""
        return self._chunk({"role": "assistant", "content": ""})

    def feed(self, event: GrokEvent) -> list[dict[str, Any]]:
        """The chunks (possibly none) that one grok event turns into."""
        if isinstance(event, TextDelta):
            self._saw_text = self._saw_text or bool(event.text)
            return self._emit_answer(event.text)
        if isinstance(event, ThinkingDelta):
            return self._emit_reasoning(event.text)
        if isinstance(event, ToolStep):
            return self._reasoning_block(event.summary)
        if isinstance(event, SearchResults):
            return self._search_results(event)
        if isinstance(event, Citation):
            return self._citation(event)
        if isinstance(event, ImageGenerated):
            return self._image(event.path)
        if isinstance(event, ImageProgress):
            if event.image_id in self._progress_seen:
                return []
            self._progress_seen.add(event.image_id)
            return self._reasoning_block("Generating image…")
        if isinstance(event, ConversationStarted):
            self._conversation_id = event.conversation_id
        elif isinstance(event, ReplyStarted):
            self._message_id = event.response_id
        elif isinstance(event, ModelInfo):
            self.system_fingerprint = event.model_hash or self.system_fingerprint
        elif isinstance(event, ReplyFinished):
            return self._reply_finished(event)
        return []

    def _search_results(self, event: SearchResults) -> list[dict[str, Any]]:
        lines = [
            f"- [{_markdown_title(r.title) or r.url}]({r.url})"
            for r in event.results[:SEARCH_RESULTS_SHOWN]
            if r.url
        ]
        if not lines:
            return []
        return self._reasoning_block("\n".join(lines))

    def _citation(self, event: Citation) -> list[dict[str, Any]]:
        if not event.url:
            return []
        marker = f" [[{event.index}]]({event.url})"
        if self._parser is not None:
            # Through the parser, so the marker keeps its place after any held-back text.
            chunks = self._emit_pieces(self._parser.feed(marker))
            if not "".join(self._content[-2:]).endswith(marker):
                return chunks  # still held (or inside a call): no offset to point at
        else:
            chunks = self._emit_content(marker)
        # Offsets point at the marker as it sits in the final content (think block included).
        end = len("".join(self._content))
        start = end - len(marker) + 1  # the leading space is not part of the link
        self._annotations.append(
            {
                "type": "url_citation",
                "url_citation": {
                    "url": event.url,
                    "title": event.title or event.url,
                    "start_index": start,
                    "end_index": end,
                },
            }
        )
        return chunks

    def _image(self, path: str) -> list[dict[str, Any]]:
        if not path or path in self._images_seen:
            return []
        self._images_seen.add(path)
        return self._content_block(f"![image]({self.image_url(path)})\n\n")

    def _reply_finished(self, event: ReplyFinished) -> list[dict[str, Any]]:
        self._message_id = event.response_id or self._message_id
        chunks: list[dict[str, Any]] = []
        if not self._saw_text:
            # Multi-agent and image-only modes may stream no answer tokens; the record is it.
            text = _GROK_MARKUP.sub("", event.message or "").strip()
            self._saw_text = bool(text)
            chunks += self._emit_answer(text)
        for path in event.generated_image_paths:
            chunks += self._image(path)
        return chunks

    def _usage(self) -> dict[str, Any]:
        prompt_tokens = estimate_tokens(self.prompt_text)
        reasoning_tokens = estimate_tokens("".join(self._reasoning))
        completion_tokens = estimate_tokens("".join(self._answer)) + reasoning_tokens
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
        }

    def finish(self) -> list[dict[str, Any]]:
        """The closing chunks: `finish_reason: "stop"`, then usage (`choices: []`) if asked."""
        if self._finished:
            return []
        self._finished = True
        chunks = self._flush_answer()
        chunks += self._close_think()
        chunks.append(self._chunk({}, finish_reason=self._finish_reason()))
        if self.include_usage:
            usage_chunk = self._with_ids(self._envelope("chat.completion.chunk"))
            usage_chunk["choices"] = []
            usage_chunk["usage"] = self._usage()
            chunks.append(usage_chunk)
        return chunks

    def error_chunk(self, error: dict[str, Any]) -> dict[str, Any]:
        """The `{"error": {...}}` event for a failure after the stream started."""
        body = error.get("error", error) if isinstance(error, dict) else {}
        return {
            "error": {
                "message": str(body.get("message") or "upstream error"),
                "type": body.get("type") or "upstream_error",
                # grok's numeric codes (7, 8, 16) would break clients typing `code` as a string.
                "code": None if body.get("code") is None else str(body.get("code")),
                "param": body.get("param"),
            }
        }

    def completion(self) -> dict[str, Any]:
        """The non-stream `chat.completion` built from every event fed so far."""
        self._flush_answer()
        self._close_think()
        content = "".join(self._content)
        message: dict[str, Any] = {
            "role": "assistant",
            # A reply that is only calls has no content, as OpenAI answers it.
            "content": None if self._calls and not content else content,
            "refusal": None,
            "annotations": list(self._annotations),
        }
        if self._calls and self.tool_config is not None and self.tool_config.legacy:
            first = self._calls[0]
            message["function_call"] = {"name": first["name"], "arguments": first["args"]}
        elif self._calls:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["args"]},
                }
                for call in self._calls
            ]
        if self.thinking_format == "reasoning_content":
            message["reasoning_content"] = "".join(self._reasoning) or None
        body = self._envelope("chat.completion")
        body["choices"] = [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": self._finish_reason(),
            }
        ]
        body["usage"] = self._usage()
        return self._with_ids(body, always=True)
