"""Deterministic reply content: answer tokens, thinking lines, search results, a PNG image.

The same prompt always yields the same text, so tests can assert on it; only ids and times vary.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib

FILLER = (" grok", " emulator", " reply", " 你好", " 😄", " with", " steady", " tokens", "。")

_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")


def prompt_words(message: str) -> list[str]:
    """Words of the prompt; CJK text without spaces is cut into two-character pieces."""
    words = message.split()
    if len(words) <= 1 and _CJK.search(message):
        text = message.strip()
        return [text[i : i + 2] for i in range(0, len(text), 2)]
    return words


# A prompt with the word "code" gets a fenced code block; with "hostile", markup a chat page
# must not run (script tags, event handlers, javascript: links): both right after the echo.
_CODE_PROMPT = re.compile(r"\bcode\b", re.IGNORECASE)
_HOSTILE_PROMPT = re.compile(r"\bhostile\b", re.IGNORECASE)
CODE_TOKENS = (
    "\n\n```python\n",
    "def greet(name):\n",
    '    return f"Hello, {name}!"\n',
    "```\n\n",
)
HOSTILE_TOKENS = (
    "\n\nA [markdown link](javascript:window.__hostile='markdown-link') and",
    " ![an image](javascript:window.__hostile='image').\n\n",
    "<script>window.__hostile = 'script'</script>",
    " <img src=x onerror=\"window.__hostile = 'onerror'\">",
    " <a href=\"javascript:window.__hostile='html-link'\">html link</a>",
    " <b onmouseover=\"window.__hostile = 'onmouseover'\">hover me</b>",
    " <iframe src=\"javascript:window.__hostile='iframe'\"></iframe>\n\n",
)


def answer_tokens(message: str, count: int) -> list[str]:
    """Exactly `count` answer tokens: an echo of the prompt's words, then filler.

    A prompt with "code" or "hostile" gets CODE_TOKENS or HOSTILE_TOKENS after the echo; such
    an answer is longer than `count` rather than cut inside its markup.
    """
    tokens = ["Echo:"] + [" " + w for w in prompt_words(message)[:40]]
    if _CODE_PROMPT.search(message):
        tokens.extend(CODE_TOKENS)
    if _HOSTILE_PROMPT.search(message):
        tokens.extend(HOSTILE_TOKENS)
    if len(tokens) > len(prompt_words(message)[:40]) + 1:
        count = max(count, len(tokens))
    i = 0
    while len(tokens) < count:
        tokens.append(FILLER[i % len(FILLER)])
        i += 1
    return tokens[: max(count, 1)]


SCRIPT_PIECE = 4  # characters per token of a scripted answer: tags end up cut across tokens


def scripted_tokens(text: str, piece: int = SCRIPT_PIECE) -> list[str]:
    """A scripted answer cut into tokens of `piece` characters (at least one token)."""
    piece = max(1, piece)
    return [text[i : i + piece] for i in range(0, len(text), piece)] or [""]


def thinking_tokens(message: str) -> list[str]:
    """Reasoning-summary tokens that follow the thinking header."""
    first = " ".join(prompt_words(message)[:6])
    return ["- The user", " asks:", f" {first}", ".\n", "- Plan", " a short", " answer", ".\n"]


# A degraded gateway answers with fluent text that has nothing to do with the question.
DEGRADED_QUERY = "current information and recent sources"
_DEGRADED = (
    "Recent sources agree that careful planning and steady progress matter more than any single"
    " decision. Experts recommend reviewing the evidence, comparing several perspectives and"
    " updating the plan as new information arrives. In practice this means small, reliable"
    " steps, each checked against authoritative references."
)


def degraded_tokens(count: int) -> list[str]:
    """Exactly `count` tokens of fluent text unrelated to any prompt."""
    words = _DEGRADED.split(" ")
    tokens = [words[0]] + [" " + w for w in words[1:]]
    return [tokens[i % len(tokens)] for i in range(max(count, 1))]


def uses_notetaker(message: str) -> bool:
    """Whether a thinking reply also streams summary headlines (every other prompt, stably)."""
    return hashlib.sha256(message.encode()).digest()[0] % 2 == 0


def title_for(message: str) -> str:
    """The conversation title grok.com would generate (first words of the prompt)."""
    words = prompt_words(message)
    joiner = "" if _CJK.search(message) and len(message.split()) <= 1 else " "
    title = joiner.join(words[:6]).strip()
    return title[:60] or "New conversation"


def search_results(message: str, n: int = 3) -> list[tuple[str, str, str]]:
    """(url, title, preview) triples for a query, stable per prompt."""
    seed = hashlib.sha256(message.encode()).hexdigest()[:8]
    query = " ".join(prompt_words(message)[:5])
    return [
        (
            f"https://example{i}.test/articles/{seed}-{i}",
            f"Result {i} for {query}",
            f"Preview {i}: what sources say about {query}...",
        )
        for i in range(1, n + 1)
    ]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_image(seed: str, size: int = 32) -> bytes:
    """A small real RGB PNG whose colours depend on `seed`."""
    r, g, b = hashlib.sha256(seed.encode()).digest()[:3]
    rows = b"".join(
        b"\x00" + b"".join(bytes(((r + x * 4) % 256, (g + y * 4) % 256, b)) for x in range(size))
        for y in range(size)
    )
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )
