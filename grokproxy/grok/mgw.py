"""grok.com's WebSocket "mgw" gateway events (era E4) -> typed events (docs/upstream.md §4.6-4.7).

One `GatewayParser` per turn (one gateway session; a socket carries one session at a time, and a
parser given its session id ignores what an earlier session on the same socket still sends). The
transport hands it each WebSocket text message; the parser returns the same events the HTTP
`FrameParser` produces, so everything after it (CompletionBuilder, the pool) does not know which
wire the reply came over.

Contract beyond events.py:
- A message either returns events or raises; errors are GrokError subclasses classified like the
  HTTP ones, and once raised the same error is raised again by every later `feed`/`finish`.
- Answer text arrives in one of three formats per reply (`response.chunk` text,
  `response.output_text.delta`, or only `response.output_text.done`); the first one seen wins.
- Inline `<grok:render>` citation tags are resolved against `response.grok.output`
  card attachments; text from an unresolved tag on is held back until its attachment arrives or
  the reply ends (then the tag is dropped). Raw tags never reach an event.
- `response.done` (completed) returns StreamEnd then ReplyFinished; its `message` is the answer
  exactly as relayed in TextDeltas (citations are separate events, as with the HTTP parser).
- Citation.index numbers distinct cited URLs 1, 2, 3 … in order of first appearance.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from typing import Any

from .errors import GrokError, UpstreamBroken, classify_error_object
from .events import (
    Citation,
    ConversationStarted,
    GrokEvent,
    ImageGenerated,
    ImageProgress,
    ReplyFinished,
    ReplyStarted,
    SearchResult,
    SearchResults,
    StreamEnd,
    TextDelta,
    ThinkingDelta,
    UserTurn,
)
from .frames import parse_tool_card_object

log = logging.getLogger(__name__)

ANSWER_CHANNEL = "CHANNEL_ASSISTANT_RESPONSE"

# Queries some accounts' gateways search for instead of the user's question; the answer that
# follows is fluent nonsense (docs/upstream.md §4.7), so the caller retries on another account.
PLACEHOLDER_QUERIES = frozenset(
    {
        "current information and recent sources",
        "best expert recommendations and evidence",
        "latest updates and authoritative references",
    }
)

_WHERE = "grok.com gateway"
_RENDER_OPEN, _RENDER_CLOSE = "<grok:render", "</grok:render>"
_ATTR = re.compile(r'([\w:-]+)\s*=\s*"([^"]*)"')
_ASSETS_PREFIX = re.compile(r"^https?://assets\.grok\.com/", re.I)

# Events that carry nothing grokproxy needs (lifecycle echoes of the Realtime-style protocol).
_IGNORED_TYPES = frozenset(
    {
        "session.created",
        "session.updated",
        "ping",
        "pong",
        "conversation.item.created",
        "conversation.item.done",
        "response.completed",
    }
)
_IGNORED_PREFIXES = ("response.output_item.", "response.content_part.")

# Answer text formats; the first one seen in a reply wins.
_CHUNK, _DELTA, _DONE = "chunk", "delta", "done"


class GatewayParser:
    """Incremental parser: `feed(message)` per WebSocket message, `finish()` when it ended."""

    def __init__(self, session_id: str | None = None) -> None:
        # With `session_id`, messages of other sessions (an earlier turn on the same socket)
        # are ignored; messages that name no session are this turn's.
        self._only_session = session_id
        self._session_id: str | None = None
        self._conversation_id: str | None = None
        self._created_id: str | None = None
        self._done_id: str | None = None
        self._done = False
        self._error: GrokError | None = None
        self._event_ids: set[str] = set()
        self._text_format: str | None = None
        # Answer text and (url, title) citations not relayed yet; citations are numbered when
        # relayed, so the numbers follow the order the client sees.
        self._held: list[str | tuple[str, str, str]] = []  # text, or (url, title, card id)
        self._answer: list[str] = []
        self._reasoning_channel: str | None = None
        self._cards: dict[str, tuple[str, str]] = {}  # card id -> (url, title)
        self._titles: dict[str, str] = {}  # search result url -> title
        self._citation_numbers: dict[str, int] = {}
        # A citation can come twice, as an inline tag and as a render_citation chunk of the
        # same card: its card id is cited once.
        self._cited_cards: set[str] = set()
        self._tool_cards: set[str] = set()
        self._images: list[str] = []
        self._user_turn: str | None = None  # the user item's id: the reply's parent
        self._degraded_query: str | None = None
        self.unknown_types: Counter[str] = Counter()

    # ---- public state -------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether a `response.done` with status completed was seen."""
        return self._done

    @property
    def response_id(self) -> str | None:
        """The assistant response id (the next turn's parent); `response.done`'s wins."""
        return self._done_id or self._created_id

    @property
    def conversation_id(self) -> str | None:
        """The upstream conversation id from `conversation.attached`."""
        return self._conversation_id

    @property
    def session_id(self) -> str | None:
        """The gateway session id, when a server message carried one."""
        return self._session_id

    @property
    def degraded_query(self) -> str | None:
        """The first tool query that is a known placeholder: the turn is degraded, retry it."""
        return self._degraded_query

    # ---- entry points -----------------------------------------------------------------------

    def feed(self, message: str | bytes | dict[str, Any]) -> list[GrokEvent]:
        """Parse one WebSocket message (envelope or bare event); raises on gateway errors."""
        if self._error is not None:
            raise self._error
        try:
            session_id, event = _event_of(message)
            if session_id and self._only_session and session_id != self._only_session:
                return []
            if session_id and self._session_id is None:
                self._session_id = session_id
            return self._handle(event)
        except GrokError as exc:
            self._error = exc
            raise

    def finish(self) -> list[GrokEvent]:
        """Call when the socket or turn ended: the last events, or UpstreamBroken if unfinished."""
        if self._error is not None:
            raise self._error
        if not self._done:
            self._error = UpstreamBroken(f"{_WHERE} closed before the reply finished")
            raise self._error
        return self._flush(final=True)

    # ---- events ---------------------------------------------------------------------------------

    def _handle(self, event: dict[str, Any]) -> list[GrokEvent]:
        event_id = event.get("event_id")
        if isinstance(event_id, str) and event_id:
            if event_id in self._event_ids:
                return []  # a re-sent event (reconnect, duplicate delivery)
            self._event_ids.add(event_id)
        kind = event.get("type")
        kind = kind if isinstance(kind, str) else ""
        if self._done:
            # The reply is complete and relayed; what the session says afterwards (its end,
            # late attachments, even an error) cannot change it.
            return []
        if kind == "error":
            raise classify_error_object(event.get("error") or event, where=_WHERE)
        if kind == "session.ended":
            raise UpstreamBroken(f"{_WHERE} session ended before the reply finished")
        handler = _HANDLERS.get(kind)
        if handler is not None:
            return handler(self, event)
        if kind in _IGNORED_TYPES or kind.startswith(_IGNORED_PREFIXES):
            return []
        self._count_unknown(kind or "(no type)")
        return []

    def _count_unknown(self, kind: str) -> None:
        kind = kind[:80]
        if kind not in self.unknown_types:
            log.debug("grok gateway: ignoring unknown event type %r", kind)
        self.unknown_types[kind] += 1

    def _conversation_attached(self, event: dict[str, Any]) -> list[GrokEvent]:
        conversation = _dict(event.get("conversation"))
        conversation_id = _str(conversation.get("id")) or _str(event.get("conversation_id"))
        if not conversation_id or conversation_id == self._conversation_id:
            return []
        self._conversation_id = conversation_id
        return [ConversationStarted(conversation_id)]

    def _item_added(self, event: dict[str, Any]) -> list[GrokEvent]:
        item = _dict(event.get("item"))
        item_id = _str(item.get("id"))
        if item.get("role") != "user" or not item_id or self._user_turn is not None:
            return []
        self._user_turn = item_id
        return [UserTurn(item_id)]

    def _response_created(self, event: dict[str, Any]) -> list[GrokEvent]:
        response_id = _str(_dict(event.get("response")).get("id"))
        if not response_id or self._created_id is not None:
            return []
        self._created_id = response_id
        return [ReplyStarted(response_id)]

    def _response_chunk(self, event: dict[str, Any]) -> list[GrokEvent]:
        chunk = _dict(event.get("chunk"))
        events: list[GrokEvent] = []
        for kind, body in chunk.items():
            if kind == "text":
                events.extend(self._chunk_text(_dict(body)))
            elif kind == "tool_usage_card":
                events.extend(self._tool_card(body))
            elif kind == "tool_result":
                events.extend(self._search_results(_dict(body)))
            elif kind == "render_citation":
                events.extend(self._render_citation(_dict(body)))
            elif kind != "phase_marker":
                self._count_unknown(f"response.chunk.{kind}")
        return events

    def _chunk_text(self, body: dict[str, Any]) -> list[GrokEvent]:
        text = body.get("text")
        if not isinstance(text, str) or not text:
            return []
        channel = _str(body.get("channel")) or ANSWER_CHANNEL
        if channel == ANSWER_CHANNEL:
            return self._answer_text(text, _CHUNK)
        if self._reasoning_channel is not None and channel != self._reasoning_channel:
            text = "\n\n" + text.lstrip("\n")  # a new reasoning channel starts a paragraph
        self._reasoning_channel = channel
        return [ThinkingDelta(text)]

    def _output_text_delta(self, event: dict[str, Any]) -> list[GrokEvent]:
        delta = event.get("delta")
        return self._answer_text(delta, _DELTA) if isinstance(delta, str) and delta else []

    def _output_text_done(self, event: dict[str, Any]) -> list[GrokEvent]:
        text = event.get("text")
        return self._answer_text(text, _DONE) if isinstance(text, str) and text else []

    def _answer_text(self, text: str, text_format: str) -> list[GrokEvent]:
        if self._text_format is None:
            self._text_format = text_format
        elif self._text_format != text_format:
            return []  # the same answer again in another format
        if self._held and isinstance(self._held[-1], str):
            self._held[-1] += text
        else:
            self._held.append(text)
        return self._flush(final=False)

    def _tool_card(self, card: Any) -> list[GrokEvent]:
        card_id = _str(_dict(card).get("tool_usage_card_id")) or _str(_dict(card).get("id"))
        if card_id:
            if card_id in self._tool_cards:
                return []  # the same card as a chunk and as a grok.output
            self._tool_cards.add(card_id)
        step = parse_tool_card_object(card)
        if step is None:
            return []
        query = step.args.get("query")
        if (
            self._degraded_query is None
            and isinstance(query, str)
            and query.strip().rstrip(".").lower() in PLACEHOLDER_QUERIES
        ):
            self._degraded_query = query
        return [step]

    def _search_results(self, body: dict[str, Any]) -> list[GrokEvent]:
        results: list[SearchResult] = []
        web = _dict(body.get("web_search"))
        pages = web.get("webpages", body.get("webpages"))
        for page in pages if isinstance(pages, list) else []:
            page = _dict(page)
            url = _str(page.get("url"))
            if url:
                title = _str(page.get("title"))
                snippet = _str(
                    page.get("snippet") or page.get("preview") or page.get("description")
                )
                results.append(SearchResult(url, title, snippet))
                self._titles.setdefault(url, title)
        posts = _dict(body.get("x_post")).get("posts")
        for post in posts if isinstance(posts, list) else []:
            post = _dict(post)
            handle, post_id = _str(post.get("userhandle")), _str(post.get("post_id"))
            if handle and post_id:
                url = f"https://x.com/{handle}/status/{post_id}"
                results.append(SearchResult(url, f"@{handle}", _str(post.get("text"))))
                self._titles.setdefault(url, f"@{handle}")
        return [SearchResults(tuple(results))] if results else []

    def _search_result_event(self, event: dict[str, Any]) -> list[GrokEvent]:
        # `response.search.result` has no documented shape; take webpages wherever they sit.
        for candidate in (event, *(_dict(event.get(k)) for k in ("result", "results", "search"))):
            if "webpages" in candidate or "web_search" in candidate:
                return self._search_results(candidate)
        return []

    def _render_citation(self, body: dict[str, Any]) -> list[GrokEvent]:
        url = _str(body.get("url"))
        if not url:
            return []
        self._held.append((url, self._titles.get(url, ""), _str(body.get("id")) or ""))
        return self._flush(final=False)

    def _grok_output(self, event: dict[str, Any]) -> list[GrokEvent]:
        output = _dict(event.get("output"))
        events: list[GrokEvent] = []
        stream_error = output.get("stream_error")
        if isinstance(stream_error, list):
            stream_error = stream_error[0] if stream_error else None
        if stream_error:
            raise classify_error_object(stream_error, where=f"{_WHERE} stream")
        if output.get("tool_usage_card") is not None:
            events.extend(self._tool_card(output["tool_usage_card"]))
        card = output.get("card_attachment")
        if isinstance(card, dict):
            events.extend(self._card_attachment(card))
        return events

    def _card_attachment(self, card: dict[str, Any]) -> list[GrokEvent]:
        raw = card.get("json_data", card.get("jsonData"))
        if isinstance(raw, str) and raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                card = {**parsed, **{k: v for k, v in card.items() if v not in (None, "")}}
        card_type = _str(card.get("card_type") or card.get("cardType") or card.get("type"))
        chunk = card.get("image_chunk")
        if isinstance(chunk, dict):
            return self._image_chunk(card, chunk)
        if card_type == "generated_image_card":
            image = _dict(card.get("image"))
            path = _str(card.get("image_url") or card.get("imageUrl") or card.get("url"))
            return self._image(path or _str(image.get("url") or image.get("original")))
        card_id, url = _str(card.get("id")), _str(card.get("url"))
        if card_id and url:
            self._cards[card_id] = (url, _str(card.get("title")))
            return self._flush(final=False)
        return []

    def _image_chunk(self, card: dict[str, Any], chunk: dict[str, Any]) -> list[GrokEvent]:
        image_id = _str(chunk.get("imageUuid") or card.get("id") or chunk.get("imageUrl"))
        try:
            progress = int(chunk.get("progress") or 0)
        except (TypeError, ValueError):
            progress = 0
        events: list[GrokEvent] = [ImageProgress(image_id, progress)]
        if progress >= 100 and not chunk.get("moderated"):
            events.extend(self._image(_str(chunk.get("imageUrl"))))
        return events

    def _image(self, path: str) -> list[GrokEvent]:
        path = _ASSETS_PREFIX.sub("", path.strip())
        if not path or path in self._images:
            return []
        self._images.append(path)
        return [ImageGenerated(path)]

    def _response_done(self, event: dict[str, Any]) -> list[GrokEvent]:
        response = _dict(event.get("response"))
        status = _str(response.get("status")) or "completed"
        if status != "completed":
            details = _dict(response.get("status_details"))
            reason = details.get("error") or details.get("reason")
            if reason:
                raise classify_error_object(reason, where=f"{_WHERE} reply {status}")
            raise UpstreamBroken(f"{_WHERE} reply ended with status {status!r}")
        events: list[GrokEvent] = []
        response_id = _str(response.get("id"))
        if response_id:
            self._done_id = response_id
            if self._created_id is None:
                self._created_id = response_id
                events.append(ReplyStarted(response_id))
        events.extend(self._flush(final=True))
        self._done = True
        events.append(StreamEnd())
        events.append(
            ReplyFinished(
                self.response_id or "",
                "".join(self._answer),
                self._user_turn,
                tuple(self._images),
            )
        )
        return events

    # ---- held-back answer text -------------------------------------------------------------

    def _cite(self, url: str, title: str, card_id: str, events: list[GrokEvent]) -> None:
        """A Citation numbered by its URL, unless this card was cited already."""
        if card_id:
            if card_id in self._cited_cards:
                return
            self._cited_cards.add(card_id)
        number = self._citation_numbers.setdefault(url, len(self._citation_numbers) + 1)
        events.append(Citation(number, url, title))

    def _flush(self, *, final: bool) -> list[GrokEvent]:
        """Relay every held piece that is decided; with `final`, undecided tags are dropped."""
        events: list[GrokEvent] = []
        while self._held:
            head = self._held[0]
            if isinstance(head, tuple):
                self._cite(*head, events)
                self._held.pop(0)
                continue
            # A held piece after this text means nothing can extend it any more.
            rest = self._relay_text(head, events, closed=final or len(self._held) > 1)
            if not rest:
                self._held.pop(0)
            elif final:
                # The reply is over: a tag whose card never came is markup, drop it.
                self._held[0] = _drop_first_tag(rest)
            else:
                self._held[0] = rest
                break
        return events

    def _relay_text(self, text: str, events: list[GrokEvent], *, closed: bool) -> str:
        """Relay `text` up to the first undecided tag; returns what must wait."""
        while text:
            start = text.find(_RENDER_OPEN)
            if start == -1:
                keep = 0 if closed else _partial_prefix_len(text, _RENDER_OPEN)
                self._emit(text[: len(text) - keep], events)
                return text[len(text) - keep :]
            self._emit(text[:start], events)
            text = text[start:]
            end = text.find(_RENDER_CLOSE)
            if end == -1:
                return text  # the rest of the tag comes later
            end += len(_RENDER_CLOSE)
            block, after = text[:end], text[end:]
            attrs = dict(_ATTR.findall(block[: block.find(">") + 1]))
            if attrs.get("type") == "render_inline_citation":
                card_id = attrs.get("card_id", "")
                found = self._cards.get(card_id)
                if found is None:
                    return text  # wait for the card attachment
                self._cite(*found, card_id, events)
            text = after  # other renders (searched images …) are removed from the text
        return ""

    def _emit(self, text: str, events: list[GrokEvent]) -> None:
        if text:
            self._answer.append(text)
            events.append(TextDelta(text))


_HANDLERS = {
    "conversation.attached": GatewayParser._conversation_attached,
    "conversation.item.added": GatewayParser._item_added,
    "response.created": GatewayParser._response_created,
    "response.chunk": GatewayParser._response_chunk,
    "response.output_text.delta": GatewayParser._output_text_delta,
    "response.output_text.done": GatewayParser._output_text_done,
    "response.search.result": GatewayParser._search_result_event,
    "response.grok.output": GatewayParser._grok_output,
    "response.done": GatewayParser._response_done,
}


def _drop_first_tag(text: str) -> str:
    """`text` (starting with a tag) without that tag; an unterminated one takes the rest."""
    end = text.find(_RENDER_CLOSE)
    return "" if end == -1 else text[end + len(_RENDER_CLOSE) :]


def _partial_prefix_len(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


def _event_of(message: str | bytes | dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """Session id and event of one message: `{"session_id", "event": {...}}` or a bare event."""
    if isinstance(message, bytes | bytearray):
        message = bytes(message).decode("utf-8", errors="replace")
    if isinstance(message, str):
        try:
            message = json.loads(message)
        except ValueError:
            raise UpstreamBroken(f"{_WHERE} sent a message that is not JSON") from None
    if not isinstance(message, dict):
        raise UpstreamBroken(f"{_WHERE} sent a message that is not a JSON object")
    session_id = _str(message.get("session_id")) or None
    event = message.get("event")
    if isinstance(event, dict):
        return session_id, event
    if "type" not in message and message.get("error") is not None:
        # An HTTP-style `{"error": {...}}` envelope on the socket.
        return session_id, {"type": "error", "error": message["error"]}
    return session_id, message


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    return value if isinstance(value, str) else str(value) if isinstance(value, int) else ""
