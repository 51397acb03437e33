"""Bad answers caught before the first byte and counted against the account: a thinking model's
reply with no reasoning, a degraded deep-search turn; and accounts whose streams keep breaking
off mid-reply cool for a while (hardening finding 7)."""

from __future__ import annotations

import json

import pytest

from grokproxy.emulator.accounts import email_for

NO_REASONING = "emu-noreasoning-a-0123456789abcdef"
DEGRADED = "emu-degraded-a-0123456789abcdef"
DIES = "emu-dies-a-0123456789abcdef"
GOOD = "quality-good-b-0123456789abcdef"


def ask(model: str, text: str = "why is the sky blue", stream: bool = False) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


def sse_events(response) -> list[dict]:
    body = response.get_data(as_text=True)
    response.close()
    return [
        json.loads(line[6:])
        for line in body.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


@pytest.mark.usefixtures("transport")
@pytest.mark.parametrize("stream", [False, True])
def test_a_thinking_reply_with_no_reasoning_is_answered_by_another_account(
    make_gateway, emu, stream
):
    gateway = make_gateway([NO_REASONING, GOOD])
    response = gateway.chat(body=ask("grok-4", stream=stream))
    if stream:
        deltas = [
            chunk["choices"][0]["delta"] for chunk in sse_events(response) if chunk["choices"]
        ]
        reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
        content = "".join(d.get("content") or "" for d in deltas)
    else:
        message = response.get_json()["choices"][0]["message"]
        reasoning, content = message.get("reasoning_content") or "", message["content"]
    assert reasoning and content  # the client sees only the good, reasoned answer
    assert [turn["email"] for turn in emu.chat_turns()] == [
        email_for(NO_REASONING),
        email_for(GOOD),
    ]
    weak, good = gateway.accounts()
    assert weak["fail_count"] == 1 and weak["last_error"].startswith("no_reasoning: ")
    assert good["fail_count"] == 0


@pytest.mark.usefixtures("transport")
def test_the_quality_guard_can_be_turned_off(make_gateway, emu):
    gateway = make_gateway([NO_REASONING, GOOD], QUALITY_GUARD=False)
    message = gateway.chat(body=ask("grok-4")).get_json()["choices"][0]["message"]
    assert message["content"] and not message.get("reasoning_content")
    assert [turn["email"] for turn in emu.chat_turns()] == [email_for(NO_REASONING)]


@pytest.mark.usefixtures("transport")
def test_a_model_that_does_not_think_needs_no_reasoning(make_gateway, emu):
    gateway = make_gateway([NO_REASONING, GOOD])
    gateway.chat(body=ask("grok-3"))
    assert [turn["email"] for turn in emu.chat_turns()] == [email_for(NO_REASONING)]
    assert gateway.accounts()[0]["fail_count"] == 0


# The degraded turn is the gateway's (docs/upstream.md §4.7); the HTTP chat has no such turn.
@pytest.mark.parametrize("stream", [False, True])
def test_a_degraded_search_is_answered_by_another_account(make_gateway, emu, stream):
    emu.configure(dialect="gateway")
    gateway = make_gateway([DEGRADED, GOOD], GROK_DIALECT="gateway")
    response = gateway.chat(body=ask("grok-3-deepsearch", stream=stream))
    text = json.dumps(sse_events(response) if stream else response.get_json())
    assert "current information and recent sources" not in text  # the placeholder query
    assert [turn["email"] for turn in emu.chat_turns()] == [email_for(DEGRADED), email_for(GOOD)]
    degraded = gateway.accounts()[0]
    assert degraded["fail_count"] == 1 and degraded["last_error"].startswith("degraded: ")


def test_the_quality_guard_switch_also_lets_a_degraded_turn_through(make_gateway, emu):
    emu.configure(dialect="gateway")
    gateway = make_gateway([DEGRADED, GOOD], GROK_DIALECT="gateway", QUALITY_GUARD=False)
    gateway.chat(body=ask("grok-3-deepsearch"))
    assert [turn["email"] for turn in emu.chat_turns()] == [email_for(DEGRADED)]


@pytest.mark.usefixtures("transport")
def test_an_account_whose_streams_keep_breaking_off_cools_and_says_why(make_gateway, emu):
    gateway = make_gateway([DIES, GOOD], STREAM_FAILURE_COOL_SECONDS=60)
    for _ in range(6):  # rotation alternates: three broken streams on the dying account
        sse_events(gateway.chat(body=ask("grok-3", stream=True)))
    dying, good = gateway.accounts()
    assert dying["status"] == "cooling" and dying["cooldown_until"]
    assert "3 replies in a row broke off mid-stream" in dying["last_error"]
    assert dying["fail_count"] == 3 and good["status"] == "active"

    asked = len(emu.chat_turns())
    for _ in range(3):
        sse_events(gateway.chat(body=ask("grok-3", stream=True)))
    assert {turn["email"] for turn in emu.chat_turns()[asked:]} == {email_for(GOOD)}


@pytest.mark.usefixtures("transport")
def test_a_reply_that_ends_well_ends_the_run_of_broken_streams(make_gateway, emu):
    gateway = make_gateway([DIES])
    for _ in range(2):
        sse_events(gateway.chat(body=ask("grok-3", stream=True)))
    assert gateway.accounts()[0]["stream_failures"] == 2
    emu.set_fault("none", token=DIES)
    sse_events(gateway.chat(body=ask("grok-3", stream=True)))
    emu.set_fault(None, token=DIES)
    for _ in range(2):
        sse_events(gateway.chat(body=ask("grok-3", stream=True)))
    (account,) = gateway.accounts()
    assert account["status"] == "active" and account["stream_failures"] == 2


@pytest.mark.usefixtures("transport")
def test_a_long_flattened_history_goes_upstream_as_an_attached_text_file(make_gateway, emu):
    gateway = make_gateway([GOOD], MAX_PROMPT_CHARS=1000)
    history = [
        {"role": "user", "content": "remember the number 7 " * 40},
        {"role": "assistant", "content": "noted " * 40},
        {"role": "user", "content": "what was the number?"},
    ]
    gateway.chat(body={"model": "grok-3", "messages": history})
    (turn,) = emu.chat_turns()
    assert len(turn["file_ids"]) == 1
    assert "attached text file" in turn["message"] and "remember" not in turn["message"]
    uploads = [r for r in emu.requests() if "upload-file" in r["path"]]
    assert len(uploads) == 1

    # A short history is sent as the message itself, with nothing attached.
    gateway.chat(body={"model": "grok-3", "messages": history[-1:]})
    short = emu.chat_turns()[-1]
    assert short["file_ids"] == [] and "what was the number?" in short["message"]
