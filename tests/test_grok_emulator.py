"""GrokClient against the grok.com emulator: every dialect (the WebSocket gateway and the three
HTTP chat bodies), every model, both HTTP clients."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from grokproxy.grok.catalog import DEFAULT_MODELS, load_catalog
from grokproxy.grok.client import ChatTurn, GrokClient
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
from grokproxy.grok.settings import DIALECTS, GrokSettings
from grokproxy.grok.transport import Transport

from conftest import reply_events
from emulator_fixtures import emu, emulator  # noqa: F401  (pytest fixtures)

TRANSPORTS = {"requests": None, "curl_cffi": "chrome136"}


def make_client(emu, transport: str, dialect: str = "gateway") -> GrokClient:  # noqa: F811
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


def open_turn(client: GrokClient, token: str, model: str, message: str, **kw):
    """The product's one call: open a chat turn over the client's configured transport."""
    return client.open_turn(ChatTurn(token, load_catalog(None).get(model), message, **kw))


def chat(client: GrokClient, token: str, model: str, message: str, **kw) -> list:
    return list(reply_events(open_turn(client, token, model, message, **kw)))


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
def test_continuation_continues_the_conversation(emu, transport, dialect):  # noqa: F811
    emu.configure(dialect=dialect, tokens_per_second=0)
    client = make_client(emu, transport, dialect)
    token = new_token()
    first = chat(client, token, "grok-3", "First question")
    conversation_id = first[0].conversation_id
    reply_id = next(e for e in first if isinstance(e, ReplyFinished)).response_id
    second = chat(
        client,
        token,
        "grok-3",
        "Second",
        conversation_id=conversation_id,
        parent_response_id=reply_id,
    )
    started = [e.conversation_id for e in second if isinstance(e, ConversationStarted)]
    # HTTP continuations carry no conversation frame; the gateway attaches the same one again.
    assert started == ([conversation_id] if dialect == "gateway" else [])
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

    photo = (b"\x89PNG\r\n\x1a\nfake", "image/png")
    events = chat(client, token, "grok-3", "draw a picture of a cat", attachments=[photo])
    assert client.rate_limits(token, "fast").remaining == before.remaining - 1
    images = [e.path for e in events if isinstance(e, ImageGenerated)]
    assert images and len(images) == len(set(images))
    asset = client.fetch_asset(token, images[0])
    try:
        assert asset.status == 200 and asset.content_type == "image/png"
        assert b"".join(asset.chunks).startswith(b"\x89PNG")
    finally:
        asset.close()


# Where each fault surfaces: "open" = opening the turn raises, "stream" = reading it raises.
# On HTTP a rate limit is the chat request's own answer; on the gateway the socket opens and the
# limit arrives as an `error` event after response.create.
FAULTS = [
    ("emu-ratelimited-", RateLimited, {"gateway": "stream", "modes": "open"}),
    ("emu-invalid-", InvalidCredentials, {"gateway": "open", "modes": "open"}),
    ("emu-blocked-", InvalidCredentials, {"gateway": "open", "modes": "open"}),
    ("emu-domainrejected-", InvalidCredentials, {"gateway": "open", "modes": "open"}),
    ("emu-cloudflare-", CloudflareChallenge, {"gateway": "open", "modes": "open"}),
    ("emu-antibot-", AntiBotRejected, {"gateway": "open", "modes": "open"}),
    ("emu-spending-", RateLimited, {"gateway": "stream", "modes": "open"}),
    ("emu-inband-", RateLimited, {"gateway": "stream", "modes": "stream"}),
    ("emu-usagelimit-", RateLimited, {"gateway": "stream", "modes": "stream"}),
    ("emu-dies-", UpstreamBroken, {"gateway": "stream", "modes": "stream"}),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("dialect", ["gateway", "modes"])
@pytest.mark.parametrize(("prefix", "error", "stage"), FAULTS, ids=[f[0] for f in FAULTS])
def test_emulator_faults_become_classified_errors(emu, transport, dialect, prefix, error, stage):  # noqa: F811
    client = make_client(emu, transport, dialect)
    token = prefix + uuid.uuid4().hex
    if stage[dialect] == "open":
        with pytest.raises(error) as info:
            open_turn(client, token, "grok-3", "hi")
    else:
        reply = open_turn(client, token, "grok-3", "hi")
        with pytest.raises(error) as info:
            list(reply_events(reply))
    assert token not in str(info.value)


@pytest.mark.parametrize("prefix", ["emu-invalid-", "emu-blocked-"])
def test_auth_session_of_a_dead_token_raises(emu, prefix):  # noqa: F811
    with pytest.raises(InvalidCredentials):
        make_client(emu, "requests").auth_session(prefix + uuid.uuid4().hex)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("dialect", ["gateway", "modes"])
def test_closing_mid_stream_closes_the_emulator_connection(emu, transport, dialect):  # noqa: F811
    emu.configure(tokens=200, tokens_per_second=10)
    client = make_client(emu, transport, dialect)
    stream = reply_events(open_turn(client, new_token(), "grok-3", "long"), heartbeat=0.5)
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
