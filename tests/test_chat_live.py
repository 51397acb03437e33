"""Chat completions end to end: the real openai SDK against a live grokproxy over the emulator."""

from __future__ import annotations

import json
import time

import openai
import pytest
import requests

from grokproxy.grok.catalog import DEFAULT_MODELS

from conftest import POOL_KEY, sso_jwt

MODELS = [spec.name for spec in DEFAULT_MODELS]
DIALECTS = ["modes", "model-mode", "legacy"]
HEALTHY = ["emu-good-account-one-0001", "emu-good-account-two-0002"]


@pytest.fixture
def live(emu_app, add_accounts, serve):
    """Factory: a live server over the emulator with two healthy pool accounts."""

    def start(tokens=HEALTHY, **settings):
        app = emu_app(**settings)
        add_accounts(app, list(tokens))
        return serve(app), app

    return start


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
def test_sdk_streams_and_non_streams_every_model_in_every_dialect(live, emu, dialect):
    emu.configure(dialect=dialect)
    url, _ = live(GROK_DIALECT=dialect)
    client = sdk(url)
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
    # Every upstream body was accepted by the emulator's validation for this dialect.
    chats = emu.requests(path="/rest/app-chat/conversations/new")
    assert len(chats) == 2 * len(MODELS)


def test_thinking_arrives_in_reasoning_content(live):
    url, _ = live()
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
    url, _ = live(THINKING_FORMAT="think_tags")
    completion = sdk(url).chat.completions.create(
        model="grok-4", messages=[{"role": "user", "content": "think"}]
    )
    content = completion.choices[0].message.content
    assert content.startswith("<think>") and "</think>" in content


def test_deepsearch_answer_shows_steps_and_citations_readably(live):
    url, _ = live()
    completion = sdk(url).chat.completions.create(
        model="grok-3-deepsearch", messages=[{"role": "user", "content": "latest AI news"}]
    )
    message = completion.choices[0].message
    reasoning = message.model_extra["reasoning_content"]
    assert "web_search: " in reasoning
    assert "<xai:" not in reasoning and "CDATA" not in reasoning
    assert "](http" in message.content  # citations became markdown links
    assert "grok:render" not in message.content


def test_image_answer_links_to_an_image_grokproxy_serves(live):
    url, _ = live()
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
    url, _ = live(PUBLIC_URL="https://gw.example.com")
    completion = sdk(url).chat.completions.create(
        model="grok-3", messages=[{"role": "user", "content": "draw an image of a dog"}]
    )
    assert "](https://gw.example.com/images/" in completion.choices[0].message.content


def test_a_forged_image_link_is_a_json_404(live):
    url, _ = live()
    response = requests.get(f"{url}/images/not-a-signed-link", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_inband_error_before_first_byte_is_a_json_error(live, emu):
    url, _ = live(tokens=[])
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
    url, _ = live(tokens=[])
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
    url, _ = live()
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
        (stream,) = [s for s in emu.streams() if "/conversations/new" in s["path"]]
        if stream["outcome"] != "streaming":
            break
        assert time.monotonic() - hung_up < 1.0, "upstream still streaming a second after"
        time.sleep(0.05)
    assert stream["outcome"] == "client_disconnected"


def test_keep_alive_comments_flow_while_upstream_is_silent(live, emu):
    url, _ = live(SSE_KEEPALIVE_SECONDS=0.2)
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
    url, _ = live()
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
    url, _ = live()
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
    url, _ = live()
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
    (upload,) = emu.requests(path="/rest/app-chat/upload-file")
    (chat,) = emu.requests(path="/rest/app-chat/conversations/new")
    assert upload["body"]["fileMimeType"] == "image/png"
    assert len(chat["body"]["fileAttachments"]) == 1


def test_models_list_matches_the_catalog(live):
    url, _ = live()
    models = sdk(url).models.list()
    assert [m.id for m in models.data] == MODELS
    assert all(m.owned_by and m.created for m in models.data)


def test_cors_preflight_passes_without_auth_and_reflects_headers(live):
    url, _ = live()
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
