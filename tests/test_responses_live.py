"""The Responses API end to end: the openai SDK's responses.create against grokproxy over the
emulator, streamed and not, with a function tool loop and with previous_response_id. Every
response object and stream event is validated against OpenAI's published schema."""

from __future__ import annotations

import functools
import json
from typing import Any

import openai
import pytest
import requests
from openai_schema import SCHEMAS, assert_valid_as

from conftest import POOL_KEY

TOKEN = "emu-responses-account-01"
MODEL = "grok-3"
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city",
    "parameters": {
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
def event_schemas() -> dict[str, str]:
    """Stream event type -> the name of its schema among ResponseStreamEvent's members."""
    defs = json.loads(SCHEMAS.read_text(encoding="utf-8"))["$defs"]
    names = [m["$ref"].rsplit("/", 1)[-1] for m in defs["ResponseStreamEvent"]["anyOf"]]
    return {defs[n]["properties"]["type"]["enum"][0]: n for n in names}


def assert_valid_event(event: dict[str, Any]) -> None:
    """Valid as its own event schema (precise errors) and as a ResponseStreamEvent."""
    assert event["type"] in event_schemas(), event["type"]
    assert_valid_as(event, event_schemas()[event["type"]])
    assert_valid_as(event, "ResponseStreamEvent")


def sdk(url: str, key: str = POOL_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


def raw_events(url: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """POST a streamed request and read the SSE: (event line, data) pairs, each validated."""
    reply = requests.post(
        f"{url}/v1/responses",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {POOL_KEY}"},
        stream=True,
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    events = []
    for block in reply.text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        data = json.loads(lines[1][len("data: ") :])
        assert data["type"] == lines[0][len("event: ") :]
        assert_valid_event(data)
        events.append((data["type"], data))
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    return events


def test_a_plain_question_answers_one_message_valid_against_the_schema(live, emu):
    _, url = live([TOKEN])
    emu.script([ANSWER], token=TOKEN)
    response = sdk(url).responses.create(model=MODEL, input=QUESTION)
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.output_text == ANSWER
    [message] = response.output
    assert (message.type, message.role, message.content[0].type) == (
        "message",
        "assistant",
        "output_text",
    )
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert emu.chat_turns()[0]["message"] == QUESTION
    emu.script([ANSWER], token=TOKEN)
    raw = requests.post(
        f"{url}/v1/responses",
        json={"model": MODEL, "input": QUESTION},
        headers={"Authorization": f"Bearer {POOL_KEY}"},
        timeout=30,
    ).json()
    assert_valid_as(raw, "Response")


def test_the_stream_sends_openais_event_sequence(live, emu):
    _, url = live([TOKEN])
    emu.script([ANSWER], token=TOKEN)
    events = raw_events(url, {"model": MODEL, "input": QUESTION})
    kinds = [kind for kind, _ in events]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = "".join(e["delta"] for k, e in events if k == "response.output_text.delta")
    assert deltas == ANSWER
    final = events[-1][1]["response"]
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == ANSWER
    assert_valid_as(final, "Response")


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
@pytest.mark.parametrize("continued", [False, True], ids=["whole-input", "previous_response_id"])
def test_sdk_runs_a_function_tool_loop(live, emu, stream, continued):
    _, url = live([TOKEN])
    emu.script([CALL, ANSWER], token=TOKEN)
    client = sdk(url)

    def create(**kwargs: Any):
        if not stream:
            return client.responses.create(model=MODEL, tools=[WEATHER_TOOL], **kwargs)
        with client.responses.stream(model=MODEL, tools=[WEATHER_TOOL], **kwargs) as events:
            for _ in events:
                pass
            return events.get_final_response()

    first = create(input=QUESTION)
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert call.call_id.startswith("call_")
    assert first.output_text == ""
    assert "<tools>" in emu.chat_turns()[0]["message"]

    output = {"type": "function_call_output", "call_id": call.call_id, "output": RESULT}
    if continued:
        second = create(input=[output], previous_response_id=first.id)
    else:
        history = [{"role": "user", "content": QUESTION}, call.model_dump(exclude_none=True)]
        second = create(input=[*history, output])
    assert second.output_text == ANSWER
    turn = emu.chat_turns()[1]
    result = json.dumps(
        {"tool_call_id": call.call_id, "name": "get_weather", "content": RESULT},
        ensure_ascii=False,
        separators=(", ", ": "),
    )
    if continued:
        # The same upstream conversation, only the result sent up.
        assert turn["conversation_id"] is not None
        assert len(emu.conversation(turn["conversation_id"])["responses"]) == 4
        assert turn["message"] == f"[tool]: <tool_result>{result}</tool_result>"
        assert second.previous_response_id == first.id
    else:
        assert turn["conversation_id"] is None
        assert turn["message"].endswith(f"{CALL}\n\n[tool]: <tool_result>{result}</tool_result>")


def test_function_call_events_carry_the_arguments_in_pieces(live, emu):
    _, url = live([TOKEN])
    emu.script([CALL], token=TOKEN)
    events = raw_events(url, {"model": MODEL, "input": QUESTION, "tools": [WEATHER_TOOL]})
    kinds = [kind for kind, _ in events]
    assert "response.function_call_arguments.delta" in kinds
    pieces = "".join(e["delta"] for k, e in events if k == "response.function_call_arguments.delta")
    done = next(e for k, e in events if k == "response.function_call_arguments.done")
    assert json.loads(pieces) == json.loads(done["arguments"]) == {"city": "Paris"}
    assert "response.output_text.delta" not in kinds  # no call syntax as text
    assert events[-1][1]["response"]["output"][0]["type"] == "function_call"
