"""The emulator's scripted replies: what a test says the model answers, verbatim, in order."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
import requests

from grokproxy.emulator.testing import EmulatorHandle

from conftest import POOL_KEY

NEW = "/rest/app-chat/conversations/new"
TOKEN = "emu-scripted-account-0001"
SCRIPTED = '<tool_call>{"name": "f", "arguments": {}}</tool_call> and 你好 😄'


def http_tokens(emu: EmulatorHandle, message: str = "hello") -> list[str]:
    """The answer tokens of one HTTP reply of the `modes` dialect."""
    response = requests.post(
        emu.base_url + NEW,
        json={"message": message, "modeId": "auto"},
        cookies=emu.cookies(TOKEN),
        timeout=15,
    )
    assert response.status_code == 200, response.text
    tokens = []
    for line in response.text.splitlines():
        result = json.loads(line)["result"]
        frame: dict[str, Any] = result.get("response", result)
        if frame.get("messageTag") == "final" and not frame.get("isSoftStop"):
            tokens.append(frame["token"])
    return tokens


def test_scripted_replies_stream_verbatim_in_pieces_then_the_echo_returns(emu):
    assert emu.script([SCRIPTED, "second"], token=TOKEN, piece_size=3)["pending"] == 2
    first = http_tokens(emu)
    assert "".join(first) == SCRIPTED
    assert all(len(t) == 3 for t in first[:-1])  # small pieces: tags end up cut across them
    assert "".join(http_tokens(emu)) == "second"
    assert "".join(http_tokens(emu)).startswith("Echo: hello")


def test_a_new_script_replaces_the_pending_one_unless_appended(emu):
    emu.script(["one", "two"], token=TOKEN)
    emu.script(["three"], token=TOKEN)
    assert emu.script(["four"], token=TOKEN, append=True)["pending"] == 2
    assert ["".join(http_tokens(emu)) for _ in range(2)] == ["three", "four"]


def test_a_refused_request_leaves_the_script_for_the_next_reply(emu):
    emu.script(["kept"], token=TOKEN)
    emu.set_fault("ratelimited", token=TOKEN, times=1)
    refused = requests.post(
        emu.base_url + NEW,
        json={"message": "hi", "modeId": "auto"},
        cookies=emu.cookies(TOKEN),
        timeout=15,
    )
    assert refused.status_code == 429
    assert "".join(http_tokens(emu)) == "kept"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"token": TOKEN, "replies": "text"}, "replies must be a list of strings"),
        ({"token": TOKEN, "replies": [1]}, "replies must be a list of strings"),
        ({"token": TOKEN, "replies": ["a"], "piece_size": 0}, "piece_size must be"),
        ({"token": TOKEN, "replies": ["a"], "piece_size": True}, "piece_size must be"),
    ],
)
def test_the_script_route_refuses_bad_bodies(emu, body, problem):
    response = requests.post(f"{emu.base_url}/_emulator/script", json=body, timeout=10)
    assert response.status_code == 400
    assert problem in response.json()["error"]


def test_the_script_route_needs_a_known_account(emu):
    response = requests.post(
        f"{emu.base_url}/_emulator/script",
        json={"email": "nobody@emulator.grok.test", "replies": ["a"]},
        timeout=10,
    )
    assert response.status_code == 404


@pytest.mark.usefixtures("transport")
def test_scripted_replies_reach_the_client_over_either_transport(live, emu):
    _, url = live([TOKEN])
    emu.script(["Scripted **answer** <b>kept</b> as written.", "Then a second."], token=TOKEN)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=POOL_KEY, max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "hello"}]
    completion = client.chat.completions.create(model="grok-3", messages=messages)
    assert completion.choices[0].message.content == "Scripted **answer** <b>kept</b> as written."
    chunks = list(client.chat.completions.create(model="grok-3", messages=messages, stream=True))
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == "Then a second."
    assert len(pieces) > 1  # streamed in pieces, not in one delta
    third = client.chat.completions.create(model="grok-3", messages=messages)
    assert third.choices[0].message.content.startswith("Echo: hello")
