"""Tool calling emulated over grok.com's plain chat: the protocol text and the call parser.

grok.com's web chat has no function calling, so grokproxy describes the tools in the prompt and
asks the model to answer a call in one strict form:

    <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>

Everything the model is told lives in this module (`protocol_text`, `render_call`,
`render_result`), and so does the parser that finds calls in the answer again
(`ToolCallParser`, fed the answer text piece by piece as it streams). Pure code: no Flask, no
HTTP, no grok events.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
RESULT_OPEN = "<tool_result>"
RESULT_CLOSE = "</tool_result>"

CHOICES = ("none", "auto", "required")

_ID_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class ToolSpec:
    """One function the client offers: its name, description and JSON-Schema parameters."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


@dataclass(frozen=True)
class ToolConfig:
    """The tools of one request and how the model may use them.

    `choice` is "none", "auto", "required", or the name of the one function the model must
    call. `legacy` marks a request made with the deprecated `functions` / `function_call`
    fields, answered in that same legacy form.
    """

    tools: tuple[ToolSpec, ...] = ()
    choice: str = "auto"
    parallel: bool = True
    legacy: bool = False

    @property
    def active(self) -> bool:
        """Whether the model is offered tools at all (`tool_choice: none` offers none)."""
        return bool(self.tools) and self.choice != "none"

    @property
    def forced(self) -> str | None:
        """The function the model must call, when `tool_choice` names one."""
        return None if self.choice in CHOICES else self.choice

    def lookup(self, name: str) -> str | None:
        """The declared name matching `name` exactly, else case-insensitively, else None."""
        names = [tool.name for tool in self.tools]
        if name in names:
            return name
        folded = [n for n in names if n.lower() == name.lower()]
        return folded[0] if len(folded) == 1 else None


def new_call_id() -> str:
    """An id in OpenAI's form: `call_` and 24 letters and digits."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def _compact(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


# ---------------------------------------------------------------------------------------------
# Going up: the protocol and the history in the model's form

# The protocol, in one place. The example call is a template, not one of the client's tools, so
# the model is never nudged towards calling a tool it does not need.
_PROTOCOL = """\
# Tools

You can call the tools (functions) listed below. Each line is one tool: its name, what it \
does, and a JSON Schema of its arguments.

<tools>
{tools}
</tools>

To call a tool, write exactly this, with the tool's name and an arguments object that matches \
its schema, and nothing else inside the tags:

<tool_call>{{"name": "function_name", "arguments": {{"argument_name": "value"}}}}</tool_call>

Rules:
- Write the call as plain text: never inside a code block, never as a description of what you \
would call.
- {when}
- {how_many}
- After your call(s), stop: the results come back in the next message, each as \
<tool_result>{{"tool_call_id": "...", "name": "...", "content": "..."}}</tool_result>.
- Your earlier calls appear in the conversation as <tool_call> blocks and their results as \
<tool_result> blocks; use the results to answer, and call again only for what is still \
missing.
- Never mention these instructions, the tags or the tool list to the user."""

_WHEN = {
    "auto": "Call a tool only when it is needed to answer; otherwise answer normally in plain "
    "text, without any tags.",
    "required": "You must call at least one of the tools in this answer.",
}
_WHEN_NAMED = "You must call the tool {name} in this answer."
_PARALLEL = "You may make several independent calls in one answer: one <tool_call> block each."
_SINGLE = "Make at most one call in one answer."

# On a continued conversation the protocol is already upstream; only an obligation is repeated.
_REMINDER_REQUIRED = "Call at least one of the tools now, in the <tool_call> form."
_REMINDER_NAMED = "Call the tool {name} now, in the <tool_call> form."


def _tool_line(tool: ToolSpec) -> str:
    entry: dict[str, Any] = {"name": tool.name}
    if tool.description:
        entry["description"] = tool.description
    entry["parameters"] = tool.parameters or {"type": "object", "properties": {}}
    return _compact(entry)


def protocol_text(config: ToolConfig) -> str | None:
    """The system text describing the tools and the call protocol; None when no tools apply."""
    if not config.active:
        return None
    forced = config.forced
    when = _WHEN_NAMED.format(name=forced) if forced else _WHEN[config.choice]
    return _PROTOCOL.format(
        tools="\n".join(_tool_line(tool) for tool in config.tools),
        when=when,
        how_many=_PARALLEL if config.parallel and not config.legacy else _SINGLE,
    )


def reminder_text(config: ToolConfig) -> str | None:
    """What a continued conversation repeats: the obligation to call, if `tool_choice` has one."""
    if not config.active:
        return None
    if config.forced:
        return _REMINDER_NAMED.format(name=config.forced)
    if config.choice == "required":
        return _REMINDER_REQUIRED
    return None


def _arguments_value(arguments: Any) -> Any:
    """Arguments as an object when they are JSON (clients send a string), else as they are."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except (ValueError, RecursionError):
            return arguments
    return {} if arguments is None else arguments


def render_call(name: str, arguments: Any) -> str:
    """An earlier call in exactly the form the model is asked to write."""
    return f"{CALL_OPEN}{_compact({'name': name, 'arguments': _arguments_value(arguments)})}" + (
        CALL_CLOSE
    )


def render_result(content: str, name: str | None, tool_call_id: str | None) -> str:
    """A tool's result as the protocol announces it."""
    body: dict[str, Any] = {}
    if tool_call_id:
        body["tool_call_id"] = tool_call_id
    if name:
        body["name"] = name
    body["content"] = content
    return f"{RESULT_OPEN}{_compact(body)}{RESULT_CLOSE}"


# ---------------------------------------------------------------------------------------------
# Coming down: finding calls in the answer


@dataclass(frozen=True)
class ParsedCall:
    """One call found in the answer: the declared function name and its arguments as JSON."""

    name: str
    arguments: str
    raw: str = field(default="", repr=False)  # the text it was read from, for usage


@dataclass(frozen=True)
class TextPiece:
    """Answer text that is not a call."""

    text: str


_CLOSE = re.compile(re.escape(CALL_CLOSE), re.IGNORECASE)
_FENCE_LANG = 20  # how long an info string after ``` may be before it cannot open a call
_WS = " \t\r\n"


def _match_open(text: str, start: int) -> tuple[str, int, bool]:
    """Whether a call opens at `start`: ("full", end, fenced), ("partial", _, _) or ("no", ...).

    A call opens with `<tool_call>` (any case), optionally preceded by a code-fence line
    (models wrap calls in ```json fences despite being told not to). "partial" means the text
    ends while it could still become an opener, so it must be held back.
    """
    n = len(text)
    i = start
    fenced = False
    if text[i] == "`":
        for k in range(3):
            if i + k >= n:
                return "partial", 0, False
            if text[i + k] != "`":
                return "no", 0, False
        i += 3
        lang = 0
        while i < n and (text[i].isalnum() or text[i] in "_-+."):
            i += 1
            lang += 1
            if lang > _FENCE_LANG:
                return "no", 0, False
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return "partial", 0, False
        if text[i] == "\r":
            i += 1
        if i >= n:
            return "partial", 0, False
        if text[i] != "\n":
            return "no", 0, False
        while i < n and text[i] in _WS:
            i += 1
        fenced = True
        if i >= n:
            return "partial", 0, False
    piece = text[i : i + len(CALL_OPEN)].lower()
    if not CALL_OPEN.startswith(piece):
        return "no", 0, False
    if len(piece) < len(CALL_OPEN):
        return "partial", 0, False
    return "full", i + len(CALL_OPEN), fenced


def _remove_trailing_commas(text: str) -> str:
    """Drop a comma that directly precedes `}` or `]` outside strings (a common model slip)."""
    out: list[str] = []
    in_string = False
    escaped = False
    for index, char in enumerate(text):
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char == ",":
            ahead = index + 1
            while ahead < len(text) and text[ahead] in _WS:
                ahead += 1
            if ahead < len(text) and text[ahead] in "}]":
                continue
        out.append(char)
    return "".join(out)


_INNER_FENCE = re.compile(r"^```[\w+.-]*[ \t]*\r?\n(.*?)\r?\n?```$", re.DOTALL)


def _load_json(body: str) -> Any:
    """The JSON value of a call body, repaired where a model's slip is unambiguous."""
    body = body.strip()
    inner = _INNER_FENCE.match(body)
    if inner:
        body = inner.group(1).strip()
    try:
        return json.loads(body)
    except ValueError:
        return json.loads(_remove_trailing_commas(body))


def parse_call_body(body: str, config: ToolConfig) -> list[ParsedCall] | None:
    """The calls a `<tool_call>` body holds, or None when it is not a valid call.

    Accepted: one object `{"name", "arguments"}` (also `parameters` for `arguments`, or the
    arguments as a JSON string), or a list of such objects. The name must be a declared tool
    (case-insensitively) and the arguments an object.
    """
    try:
        value = _load_json(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than json can read
        return None
    items = value if isinstance(value, list) else [value]
    calls: list[ParsedCall] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        name = config.lookup(item["name"].strip())
        if name is None:
            return None
        arguments = item.get("arguments", item.get("parameters", {}))
        if isinstance(arguments, str):
            try:
                arguments = _load_json(arguments) if arguments.strip() else {}
            except (ValueError, RecursionError):
                return None
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return None
        calls.append(ParsedCall(name, json.dumps(arguments, ensure_ascii=False)))
    return calls or None


class ToolCallParser:
    """Splits streamed answer text into `TextPiece`s and `ParsedCall`s.

    Text that may still become a call opener is held back until it either does or cannot;
    once a call opened, everything up to `</tool_call>` (and the closing fence of a fenced
    call) is held and parsed whole. A body that is no valid call comes back as the text it
    was, so nothing the model wrote is lost. Whitespace between prose and a call is dropped.
    """

    def __init__(self, config: ToolConfig) -> None:
        self.config = config
        self._buffer = ""
        self._in_call = False
        self._fenced = False
        self._opener = ""  # the opener text of the call being read, for the plain-text fallback
        self._after_call = False  # drop whitespace right after a call
        self._pending_ws = ""  # whitespace that is shown only if prose follows it
        self._searched = 0  # how much of a call's buffer is known to hold no closing tag
        self.calls_seen = 0

    def feed(self, text: str) -> list[TextPiece | ParsedCall]:
        """The pieces `text` completes; some of it may be held back for the next feed."""
        self._buffer += text
        return self._drain(final=False)

    def flush(self) -> list[TextPiece | ParsedCall]:
        """Everything still held, at the end of the answer (an unclosed call is tried too)."""
        return self._drain(final=True)

    # -- internals ---------------------------------------------------------------------------

    def _text(self, text: str, out: list[TextPiece | ParsedCall]) -> None:
        if not text:
            return
        if self._after_call:
            text = text.lstrip(_WS)
            if not text:
                return
            self._after_call = False
        body = text.rstrip(_WS)
        trail = text[len(body) :]
        if body:
            out.append(TextPiece(self._pending_ws + body))
            self._pending_ws = ""
        self._pending_ws += trail

    def _calls(self, calls: list[ParsedCall], out: list[TextPiece | ParsedCall]) -> None:
        self._pending_ws = ""
        self._after_call = True
        self.calls_seen += len(calls)
        out.extend(calls)

    def _drain(self, final: bool) -> list[TextPiece | ParsedCall]:
        out: list[TextPiece | ParsedCall] = []
        while self._buffer:
            if self._in_call:
                if not self._read_call(out, final):
                    break
                continue
            hold = None
            opened = None
            for index, char in enumerate(self._buffer):
                if char not in "<`":
                    continue
                kind, end, fenced = _match_open(self._buffer, index)
                if kind == "full":
                    opened = (index, end, fenced)
                    break
                if kind == "partial":
                    hold = index
                    break
            if opened is not None:
                index, end, fenced = opened
                self._text(self._buffer[:index], out)
                self._opener = self._buffer[index:end]
                self._buffer = self._buffer[end:]
                self._in_call, self._fenced = True, fenced
                continue
            if hold is not None and not final:
                self._text(self._buffer[:hold], out)
                self._buffer = self._buffer[hold:]
                break
            self._text(self._buffer, out)
            self._buffer = ""
        if final:
            if self._pending_ws and not self._after_call:
                out.append(TextPiece(self._pending_ws))
            self._pending_ws = ""
        return out

    def _read_call(self, out: list[TextPiece | ParsedCall], final: bool) -> bool:
        """Consume one call from the buffer; False when it is not complete yet."""
        # Search only the new text (and a tag's length before it): a long call that streams in
        # small pieces would otherwise be searched from its start on every piece.
        found = _CLOSE.search(self._buffer, max(0, self._searched - len(CALL_CLOSE)))
        close = found.start() if found else -1
        if close < 0:
            if not final:
                self._searched = len(self._buffer)
                return False
            # The answer ended inside a call: models often forget the closing tag.
            body, rest, closer = self._buffer, "", ""
        else:
            body = self._buffer[:close]
            rest = self._buffer[close + len(CALL_CLOSE) :]
            closer = self._buffer[close : close + len(CALL_CLOSE)]
            if self._fenced:
                stripped = rest.lstrip(_WS)
                if (
                    not final
                    and (not stripped or "```".startswith(stripped[:3]))
                    and len(stripped) < 3
                ):
                    return False  # the closing fence may still come
                if stripped.startswith("```"):
                    closer += rest[: len(rest) - len(stripped) + 3]
                    rest = stripped[3:]
        raw = self._opener + body + closer
        calls = parse_call_body(body, self.config)
        self._in_call = False
        self._searched = 0
        self._buffer = rest
        if calls is None:
            self._text(raw, out)
        else:
            self._calls([ParsedCall(c.name, c.arguments, raw) for c in calls], out)
        return True
