"""grok.com's chat stream -> typed events (docs/upstream.md §4).

The parser accepts every framing seen in the wild: NDJSON, `data:` prefixes and `[DONE]`,
objects concatenated with no separator, pretty-printed objects, UTF-8 split anywhere across
chunks; wrapped (`result.response.X`) and flattened continuation (`result.X`) frames.

Contract beyond events.py:
- In-band errors are raised as GrokError subclasses, never yielded; events that preceded the
  error in the same chunk are returned first and the error is raised by the next call.
- When `modelResponse` arrives and no answer text was streamed, its `message` is emitted as one
  TextDelta first, so concatenating TextDeltas always gives the answer.
- StreamEnd is emitted once, at the soft stop, at `finalMetadata`, or right before the first
  ReplyFinished when upstream sent neither.
- Citation.index numbers distinct cited URLs 1, 2, 3 … in order of first appearance.
- A stream that ends without StreamEnd or ReplyFinished raises UpstreamBroken("truncated").
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import Any

from .errors import GrokError, UpstreamBroken, classify_error_payload
from .events import (
    Citation,
    ConversationStarted,
    GrokEvent,
    ImageGenerated,
    ImageProgress,
    ModelInfo,
    ReplyFinished,
    ReplyStarted,
    SearchResult,
    SearchResults,
    StreamEnd,
    TextDelta,
    ThinkingDelta,
    TitleChanged,
    ToolStep,
    UserTurn,
)

_SSE_FIELDS = ("event:", "id:", "retry:", ":")
_MAX_BUFFER = 16 * 1024 * 1024  # one frame bigger than this is not a grok.com frame

_TOOL_CARD_OPEN, _TOOL_CARD_CLOSE = "<xai:tool_usage_card", "</xai:tool_usage_card>"
_RENDER_OPEN, _RENDER_CLOSE = "<grok:render", "</grok:render>"
_THINKING_TAGS = {"header", "summary", "analysis", "thinking", "reasoning"}
_IGNORED_TAGS = {"raw_function_result", "tool_result"}

_ATTR = re.compile(r'([\w:-]+)\s*=\s*"([^"]*)"')
_ARGUMENT = re.compile(r'<argument\s+name="([^"]+)"\s*>(.*?)</argument>', re.S)
_XAI_FIELD = re.compile(r"<xai:(tool_name|tool_args)>(.*?)</xai:\1>", re.S)
_CDATA = re.compile(r"^\s*<!\[CDATA\[(.*)\]\]>\s*$", re.S)
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def snake_case(name: str) -> str:
    """`webSearch` -> `web_search`, `xKeywordSearch` -> `x_keyword_search`."""
    return _CAMEL.sub("_", name).lower()


class _TagSplitter:
    """Splits streamed text into plain text and complete `<open …>…</close>` blocks.

    Text that could be the start of a block is held back until it is decided, so a tag split
    across tokens is never leaked half-way into the answer.
    """

    def __init__(self, open_tag: str, close_tag: str):
        self._open = open_tag
        self._close = close_tag
        self._buf = ""

    def feed(self, text: str) -> list[tuple[bool, str]]:
        self._buf += text
        out: list[tuple[bool, str]] = []
        while self._buf:
            start = self._buf.find(self._open)
            if start == -1:
                keep = _partial_prefix_len(self._buf, self._open)
                cut = len(self._buf) - keep
                if cut:
                    out.append((False, self._buf[:cut]))
                self._buf = self._buf[cut:]
                break
            if start:
                out.append((False, self._buf[:start]))
                self._buf = self._buf[start:]
            end = self._buf.find(self._close)
            if end == -1:
                break  # wait for the rest of the block
            end += len(self._close)
            out.append((True, self._buf[:end]))
            self._buf = self._buf[end:]
        return out

    def flush(self) -> list[tuple[bool, str]]:
        rest, self._buf = self._buf, ""
        if not rest or rest.startswith(self._open):
            return []  # an unterminated block is markup, not answer text
        return [(False, rest)]


def _partial_prefix_len(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


def parse_tool_card_xml(block: str) -> ToolStep | None:
    """`<xai:tool_usage_card>` XML -> ToolStep (None when it names no tool)."""
    found = {m.group(1): m.group(2) for m in _XAI_FIELD.finditer(block)}
    name = (found.get("tool_name") or "").strip()
    if not name:
        return None
    raw_args = found.get("tool_args") or ""
    cdata = _CDATA.match(raw_args)
    raw_args = (cdata.group(1) if cdata else raw_args).strip()
    args: dict[str, Any] = {}
    if raw_args:
        try:
            parsed = json.loads(raw_args)
        except ValueError:
            parsed = {"raw": raw_args}
        args = parsed if isinstance(parsed, dict) else {"value": parsed}
    return ToolStep(snake_case(name), args)


def parse_tool_card_object(card: Any) -> ToolStep | None:
    """A structured `toolUsageCard` `{toolUsageCardId, webSearch: {args: {...}}}` -> ToolStep."""
    if not isinstance(card, dict):
        return None
    for key, value in card.items():
        if key in ("toolUsageCardId", "tool_usage_card_id", "id") or not isinstance(value, dict):
            continue
        args = value.get("args", value)
        return ToolStep(snake_case(key), dict(args) if isinstance(args, dict) else {})
    return None


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class FrameParser:
    """Incremental parser: `feed(bytes)` returns events, `finish()` checks the stream ended."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._scan_pos = 0  # brace scanner state for an incomplete object at the buffer start
        self._scan_depth = 0
        self._scan_in_str = False
        self._scan_esc = False
        self._thinking = _TagSplitter(_TOOL_CARD_OPEN, _TOOL_CARD_CLOSE)
        self._text = _TagSplitter(_RENDER_OPEN, _RENDER_CLOSE)
        self._reply_id: str | None = None
        self._model: str | None = None
        self._ended = False
        self._finished_ids: set[str] = set()
        self._text_seen = False
        self._images: set[str] = set()
        self._cards: dict[str, tuple[str, str]] = {}  # card id -> (url, title)
        self._search_by_citation: dict[str, tuple[str, str]] = {}
        self._citation_numbers: dict[str, int] = {}
        self._error: GrokError | None = None

    # ---- bytes -> JSON objects ---------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[GrokEvent]:
        """Parse the next piece of the body; returns the events it completed."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        self._buf += text
        if len(self._buf) > _MAX_BUFFER:
            raise UpstreamBroken("grok.com sent an unparseable stream (frame too large)")
        return self._drain(final=False)

    def finish(self) -> Iterator[GrokEvent]:
        """Signal end of body: yields the last events, then raises any error or truncation."""
        self._buf += self._decoder.decode(b"", final=True)
        yield from self._drain(final=True)
        if self._error is not None:
            raise self._error
        if not self._ended and not self._finished_ids:
            raise UpstreamBroken("grok.com stream truncated: it ended before the reply finished")
        yield from self._flush_text()

    def _drain(self, *, final: bool) -> list[GrokEvent]:
        if self._error is not None:
            raise self._error
        events: list[GrokEvent] = []
        while True:
            obj, ok = self._next_object(final)
            if not ok:
                return events
            if isinstance(obj, dict):
                try:
                    events.extend(self._handle(obj))
                except GrokError as exc:
                    if not events:
                        raise
                    # Hand out what came before the error first; raise on the next call.
                    self._error = exc
                    return events

    def _reset_scan(self) -> None:
        self._scan_pos = self._scan_depth = 0
        self._scan_in_str = self._scan_esc = False

    def _consume(self, n: int) -> None:
        self._buf = self._buf[n:]
        self._reset_scan()

    def _next_object(self, final: bool) -> tuple[Any, bool]:
        """The next JSON value in the buffer, or (None, False) when more input is needed."""
        while True:
            stripped = self._buf.lstrip()
            if len(stripped) != len(self._buf):
                self._consume(len(self._buf) - len(stripped))
            buf = self._buf
            if not buf:
                return None, False
            if buf.startswith("[DONE]"):
                self._consume(6)
                continue
            maybe_done = buf[0] == "[" and "[DONE]".startswith(buf[:6]) and not final
            if buf[0] in "{[" and not maybe_done:
                newline = buf.find("\n")
                if newline != -1:
                    # Fast path: one NDJSON line.
                    try:
                        value = json.loads(buf[:newline])
                    except ValueError:
                        pass
                    else:
                        self._consume(newline + 1)
                        return value, True
                try:
                    value, end = json.JSONDecoder().raw_decode(buf)
                except ValueError:
                    if not final and not self._object_closed():
                        return None, False  # the object continues in the next chunk
                    self._skip_line(final)  # not JSON: drop that line and go on
                    continue
                self._consume(end)
                return value, True
            if buf.startswith("data:"):
                self._consume(5)
                continue
            if buf.startswith(_SSE_FIELDS) or not _could_be_prefix(buf):
                if "\n" not in buf and not final:
                    return None, False
                self._skip_line(final)
                continue
            if not final:
                return None, False  # e.g. "da" of "data:" or "[DO" of "[DONE]"
            self._skip_line(final)

    def _skip_line(self, final: bool) -> None:
        newline = self._buf.find("\n")
        self._consume(newline + 1 if newline != -1 else len(self._buf))

    def _object_closed(self) -> bool:
        """Whether the JSON object at the buffer start has its closing brace yet."""
        buf = self._buf
        depth, in_str, esc = self._scan_depth, self._scan_in_str, self._scan_esc
        i = self._scan_pos
        n = len(buf)
        while i < n:
            c = buf[i]
            if in_str:
                if esc:
                    esc = False
                elif c == "\\":
                    esc = True
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth <= 0:
                    return True
            i += 1
        self._scan_pos, self._scan_depth = i, depth
        self._scan_in_str, self._scan_esc = in_str, esc
        return False

    # ---- JSON objects -> events -----------------------------------------------------------

    def _handle(self, obj: dict[str, Any]) -> list[GrokEvent]:
        error = obj.get("error")
        if error is not None and "result" not in obj:
            raise _in_band_error(error)
        result = obj.get("result")
        if not isinstance(result, dict):
            return []  # E4 gateway events, surveys, keep-alives …
        events: list[GrokEvent] = []
        conversation = result.get("conversation")
        if isinstance(conversation, dict) and conversation.get("conversationId"):
            title = conversation.get("title")
            events.append(
                ConversationStarted(
                    str(conversation["conversationId"]), title if isinstance(title, str) else None
                )
            )
        response = result.get("response")
        # Continuation streams are flattened: the response fields sit directly under result.
        frame = response if isinstance(response, dict) else result
        events.extend(self._handle_response(frame))
        title = result.get("title")
        if isinstance(title, dict) and isinstance(title.get("newTitle"), str):
            events.append(TitleChanged(title["newTitle"]))
        return events

    def _handle_response(self, frame: dict[str, Any]) -> list[GrokEvent]:
        events: list[GrokEvent] = []
        error = frame.get("error")
        if isinstance(error, dict | str) and error:
            raise _in_band_error(error)

        user = frame.get("userResponse")
        if isinstance(user, dict):
            if isinstance(user.get("model"), str):
                self._model = user["model"]
            if user.get("responseId"):
                events.append(UserTurn(str(user["responseId"])))
        else:
            response_id = frame.get("responseId")
            if isinstance(response_id, str) and response_id and self._reply_id is None:
                self._reply_id = response_id
                events.append(ReplyStarted(response_id))

        llm_info = frame.get("llmInfo")
        if isinstance(llm_info, dict):
            model = llm_info.get("model") or llm_info.get("modelId") or self._model
            events.append(ModelInfo(llm_info.get("modelHash"), model))

        events.extend(self._handle_search(frame))
        card_attachment = frame.get("cardAttachment")
        if isinstance(card_attachment, dict):
            events.extend(self._handle_card(card_attachment.get("jsonData")))
        events.extend(self._handle_images(frame))

        tool_card = parse_tool_card_object(frame.get("toolUsageCard"))
        if tool_card is not None:
            events.append(tool_card)
        elif "token" in frame:
            events.extend(self._handle_token(frame))

        final_metadata = frame.get("finalMetadata")
        if frame.get("isSoftStop") is True or final_metadata:
            events.extend(self._end())

        model_response = frame.get("modelResponse")
        if isinstance(model_response, dict):
            events.extend(self._handle_model_response(model_response))
        return events

    def _handle_token(self, frame: dict[str, Any]) -> list[GrokEvent]:
        token = frame.get("token")
        tag = frame.get("messageTag")
        if isinstance(token, dict):
            # E1 deep-search steps: {"action": "webSearch", "action_input": {...}}.
            action = token.get("action")
            if isinstance(action, str) and action:
                args = token.get("action_input")
                if not isinstance(args, dict):
                    args = {"input": args} if args not in (None, "") else {}
                return [ToolStep(snake_case(action), args)]
            return []
        if not isinstance(token, str) or not token or tag in _IGNORED_TAGS:
            return []
        if tag == "tool_usage_card":
            return self._thinking_text(token)
        thinking = frame.get("isThinking") is True or tag in _THINKING_TAGS
        if tag == "assistant" and frame.get("messageStepId") is not None:
            thinking = True  # grok-3 deep-search agent narration, not the answer
        if thinking:
            if tag == "header":
                token = f"\n\n{token.strip()}\n\n"
            return self._thinking_text(token)
        return self._answer_text(token)

    def _thinking_text(self, text: str) -> list[GrokEvent]:
        events: list[GrokEvent] = []
        for is_card, piece in self._thinking.feed(text):
            if is_card:
                step = parse_tool_card_xml(piece)
                if step is not None:
                    events.append(step)
            elif piece:
                events.append(ThinkingDelta(piece))
        return events

    def _answer_text(self, text: str) -> list[GrokEvent]:
        return self._render_pieces(self._text.feed(text))

    def _render_pieces(self, pieces: list[tuple[bool, str]]) -> list[GrokEvent]:
        events: list[GrokEvent] = []
        for is_render, piece in pieces:
            if is_render:
                citation = self._citation(piece)
                if citation is not None:
                    events.append(citation)
            elif piece:
                self._text_seen = True
                events.append(TextDelta(piece))
        return events

    def _citation(self, block: str) -> Citation | None:
        """Resolve one `<grok:render>` block; only inline citations to known cards survive."""
        head = block[: block.find(">") + 1]
        attrs = dict(_ATTR.findall(head))
        if attrs.get("type") != "render_inline_citation":
            return None  # searched/generated image renders etc. are removed from the text
        args = {k: v.strip() for k, v in _ARGUMENT.findall(block)}
        found = self._cards.get(attrs.get("card_id", ""))
        if found is None:
            found = self._search_by_citation.get(args.get("citation_id", ""))
        if found is None:
            return None
        url, title = found
        number = self._citation_numbers.setdefault(url, len(self._citation_numbers) + 1)
        return Citation(number, url, title)

    def _flush_text(self) -> list[GrokEvent]:
        events: list[GrokEvent] = []
        for _, piece in self._thinking.flush():
            events.append(ThinkingDelta(piece))
        events.extend(self._render_pieces(self._text.flush()))
        return events

    def _end(self) -> list[GrokEvent]:
        if self._ended:
            return []
        self._ended = True
        return [*self._flush_text(), StreamEnd()]

    def _handle_search(self, frame: dict[str, Any]) -> list[GrokEvent]:
        results: list[SearchResult] = []
        web = frame.get("webSearchResults")
        items = web.get("results") if isinstance(web, dict) else web
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("url"), str) and item["url"]:
                title = str(item.get("title") or item.get("metadataTitle") or "")
                snippet = str(item.get("preview") or item.get("description") or "")
                results.append(SearchResult(item["url"], title, snippet))
                if item.get("citationId") not in (None, ""):
                    self._search_by_citation[str(item["citationId"])] = (item["url"], title)
        x_search = frame.get("xSearchResults")
        items = x_search.get("results") if isinstance(x_search, dict) else x_search
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            post_id, user = item.get("postId"), item.get("username")
            if post_id and user:
                url = f"https://x.com/{user}/status/{post_id}"
                results.append(SearchResult(url, f"@{user}", str(item.get("text") or "")))
        return [SearchResults(tuple(results))] if results else []

    def _handle_card(self, json_data: Any) -> list[GrokEvent]:
        if not isinstance(json_data, str) or not json_data:
            return []
        try:
            card = json.loads(json_data)
        except ValueError:
            return []
        if not isinstance(card, dict):
            return []
        chunk = card.get("image_chunk")
        if isinstance(chunk, dict):
            image_id = str(chunk.get("imageUuid") or card.get("id") or chunk.get("imageUrl") or "")
            progress = _int(chunk.get("progress"))
            events: list[GrokEvent] = [ImageProgress(image_id, progress)]
            url = chunk.get("imageUrl")
            if progress >= 100 and isinstance(url, str) and not chunk.get("moderated"):
                events.extend(self._image(url))
            return events
        card_id, url = card.get("id"), card.get("url")
        if isinstance(card_id, str) and isinstance(url, str) and url:
            self._cards[card_id] = (url, str(card.get("title") or ""))
        return []

    def _handle_images(self, frame: dict[str, Any]) -> list[GrokEvent]:
        events: list[GrokEvent] = []
        streaming = frame.get("streamingImageGenerationResponse")
        if isinstance(streaming, dict):
            url = streaming.get("imageUrl")
            image_id = str(streaming.get("imageId") or url or "")
            progress = _int(streaming.get("progress"))
            events.append(ImageProgress(image_id, progress))
            if (
                progress >= 100
                and isinstance(url, str)
                and not streaming.get("moderated")
                and "-part-" not in url
            ):
                events.extend(self._image(url))
        cached = frame.get("cachedImageGenerationResponse")
        if isinstance(cached, dict) and isinstance(cached.get("imageUrl"), str):
            events.extend(self._image(cached["imageUrl"]))
        return events

    def _image(self, path: str) -> list[GrokEvent]:
        path = path.strip()
        if not path or path in self._images:
            return []
        self._images.add(path)
        return [ImageGenerated(path)]

    def _handle_model_response(self, record: dict[str, Any]) -> list[GrokEvent]:
        errors = record.get("streamErrors")
        if isinstance(errors, list) and errors:
            raise _in_band_error(errors[0])
        response_id = str(record.get("responseId") or self._reply_id or "")
        if response_id in self._finished_ids:
            return []
        events: list[GrokEvent] = []
        if response_id and self._reply_id is None:
            self._reply_id = response_id
            events.append(ReplyStarted(response_id))
        paths = record.get("generatedImageUrls")
        paths = [p for p in paths if isinstance(p, str) and p] if isinstance(paths, list) else []
        for path in paths:
            events.extend(self._image(path))
        message = record.get("message")
        message = message if isinstance(message, str) else ""
        if not self._text_seen and message:
            events.extend(self._answer_text(message))
        events.extend(self._end())
        self._finished_ids.add(response_id)
        parent = record.get("parentResponseId")
        events.append(
            ReplyFinished(
                response_id,
                _strip_renders(message),
                parent if isinstance(parent, str) and parent else None,
                tuple(paths),
            )
        )
        return events


def _strip_renders(text: str) -> str:
    """The answer without `<grok:render>` markup (citations are separate events)."""
    splitter = _TagSplitter(_RENDER_OPEN, _RENDER_CLOSE)
    pieces = splitter.feed(text) + splitter.flush()
    return "".join(piece for is_tag, piece in pieces if not is_tag)


def _could_be_prefix(buf: str) -> bool:
    """Whether a short buffer may still grow into `data:` or `[DONE]`."""
    head = buf[:6]
    return "data:".startswith(head[:5]) or "[DONE]".startswith(head)


def _in_band_error(error: Any) -> GrokError:
    if isinstance(error, dict):
        code = error.get("code")
        message = str(error.get("message") or error.get("error") or "")
        return classify_error_payload(
            code if isinstance(code, int) else None, message, where="grok.com stream"
        )
    return classify_error_payload(None, str(error), where="grok.com stream")
