"""Tool calls parsed out of the model's answer: what real models write, streamed in any pieces."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai_schema import assert_valid

from grokproxy.grok.events import ReplyFinished, TextDelta, ThinkingDelta
from grokproxy.openai import CompletionBuilder
from grokproxy.tools import ToolCallParser, ToolConfig, ToolSpec, parse_call_body

WEATHER = ToolSpec(
    "get_weather",
    "Current weather of a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = ToolSpec("get_time", "Local time of a city", {"type": "object", "properties": {}})
TOOLS = ToolConfig(tools=(WEATHER, TIME))
PARIS = {"city": "Paris"}
CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
TIME_CALL = '<tool_call>{"name": "get_time", "arguments": {"city": "Oslo"}}</tool_call>'

# Anything that would show the protocol to a user: the tags, a fence, the call's JSON keys.
CALL_SYNTAX = re.compile(r"tool_call|tool_result|```|\"arguments\"|\"name\"", re.IGNORECASE)

W = '"name": "get_weather"'
ARGS = '"arguments": {"city": "Paris"}'
GOT = [("get_weather", PARIS)]
BOTH = [("get_weather", PARIS), ("get_time", {"city": "Oslo"})]
BEIJING = [("get_weather", {"city": "北京"})]
STRING_ARGS = json.dumps({"arguments": json.dumps(PARIS)})[1:-1]  # "arguments": "{\"city\"…
PRETTY = "\n" + json.dumps({"name": "get_weather", "arguments": PARIS}, indent=2) + "\n"
TIME_JSON = '{"name": "get_time", "arguments": {"city": "Oslo"}}'


def tagged(body: str) -> str:
    return f"<tool_call>{body}</tool_call>"


# (case, what the model wrote, the calls expected, the content expected)
AWKWARD: list[tuple[str, str, list[tuple[str, dict[str, Any]]], str | None]] = [
    ("exact form", CALL, GOT, None),
    ("prose before", f"Let me look that up.\n\n{CALL}", GOT, "Let me look that up."),
    ("prose after", f"{CALL}\n\nI will wait for the result.", GOT, "I will wait for the result."),
    ("json fence around the tags", f"```json\n{CALL}\n```", GOT, None),
    ("xml fence and prose", f"Checking.\n```xml\n{CALL}\n```\n", GOT, "Checking."),
    ("fence inside the tags", tagged(f"\n```json\n{{{W}, {ARGS}}}\n```\n"), GOT, None),
    ("trailing commas", tagged(f'{{{W}, "arguments": {{"city": "Paris",}},}}'), GOT, None),
    ("name in another case", tagged(f'{{"name": "Get_Weather", {ARGS}}}'), GOT, None),
    ("tags in upper case", f"<TOOL_CALL>{{{W}, {ARGS}}}</TOOL_CALL>", GOT, None),
    ("closing tag forgotten", f"<tool_call>{{{W}, {ARGS}}}", GOT, None),
    ("arguments as a string", tagged(f"{{{W}, {STRING_ARGS}}}"), GOT, None),
    ("parameters for arguments", tagged(f'{{{W}, "parameters": {{"city": "Paris"}}}}'), GOT, None),
    ("pretty-printed JSON", tagged(PRETTY), GOT, None),
    ("two calls", f"{CALL}\n{TIME_CALL}", BOTH, None),
    ("two calls in one tag", tagged(f"[{{{W}, {ARGS}}}, {TIME_JSON}]"), BOTH, None),
    ("unicode arguments", tagged(f'{{{W}, "arguments": {{"city": "北京"}}}}'), BEIJING, None),
]  # fmt: skip

# What must come back as plain text, exactly as written: nothing is a valid call.
PLAIN: list[tuple[str, str]] = [
    ("unknown function", tagged('{"name": "launch_rocket", "arguments": {}}')),
    ("unparseable arguments", tagged(f'{{{W}, "arguments": {{city: Paris}}}}')),
    ("arguments not an object", tagged(f'{{{W}, "arguments": [1, 2]}}')),
    ("no name", tagged(f"{{{ARGS}}}")),
    ("prose with angle brackets", "If a < b and b > c, <b>bold</b> is HTML and <tool> a word."),
    ("a real code block", "Run this:\n```python\nprint('<tool_call>')\n```\nDone."),
    ("inline backticks", "Use `x` or ``y`` in text, and a lone ` too."),
    ("opener cut at the end", "The tag is written <tool_ca"),
    ("fence cut at the end", "Some code: ``"),
]  # fmt: skip

PIECE_SIZES = [1, 2, 3, 5, 7, 11, 10_000]


def builder(config: ToolConfig | None = TOOLS, **kwargs: Any) -> CompletionBuilder:
    return CompletionBuilder("grok-3", tool_config=config, prompt_text="p", **kwargs)


def stream(text: str, size: int, config: ToolConfig | None = TOOLS, **kwargs: Any):
    """The chunks and the completion of a reply whose answer is `text` cut in `size` pieces."""
    b = builder(config, **kwargs)
    chunks = [b.start()]
    for i in range(0, len(text), size):
        chunks += b.feed(TextDelta(text[i : i + size]))
    chunks += b.finish()
    return chunks, b.completion()


def streamed_content(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def streamed_calls(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool call deltas merged by index, as an SDK accumulates them."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for delta in (
            chunk["choices"][0]["delta"].get("tool_calls") or [] if chunk["choices"] else []
        ):
            call = calls.setdefault(delta["index"], {"arguments": ""})
            for key in ("id", "type"):
                if key in delta:
                    call[key] = delta[key]
            function = delta.get("function") or {}
            if "name" in function:
                call["name"] = function["name"]
            call["arguments"] += function.get("arguments", "")
    return [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("size", PIECE_SIZES)
@pytest.mark.parametrize(("case", "text", "calls", "content"), AWKWARD, ids=[a[0] for a in AWKWARD])
def test_awkward_calls_become_tool_calls_and_no_call_syntax_reaches_content(
    case, text, calls, content, size
):
    chunks, completion = stream(text, size)
    got = streamed_calls(chunks)
    assert [(c["name"], json.loads(c["arguments"])) for c in got] == calls
    assert all(
        c["type"] == "function" and re.fullmatch(r"call_[A-Za-z0-9]{24}", c["id"]) for c in got
    )
    assert len({c["id"] for c in got}) == len(got)
    assert (streamed_content(chunks) or None) == content
    assert not CALL_SYNTAX.search(streamed_content(chunks))
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    message = completion["choices"][0]["message"]
    assert message["content"] == content
    assert [
        (c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in message["tool_calls"]
    ] == calls
    assert [c["id"] for c in message["tool_calls"]] == [c["id"] for c in got]
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
        assert_valid(chunk, stream=True)
    ChatCompletion.model_validate(completion)
    assert_valid(completion, stream=False)


@pytest.mark.parametrize("size", PIECE_SIZES)
@pytest.mark.parametrize(("case", "text"), PLAIN, ids=[p[0] for p in PLAIN])
def test_what_is_no_valid_call_comes_back_as_the_text_written(case, text, size):
    chunks, completion = stream(text, size)
    assert streamed_content(chunks) == text
    assert streamed_calls(chunks) == []
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    message = completion["choices"][0]["message"]
    assert message["content"] == text
    assert "tool_calls" not in message
    assert_valid(completion, stream=False)


@pytest.mark.parametrize("size", [1, 4, 10_000])
def test_arguments_stream_in_pieces_after_a_head_with_id_type_and_name(size):
    chunks, _ = stream(
        tagged(f'{{{W}, "arguments": {{"city": "Paris", "unit": "celsius", "days": 3}}}}'),
        size,
    )
    deltas = [
        d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls") or []
    ]
    head, *rest = deltas
    assert head.keys() == {"index", "id", "type", "function"}
    assert head["function"] == {"name": "get_weather", "arguments": ""}
    assert len(rest) > 1  # the arguments come in several pieces, as OpenAI streams them
    assert all(
        d.keys() == {"index", "function"} and d["function"].keys() == {"arguments"} for d in rest
    )
    assert json.loads("".join(d["function"]["arguments"] for d in rest)) == {
        "city": "Paris", "unit": "celsius", "days": 3
    }  # fmt: skip


def test_parallel_tool_calls_false_keeps_the_first_call_only():
    config = ToolConfig(tools=(WEATHER, TIME), parallel=False)
    chunks, completion = stream(f"{CALL}\n{TIME_CALL}", 3, config)
    assert [c["name"] for c in streamed_calls(chunks)] == ["get_weather"]
    assert [c["function"]["name"] for c in completion["choices"][0]["message"]["tool_calls"]] == [
        "get_weather"
    ]
    assert streamed_content(chunks) == ""


def test_tool_choice_none_parses_nothing_and_the_text_stays_content():
    config = ToolConfig(tools=(WEATHER,), choice="none")
    chunks, completion = stream(CALL, 3, config)
    assert streamed_content(chunks) == CALL
    assert completion["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("choice", ["auto", "required", "get_weather"])
def test_every_offering_tool_choice_parses_calls(choice):
    chunks, _ = stream(f"Sure.\n{CALL}", 5, ToolConfig(tools=(WEATHER, TIME), choice=choice))
    assert [c["name"] for c in streamed_calls(chunks)] == ["get_weather"]
    assert streamed_content(chunks) == "Sure."


def test_a_request_without_tools_is_never_parsed():
    chunks, completion = stream(CALL, 3, None)
    assert streamed_content(chunks) == CALL
    assert completion["choices"][0]["message"]["content"] == CALL


def test_reasoning_is_never_parsed_for_calls_and_stays_reasoning():
    b = builder()
    chunks = [
        b.start(),
        *b.feed(ThinkingDelta(f"I could write {CALL} here.")),
        *b.feed(TextDelta("Hello.")),
    ]
    chunks += b.finish()
    reasoning = "".join(
        c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks if c["choices"]
    )
    assert reasoning == f"I could write {CALL} here."
    assert streamed_calls(chunks) == []
    assert b.completion()["choices"][0]["message"]["content"] == "Hello."


def test_think_tags_close_before_the_call_and_content_keeps_only_the_thinking():
    b = builder(thinking_format="think_tags")
    chunks = [b.start(), *b.feed(ThinkingDelta("plan")), *b.feed(TextDelta(CALL)), *b.finish()]
    assert streamed_content(chunks) == "<think>\nplan\n</think>"
    assert [c["name"] for c in streamed_calls(chunks)] == ["get_weather"]


def test_a_call_only_in_the_final_record_is_parsed_too():
    b = builder()
    chunks = [b.start(), *b.feed(ReplyFinished("resp-1", CALL)), *b.finish()]
    assert [c["name"] for c in streamed_calls(chunks)] == ["get_weather"]


def test_usage_counts_the_call_text_as_completion():
    _, with_call = stream(CALL, 7)
    _, as_text = stream(CALL, 7, None)
    assert with_call["usage"]["completion_tokens"] == as_text["usage"]["completion_tokens"] > 0


def test_legacy_functions_answer_with_function_call():
    config = ToolConfig(tools=(WEATHER, TIME), legacy=True)
    chunks, completion = stream(f"{CALL}\n{TIME_CALL}", 4, config)
    heads = [
        c["choices"][0]["delta"]["function_call"]
        for c in chunks
        if c["choices"] and "function_call" in c["choices"][0]["delta"]
    ]
    assert heads[0] == {"name": "get_weather", "arguments": ""}
    assert json.loads("".join(h["arguments"] for h in heads)) == PARIS
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"
    message = completion["choices"][0]["message"]
    assert message["function_call"] == {"name": "get_weather", "arguments": json.dumps(PARIS)}
    assert message["content"] is None and "tool_calls" not in message
    assert_valid(completion, stream=False)
    for chunk in chunks:
        assert_valid(chunk, stream=True)


def test_the_schema_check_rejects_what_openai_would_never_send():
    _, completion = stream(CALL, 100)
    broken = json.loads(json.dumps(completion))
    broken["choices"][0]["finish_reason"] = "tool_call"
    del broken["choices"][0]["message"]["tool_calls"][0]["id"]
    with pytest.raises(AssertionError, match="finish_reason"):
        assert_valid(broken, stream=False)


def test_parser_holds_back_only_while_text_can_still_open_a_call():
    parser = ToolCallParser(TOOLS)
    shown = [p.text for p in parser.feed("Hi <tool")]
    assert shown == ["Hi"]  # "<tool" may still become "<tool_call>"
    shown = [p.text for p in parser.feed("s> are ")]
    assert shown == [" <tools> are"]  # it cannot any more; the trailing space waits for prose
    assert [p.text for p in parser.flush()] == [" "]


def test_parse_call_body_repairs_nothing_that_is_ambiguous():
    assert parse_call_body('{"name": "get_weather", "arguments": {"city": "a,}"}}', TOOLS)[
        0
    ].arguments == json.dumps({"city": "a,}"})
    assert parse_call_body('{"name": "get_weather", "arguments": {"city": "Paris"', TOOLS) is None
    assert (
        parse_call_body(
            '{"name": "GET_WEATHER", "arguments": {}}',
            ToolConfig(tools=(WEATHER, ToolSpec("Get_Weather"))),
        )
        is None
    )


def test_nesting_too_deep_for_json_comes_back_as_text():
    text = tagged("[" * 50_000)
    chunks, completion = stream(text, 1000)
    assert streamed_content(chunks) == text
    assert completion["choices"][0]["finish_reason"] == "stop"


def test_a_long_call_in_small_pieces_is_read_whole():
    long_value = "a, " * 30_000
    chunks, _ = stream(tagged(f'{{{W}, "arguments": {{"city": "{long_value}",}}}}'), 4)
    assert [json.loads(c["arguments"]) for c in streamed_calls(chunks)] == [{"city": long_value}]
