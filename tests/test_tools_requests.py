"""Tool requests: validation (a 400 naming the field) and the prompt the model reads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from grokproxy.openai import flatten_messages, last_user_message
from grokproxy.schemas import load_chat_request
from grokproxy.tools import ToolConfig, ToolSpec, protocol_text

from conftest import POOL_KEY, error_of

AUTH = {"Authorization": f"Bearer {POOL_KEY}"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}
QUESTION = {"role": "user", "content": "Weather in Paris?"}
CALLED = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ],
}
RESULT = {"role": "tool", "tool_call_id": "call_1", "content": "18C"}
CALL_TEXT = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
RESULT_TEXT = (
    '<tool_result>{"tool_call_id": "call_1", "name": "get_weather", "content": "18C"}</tool_result>'
)


def request(**fields: Any):
    return load_chat_request({"model": "grok-3", "messages": [QUESTION], **fields})


# -- validation -----------------------------------------------------------------------------------

NAMED_G = {"type": "function", "function": {"name": "g"}}
LEGACY = WEATHER["function"]
PARALLEL = "parallel_tool_calls"
FCALL = "function_call"


def fn(**function: Any) -> dict[str, Any]:
    """`tools` holding one function tool with these fields."""
    return {"tools": [{"type": "function", "function": function}]}


BAD_TOOLS: list[tuple[str, dict[str, Any], str]] = [
    ("name with spaces", fn(name="get weather"), "tools[0].function.name"),
    ("name too long", fn(name="f" * 65), "tools[0].function.name"),
    ("no name", fn(description="x"), "tools[0].function.name"),
    ("no function", {"tools": [{"type": "function"}]}, "tools[0].function"),
    ("not a function tool", {"tools": [{"type": "custom", "custom": {}}]}, "tools[0].type"),
    ("parameters not an object", fn(name="f", parameters="{}"), "tools[0].function.parameters"),
    ("strict not a boolean", fn(name="f", strict="yes"), "tools[0].function.strict"),
    ("description not text", fn(name="f", description=3), "tools[0].function.description"),
    ("a name twice", {"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
    ("tools not a list", {"tools": {"type": "function"}}, "tools"),
    ("a tool not an object", {"tools": ["get_weather"]}, "tools[0]"),
    ("unknown tool_choice", {"tools": [WEATHER], "tool_choice": "always"}, "tool_choice"),
    ("tool_choice naming no tool", {"tools": [WEATHER], "tool_choice": NAMED_G}, "tool_choice"),
    ("required without tools", {"tool_choice": "required"}, "tool_choice"),
    ("parallel not a boolean", {"tools": [WEATHER], PARALLEL: "no"}, PARALLEL),
    ("legacy function without name", {"functions": [{"parameters": {}}]}, "functions[0].name"),
    ("function_call naming nothing", {"functions": [LEGACY], FCALL: {"name": "g"}}, FCALL),
    ("tools and functions", {"tools": [WEATHER], "functions": [LEGACY]}, "functions"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "fields", "param"), BAD_TOOLS, ids=[b[0] for b in BAD_TOOLS])
def test_a_bad_tool_definition_is_a_400_naming_the_field(client, case, fields, param):
    body = {"model": "grok-3", "messages": [QUESTION], **fields}
    error = error_of(client.post("/v1/chat/completions", json=body, headers=AUTH), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"invalid request: {param}: ")


def test_a_tool_result_with_an_image_is_refused(client):
    image = {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
    body = {"model": "grok-3", "messages": [QUESTION, CALLED, {**RESULT, "content": [image]}]}
    error = error_of(client.post("/v1/chat/completions", json=body, headers=AUTH), 400)
    assert "only text parts" in error["message"]


def test_tools_load_into_a_tool_config():
    config = request(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False).tool_config
    assert config == ToolConfig(
        tools=(
            ToolSpec(
                "get_weather",
                "Weather of a city",
                {"type": "object", "properties": {"city": {"type": "string"}}},
                True,
            ),
        ),
        choice="required",
        parallel=False,
    )
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert request(tools=[WEATHER], tool_choice=named).tool_config.forced == "get_weather"
    assert request(tools=[]).tool_config is None
    assert request(tool_choice="none").tool_config is None


def test_legacy_functions_map_onto_the_same_config_and_history():
    loaded = load_chat_request(
        {
            "model": "grok-3",
            "functions": [WEATHER["function"]],
            "function_call": {"name": "get_weather"},
            "messages": [
                QUESTION,
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {"role": "function", "name": "get_weather", "content": "18C"},
            ],
        }
    )
    assert loaded.tool_config.legacy and loaded.tool_config.forced == "get_weather"
    assert loaded.messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    text = flatten_messages(loaded.messages, loaded.tool_config).text
    assert text.endswith(
        f"[assistant]: {CALL_TEXT}\n\n"
        '[tool]: <tool_result>{"name": "get_weather", "content": "18C"}</tool_result>'
    )


def test_history_tool_calls_are_normalised_and_text_parts_of_results_joined():
    loaded = request(
        messages=[
            QUESTION,
            {
                **CALLED,
                "tool_calls": [
                    {"id": "call_1", "function": {"name": "get_weather", "arguments": {"a": 1}}},
                    {"id": "broken"},
                ],
            },
            {
                **RESULT,
                "content": [{"type": "text", "text": "18C"}, {"type": "text", "text": "dry"}],
            },
        ]
    )
    assert loaded.messages[1]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"a": 1}'},
        }
    ]
    assert '"content": "18C\\ndry"' in flatten_messages(loaded.messages).text


# -- the prompt -----------------------------------------------------------------------------------


def config(**kwargs: Any) -> ToolConfig:
    return request(tools=[WEATHER], **kwargs).tool_config


def test_a_new_conversation_starts_with_the_protocol_and_the_tool_list():
    text = flatten_messages([QUESTION], config()).text
    system, user = text.split("\n\n[user]: ")
    assert user == "Weather in Paris?"
    assert system.startswith("[system]: # Tools")
    tool_line = json.dumps(
        {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        separators=(", ", ": "),
    )
    assert f"<tools>\n{tool_line}\n</tools>" in system
    # One example call, in exactly the form the parser reads, and never a code fence.
    example = '<tool_call>{"name": "function_name", "arguments": {"argument_name": "value"}}'
    assert system.count(example + "</tool_call>") == 1
    assert "```" not in system
    assert "only when it is needed" in system
    assert "several independent calls" in system


@pytest.mark.parametrize(
    ("choice", "said"),
    [
        ("auto", "Call a tool only when it is needed to answer"),
        ("required", "You must call at least one of the tools in this answer."),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            "You must call the tool get_weather in this answer.",
        ),
    ],
)
def test_each_tool_choice_is_told_in_the_protocol(choice, said):
    assert said in protocol_text(config(tool_choice=choice))


def test_tool_choice_none_sends_no_tools():
    assert flatten_messages([QUESTION], config(tool_choice="none")).text == "Weather in Paris?"
    assert protocol_text(ToolConfig(tools=(ToolSpec("f"),), choice="none")) is None


def test_parallel_tool_calls_false_asks_for_one_call():
    assert "Make at most one call in one answer." in protocol_text(
        config(parallel_tool_calls=False)
    )


def test_an_agent_loop_reads_in_order_with_calls_and_results_in_the_protocol_form():
    text = flatten_messages([QUESTION, CALLED, RESULT], config()).text
    assert text.endswith(
        f"[user]: Weather in Paris?\n\n[assistant]: {CALL_TEXT}\n\n[tool]: {RESULT_TEXT}"
    )
    assert text.startswith("[system]: # Tools")


def test_prose_of_an_assistant_turn_comes_before_its_calls():
    said = {**CALLED, "content": "Let me check."}
    text = flatten_messages([QUESTION, said, RESULT, {"role": "user", "content": "And?"}]).text
    assert f"[assistant]: Let me check.\n{CALL_TEXT}\n\n[tool]: {RESULT_TEXT}\n\n[user]: And?" in (
        text
    )


def test_a_continued_conversation_sends_only_the_new_results_and_user_message():
    history = [QUESTION, CALLED, RESULT]
    assert last_user_message(history, config()).text == f"[tool]: {RESULT_TEXT}"
    more = [*history, {"role": "user", "content": "In Celsius please."}]
    assert last_user_message(more, config()).text == (
        f"[tool]: {RESULT_TEXT}\n\n[user]: In Celsius please."
    )


def test_a_continued_conversation_without_tool_results_stays_the_bare_user_message():
    history = [QUESTION, {"role": "assistant", "content": "Sunny."}, QUESTION]
    assert last_user_message(history, config()).text == "Weather in Paris?"


def test_a_continued_conversation_repeats_an_obligation_to_call():
    history = [QUESTION, CALLED, RESULT]
    text = last_user_message(history, config(tool_choice="required")).text
    assert text == f"[tool]: {RESULT_TEXT}\n\n[system]: " + (
        "Call at least one of the tools now, in the <tool_call> form."
    )
    named = {"type": "function", "function": {"name": "get_weather"}}
    bare = last_user_message([QUESTION], config(tool_choice=named)).text
    assert bare.endswith("[system]: Call the tool get_weather now, in the <tool_call> form.")
