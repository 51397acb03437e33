"""Chat completions end to end: the real openai SDK against a live grokproxy over the emulator."""

from __future__ import annotations

import json
import re
import time

import openai
import pytest
import requests

from grokproxy.extensions import db
from grokproxy.grok.catalog import DEFAULT_MODELS
from grokproxy.grok.settings import DIALECTS
from grokproxy.models import Account, AccountStatus

from conftest import POOL_KEY, sso_jwt

MODELS = [spec.name for spec in DEFAULT_MODELS]
HEALTHY = ["emu-good-account-one-0001", "emu-good-account-two-0002"]


def sdk(base_url: str, key: str = POOL_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=30)


def sse_events(response: requests.Response) -> list[dict | str]:
    """Decode a raw SSE body: JSON payloads, `[DONE]`, and comment lines kept as text."""
    events: list[dict | str] = []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith(":"):
            events.append(line)
        elif line.startswith("data: "):
            data = line[6:]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


@pytest.mark.parametrize("dialect", DIALECTS)
def test_sdk_streams_and_non_streams_every_model_in_every_dialect(
    emu_app, add_accounts, serve, emu, dialect
):
    emu.configure(dialect=dialect)
    app = emu_app(GROK_DIALECT=dialect)
    add_accounts(app, HEALTHY)
    client = sdk(serve(app))
    for model in MODELS:
        completion = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"hello {model}"}]
        )
        assert completion.model == model
        assert completion.choices[0].finish_reason == "stop"
        content = completion.choices[0].message.content
        assert "hello" in content and model in content  # the emulator echoes the prompt
        assert completion.usage.total_tokens > 0

        chunks = list(
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"stream {model}"}], stream=True
            )
        )
        assert chunks[0].choices[0].delta.role == "assistant"
        assert len({chunk.id for chunk in chunks}) == 1
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert "stream" in text and model in text
        assert chunks[-1].choices[0].finish_reason == "stop"
    # Every turn went over the dialect's own transport, and its body passed the emulator's
    # validation for that dialect.
    chats = emu.chat_turns()
    assert len(chats) == 2 * len(MODELS)
    assert {t["transport"] for t in chats} == {"gateway" if dialect == "gateway" else "http"}


def test_thinking_arrives_in_reasoning_content(live):
    _, url = live(HEALTHY)
    stream = sdk(url).chat.completions.create(
        model="grok-3-thinking", messages=[{"role": "user", "content": "think"}], stream=True
    )
    reasoning, content = "", ""
    for chunk in stream:
        delta = chunk.choices[0].delta if chunk.choices else None
        if delta is not None:
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
    assert "Thinking about your request" in reasoning
    assert reasoning and content
    assert "Thinking about" not in content


def test_think_tags_format_puts_reasoning_in_content(live):
    _, url = live(HEALTHY, THINKING_FORMAT="think_tags")
    completion = sdk(url).chat.completions.create(
        model="grok-4", messages=[{"role": "user", "content": "think"}]
    )
    content = completion.choices[0].message.content
    assert content.startswith("<think>") and "</think>" in content


def test_deepsearch_answer_shows_steps_and_citations_readably(live):
    _, url = live(HEALTHY)
    completion = sdk(url).chat.completions.create(
        model="grok-3-deepsearch", messages=[{"role": "user", "content": "latest AI news"}]
    )
    message = completion.choices[0].message
    reasoning = message.model_extra["reasoning_content"]
    assert "web_search: " in reasoning
    assert "<xai:" not in reasoning and "CDATA" not in reasoning
    assert "](http" in message.content  # citations became markdown links
    assert "grok:render" not in message.content
    # Each citation once, though the gateway names a card both by an inline tag and by a
    # render_citation chunk.
    links = re.findall(r"\[\[(\d+)\]\]\((https?://[^)]+)\)", message.content)
    assert links and len(links) == len(set(links))


def test_image_answer_links_to_an_image_grokproxy_serves(live):
    _, url = live(HEALTHY)
    completion = sdk(url).chat.completions.create(
        model="grok-3", messages=[{"role": "user", "content": "draw an image of a cat"}]
    )
    content = completion.choices[0].message.content
    link = content.split("![image](", 1)[1].split(")", 1)[0]
    assert link.startswith(url + "/images/")
    image = requests.get(link, timeout=10)
    assert image.status_code == 200
    assert image.headers["Content-Type"].startswith("image/")
    assert image.content.startswith(b"\x89PNG")


def test_image_links_use_public_url_when_set(live):
    _, url = live(HEALTHY, PUBLIC_URL="https://gw.example.com")
    completion = sdk(url).chat.completions.create(
        model="grok-3", messages=[{"role": "user", "content": "draw an image of a dog"}]
    )
    assert "](https://gw.example.com/images/" in completion.choices[0].message.content


def test_a_forged_image_link_is_a_json_404(live):
    _, url = live(HEALTHY)
    response = requests.get(f"{url}/images/not-a-signed-link", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_inband_error_before_first_byte_is_a_json_error(live, emu):
    _, url = live([])
    response = requests.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {sso_jwt('emu-inband-caller-own-token')}"},
        json={"model": "grok-3", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        timeout=30,
    )
    assert response.status_code == 429
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert int(response.headers["Retry-After"]) >= 1


def test_failure_after_first_byte_is_an_error_event_then_done(live, emu):
    _, url = live([])
    emu.configure(tokens=40)
    response = requests.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {sso_jwt('emu-dies-caller-own-token')}"},
        json={"model": "grok-3", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        stream=True,
        timeout=30,
    )
    assert response.status_code == 200
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    error = events[-2]
    assert set(error) == {"error"} and error["error"]["type"] == "upstream_error"
    assert any(isinstance(e, dict) and e.get("choices") for e in events[:-2])


def test_client_hang_up_closes_the_upstream_connection_within_a_second(live, emu):
    _, url = live(HEALTHY)
    emu.configure(tokens=400, tokens_per_second=20)
    response = requests.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {POOL_KEY}"},
        json={"model": "grok-3", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        stream=True,
        timeout=30,
    )
    lines = response.iter_lines()
    received = [next(lines) for _ in range(6)]
    assert any(line.startswith(b"data: ") for line in received)
    response.close()
    hung_up = time.monotonic()
    while True:
        (stream,) = emu.streams()
        if stream["outcome"] != "streaming":
            break
        assert time.monotonic() - hung_up < 1.0, "upstream still streaming a second after"
        time.sleep(0.05)
    assert stream["outcome"] == "client_disconnected"


def test_keep_alive_comments_flow_while_upstream_is_silent(live, emu):
    _, url = live(HEALTHY, SSE_KEEPALIVE_SECONDS=0.2)
    emu.configure(tokens=6, tokens_per_second=2)
    response = requests.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {POOL_KEY}"},
        json={"model": "grok-3", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        stream=True,
        timeout=30,
    )
    events = sse_events(response)
    assert ": keep-alive" in events
    assert events[-1] == "[DONE]"
    assert not any(isinstance(e, str) and e.startswith(("id:", "event:")) for e in events)


def test_usage_chunk_only_when_asked(live):
    _, url = live(HEALTHY)
    client = sdk(url)
    plain = list(
        client.chat.completions.create(
            model="grok-3", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert all(chunk.choices for chunk in plain)
    with_usage = list(
        client.chat.completions.create(
            model="grok-3",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert with_usage[-1].choices == [] and with_usage[-1].usage.total_tokens > 0


def test_stream_headers_and_ids(live):
    _, url = live(HEALTHY)
    response = requests.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {POOL_KEY}"},
        json={"model": "grok-3", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        stream=True,
        timeout=30,
    )
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    conversation_id = response.headers["X-Conversation-Id"]
    message_id = response.headers["X-Message-Id"]
    chunks = [e for e in sse_events(response) if isinstance(e, dict)]
    assert chunks[-1]["conversation_id"] == conversation_id
    assert chunks[-1]["message_id"] == message_id


def test_image_input_is_uploaded_and_attached(live, emu):
    _, url = live(HEALTHY)
    png = (
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
        "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    )
    completion = sdk(url).chat.completions.create(
        model="grok-3",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is in this picture"},
                    {"type": "image_url", "image_url": {"url": png}},
                ],
            }
        ],
    )
    assert completion.choices[0].finish_reason == "stop"
    (upload,) = emu.requests(path="/http/upload-file-v2/direct")
    (chat,) = emu.chat_turns()
    assert upload["headers"]["content-type"].startswith("multipart/form-data")
    assert len(chat["file_ids"]) == 1


def test_models_list_matches_the_catalog(live):
    _, url = live(HEALTHY)
    models = sdk(url).models.list()
    assert [m.id for m in models.data] == MODELS
    assert all(m.owned_by and m.created for m in models.data)


def test_cors_preflight_passes_without_auth_and_reflects_headers(live):
    _, url = live(HEALTHY)
    response = requests.options(
        f"{url}/v1/chat/completions",
        headers={
            "Origin": "https://chat.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
        },
        timeout=10,
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "x-stainless-os" in response.headers["Access-Control-Allow-Headers"]
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_a_stream_that_dies_midway_counts_against_its_account(live):
    # One account only: nothing can fail over, and the failure is that account's to carry.
    app, url = live(["emu-dies-midstream-0001"])
    response = requests.post(
        f"{url}/v1/chat/completions",
        json={"model": "grok-3", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers={"Authorization": f"Bearer {POOL_KEY}"},
        stream=True,
        timeout=30,
    )
    assert response.status_code == 200
    events = sse_events(response)
    chunks = [event for event in events if isinstance(event, dict)]
    assert any(c["choices"][0]["delta"].get("content") for c in chunks if c.get("choices"))
    assert "error" in chunks[-1] and events[-1] == "[DONE]"

    # The outcome is recorded once the response is closed, just after the last byte.
    deadline = time.monotonic() + 5
    while True:
        with app.app_context():
            account = db.session.scalars(db.select(Account)).one()
            fail_count, last_error, status = account.fail_count, account.last_error, account.status
        if fail_count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert fail_count == 1
    assert last_error.startswith("broken: ")
    assert status == AccountStatus.ACTIVE  # counted, not benched: a dropped stream is not a ban
