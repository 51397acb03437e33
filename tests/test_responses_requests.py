"""The Responses API's requests and stored responses: bad bodies are 400s naming the field,
a stored response is its caller's alone, thinking becomes a reasoning summary, citations become
url_citation annotations, model aliases resolve, and the daily limit counts these requests."""

from __future__ import annotations

from typing import Any

import openai
import pytest
import requests
from openai_schema import assert_valid_as
from test_responses_live import QUESTION, raw_events

from conftest import POOL_KEY

TOKEN = "emu-responses-account-02"
OTHER_KEY = "sk-another-pool-key"

pytestmark = pytest.mark.usefixtures("transport")


def post(url: str, body: Any, key: str = POOL_KEY) -> requests.Response:
    return requests.post(
        f"{url}/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi"}, "model"),
        ({"model": "grok-3"}, "input"),
        ({"model": "grok-3", "input": 5}, "input"),
        ({"model": "grok-3", "input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
        (
            {"model": "grok-3", "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
            "input[0].content[0].type",
        ),
        (
            {
                "model": "grok-3",
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}
                ],
            },
            "input[0].content[0].image_url",
        ),
        ({"model": "grok-3", "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"model": "grok-3", "input": [{"role": "assistant", "content": "x"}]}, "input"),
        ({"model": "grok-3", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        (
            {"model": "grok-3", "input": "hi", "tools": [{"type": "computer_use_preview"}]},
            "tools[0].type",
        ),
        (
            {"model": "grok-3", "input": "hi", "tool_choice": {"type": "function", "name": "x"}},
            "tool_choice",
        ),
        ({"model": "grok-3", "input": "hi", "stream": "yes"}, "stream"),
        ({"model": "grok-3", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "grok-3", "input": "hi", "metadata": {"k": 1}}, "metadata"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(live, body, param):
    _, url = live([TOKEN])
    reply = post(url, body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error" and error["message"]


def test_an_unknown_model_is_a_404_listing_the_names(live):
    _, url = live([TOKEN])
    reply = post(url, {"model": "gpt-5", "input": "hi"})
    assert reply.status_code == 404
    assert reply.json()["error"]["param"] == "model"
    assert "grok-3" in reply.json()["error"]["message"]


def test_an_alias_answers_with_its_catalog_model(live, emu):
    _, url = live([TOKEN], GROK_MODEL_ALIASES={"gpt-5": "grok-3"})
    emu.script(["Hello."], token=TOKEN)
    reply = post(url, {"model": "gpt-5", "input": "hi"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "gpt-5"  # the name the client asked for
    assert reply.json()["output"][0]["content"][0]["text"] == "Hello."


def test_a_stored_response_is_its_callers_alone(live, emu):
    _, url = live([TOKEN], AUTHORIZATION=(POOL_KEY, OTHER_KEY))
    emu.script(["First."], token=TOKEN)
    created = post(url, {"model": "grok-3", "input": "hi"}).json()
    mine = requests.get(
        f"{url}/v1/responses/{created['id']}",
        headers={"Authorization": f"Bearer {POOL_KEY}"},
        timeout=30,
    )
    assert mine.status_code == 200 and mine.json() == created
    assert_valid_as(mine.json(), "Response")

    theirs = openai.OpenAI(base_url=f"{url}/v1", api_key=OTHER_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.retrieve(created["id"])
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(created["id"])
    continued = post(
        url, {"model": "grok-3", "input": "more", "previous_response_id": created["id"]}, OTHER_KEY
    )
    assert continued.status_code == 404
    assert continued.json()["error"]["param"] == "previous_response_id"
    assert len(emu.chat_turns()) == 1  # nothing went upstream for the other caller

    client = openai.OpenAI(base_url=f"{url}/v1", api_key=POOL_KEY, max_retries=0)
    client.responses.delete(created["id"])
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created["id"])


def test_store_false_keeps_nothing(live, emu):
    _, url = live([TOKEN])
    emu.script(["Kept nowhere."], token=TOKEN)
    created = post(url, {"model": "grok-3", "input": "hi", "store": False}).json()
    assert created["store"] is False
    again = post(url, {"model": "grok-3", "input": "x", "previous_response_id": created["id"]})
    assert again.status_code == 404


def test_a_streamed_response_is_stored_complete_when_the_stream_ends(live, emu):
    _, url = live([TOKEN])
    emu.script(["Streamed and kept."], token=TOKEN)
    events = raw_events(url, {"model": "grok-3", "input": "hi"})
    final = events[-1][1]["response"]
    stored = requests.get(
        f"{url}/v1/responses/{final['id']}",
        headers={"Authorization": f"Bearer {POOL_KEY}"},
        timeout=30,
    ).json()
    assert stored["status"] == "completed"
    assert stored["output"] == final["output"]


def test_thinking_becomes_the_reasoning_summary_when_asked(live, emu):
    _, url = live([TOKEN])
    body = {"model": "grok-4", "input": QUESTION, "reasoning": {"summary": "auto"}}
    events = raw_events(url, body)
    kinds = [kind for kind, _ in events]
    assert kinds[2:4] == ["response.output_item.added", "response.reasoning_summary_part.added"]
    summary = "".join(e["delta"] for k, e in events if k == "response.reasoning_summary_text.delta")
    assert summary.strip()
    final = events[-1][1]["response"]
    reasoning, message = final["output"]
    assert reasoning["type"] == "reasoning"
    assert reasoning["summary"] == [{"type": "summary_text", "text": summary}]
    assert message["type"] == "message"
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] > 0

    plain = post(url, {"model": "grok-4", "input": QUESTION}).json()
    assert [item["type"] for item in plain["output"]] == ["message"]  # no summary asked for


def test_citations_become_url_citation_annotations(live, emu):
    _, url = live([TOKEN])
    body = {"model": "grok-3-deepsearch", "input": "latest news on Paris"}
    events = raw_events(url, body)
    added = [e for k, e in events if k == "response.output_text.annotation.added"]
    message = events[-1][1]["response"]["output"][-1]
    text = message["content"][0]["text"]
    annotations = message["content"][0]["annotations"]
    assert annotations and [a["annotation"] for a in added] == annotations
    for annotation in annotations:
        assert annotation["type"] == "url_citation"
        assert text[annotation["start_index"] : annotation["end_index"]].endswith(
            f"({annotation['url']})"
        )
    whole = post(url, body).json()
    assert_valid_as(whole, "Response")
    assert whole["output"][-1]["content"][0]["annotations"]


def test_instructions_and_images_go_upstream(live, emu):
    _, url = live([TOKEN])
    pixel = (
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
        "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    content = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": pixel},
    ]
    reply = post(
        url,
        {
            "model": "grok-3",
            "instructions": "Answer in French.",
            "input": [{"role": "user", "content": content}],
        },
    )
    assert reply.status_code == 200, reply.text
    turn = emu.chat_turns()[0]
    assert turn["message"] == "[system]: Answer in French.\n\n[user]: What is this?"
    assert len(turn["file_ids"]) == 1


def test_the_daily_limit_counts_responses(live, emu):
    _, url = live([TOKEN], POOL_KEY_DAILY_LIMIT=1)
    assert post(url, {"model": "grok-3", "input": "one"}).status_code == 200
    second = post(url, {"model": "grok-3", "input": "two"})
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "daily_limit_reached"


def test_metadata_and_max_output_tokens_are_answered_back(live, emu):
    _, url = live([TOKEN])
    body = {"model": "grok-3", "input": "hi", "metadata": {"run": "7"}, "max_output_tokens": 50}
    reply = post(url, body).json()
    assert (reply["metadata"], reply["max_output_tokens"]) == ({"run": "7"}, 50)
    assert_valid_as(reply, "Response")


def test_a_stream_that_dies_midway_ends_with_response_failed(live):
    _, url = live(["emu-dies-responses-0001"])
    events = raw_events(url, {"model": "grok-3", "input": QUESTION})
    kind, last = events[-1]
    assert kind == "response.failed"
    assert last["response"]["status"] == "failed"
    assert last["response"]["error"]["code"] == "server_error"
    assert "response.completed" not in [k for k, _ in events]
    stored = requests.get(
        f"{url}/v1/responses/{last['response']['id']}",
        headers={"Authorization": f"Bearer {POOL_KEY}"},
        timeout=30,
    ).json()
    assert stored["status"] == "failed"


def test_parse_aliases_reads_pairs_and_refuses_a_bad_one():
    from grokproxy.config import ConfigError, load_config

    config = load_config({"GROK_MODEL_ALIASES": "gpt-5=grok-4, claude-sonnet-4-5 = grok-3"})
    assert config["GROK_MODEL_ALIASES"] == {"gpt-5": "grok-4", "claude-sonnet-4-5": "grok-3"}
    with pytest.raises(ConfigError, match="GROK_MODEL_ALIASES"):
        load_config({"GROK_MODEL_ALIASES": "gpt-5"})
