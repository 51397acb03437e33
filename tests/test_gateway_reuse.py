"""Gateway sockets kept between turns (docs/upstream.md §4.7: one connection carries many
sessions, one per turn): reuse, pinging, idle expiry, dead sockets, and never two turns on one."""

from __future__ import annotations

import time
import uuid

import pytest

from grokproxy.grok import gateway
from grokproxy.grok.catalog import load_catalog
from grokproxy.grok.client import ChatTurn, GrokClient
from grokproxy.grok.events import Heartbeat, TextDelta
from grokproxy.grok.mgw import GatewayParser
from grokproxy.grok.settings import GrokSettings
from grokproxy.grok.transport import Transport

from conftest import reply_events
from emulator_fixtures import emu, emulator  # noqa: F401  (pytest fixtures)


@pytest.fixture
def gw(emu):  # noqa: F811
    emu.configure(dialect="gateway")
    return emu


def make_client(emu, **settings) -> GrokClient:  # noqa: F811
    grok = GrokSettings(
        base_url=emu.base_url,
        assets_url=emu.assets_url,
        dialect="gateway",
        connect_timeout=3.0,
        read_timeout=20.0,
        **settings,
    )
    return GrokClient(grok, Transport(grok))


def open_turn(client: GrokClient, token: str, message: str = "hello"):
    return client.open_turn(ChatTurn(token, load_catalog(None).get("grok-3"), message))


def answer(client: GrokClient, token: str, message: str = "hello", heartbeat=None) -> list:
    return list(reply_events(open_turn(client, token, message), heartbeat=heartbeat))


def text_of(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def handshakes(emu) -> int:  # noqa: F811
    return len(emu.requests("/ws/mgw/"))


def new_token() -> str:
    return f"tok-{uuid.uuid4().hex}"


def test_the_next_turn_of_an_account_reuses_its_socket(gw):
    client, token = make_client(gw), new_token()
    first = answer(client, token, "first question")
    assert gateway.idle_sockets() == 1
    second = answer(client, token, "second question")
    assert "first" in text_of(first) and "second" in text_of(second)
    assert handshakes(gw) == 1  # both sessions went over one connection
    assert [t["message"] for t in gw.chat_turns()] == ["first question", "second question"]
    assert gateway.idle_sockets() == 1


def test_accounts_never_share_a_socket(gw):
    client = make_client(gw)
    one, two = new_token(), new_token()
    answer(client, one)
    answer(client, two)
    answer(client, two)
    assert handshakes(gw) == 2
    assert [t["email"] for t in gw.chat_turns()] == [gw.email(one), gw.email(two), gw.email(two)]


def test_reuse_can_be_turned_off(gw):
    client, token = make_client(gw, gateway_idle_seconds=0), new_token()
    answer(client, token)
    answer(client, token)
    assert handshakes(gw) == 2
    assert gateway.idle_sockets() == 0


def test_two_turns_at_once_get_two_sockets_and_both_are_kept(gw):
    client, token = make_client(gw), new_token()
    first = open_turn(client, token, "one")
    second = open_turn(client, token, "two")  # the first still holds its socket
    assert first._sock is not second._sock
    assert handshakes(gw) == 2
    assert "two" in text_of(list(reply_events(second)))
    assert "one" in text_of(list(reply_events(first)))
    assert gateway.idle_sockets() == 2
    third = open_turn(client, token, "three")
    fourth = open_turn(client, token, "four")
    assert third._sock is not fourth._sock
    assert handshakes(gw) == 2  # each took one of the idle sockets
    for reply in (third, fourth):
        list(reply_events(reply))


def test_a_reply_cut_off_is_not_kept(gw):
    gw.configure(tokens=50, tokens_per_second=20)
    client, token = make_client(gw), new_token()
    stream = reply_events(open_turn(client, token))
    for event in stream:
        if isinstance(event, TextDelta):
            break
    stream.close()  # the client hung up mid-reply
    assert gateway.idle_sockets() == 0
    answer(client, token)
    assert handshakes(gw) == 2


def test_a_socket_the_server_closed_while_idle_is_replaced(gw):
    client, token = make_client(gw), new_token()
    answer(client, token, "before")
    gw.configure(ws_idle_timeout=0.2)  # grok.com closes idle connections
    time.sleep(1.0)
    gw.configure(ws_idle_timeout=60)
    events = answer(client, token, "after")
    assert "after" in text_of(events)
    assert handshakes(gw) == 2


class _DeadSocket(gateway._Socket):
    """A pooled socket that looks open but whose peer is gone (a NAT dropped it)."""

    poolable = True
    closed = False

    def send(self, text: str) -> None:
        raise gateway._Closed()

    def recv(self, timeout: float) -> str | None:
        return None

    def close(self) -> None:
        self.closed = True


def test_a_dead_pooled_socket_is_dropped_and_the_turn_dials_afresh(gw):
    client, token = make_client(gw), new_token()
    user_id = gw.user_id(token)
    dead = _DeadSocket()
    key = gateway.pool_key(client.settings, None, token, user_id)
    gateway._POOL.put(key, dead, 60.0)
    events = list(
        reply_events(client.open_turn(ChatTurn(token, load_catalog(None).get("grok-3"), "hi")))
    )
    assert "hi" in text_of(events)
    assert dead.closed
    assert handshakes(gw) == 1
    assert gateway.idle_sockets() == 1  # the fresh socket, kept for the next turn


def test_idle_sockets_are_pinged_and_stay_open_past_the_server_idle_limit(gw, monkeypatch):
    monkeypatch.setattr(gateway, "PING_INTERVAL", 0.1)
    client, token = make_client(gw), new_token()
    answer(client, token, "first")
    gw.configure(ws_idle_timeout=0.5)
    time.sleep(1.5)  # three idle limits, kept open by the pings
    answer(client, token, "second")
    gw.configure(ws_idle_timeout=60)
    assert handshakes(gw) == 1
    (record,) = gw.requests("/ws/mgw/")
    pings = [m for m in record["messages"] if (m.get("event") or {}).get("type") == "ping"]
    assert len(pings) >= 3


def test_idle_sockets_are_closed_after_the_idle_limit(gw):
    client, token = make_client(gw, gateway_idle_seconds=0.3), new_token()
    answer(client, token)
    assert gateway.idle_sockets() == 1
    deadline = time.monotonic() + 5
    while gateway.idle_sockets() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gateway.idle_sockets() == 0
    answer(client, token)
    assert handshakes(gw) == 2


def test_heartbeats_flow_during_silence_on_a_reused_socket(gw):
    client, token = make_client(gw), new_token()
    answer(client, token)
    gw.configure(tokens=3, tokens_per_second=2)  # half a second between tokens
    events = answer(client, token, "slow", heartbeat=0.1)
    assert handshakes(gw) == 1
    assert sum(isinstance(e, Heartbeat) for e in events) >= 2
    assert "slow" in text_of(events)


def test_messages_of_an_earlier_session_are_ignored():
    parser = GatewayParser(session_id="this-turn")
    late = '{"session_id": "earlier-turn", "event": {"type": "session.ended"}}'
    assert parser.feed(late) == []
    attached = '{"session_id": "this-turn", "event": {"type": "conversation.attached", '
    attached += '"conversation": {"id": "c1"}}}'
    parser.feed(attached)
    assert parser.conversation_id == "c1"


def test_our_messages_are_compressed_with_a_small_window(gw):
    # The offer is the browser's; what we send uses a small deflate window (less memory).
    client, token = make_client(gw), new_token()
    reply = open_turn(client, token)
    (extension,) = reply._sock._conn.protocol.extensions
    assert extension.local_max_window_bits == gateway._SEND_WINDOW_BITS
    offer = gw.requests("/ws/mgw/")[0]["headers"].get("sec-websocket-extensions", "")
    assert offer.startswith("permessage-deflate")
    assert "server_max_window_bits" not in offer
    list(reply_events(reply))


class _IdleSocket(gateway._Socket):
    poolable = True
    closed = False

    def send(self, text: str) -> None:
        pass

    def recv(self, timeout: float) -> str | None:
        return None

    def close(self) -> None:
        self.closed = True


def test_a_full_pool_keeps_its_sockets_and_closes_the_newcomer(monkeypatch):
    # Accounts rotate round-robin: evicting the oldest would leave no socket to reuse at all.
    monkeypatch.setattr(gateway, "IDLE_PER_PROCESS", 2)
    pool = gateway._SocketPool()
    kept = [_IdleSocket(), _IdleSocket()]
    pool.put(("a",), kept[0], 60.0)
    pool.put(("b",), kept[1], 60.0)
    newcomer = _IdleSocket()
    pool.put(("c",), newcomer, 60.0)
    assert newcomer.closed and not any(s.closed for s in kept)
    assert pool.take(("c",), 60.0) is None
    assert pool.take(("a",), 60.0) is kept[0]
    pool.clear()
    assert kept[1].closed
