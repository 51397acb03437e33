"""GrokClient against the grok.com emulator: every dialect, every model, both transports."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from grokproxy.grok.catalog import DEFAULT_MODELS, load_catalog
from grokproxy.grok.client import GrokClient
from grokproxy.grok.errors import (
    AntiBotRejected,
    CloudflareChallenge,
    InvalidCredentials,
    RateLimited,
    UpstreamBroken,
)
from grokproxy.grok.events import (
    Citation,
    ConversationStarted,
    ImageGenerated,
    ReplyFinished,
    ReplyStarted,
    SearchResults,
    StreamEnd,
    TextDelta,
    ThinkingDelta,
    ToolStep,
    UserTurn,
)
from grokproxy.grok.payload import build_chat_body
from grokproxy.grok.settings import GrokSettings
from grokproxy.grok.transport import Transport

from emulator_fixtures import emu, emulator  # noqa: F401  (pytest fixtures)

TRANSPORTS = {"requests": None, "curl_cffi": "chrome136"}
DIALECTS = ("modes", "model-mode", "legacy")


def make_client(emu, transport: str, dialect: str = "modes") -> GrokClient:  # noqa: F811
    settings = GrokSettings(
        base_url=emu.base_url,
        assets_url=emu.assets_url,
        dialect=dialect,
        impersonate=TRANSPORTS[transport],
        connect_timeout=3.0,
        read_timeout=20.0,
    )
    return GrokClient(settings, Transport(settings))


def new_token() -> str:
    return f"tok-{uuid.uuid4().hex}"


def chat(client: GrokClient, token: str, model: str, message: str, **kw) -> list:
    spec = load_catalog(None).get(model)
    body = build_chat_body(spec, client.settings.dialect, message, temporary=True, **kw)
    return list(client.open_chat(token, body).events())


def answer(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("model", [s.name for s in DEFAULT_MODELS])
def test_every_model_streams_in_every_dialect(emu, transport, dialect, model):  # noqa: F811
    emu.configure(dialect=dialect, tokens_per_second=0)
    spec = load_catalog(None).get(model)
    client = make_client(emu, transport, dialect)
    events = chat(client, new_token(), model, "Tell me about the grok emulator")
    types = [type(e) for e in events]
    assert types[:3] == [ConversationStarted, UserTurn, ReplyStarted]
    finished = next(e for e in events if isinstance(e, ReplyFinished))
    assert answer(events) == finished.message and finished.message
    assert finished.parent_response_id == events[1].response_id
    assert types.index(StreamEnd) < types.index(ReplyFinished)
    assert "<grok:render" not in answer(events)
    assert "xai:tool" not in "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    if spec.deepsearch:
        assert any(isinstance(e, ToolStep) and e.name == "web_search" for e in events)
        assert any(isinstance(e, SearchResults) for e in events)
        assert any(isinstance(e, Citation) and e.url.startswith("http") for e in events)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_thinking_model_streams_reasoning(emu, transport):  # noqa: F811
    events = chat(make_client(emu, transport), new_token(), "grok-expert", "Why is the sky blue?")
    assert any(isinstance(e, ThinkingDelta) and e.text.strip() for e in events)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_continuation_reads_flattened_frames(emu, transport, dialect):  # noqa: F811
    emu.configure(dialect=dialect, tokens_per_second=0)
    client = make_client(emu, transport, dialect)
    token = new_token()
    first = chat(client, token, "grok-3", "First question")
    conversation_id = first[0].conversation_id
    reply_id = next(e for e in first if isinstance(e, ReplyFinished)).response_id
    spec = load_catalog(None).get("grok-3")
    body = build_chat_body(spec, dialect, "Second", temporary=True, parent_response_id=reply_id)
    second = list(client.open_chat(token, body, conversation_id=conversation_id).events())
    assert not any(isinstance(e, ConversationStarted) for e in second)
    finished = next(e for e in second if isinstance(e, ReplyFinished))
    assert answer(second) == finished.message
    turns = emu.conversation(conversation_id)
    assert len(turns["responses"]) == 4


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_identity_quota_upload_and_generated_image(emu, transport):  # noqa: F811
    client = make_client(emu, transport)
    token = new_token()
    identity = client.auth_session(token)
    assert (identity.email, identity.user_id) == (emu.email(token), emu.user_id(token))
    before = client.rate_limits(token, "fast")
    assert before.total == 140 and before.window_seconds == 7200

    file_id = client.upload_file(token, "cat.png", "image/png", b"\x89PNG\r\n\x1a\nfake")
    events = chat(client, token, "grok-3", "draw a picture of a cat", file_ids=[file_id])
    assert client.rate_limits(token, "fast").remaining == before.remaining - 1
    images = [e.path for e in events if isinstance(e, ImageGenerated)]
    assert images and len(images) == len(set(images))
    asset = client.fetch_asset(token, images[0])
    try:
        assert asset.status == 200 and asset.content_type == "image/png"
        assert b"".join(asset.chunks).startswith(b"\x89PNG")
    finally:
        asset.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("prefix", "error", "on_open"),
    [
        ("emu-ratelimited-", RateLimited, True),
        ("emu-invalid-", InvalidCredentials, True),
        ("emu-blocked-", InvalidCredentials, True),
        ("emu-cloudflare-", CloudflareChallenge, True),
        ("emu-antibot-", AntiBotRejected, True),
        ("emu-inband-", RateLimited, False),
        ("emu-usagelimit-", RateLimited, False),
        ("emu-dies-", UpstreamBroken, False),
    ],
)
def test_emulator_faults_become_classified_errors(emu, transport, prefix, error, on_open):  # noqa: F811
    client = make_client(emu, transport)
    token = prefix + uuid.uuid4().hex
    body = build_chat_body(load_catalog(None).get("grok-3"), "modes", "hi", temporary=True)
    if on_open:
        with pytest.raises(error) as info:
            client.open_chat(token, body)
    else:
        reply = client.open_chat(token, body)
        with pytest.raises(error) as info:
            list(reply.events())
    assert token not in str(info.value)


@pytest.mark.parametrize("prefix", ["emu-invalid-", "emu-blocked-"])
def test_auth_session_of_a_dead_token_raises(emu, prefix):  # noqa: F811
    with pytest.raises(InvalidCredentials):
        make_client(emu, "requests").auth_session(prefix + uuid.uuid4().hex)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_closing_mid_stream_closes_the_emulator_connection(emu, transport):  # noqa: F811
    emu.configure(tokens=200, tokens_per_second=10)
    client = make_client(emu, transport)
    body = build_chat_body(load_catalog(None).get("grok-3"), "modes", "long", temporary=True)
    reply = client.open_chat(new_token(), body)
    stream = reply.events(heartbeat=0.5)
    deltas = 0
    for event in stream:
        deltas += isinstance(event, TextDelta)
        if deltas == 2:
            break
    closed_at = time.monotonic()
    threading.Thread(target=stream.close).start()  # as a WSGI server does on hang-up
    outcome = None
    while time.monotonic() - closed_at < 3:
        outcome = emu.streams()[-1]["outcome"]
        if outcome != "streaming":
            break
        time.sleep(0.05)
    assert outcome == "client_disconnected"
    assert time.monotonic() - closed_at < 1.5
