"""Tool calling end to end: OpenAI SDKs run an agent loop against grokproxy over the emulator.

The emulator is scripted with what a model answers to grokproxy's tool protocol: first a call,
then, once the result is back, prose. Every test runs over both upstream transports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import openai
import pytest
import requests
from openai_schema import assert_valid

from conftest import POOL_KEY

TOKEN = "emu-tools-account-0001"
MODEL = "grok-3"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
QUESTION = "What is the weather in Paris?"
CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
# What real models often do: a sentence, then the call in a code fence, despite the protocol.
FENCED_CALL = f"I will check the weather.\n```json\n{CALL.replace('}}<', ',}}<')}\n```"
RESULT = '{"temperature_c": 18, "sky": "sunny"}'
ANSWER = "It is 18 °C and sunny in Paris."
NODE_OPENAI = "7.59.0"  # the openai npm package the Node agent loop installs

pytestmark = pytest.mark.usefixtures("transport")


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=POOL_KEY, max_retries=0, timeout=30)


def collect_stream(stream: Any) -> tuple[str, list[dict[str, Any]], str, dict[str, Any]]:
    """Content, tool calls (merged by index, as SDK users do), finish_reason, last chunk extras."""
    content, calls, finish, extra = "", {}, None, {}
    for chunk in stream:
        extra = chunk.model_extra or extra
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        content += choice.delta.content or ""
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            call["id"] = delta.id or call["id"]
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
        finish = choice.finish_reason or finish
    return content, [calls[i] for i in sorted(calls)], finish, extra


def ask(client: openai.OpenAI, messages: list[dict[str, Any]], stream: bool, **extra: Any):
    """One agent step: (content, calls as {id, name, arguments}, finish_reason, conversation_id)."""
    kwargs: dict[str, Any] = {"model": MODEL, "messages": messages, "tools": [WEATHER_TOOL]}
    if extra:
        kwargs["extra_body"] = extra
    if stream:
        content, calls, finish, last = collect_stream(
            client.chat.completions.create(stream=True, **kwargs)
        )
        return content or None, calls, finish, last.get("conversation_id")
    completion = client.chat.completions.create(**kwargs)
    message = completion.choices[0].message
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in message.tool_calls or []
    ]
    conversation = (completion.model_extra or {}).get("conversation_id")
    return message.content, calls, completion.choices[0].finish_reason, conversation


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
@pytest.mark.parametrize("continued", [False, True], ids=["new", "continued"])
@pytest.mark.parametrize("first_reply", [CALL, FENCED_CALL], ids=["exact", "fenced"])
def test_python_sdk_runs_a_two_step_agent_loop(live, emu, stream, continued, first_reply):
    _, url = live([TOKEN])
    emu.script([first_reply, ANSWER], token=TOKEN)
    client = sdk(url)
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]

    content, calls, finish, conversation_id = ask(client, messages, stream)
    assert finish == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert calls[0]["id"].startswith("call_")
    assert content == (None if first_reply == CALL else "I will check the weather.")
    first_turn = emu.chat_turns()[0]["message"]
    assert "<tools>" in first_turn and '"name": "get_weather"' in first_turn
    assert first_turn.endswith(f"[user]: {QUESTION}")

    messages.append(
        {
            "role": "assistant",
            "content": content,
            "tool_calls": [
                {
                    "id": calls[0]["id"],
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": calls[0]["arguments"]},
                }
            ],
        }
    )
    messages.append({"role": "tool", "tool_call_id": calls[0]["id"], "content": RESULT})
    extra = {"conversation_id": conversation_id} if continued else {}
    content, calls, finish, _ = ask(client, messages, stream, **extra)
    assert (content, calls, finish) == (ANSWER, [], "stop")

    second = emu.chat_turns()[1]
    result = json.dumps(
        {"tool_call_id": messages[-1]["tool_call_id"], "name": "get_weather", "content": RESULT},
        ensure_ascii=False,
        separators=(", ", ": "),
    )
    if continued:
        # Only what is new goes upstream: the tool result, in the protocol's form.
        assert second["conversation_id"] == conversation_id
        assert second["message"] == f"[tool]: <tool_result>{result}</tool_result>"
    else:
        # The whole loop, in order, ending on the result; the earlier call in the call form.
        assert second["conversation_id"] is None
        assert "<tools>" in second["message"]
        assert second["message"].endswith(
            f"[user]: {QUESTION}\n\n[assistant]: "
            + (f"{content_of(first_reply)}\n" if first_reply != CALL else "")
            + f"{CALL}\n\n[tool]: <tool_result>{result}</tool_result>"
        )


def content_of(first_reply: str) -> str:
    return first_reply.split("\n", 1)[0]


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_tool_choice_none_sends_no_tools_and_answers_prose(live, emu, stream):
    _, url = live([TOKEN])
    emu.script([ANSWER], token=TOKEN)
    kwargs = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}]}
    reply = sdk(url).chat.completions.create(
        tools=[WEATHER_TOOL], tool_choice="none", stream=stream, **kwargs
    )
    content, calls, finish, _ = (
        collect_stream(reply)
        if stream
        else (reply.choices[0].message.content, [], reply.choices[0].finish_reason, {})
    )
    assert (content, calls, finish) == (ANSWER, [], "stop")
    assert emu.chat_turns()[0]["message"] == QUESTION  # bare, as without tools


def test_required_and_named_tool_choice_are_told_to_the_model(live, emu):
    _, url = live([TOKEN])
    emu.script([CALL, CALL], token=TOKEN)
    client = sdk(url)
    messages = [{"role": "user", "content": QUESTION}]
    client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], tool_choice="required"
    )
    named = {"type": "function", "function": {"name": "get_weather"}}
    client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], tool_choice=named
    )
    required, forced = (t["message"] for t in emu.chat_turns())
    assert "You must call at least one of the tools in this answer." in required
    assert "You must call the tool get_weather in this answer." in forced


def test_parallel_calls_become_several_entries(live, emu):
    _, url = live([TOKEN])
    both = CALL + "\n" + CALL.replace("Paris", "Oslo")
    emu.script([both, both], token=TOKEN)
    client = sdk(url)
    messages = [{"role": "user", "content": "Weather in Paris and Oslo?"}]
    completion = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL]
    )
    cities = [
        json.loads(c.function.arguments)["city"] for c in completion.choices[0].message.tool_calls
    ]
    assert cities == ["Paris", "Oslo"]
    single = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], parallel_tool_calls=False
    )
    assert [c.function.name for c in single.choices[0].message.tool_calls] == ["get_weather"]
    assert "at most one call" in emu.chat_turns()[1]["message"]


def raw_objects(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every JSON object of one raw answer: the completion, or each SSE chunk."""
    response = requests.post(
        f"{url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {POOL_KEY}"},
        timeout=30,
        stream=bool(body.get("stream")),
    )
    assert response.status_code == 200, response.text
    if not body.get("stream"):
        return [response.json()]
    lines = [line[6:] for line in response.iter_lines(decode_unicode=True) if line[:6] == "data: "]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_every_answer_validates_against_openais_published_schema(live, emu, stream):
    _, url = live([TOKEN])
    replies = [CALL, FENCED_CALL, ANSWER, CALL + "\n" + CALL, "<tool_call>{bad}</tool_call>"]
    emu.script(replies, token=TOKEN)
    seen = set()
    for index in range(len(replies)):
        body: dict[str, Any] = {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"{QUESTION} ({index})"}],
            "tools": [WEATHER_TOOL],
            "stream": stream,
        }
        if stream and index % 2:
            body["stream_options"] = {"include_usage": True}
        for obj in raw_objects(url, body):
            assert_valid(obj, stream=stream)
            for choice in obj["choices"]:
                seen.add(choice.get("finish_reason"))
    assert {"tool_calls", "stop"} <= seen


@pytest.mark.parametrize("legacy_stream", [False, True], ids=["non-stream", "stream"])
def test_legacy_functions_get_a_function_call(live, emu, legacy_stream):
    _, url = live([TOKEN])
    emu.script([CALL], token=TOKEN)
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": QUESTION}],
        "functions": [WEATHER_TOOL["function"]],
        "stream": legacy_stream,
    }
    objects = raw_objects(url, body)
    for obj in objects:
        assert_valid(obj, stream=legacy_stream)
    if legacy_stream:
        deltas = [o["choices"][0]["delta"] for o in objects if o["choices"]]
        arguments = "".join(d.get("function_call", {}).get("arguments", "") for d in deltas)
        assert next(d["function_call"]["name"] for d in deltas if "function_call" in d) == (
            "get_weather"
        )
        assert objects[-1]["choices"][0]["finish_reason"] == "function_call"
    else:
        message = objects[0]["choices"][0]["message"]
        arguments = message["function_call"]["arguments"]
        assert message["function_call"]["name"] == "get_weather"
    assert json.loads(arguments) == {"city": "Paris"}


def test_a_bad_tool_definition_is_a_400_naming_the_field(live):
    _, url = live([TOKEN])
    bad = {"type": "function", "function": {"name": "get weather!"}}
    with pytest.raises(openai.BadRequestError) as info:
        sdk(url).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": QUESTION}], tools=[bad]
        )
    assert info.value.body["param"] == "tools[0].function.name"
    assert "64 letters" in info.value.body["message"]


NODE_LOOP = textwrap.dedent(
    """
    import OpenAI from "openai";
    const [url, key] = process.argv.slice(2);
    const client = new OpenAI({ baseURL: url + "/v1", apiKey: key, maxRetries: 0 });
    const tools = JSON.parse(process.env.TOOLS);
    const out = [];
    for (const stream of [false, true]) {
      const messages = [{ role: "user", content: process.env.QUESTION }];
      let call, finish, content = "";
      if (stream) {
        const calls = {};
        for await (const chunk of await client.chat.completions.create(
            { model: "grok-3", messages, tools, stream: true })) {
          const choice = chunk.choices[0];
          if (!choice) continue;
          for (const d of choice.delta.tool_calls || []) {
            const c = (calls[d.index] ||= { id: "", name: "", arguments: "" });
            c.id = d.id || c.id;
            c.name += d.function?.name || "";
            c.arguments += d.function?.arguments || "";
          }
          finish = choice.finish_reason || finish;
        }
        call = calls[0];
      } else {
        const done = await client.chat.completions.create({ model: "grok-3", messages, tools });
        const c = done.choices[0].message.tool_calls[0];
        call = { id: c.id, name: c.function.name, arguments: c.function.arguments };
        finish = done.choices[0].finish_reason;
      }
      out.push({ step: 1, stream, finish, call });
      const fn = { name: call.name, arguments: call.arguments };
      messages.push({ role: "assistant", content: null, tool_calls: [
        { id: call.id, type: "function", function: fn }] });
      messages.push({ role: "tool", tool_call_id: call.id, content: process.env.RESULT });
      if (stream) {
        for await (const chunk of await client.chat.completions.create(
            { model: "grok-3", messages, tools, stream: true })) {
          const choice = chunk.choices[0];
          if (!choice) continue;
          content += choice.delta.content || "";
          finish = choice.finish_reason || finish;
        }
      } else {
        const done = await client.chat.completions.create({ model: "grok-3", messages, tools });
        content = done.choices[0].message.content;
        finish = done.choices[0].finish_reason;
      }
      out.push({ step: 2, stream, finish, content });
    }
    console.log(JSON.stringify(out));
    """
)


@pytest.fixture(scope="session")
def node_openai(tmp_path_factory) -> Path:
    """A folder with the openai npm package installed, or a skip saying why there is none."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are not installed")
    folder = tmp_path_factory.mktemp("node-openai")
    (folder / "package.json").write_text('{"type": "module", "private": true}')
    try:
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", f"openai@{NODE_OPENAI}"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=180,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("npm install of the openai package timed out")
    if done.returncode != 0:
        pytest.skip(f"npm could not install openai@{NODE_OPENAI}: {done.stderr.strip()[-300:]}")
    return folder


def test_node_sdk_runs_the_agent_loop_streamed_and_not(live, emu, node_openai):
    _, url = live([TOKEN])
    emu.script([CALL, ANSWER, CALL, ANSWER], token=TOKEN)
    script = node_openai / "loop.mjs"
    script.write_text(NODE_LOOP)
    env = {
        "PATH": os.environ["PATH"],
        "TOOLS": json.dumps([WEATHER_TOOL]),
        "QUESTION": QUESTION,
        "RESULT": RESULT,
    }
    done = subprocess.run(
        ["node", str(script), url, POOL_KEY],
        cwd=node_openai,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)
    for stream in (False, True):
        first, second = (s for s in steps if s["stream"] is stream)
        assert first["finish"] == "tool_calls"
        assert first["call"]["name"] == "get_weather"
        assert json.loads(first["call"]["arguments"]) == {"city": "Paris"}
        assert first["call"]["id"].startswith("call_")
        assert (second["finish"], second["content"]) == ("stop", ANSWER)
    assert len(emu.chat_turns()) == 4
