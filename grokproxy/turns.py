"""What the Responses and Messages translations share: model names and a reply read as parts.

Each agent API (`grokproxy.responses_api`, `grokproxy.anthropic_api`) knows only its own wire
shapes. Both go up through the shared prompt building (`grokproxy.openai.flatten_messages` /
`last_user_message`, fed the normalised message dicts described in `grokproxy.schemas`) and the
tool protocol of `grokproxy.tools`; coming down, both read grok's events through one
`ReplyReader`, which turns them into API-neutral parts: reasoning text, answer text (a
citation marker flagged as such), and tool calls parsed out of the answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app

from . import tools
from .errors import NotFound
from .grok.catalog import ModelSpec
from .grok.events import (
    Citation,
    ConversationStarted,
    GrokEvent,
    ImageGenerated,
    ImageProgress,
    ReplyFinished,
    ReplyStarted,
    SearchResults,
    TextDelta,
    ThinkingDelta,
    ToolStep,
)
from .openai import estimate_tokens
from .upstream import model_catalog

# How many results of one search batch the reasoning lists, as chat completions do.
SEARCH_RESULTS_SHOWN = 5

# Grok markup that must never reach a client if the parser left it in a final message.
_GROK_MARKUP = re.compile(
    r"<grok:render\b.*?</grok:render>|<xai:tool_usage_card\b.*?</xai:tool_usage_card>",
    re.DOTALL,
)


def resolve_model(name: str) -> ModelSpec | None:
    """The catalog entry for `name`, directly or through GROK_MODEL_ALIASES; None if neither."""
    catalog = model_catalog()
    spec = catalog.get(name)
    if spec is not None:
        return spec
    target = (current_app.config.get("GROK_MODEL_ALIASES") or {}).get(name)
    return catalog.get(target) if target else None


def model_spec(name: str) -> ModelSpec:
    """The catalog entry for `name` (or its alias); a 404 listing every usable name else."""
    spec = resolve_model(name)
    if spec is None:
        raise NotFound(
            f"model {name!r} does not exist; available: {', '.join(model_names())}",
            code="model_not_found",
            param="model",
        )
    return spec


def model_names() -> list[str]:
    """Every name a client may ask for: the catalog's, then the aliases."""
    return [*model_catalog().names(), *(current_app.config.get("GROK_MODEL_ALIASES") or {})]


@dataclass(frozen=True)
class Reasoning:
    """Thinking text (and tool steps, search results) the model shows before answering."""

    text: str


@dataclass(frozen=True)
class Text:
    """Answer text; `citation` is (url, title) when this text is a citation's ` [[n]](url)`."""

    text: str
    citation: tuple[str, str] | None = None


@dataclass(frozen=True)
class Call:
    """A tool call parsed out of the answer: a declared function and its JSON arguments."""

    name: str
    arguments: str


Part = Reasoning | Text | Call


def _separator(tail: str) -> str:
    if not tail or tail.endswith("\n\n"):
        return ""
    return "\n" if tail.endswith("\n") else "\n\n"


def _markdown_title(title: str) -> str:
    return re.sub(r"\s+", " ", title).replace("[", "(").replace("]", ")").strip()


class ReplyReader:
    """Reads one grok reply's events into `Part`s, rendered as chat completions render them.

    Tool steps, search results and image progress become reasoning paragraphs; citations become
    ` [[n]](url)` in the answer; generated images become `![image](url)` paragraphs. With tools
    offered, answer text goes through the tool protocol's parser, so no call syntax is ever
    answer text; when parallel calls are off, only the first call stands.
    """

    def __init__(
        self,
        tool_config: tools.ToolConfig | None = None,
        image_url: Callable[[str], str] = lambda path: path,
        prompt_text: str = "",
    ) -> None:
        self.tool_config = tool_config
        self.image_url = image_url
        self.prompt_text = prompt_text
        self.conversation_id: str | None = None
        self.message_id: str | None = None
        self._parser = (
            tools.ToolCallParser(tool_config) if tool_config and tool_config.active else None
        )
        self._written: list[str] = []  # what the model wrote as its answer, calls included
        self._reasoning: list[str] = []
        self._reasoning_tail = ""
        self._text_tail = ""
        self._images_seen: set[str] = set()
        self._progress_seen: set[str] = set()
        self._saw_text = False
        self.calls = 0

    # -- parts ------------------------------------------------------------------------------

    def _reasoning_part(self, text: str, block: bool = False) -> list[Part]:
        if block:
            text = _separator(self._reasoning_tail) + text + "\n\n"
        if not text:
            return []
        self._reasoning.append(text)
        self._reasoning_tail = (self._reasoning_tail + text)[-2:]
        return [Reasoning(text)]

    def _pieces(self, pieces: list[tools.TextPiece | tools.ParsedCall]) -> list[Part]:
        parts: list[Part] = []
        for piece in pieces:
            if isinstance(piece, tools.TextPiece):
                parts += self._text_part(piece.text)
            elif self.calls and self.tool_config is not None and not self.tool_config.parallel:
                continue  # one call was asked for: the first one stands
            else:
                self.calls += 1
                parts.append(Call(piece.name, piece.arguments))
        return parts

    def _text_part(self, text: str, citation: tuple[str, str] | None = None) -> list[Part]:
        if not text:
            return []
        self._text_tail = (self._text_tail + text)[-2:]
        return [Text(text, citation)]

    def _answer(self, text: str, counted: bool = True) -> list[Part]:
        if counted:
            self._written.append(text)
        if self._parser is None:
            return self._text_part(text)
        return self._pieces(self._parser.feed(text))

    # -- events -----------------------------------------------------------------------------

    def feed(self, event: GrokEvent) -> list[Part]:
        """The parts (possibly none) that one grok event turns into."""
        if isinstance(event, TextDelta):
            self._saw_text = self._saw_text or bool(event.text)
            return self._answer(event.text)
        if isinstance(event, ThinkingDelta):
            return self._reasoning_part(event.text)
        if isinstance(event, ToolStep):
            return self._reasoning_part(event.summary, block=True)
        if isinstance(event, SearchResults):
            lines = [
                f"- [{_markdown_title(r.title) or r.url}]({r.url})"
                for r in event.results[:SEARCH_RESULTS_SHOWN]
                if r.url
            ]
            return self._reasoning_part("\n".join(lines), block=True) if lines else []
        if isinstance(event, Citation):
            return self._citation(event)
        if isinstance(event, ImageGenerated):
            return self._image(event.path)
        if isinstance(event, ImageProgress):
            if event.image_id in self._progress_seen:
                return []
            self._progress_seen.add(event.image_id)
            return self._reasoning_part("Generating image…", block=True)
        if isinstance(event, ConversationStarted):
            self.conversation_id = event.conversation_id
        elif isinstance(event, ReplyStarted):
            self.message_id = event.response_id
        elif isinstance(event, ReplyFinished):
            return self._finished(event)
        return []

    def _citation(self, event: Citation) -> list[Part]:
        if not event.url:
            return []
        marker = f" [[{event.index}]]({event.url})"
        parts = self._answer(marker, counted=False)
        # The marker is a citation only when it came out whole, right now (not held in a call).
        if parts and isinstance(parts[-1], Text) and parts[-1].text.endswith(marker):
            head = parts[-1].text[: -len(marker)]
            parts[-1:] = [Text(head)] if head else []
            parts.append(Text(marker, (event.url, event.title or event.url)))
        return parts

    def _image(self, path: str) -> list[Part]:
        if not path or path in self._images_seen:
            return []
        self._images_seen.add(path)
        parts = self._flush()
        return parts + self._text_part(
            _separator(self._text_tail) + f"![image]({self.image_url(path)})\n\n"
        )

    def _finished(self, event: ReplyFinished) -> list[Part]:
        self.message_id = event.response_id or self.message_id
        parts: list[Part] = []
        if not self._saw_text:
            # Multi-agent and image-only modes may stream no answer tokens; the record is it.
            text = _GROK_MARKUP.sub("", event.message or "").strip()
            self._saw_text = bool(text)
            parts += self._answer(text)
        for path in event.generated_image_paths:
            parts += self._image(path)
        return parts

    def _flush(self) -> list[Part]:
        return self._pieces(self._parser.flush()) if self._parser is not None else []

    def finish(self) -> list[Part]:
        """Whatever the parser still held, at the end of the reply."""
        return self._flush()

    # -- usage ------------------------------------------------------------------------------

    @property
    def reasoning_text(self) -> str:
        """Every reasoning text read so far."""
        return "".join(self._reasoning)

    def usage(self) -> tuple[int, int, int]:
        """(input, output, reasoning) token estimates; output includes the reasoning."""
        reasoning = estimate_tokens(self.reasoning_text)
        output = estimate_tokens("".join(self._written)) + reasoning
        return estimate_tokens(self.prompt_text), output, reasoning
