"""Anthropic's Messages API end to end: the official anthropic SDK's messages.create and
messages.stream against grokproxy over the emulator, with a tool loop and with thinking. Every
message and stream event is validated against the schemas derived from the pinned SDK
(tests/fixtures/anthropic/)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import anthropic
import pytest
import requests
from jsonschema import Draft202012Validator

from conftest import POOL_KEY

TOKEN = "emu-messages-account-01"
MODEL = "grok-3"
SCHEMAS = Path(__file__).resolve().parent / "fixtures" / "anthropic" / "messages_schemas.json"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
QUESTION = "What is the weather in Paris?"
CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
RESULT = '{"temperature_c": 18, "sky": "sunny"}'
ANSWER = "It is 18 °C and sunny in Paris."

pytestmark = pytest.mark.usefixtures("transport")


@functools.cache
def validator(name: str) -> Draft202012Validator:
    document = json.loads(SCHEMAS.read_text(encoding="utf-8"))
    schema = {"$defs": document["$defs"], "$ref": f"#/$defs/{name}"}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def assert_valid(obj: dict[str, Any], name: str) -> None:
    """Fail with every error of `obj` against the SDK-derived schema `name`."""
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator(name).iter_errors(obj)
    ]
    assert not errors, errors


def assert_message(body: dict[str, Any]) -> None:
    """A message as Anthropic's API answers it: the schema, and every field it always sends."""
    assert_valid(body, "Message")
    assert {"stop_reason", "stop_sequence", "usage"} <= body.keys()
    assert body["id"].startswith("msg_") and body["type"] == "message"


def client(url: str, **kwargs: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=url, api_key=kwargs.pop("api_key", POOL_KEY), max_retries=0, timeout=30, **kwargs
    )


def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None, path: str = ""):
    return requests.post(
        f"{url}/v1/messages{path}",
        json=body,
        headers=headers if headers is not None else {"x-api-key": POOL_KEY},
        stream=bool(body.get("stream")),
        timeout=30,
    )


def raw_events(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """A streamed request's events, each validated, with its `event:` line checked."""
    reply = post(url, {**body, "stream": True})
    assert reply.status_code == 200, reply.text
    events = []
    for block in reply.text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        data = json.loads(lines[1][len("data: ") :])
        assert data["type"] == lines[0][len("event: ") :]
        if data["type"] == "ping":
            assert data == {"type": "ping"}
        elif data["type"] == "error":
            assert_valid(data, "ErrorResponse")
        else:
            assert_valid(data, "RawMessageStreamEvent")
        events.append(data)
    return events


def test_a_plain_message_is_one_text_block(live, emu):
    _, url = live([TOKEN])
    emu.script([ANSWER, ANSWER], token=TOKEN)
    message = client(url).messages.create(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": QUESTION}]
    )
    assert [(b.type, b.text) for b in message.content] == [("text", ANSWER)]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    raw = post(
        url, {"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": "x"}]}
    )
    assert_message(raw.json())


def test_the_stream_sends_anthropics_event_sequence(live, emu):
    _, url = live([TOKEN])
    emu.script([ANSWER], token=TOKEN)
    body = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": QUESTION}]}
    events = raw_events(url, body)
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == ANSWER
    assert events[-2]["delta"]["stop_reason"] == "end_turn"
    assert events[-2]["usage"]["output_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_sdk_runs_a_tool_loop(live, emu, stream):
    _, url = live([TOKEN])
    emu.script([CALL, ANSWER], token=TOKEN)
    sdk = client(url)

    def ask(messages: list[dict[str, Any]]) -> anthropic.types.Message:
        kwargs = {"model": MODEL, "max_tokens": 512, "messages": messages, "tools": [WEATHER_TOOL]}
        if not stream:
            return sdk.messages.create(**kwargs)
        with sdk.messages.stream(**kwargs) as events:
            for _ in events:
                pass
            return events.get_final_message()

    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    first = ask(messages)
    assert first.stop_reason == "tool_use"
    [use] = first.content
    assert (use.type, use.name, use.input) == ("tool_use", "get_weather", {"city": "Paris"})
    assert use.id.startswith("toolu_")
    assert "<tools>" in emu.chat_turns()[0]["message"]

    messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
    messages.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": RESULT}],
        }
    )
    second = ask(messages)
    assert second.stop_reason == "end_turn"
    assert [b.text for b in second.content] == [ANSWER]
    result = json.dumps(
        {"tool_call_id": use.id, "name": "get_weather", "content": RESULT},
        ensure_ascii=False,
        separators=(", ", ": "),
    )
    assert emu.chat_turns()[1]["message"].endswith(
        f"[assistant]: {CALL}\n\n[tool]: <tool_result>{result}</tool_result>"
    )


def test_tool_use_streams_as_input_json_deltas(live, emu):
    _, url = live([TOKEN])
    emu.script([CALL], token=TOKEN)
    body = {
        "model": MODEL,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [WEATHER_TOOL],
    }
    events = raw_events(url, body)
    start = next(e for e in events if e["type"] == "content_block_start")
    assert start["content_block"]["type"] == "tool_use"
    partial = "".join(
        e["delta"]["partial_json"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"
    )
    assert json.loads(partial) == {"city": "Paris"}
    assert not any(e["delta"].get("type") == "text_delta" for e in events if "delta" in e)
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_thinking_comes_as_a_thinking_block_when_enabled(live, emu, stream):
    _, url = live([TOKEN])
    sdk = client(url)
    kwargs = {
        "model": "grok-4",
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": QUESTION}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    if stream:
        with sdk.messages.stream(**kwargs) as events:
            kinds = {event.type for event in events}
            message = events.get_final_message()
        assert "thinking" in kinds  # the SDK's own thinking events
    else:
        message = sdk.messages.create(**kwargs)
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking.strip() and thinking.signature
    assert text.type == "text" and text.text
    raw = post(url, {**kwargs, "stream": False})
    assert_message(raw.json())

    without = {**kwargs}
    del without["thinking"]
    plain = sdk.messages.create(**without)
    assert [b.type for b in plain.content] == ["text"]


PIXEL = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
    "rkJggg=="
)


def test_an_image_url_is_fetched_by_grokproxy_which_refuses_private_hosts(live, emu):
    _, url = live([TOKEN])
    source = {"type": "url", "url": "http://127.0.0.1:9/cat.png"}
    content = [{"type": "image", "source": source}, {"type": "text", "text": "What is this?"}]
    body = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": content}]}
    reply = post(url, body)
    assert reply.status_code == 400
    assert reply.json()["error"]["message"].startswith("image 1:")
    source["url"] = "ftp://example.com/cat.png"
    reply = post(url, body)
    assert reply.status_code == 400
    assert "messages.0.content.0.source.url" in reply.json()["error"]["message"]
    assert emu.chat_turns() == []


def test_a_base64_image_and_system_blocks_go_upstream(live, emu):
    _, url = live([TOKEN])
    pixel = PIXEL
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": pixel}},
        {"type": "text", "text": "What is this?"},
    ]
    body = {
        "model": MODEL,
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Answer briefly."}],
        "messages": [{"role": "user", "content": content}],
    }
    reply = post(url, body)
    assert reply.status_code == 200, reply.text
    turn = emu.chat_turns()[0]
    assert turn["message"] == "[system]: Answer briefly.\n\n[user]: What is this?"
    assert len(turn["file_ids"]) == 1


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (
            {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            400,
            "invalid_request_error",
        ),
        ({"model": MODEL, "max_tokens": 10, "messages": []}, 400, "invalid_request_error"),
        (
            {"model": MODEL, "max_tokens": 10, "messages": [{"role": "robot", "content": "x"}]},
            400,
            "invalid_request_error",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "f"}],
            },
            400,
            "invalid_request_error",
        ),
        (
            {
                "model": "claude-sonnet-4-5",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}],
            },
            404,
            "not_found_error",
        ),
    ],
)
def test_errors_come_in_anthropics_shape(live, body, status, kind):
    _, url = live([TOKEN])
    reply = post(url, body)
    assert reply.status_code == status
    assert_valid(reply.json(), "ErrorResponse")
    assert reply.json()["type"] == "error"
    assert reply.json()["error"]["type"] == kind and reply.json()["error"]["message"]


def test_the_sdk_raises_its_own_errors(live):
    _, url = live([TOKEN])
    with pytest.raises(anthropic.AuthenticationError):
        client(url, api_key="not-a-key").messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.NotFoundError):
        client(url).messages.create(
            model="claude-opus-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )


def test_bearer_and_x_api_key_are_the_same_keys(live, emu):
    _, url = live([TOKEN], GROK_MODEL_ALIASES={"claude-sonnet-4-5": "grok-3"})
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}],
    }
    assert post(url, body, {"Authorization": f"Bearer {POOL_KEY}"}).status_code == 200
    answered = post(url, body, {"x-api-key": POOL_KEY})
    assert answered.status_code == 200 and answered.json()["model"] == "claude-sonnet-4-5"
    refused = post(url, body, {})
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"


def test_count_tokens_answers_the_usage_estimate(live, emu):
    _, url = live([TOKEN])
    emu.script([ANSWER], token=TOKEN)
    sdk = client(url)
    messages = [{"role": "user", "content": QUESTION}]
    counted = sdk.messages.count_tokens(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    raw = post(
        url, {"model": MODEL, "messages": messages, "tools": [WEATHER_TOOL]}, path="/count_tokens"
    )
    assert_valid(raw.json(), "MessageTokensCount")
    used = sdk.messages.create(model=MODEL, max_tokens=64, messages=messages, tools=[WEATHER_TOOL])
    assert counted.input_tokens == used.usage.input_tokens > 0
    assert len(emu.chat_turns()) == 1  # counting sends nothing upstream


def test_a_tool_result_with_an_image_and_an_error_flag_reads_to_the_model(live, emu):
    _, url = live([TOKEN])
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
    }
    use = {
        "type": "tool_use",
        "id": "toolu_01abc",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_01abc",
        "is_error": True,
        "content": [{"type": "text", "text": "radar down"}, image],
    }
    body = {
        "model": MODEL,
        "max_tokens": 64,
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": [use]},
            {"role": "user", "content": [result]},
        ],
    }
    assert post(url, body).status_code == 200
    turn = emu.chat_turns()[0]
    assert turn["message"].endswith(
        '[tool]: <tool_result>{"tool_call_id": "toolu_01abc", "name": "get_weather", '
        '"content": "Error:\\nradar down"}</tool_result>'
    )
    assert len(turn["file_ids"]) == 1


def test_a_stream_that_dies_midway_ends_with_an_error_event(live):
    _, url = live(["emu-dies-messages-0001"])
    body = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": QUESTION}]}
    events = raw_events(url, body)
    assert events[0]["type"] == "message_start"
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["type"] == "api_error" and events[-1]["error"]["message"]
    assert "message_stop" not in [e["type"] for e in events]
