"""Typed events parsed out of grok.com's NDJSON stream.

These are the only view of grok.com's reply that the rest of grokproxy gets: the frame parser
(`grokproxy.grok.frames`) turns wire frames of any era into these, and the OpenAI translation
(`grokproxy.openai`) turns these into chat completions. In-band upstream errors are not events:
the parser raises a `grokproxy.grok.errors.GrokError` subclass instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ConversationStarted:
    """`result.conversation`: the upstream conversation the reply belongs to."""

    conversation_id: str
    title: str | None = None


@dataclass(frozen=True, slots=True)
class UserTurn:
    """`userResponse`: the echo of the user's message, whose responseId is the reply's parent."""

    response_id: str


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    """The assistant reply's responseId became known (first frame that carries it)."""

    response_id: str


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """`llmInfo.modelHash` and any model name upstream reported (used as system_fingerprint)."""

    model_hash: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer text (non-thinking tokens), markup already removed."""

    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """A piece of reasoning text (thinking tokens and header lines), tool-card XML removed."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolStep:
    """One deep-search step: a tool call such as web_search with its arguments."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """A short readable line, e.g. `web_search: latest AI news`."""
        for key in ("query", "url", "q", "code", "prompt"):
            value = self.args.get(key)
            if isinstance(value, str) and value.strip():
                return f"{self.name}: {value.strip()}"
        return self.name


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One web or X search result."""

    url: str
    title: str = ""
    snippet: str = ""


@dataclass(frozen=True, slots=True)
class SearchResults:
    """A batch of search results found during the reply (webSearchResults / xSearchResults)."""

    results: tuple[SearchResult, ...]


@dataclass(frozen=True, slots=True)
class Citation:
    """An inline citation at this point of the answer (grok:render citation card resolved)."""

    index: int
    url: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class ImageProgress:
    """Image generation progress (0-100) for one image."""

    image_id: str
    progress: int


@dataclass(frozen=True, slots=True)
class ImageGenerated:
    """A finished generated image: `path` is relative to GROK_ASSETS_URL."""

    path: str


@dataclass(frozen=True, slots=True)
class ReplyFinished:
    """`modelResponse`: the full assistant record that closes the reply."""

    response_id: str
    message: str
    parent_response_id: str | None = None
    generated_image_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TitleChanged:
    """`result.title.newTitle`."""

    title: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The soft stop (`isSoftStop: true`) or `finalMetadata`: no more answer text follows."""


GrokEvent = (
    ConversationStarted
    | UserTurn
    | ReplyStarted
    | ModelInfo
    | TextDelta
    | ThinkingDelta
    | ToolStep
    | SearchResults
    | Citation
    | ImageProgress
    | ImageGenerated
    | ReplyFinished
    | TitleChanged
    | StreamEnd
)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Not a grok event: `UpstreamReply.events(heartbeat=…)` yields it while upstream is silent."""
