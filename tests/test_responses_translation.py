"""The Responses and Messages builders fed grok events directly: item and block order, one call
when parallel calls are off, late thinking left out, citation offsets, and every event valid."""

from __future__ import annotations

import json

from openai_schema import assert_valid_as
from test_messages_live import assert_valid
from test_responses_live import assert_valid_event

from grokproxy import anthropic_api, responses_api, tools
from grokproxy.grok.events import Citation, ReplyFinished, TextDelta, ThinkingDelta
from grokproxy.turns import ReplyReader

WEATHER = tools.ToolSpec("get_weather", None, {"type": "object"})
CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "%s"}}</tool_call>'


def responses(payload: dict, events: list) -> tuple[list[dict], dict]:
    request = responses_api.load_request({"model": "grok-3", **payload})
    builder = responses_api.ResponseBuilder(request, ReplyReader(request.tool_config))
    out = builder.start()
    for event in events:
        out += builder.feed(event)
    out += builder.finish()
    for event in out:
        assert_valid_event(event)
    assert_valid_as(out[-1]["response"], "Response")
    return out, out[-1]["response"]


def messages(payload: dict, events: list) -> tuple[list[dict], dict]:
    request = anthropic_api.load_request({"model": "grok-3", "max_tokens": 9, **payload})
    builder = anthropic_api.MessageBuilder(request, ReplyReader(request.tool_config))
    out = builder.start()
    for event in events:
        out += builder.feed(event)
    out += builder.finish()
    for event in out:
        if event["type"] != "ping":
            assert_valid(event, "RawMessageStreamEvent")
    return out, builder.message()


TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
ANTHROPIC_TOOL = {"name": "get_weather", "input_schema": {"type": "object"}}


def test_prose_a_call_and_prose_are_three_items_in_order():
    events = [TextDelta("Let me look. "), TextDelta(CALL % "Paris"), TextDelta(" Done.")]
    _, response = responses({"input": "hi", "tools": [TOOL]}, events)
    assert [item["type"] for item in response["output"]] == [
        "message",
        "function_call",
        "message",
    ]
    assert response["output"][0]["content"][0]["text"] == "Let me look."
    assert json.loads(response["output"][1]["arguments"]) == {"city": "Paris"}

    _, message = messages(
        {"messages": [{"role": "user", "content": "hi"}], "tools": [ANTHROPIC_TOOL]}, events
    )
    assert [block["type"] for block in message["content"]] == ["text", "tool_use", "text"]
    assert message["stop_reason"] == "tool_use"


def test_only_the_first_call_stands_when_parallel_calls_are_off():
    events = [TextDelta(CALL % "Paris" + CALL % "Oslo")]
    _, response = responses({"input": "hi", "tools": [TOOL], "parallel_tool_calls": False}, events)
    assert [json.loads(i["arguments"])["city"] for i in response["output"]] == ["Paris"]
    _, both = responses({"input": "hi", "tools": [TOOL]}, events)
    assert [json.loads(i["arguments"])["city"] for i in both["output"]] == ["Paris", "Oslo"]

    choice = {"type": "auto", "disable_parallel_tool_use": True}
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [ANTHROPIC_TOOL]}
    _, message = messages({**body, "tool_choice": choice}, events)
    assert [b["input"]["city"] for b in message["content"]] == ["Paris"]


def test_thinking_after_the_answer_began_is_left_out_but_counted():
    events = [ThinkingDelta("first "), TextDelta("Answer."), ThinkingDelta("late")]
    _, response = responses({"input": "hi", "reasoning": {"summary": "auto"}}, events)
    assert response["output"][0]["summary"] == [{"type": "summary_text", "text": "first "}]
    assert response["usage"]["output_tokens_details"]["reasoning_tokens"] == 3  # "first late"

    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    out, message = messages(body, events)
    assert message["content"][0] == {
        "type": "thinking",
        "thinking": "first ",
        "signature": message["content"][0]["signature"],
    }
    kinds = [e["delta"]["type"] for e in out if e["type"] == "content_block_delta"]
    assert kinds == ["thinking_delta", "signature_delta", "text_delta"]


def test_a_citation_annotation_points_at_its_marker():
    events = [
        TextDelta("Paris is sunny."),
        Citation(1, "https://example.com/weather", "Weather"),
        TextDelta(" More."),
        ReplyFinished("r1", "Paris is sunny. More."),
    ]
    out, response = responses({"input": "hi"}, events)
    part = response["output"][0]["content"][0]
    [annotation] = part["annotations"]
    marked = part["text"][annotation["start_index"] : annotation["end_index"]]
    assert marked == "[[1]](https://example.com/weather)"
    assert annotation["title"] == "Weather"
    added = [e for e in out if e["type"] == "response.output_text.annotation.added"]
    assert [e["annotation"] for e in added] == [annotation]


def test_sequence_numbers_count_every_event_from_zero():
    out, _ = responses({"input": "hi"}, [TextDelta("a"), TextDelta("b")])
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
