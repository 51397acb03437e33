"""The emulator's E4 WebSocket gateway (`/ws/mgw/`): turns, continuation, faults, handshake."""

# The fixtures are imported by name until tests/conftest.py imports them; test parameters then
# "redefine" them, which is how pytest fixtures work.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import requests

from grokproxy.emulator import content
from grokproxy.emulator.testing import EmulatorHandle, running_emulator

from emulator_fixtures import emu, emulator  # noqa: F401 (pytest fixtures)

TOKEN = "gateway-token-1"
OTHER = "gateway-token-2"
ORIGIN = {"Origin": "https://grok.com"}
ANTI_BOT = "Request rejected by anti-bot rules."
TAG = re.compile(r'<grok:render card_id="([^"]+)" card_type="citation_card"')


def cookie_header(emu: EmulatorHandle, token: str, user_id: str | None = None) -> str:
    uid = user_id or emu.user_id(token)
    return f"sso={token}; sso-rw={token}; x-userid={uid}"


class Gateway:
    """A client of the emulator's socket: send events, read server messages as dicts."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws

    async def send(self, event: dict[str, Any], session_id: str | None = None) -> None:
        msg: dict[str, Any] = {"event": event}
        if session_id is not None:
            msg = {"session_id": session_id, **msg}
        await self.ws.send_str(json.dumps(msg))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
        return json.loads(msg.data)

    async def until(self, kind: str, session_id: str | None = None) -> list[dict[str, Any]]:
        """Messages up to and including the first `kind` event (of `session_id`, if given)."""
        out = []
        while True:
            msg = await self.recv()
            out.append(msg)
            if msg["event"]["type"] == kind and session_id in (None, msg["session_id"]):
                return out

    async def open_session(
        self, model: str = "auto", session_id: str | None = None, **x_grok: Any
    ) -> tuple[str, str]:
        """`session.create`; returns (session id, conversation id)."""
        await self.send(
            {"type": "session.create", "event_id": "ev-create", "session": {"model": model,
             "x_grok": x_grok}},
            session_id,
        )  # fmt: skip
        created, attached = await self.recv(), await self.recv()
        assert created["event"]["type"] == "session.created", created
        assert attached["event"]["type"] == "conversation.attached"
        return created["session_id"], attached["event"]["conversation"]["id"]

    async def ask(self, sid: str, prompt: str, **item: Any) -> dict[str, Any]:
        """`conversation.item.create` (x_grok input chunks) and the `conversation.item.added`."""
        body = {"type": "message", "role": "user",
                "x_grok": {"client_message_id": str(uuid.uuid4()),
                           "input_chunks": [{"text": {"text": prompt}}]}, **item}  # fmt: skip
        await self.send(
            {"type": "conversation.item.create", "event_id": "ev-item", "item": body}, sid
        )
        return await self.recv()

    async def respond(self, sid: str) -> list[dict[str, Any]]:
        """`response.create` and every message up to `response.done` or an `error`."""
        await self.send({"type": "response.create", "event_id": "ev-resp"}, sid)
        out = []
        while True:
            msg = await self.recv()
            out.append(msg)
            if msg["event"]["type"] in ("response.done", "error"):
                return out

    async def turn(
        self, prompt: str = "hello there", model: str = "auto", **x_grok: Any
    ) -> tuple[str, str, list[dict[str, Any]]]:
        sid, conv = await self.open_session(model, **x_grok)
        added = await self.ask(sid, prompt)
        assert added["event"]["type"] == "conversation.item.added", added
        return sid, conv, await self.respond(sid)


def ws_url(emu: EmulatorHandle, uid: str) -> str:
    return emu.base_url.replace("http://", "ws://") + f"/ws/mgw/?uid={uid}"


def run(
    emu: EmulatorHandle,
    scenario: Callable[[Gateway], Awaitable[Any]],
    token: str = TOKEN,
    headers: dict[str, str] | None = None,
) -> Any:
    """Connect as `token` and run an async scenario against the socket."""

    async def main() -> Any:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                ws_url(emu, emu.user_id(token)), protocols=("json",),
                headers={**ORIGIN, "Cookie": cookie_header(emu, token), **(headers or {})},
            )  # fmt: skip
            try:
                return await scenario(Gateway(http, ws))
            finally:
                await ws.close()

    return asyncio.run(main())


def events(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["event"] for m in msgs]


def shape(msgs: list[dict[str, Any]]) -> list[str]:
    """A compact name per event (chunk kind and channel), with runs collapsed."""
    out: list[str] = []
    for e in events(msgs):
        name = e["type"]
        if name == "response.chunk":
            kind = next(iter(e["chunk"]))
            detail = e["chunk"][kind]
            name = {
                "text": f"text:{detail.get('channel')}",
                "phase_marker": detail.get("kind"),
            }.get(kind, kind)
        elif name == "response.grok.output":
            name = "output:" + next(iter(e["output"]))
        if not out or out[-1] != name:
            out.append(name)
    return out


def answer_text(msgs: list[dict[str, Any]]) -> str:
    parts = []
    for e in events(msgs):
        text = e.get("chunk", {}).get("text")
        if text and text["channel"] == "CHANNEL_ASSISTANT_RESPONSE":
            parts.append(text["text"])
        if e["type"] == "response.output_text.delta":
            parts.append(e["delta"])
    return "".join(parts)


def notetaker_prompt(wanted: bool) -> str:
    return next(
        p
        for p in (f"think about case {i}" for i in range(50))
        if content.uses_notetaker(p) == wanted
    )


# --- one turn ------------------------------------------------------------------------------


def test_new_turn_sends_every_event_in_order_and_stores_the_conversation(emu) -> None:
    async def scenario(gw: Gateway):
        spec = {"model": "auto", "x_grok": {"is_temporary": False}}
        await gw.send({"type": "session.create", "event_id": "ev-1", "session": spec})
        created, attached = await gw.recv(), await gw.recv()
        sid = created["session_id"]
        added = await gw.ask(sid, "hello there")
        return created, attached, added, await gw.respond(sid)

    created, attached, added, reply = run(emu, scenario)
    sid = created["session_id"]
    uuid.UUID(sid)
    assert created["event"] == {"type": "session.created", "client_event_id": "ev-1",
                                "session": {"id": sid, "model": "auto"}}  # fmt: skip
    conv_id = attached["event"]["conversation"]["id"]
    assert attached == {"session_id": sid, "event": {"type": "conversation.attached",
                                                     "conversation": {"id": conv_id}}}  # fmt: skip
    item_id = added["event"]["item"]["id"]
    assert added["event"] == {"type": "conversation.item.added", "client_event_id": "ev-item",
                              "item": {"id": item_id, "role": "user"}}  # fmt: skip
    assert shape(reply) == ["response.created", "text:CHANNEL_ASSISTANT_RESPONSE", "response.done"]
    assert all(m["session_id"] == sid for m in reply)
    first, *chunks, done = events(reply)
    response_id = first["response"]["id"]
    assert first == {"type": "response.created", "client_event_id": "ev-resp",
                     "response": {"id": response_id, "status": "in_progress"}}  # fmt: skip
    assert done == {"type": "response.done", "response": {"id": response_id, "status": "completed"}}
    assert len(chunks) == 8  # the fixture's reply size
    assert all(c["response_id"] == response_id for c in chunks)
    assert len({uuid.UUID(c["event_id"]) for c in chunks}) == 8
    assert answer_text(reply) == "".join(content.answer_tokens("hello there", 8))

    conv = emu.conversation(conv_id)
    assert conv["owner"] == emu.email(TOKEN) and conv["title"] == "hello there"
    user, assistant = conv["responses"]
    assert (user["responseId"], user["sender"], user["message"]) == (
        item_id,
        "human",
        "hello there",
    )
    assert assistant["responseId"] == response_id and assistant["parentResponseId"] == item_id
    nodes = requests.get(
        f"{emu.base_url}/rest/app-chat/conversations/{conv_id}/response-node",
        cookies=emu.cookies(TOKEN), timeout=5,
    ).json()["responseNodes"]  # fmt: skip
    assert [n["responseId"] for n in nodes] == [item_id, response_id]


def test_realtime_content_form_and_uploaded_file_mentions_are_accepted(emu) -> None:
    upload = requests.post(
        emu.base_url + "/rest/app-chat/upload-file", cookies=emu.cookies(TOKEN), timeout=5,
        json={"fileName": "a.txt", "fileMimeType": "text/plain", "content": "aGk="},
    ).json()["fileMetadataId"]  # fmt: skip

    async def scenario(gw: Gateway):
        sid, conv = await gw.open_session()
        await gw.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "file_attachment_ids": [upload],
            "content": [{"type": "input_text", "text": "read this"}]}}, sid)  # fmt: skip
        added = await gw.recv()
        missing = await gw.ask(
            sid, "x", x_grok={"input_chunks": [{"mention": {"target": {"file_mention": {
                "file_id": "nope"}}}}, {"text": {"text": "x"}}]})  # fmt: skip
        return conv, added, missing, await gw.respond(sid)

    conv, added, missing, reply = run(emu, scenario)
    assert added["event"]["type"] == "conversation.item.added"
    assert missing["event"]["error"]["code"] == "invalid_request"
    assert "nope" in missing["event"]["error"]["message"]
    assert answer_text(reply).startswith("Echo: read this")
    assert emu.conversation(conv)["responses"][0]["fileAttachments"] == [upload]


@pytest.mark.parametrize("notes", [True, False])
def test_thinking_reply_marks_its_phases_and_channels(emu, notes: bool) -> None:
    prompt = notetaker_prompt(notes)
    _, _, reply = run(emu, lambda gw: gw.turn(prompt, model="expert"))
    expected = ["response.created", "KIND_THINKING_START"]
    expected += ["text:CHANNEL_ASSISTANT_NOTETAKER_HEADER"] if notes else []
    expected += ["text:CHANNEL_ANALYSIS", "KIND_RESPONSE_START", "text:CHANNEL_ASSISTANT_RESPONSE"]
    assert shape(reply) == [*expected, "response.done"]
    assert answer_text(reply) == "".join(content.answer_tokens(prompt, 8))


def test_deep_search_streams_tools_then_text_with_citations_resolved_by_cards(emu) -> None:
    emu.configure(tokens=12)
    prompt = "latest grok release"
    _, _, reply = run(emu, lambda gw: gw.turn(prompt))
    note = ["text:CHANNEL_ASSISTANT_NOTETAKER_HEADER"] if content.uses_notetaker(prompt) else []
    names = shape(reply)
    assert names[: names.index("KIND_RESPONSE_START") + 2] == [
        "response.created", "KIND_THINKING_START", *note, "text:CHANNEL_ANALYSIS", *note,
        "tool_usage_card", "tool_result", "tool_usage_card", "tool_result", *note,
        "KIND_RESPONSE_START", "output:card_attachment",
    ]  # fmt: skip
    evs = events(reply)
    chunks = [e["chunk"] for e in evs if e["type"] == "response.chunk"]
    cards = [c["tool_usage_card"] for c in chunks if "tool_usage_card" in c]
    results = [c["tool_result"] for c in chunks if "tool_result" in c]
    assert cards[0]["web_search"]["args"]["query"] == "latest grok release"
    assert "x_search" in cards[1]
    assert [r["tool_call_id"] for r in results] == [c["tool_usage_card_id"] for c in cards]
    pages = results[0]["web_search"]["webpages"]
    assert pages and set(pages[0]) == {"url", "title", "snippet"}
    assert results[1]["x_post"]["posts"][0]["post_id"]

    text = answer_text(reply)
    tag_ids = TAG.findall(text)
    assert len(tag_ids) == 2 and "Echo: latest grok release" in text
    pieces = [c["text"]["text"] for c in chunks if c.get("text", {}).get("channel") ==
              "CHANNEL_ASSISTANT_RESPONSE"]  # fmt: skip
    assert not any(tag_ids[1] in p and "</grok:render>" in p for p in pieces)  # split in two
    attachments = {
        e["output"]["card_attachment"]["id"]: i for i, e in enumerate(evs)
        if e["type"] == "response.grok.output"
    }  # fmt: skip
    assert set(tag_ids) == set(attachments)
    for e in evs:
        if e["type"] == "response.grok.output":
            assert e["output"]["card_attachment"]["url"].startswith("https://")

    def tag_end(card_id: str) -> int:  # index of the event that completes the tag
        seen = ""
        for i, e in enumerate(evs):
            seen += answer_text([{"event": e}])
            if card_id in seen and seen.rfind("</grok:render>") > seen.find(card_id):
                return i
        raise AssertionError(card_id)

    assert attachments[tag_ids[0]] < tag_end(tag_ids[0])
    assert attachments[tag_ids[1]] > tag_end(tag_ids[1])  # the URL only after its tag
    kinds = {c["render_citation"]["kind"] for c in chunks if "render_citation" in c}
    assert kinds == {"CITATION_KIND_WEB_PAGE", "CITATION_KIND_X_POST"}
    assert evs[-1]["response"]["status"] == "completed"


def test_workspace_ids_turn_on_deep_search(emu) -> None:
    _, _, reply = run(emu, lambda gw: gw.turn("plain words", workspace_ids=["ws-1"]))
    assert "tool_usage_card" in shape(reply) and "KIND_THINKING_START" in shape(reply)
    _, _, plain = run(emu, lambda gw: gw.turn("plain words"))
    assert "tool_usage_card" not in shape(plain)


def test_image_prompt_sends_generated_image_cards_served_to_the_owner(emu) -> None:
    _, _, reply = run(
        emu,
        lambda gw: gw.turn("draw a cat", enable_image_generation=True, image_generation_count=1),
    )
    (image,) = [e["output"]["card_attachment"] for e in events(reply) if e.get("output")]
    assert image["card_type"] == "generated_image_card"
    assert re.fullmatch(
        rf"users/{emu.user_id(TOKEN)}/generated/[0-9a-f-]+/image\.png", image["url"]
    )
    png = requests.get(f"{emu.assets_url}/{image['url']}", cookies=emu.cookies(TOKEN), timeout=5)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    _, _, no_flag = run(emu, lambda gw: gw.turn("draw a cat"))
    assert "output:card_attachment" not in shape(no_flag)


def test_delta_text_format_sends_answer_only_as_output_text_deltas(emu) -> None:
    emu.configure(ws_text_format="delta")
    _, _, reply = run(emu, lambda gw: gw.turn("hello there"))
    assert shape(reply) == [
        "response.created", "response.output_text.delta", "response.output_text.done",
        "response.done",
    ]  # fmt: skip
    expected = "".join(content.answer_tokens("hello there", 8))
    assert answer_text(reply) == expected
    assert events(reply)[-2]["text"] == expected
    emu.configure(ws_text_format="chunk")
    _, _, again = run(emu, lambda gw: gw.turn("hello there"))
    assert "response.output_text.delta" not in shape(again)


def test_handshake_header_overrides_reply_size(emu) -> None:
    _, _, reply = run(emu, lambda gw: gw.turn(), headers={"x-emulator-tokens": "3"})
    assert len(events(reply)) == 5


# --- continuation, sessions ------------------------------------------------------------------


def test_continuation_on_the_owner_links_the_new_turn_to_its_parent(emu) -> None:
    async def scenario(gw: Gateway):
        _, conv, first = await gw.turn("first question")
        parent = events(first)[-1]["response"]["id"]
        sid, attached_conv = await gw.open_session(
            "fast", conversation_id=conv, load_existing=True, needs_history=True
        )
        added = await gw.ask(sid, "second question", parent_response_id=parent)
        return conv, attached_conv, parent, added, await gw.respond(sid)

    conv, attached_conv, parent, added, second = run(emu, scenario)
    assert attached_conv == conv
    assert events(second)[-1]["response"]["status"] == "completed"
    turns = emu.conversation(conv)["responses"]
    assert [t["sender"] for t in turns] == ["human", "assistant", "human", "assistant"]
    assert turns[2]["responseId"] == added["event"]["item"]["id"]
    assert turns[2]["parentResponseId"] == parent
    assert turns[3]["parentResponseId"] == turns[2]["responseId"]
    assert turns[3]["responseId"] == events(second)[-1]["response"]["id"]


def test_continuation_refused_for_unknown_or_foreign_conversation_and_bad_parent(emu) -> None:
    _, conv, _ = run(emu, lambda gw: gw.turn("mine"))

    async def foreign(gw: Gateway):
        out = []
        for conv_id in (conv, "no-such-conversation"):
            await gw.send({"type": "session.create", "event_id": "ev-c", "session": {
                "model": "auto", "x_grok": {"conversation_id": conv_id, "load_existing": True,
                                            "needs_history": True}}})  # fmt: skip
            out.append(await gw.recv())
        return out

    for refused in run(emu, foreign, token=OTHER):
        assert refused["event"]["type"] == "error"
        assert refused["event"]["client_event_id"] == "ev-c"
        assert refused["event"]["error"]["code"] == "conversation_not_found"

    async def bad_parent(gw: Gateway):
        sid, _ = await gw.open_session(conversation_id=conv, load_existing=True, needs_history=True)
        return await gw.ask(sid, "x", parent_response_id="not-a-response"), await gw.ask(sid, "y")

    wrong, missing = run(emu, bad_parent)
    for refused in (wrong, missing):
        assert refused["event"]["type"] == "error"
        assert refused["event"]["error"]["code"] == "invalid_request"
    assert "not-a-response" in wrong["event"]["error"]["message"]
    assert len(emu.conversation(conv)["responses"]) == 2


def test_interleaved_sessions_on_one_connection_each_get_their_own_reply(emu) -> None:
    emu.configure(tokens_per_second=40)

    async def scenario(gw: Gateway):
        a, conv_a = await gw.open_session()
        b, conv_b = await gw.open_session(session_id="client-chosen-session")
        await gw.ask(a, "alpha question")
        await gw.ask(b, "beta question")
        await gw.send({"type": "response.create"}, a)
        await gw.send({"type": "response.create"}, b)
        msgs = []
        while sum(m["event"]["type"] == "response.done" for m in msgs) < 2:
            msgs.append(await gw.recv())
        return a, b, conv_a, conv_b, msgs

    a, b, conv_a, conv_b, msgs = run(emu, scenario)
    assert b == "client-chosen-session" and conv_a != conv_b
    by_session = {sid: [m for m in msgs if m["session_id"] == sid] for sid in (a, b)}
    assert answer_text(by_session[a]).startswith("Echo: alpha question")
    assert answer_text(by_session[b]).startswith("Echo: beta question")
    order = [m["session_id"] for m in msgs]
    assert order.index(b) < len(order) - order[::-1].index(a) - 1  # b started before a ended
    assert all(s["outcome"] == "completed" and s["path"] == "/ws/mgw/" for s in emu.streams())


def test_a_session_answers_once_and_unknown_sessions_are_refused(emu) -> None:
    async def scenario(gw: Gateway):
        sid, _, _ = await gw.turn()
        again = await gw.ask(sid, "more")
        await gw.send({"type": "response.create", "event_id": "ev-x"}, "nobody")
        return again, await gw.recv()

    again, unknown = run(emu, scenario)
    assert again["event"]["error"]["code"] == "invalid_request"
    assert unknown["event"]["error"]["code"] == "invalid_request"
    assert unknown["event"]["client_event_id"] == "ev-x" and unknown["session_id"] == "nobody"


def test_each_turn_uses_the_sessions_mode_quota_and_an_empty_one_is_rate_limited(emu) -> None:
    emu.set_quota("heavy", token=TOKEN, remaining=1, total=20)
    _, _, ok = run(emu, lambda gw: gw.turn(model="heavy"))
    assert events(ok)[-1]["type"] == "response.done"
    assert emu.quotas(token=TOKEN)["heavy"]["remaining"] == 0
    run(emu, lambda gw: gw.turn(model="fast"))
    assert emu.quotas(token=TOKEN)["fast"]["remaining"] == 140 - 1  # super tier: 140 fast
    _, _, refused = run(emu, lambda gw: gw.turn(model="heavy"))
    assert events(refused) == [{"type": "error", "client_event_id": "ev-resp", "error": {
        "code": "rate_limit_exceeded", "message": "Too many requests"}}]  # fmt: skip


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "code", "message"),
    [
        ("emu-ratelimited-ws", "rate_limit_exceeded", "Too many requests"),
        ("emu-inband-ws", "rate_limit_exceeded", "Too many requests"),
        ("emu-spending-ws", "spending_limit", "personal-team-blocked:spending-limit"),
    ],
)
def test_refusing_faults_answer_response_create_with_an_error(emu, token, code, message) -> None:
    _, _, reply = run(emu, lambda gw: gw.turn(), token=token)
    assert events(reply) == [
        {"type": "error", "client_event_id": "ev-resp", "error": {"code": code, "message": message}}
    ]
    assert emu.streams() == []


def test_spending_limit_over_http_is_402(emu) -> None:
    resp = requests.post(
        emu.base_url + "/rest/app-chat/conversations/new", json={"message": "m", "modeId": "auto"},
        cookies=emu.cookies("emu-spending-http"), timeout=5,
    )  # fmt: skip
    assert resp.status_code == 402
    assert resp.json() == {"error": {"code": 8, "message": "personal-team-blocked:spending-limit",
                                     "details": []}}  # fmt: skip


def test_usage_limit_sends_a_stream_error_and_a_failed_done(emu) -> None:
    _, _, reply = run(emu, lambda gw: gw.turn(), token="emu-usagelimit-ws")
    created, error, done = events(reply)
    assert created["type"] == "response.created"
    assert error["output"] == {"stream_error": {
        "message": "You've reached your usage limit. Please try again later."}}  # fmt: skip
    assert done == {"type": "response.done", "response": {"id": created["response"]["id"],
                                                          "status": "failed"}}  # fmt: skip


def test_dies_cuts_the_tcp_connection_after_half_the_answer(emu) -> None:
    async def scenario(gw: Gateway):
        sid, _ = await gw.open_session()
        await gw.ask(sid, "hello there")
        await gw.send({"type": "response.create"}, sid)
        got = []
        while True:
            msg = await gw.ws.receive(timeout=5)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return got, msg.type, gw.ws.close_code
            got.append(json.loads(msg.data))

    got, kind, close_code = run(emu, scenario, token="emu-dies-ws")
    assert kind in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert close_code == 1006  # no close frame: the TCP link just ended
    assert len([e for e in events(got) if "chunk" in e]) == 4  # half of 8
    assert "response.done" not in shape(got)
    assert emu.streams()[-1]["outcome"] == "dropped"


def test_slow_delays_the_first_reply_event(emu) -> None:
    emu.configure(slow_delay=0.6)

    async def scenario(gw: Gateway):
        sid, _ = await gw.open_session()
        await gw.ask(sid, "hello")
        began = time.monotonic()
        reply = await gw.respond(sid)
        return time.monotonic() - began, reply

    waited, reply = run(emu, scenario, token="emu-slow-ws")
    assert waited >= 0.6 and events(reply)[-1]["response"]["status"] == "completed"


def test_silent_accepts_the_turn_and_never_answers(emu) -> None:
    async def scenario(gw: Gateway):
        sid, _ = await gw.open_session()
        await gw.ask(sid, "hello")
        await gw.send({"type": "response.create"}, sid)
        with pytest.raises(asyncio.TimeoutError):
            await gw.ws.receive(timeout=0.6)
        return emu.streams()[-1]["outcome"]

    assert run(emu, scenario, token="emu-silent-ws") == "streaming"
    assert wait_outcome(emu) == "client_disconnected"
    assert emu.quotas(token="emu-silent-ws")["auto"]["remaining"] == 49


def test_degraded_searches_a_placeholder_then_answers_unrelated_text(emu) -> None:
    _, _, reply = run(
        emu, lambda gw: gw.turn("what is the capital of France"), token="emu-degraded-ws"
    )
    names = shape(reply)
    assert names.index("tool_usage_card") < names.index("text:CHANNEL_ASSISTANT_RESPONSE")
    card = next(e["chunk"]["tool_usage_card"] for e in events(reply)
                if "tool_usage_card" in e.get("chunk", {}))  # fmt: skip
    assert card["web_search"]["args"]["query"] == "current information and recent sources"
    text = answer_text(reply)
    assert "France" not in text and "Echo" not in text and len(text.split()) >= 5
    assert events(reply)[-1]["response"]["status"] == "completed"


def test_fault_set_by_control_api_applies_to_the_socket_n_times(emu) -> None:
    emu.set_fault("spending", token=TOKEN, times=1)

    async def scenario(gw: Gateway):
        return (await gw.turn())[2], (await gw.turn())[2]

    first, second = run(emu, scenario)
    assert events(first)[0]["error"]["code"] == "spending_limit"
    assert events(second)[-1]["response"]["status"] == "completed"


# --- handshake -------------------------------------------------------------------------------


def handshake_status(emu: EmulatorHandle, cookie: str | None, uid: str, **kw: Any) -> int:
    headers = {**kw.pop("headers", ORIGIN), **({"Cookie": cookie} if cookie else {})}

    async def main() -> int:
        async with aiohttp.ClientSession() as http:
            try:
                ws = await http.ws_connect(ws_url(emu, uid), headers=headers, **kw)
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
            await ws.close()
            return 101

    return asyncio.run(main())


def plain_get(emu: EmulatorHandle, cookie: str | None, uid: str, **headers: str):
    all_headers = {**ORIGIN, **headers, **({"Cookie": cookie} if cookie else {})}
    return requests.get(f"{emu.base_url}/ws/mgw/?uid={uid}", headers=all_headers, timeout=5)


def test_handshake_refusals_are_plain_http_like_rest(emu) -> None:
    uid = emu.user_id(TOKEN)
    json_proto = {"protocols": ("json",)}
    cases = [
        (None, uid, 403, 16, "No credentials presented"),
        (f"sso={TOKEN}; x-userid={uid}", uid, 403, 16, "invalid-credentials"),
        (f"sso={TOKEN}; sso-rw=other; x-userid={uid}", uid, 403, 16, "invalid-credentials"),
        (f"sso={TOKEN}; sso-rw={TOKEN}", uid, 403, 16, "invalid-credentials"),
        (cookie_header(emu, TOKEN, emu.user_id(OTHER)), uid, 403, 16, "invalid-credentials"),
        (cookie_header(emu, TOKEN), emu.user_id(OTHER), 403, 16, "invalid-credentials"),
        (cookie_header(emu, "emu-antibot-ws"), emu.user_id("emu-antibot-ws"), 403, 7, "anti-bot"),
        (cookie_header(emu, "emu-invalid-ws"), emu.user_id("emu-invalid-ws"), 403, 16, "invalid"),
        (cookie_header(emu, "emu-blocked-ws"), emu.user_id("emu-blocked-ws"), 403, 16, "blocked"),
        (cookie_header(emu, "emu-domainrejected-ws"), emu.user_id("emu-domainrejected-ws"), 403,
         3, "[WKE=account:email-domain-rejected]"),
    ]  # fmt: skip
    for cookie, query_uid, status, code, text in cases:
        assert handshake_status(emu, cookie, query_uid, **json_proto) == status, cookie
        resp = plain_get(emu, cookie, query_uid)
        assert resp.status_code == status
        assert resp.json()["error"]["code"] == code and text in resp.json()["error"]["message"]
    good = cookie_header(emu, TOKEN)
    assert handshake_status(emu, good, uid, headers={}, **json_proto) == 400  # no Origin
    assert handshake_status(emu, good, uid) == 400  # no `json` subprotocol
    assert handshake_status(emu, good, uid, protocols=("chat", "json")) == 101
    assert handshake_status(emu, good, uid, **json_proto) == 101


def test_cloudflare_refuses_the_upgrade_with_its_html_page(emu) -> None:
    token = "emu-cloudflare-ws"
    cookie, uid = cookie_header(emu, token), emu.user_id(token)
    assert handshake_status(emu, cookie, uid, protocols=("json",)) == 403
    resp = plain_get(emu, cookie, uid)
    assert resp.status_code == 403 and resp.headers["server"] == "cloudflare"
    assert "<title>Just a moment...</title>" in resp.text


def test_domain_rejected_token_is_dead_on_rest_and_session(emu) -> None:
    token = "emu-domainrejected-rest"
    resp = requests.post(emu.base_url + "/rest/rate-limits", json={"modelName": "auto"},
                         cookies=emu.cookies(token), timeout=5)  # fmt: skip
    assert resp.status_code == 403 and resp.json()["error"]["code"] == 3
    session = requests.get(
        emu.base_url + "/api/auth/session", cookies=emu.cookies(token), timeout=5
    )
    assert session.json() == {"status": "unauthenticated"}


def test_handshake_and_client_messages_are_recorded_without_cookie_values(emu) -> None:
    async def scenario(gw: Gateway):
        sid, _ = await gw.open_session()
        (live,) = emu.requests(path="/ws/mgw/")
        await gw.send({"type": "ping"})
        await gw.ask(sid, "recorded")
        return sid, live

    sid, live = run(emu, scenario, headers={"User-Agent": "Mozilla/5.0 test"})
    assert [m["event"]["type"] for m in live["messages"]] == ["session.create"]
    (rec,) = emu.requests(path="/ws/mgw/")
    assert rec["method"] == "GET" and rec["path"] == "/ws/mgw/"
    assert rec["query"] == f"uid={emu.user_id(TOKEN)}"
    assert rec["headers"]["origin"] == "https://grok.com"
    assert rec["headers"]["user-agent"] == "Mozilla/5.0 test"
    assert rec["headers"]["sec-websocket-protocol"] == "json" and "cookie" not in rec["headers"]
    assert rec["cookies"] == ["sso", "sso-rw", "x-userid"]
    types = [m["event"]["type"] for m in rec["messages"]]
    assert types == ["session.create", "ping", "conversation.item.create"]
    assert rec["messages"][2]["session_id"] == sid
    assert TOKEN not in json.dumps(rec)


# --- connection lifetime -------------------------------------------------------------------


def test_bad_messages_get_an_error_and_the_connection_stays_open(emu) -> None:
    async def scenario(gw: Gateway):
        await gw.ws.send_str("not json")
        bad = await gw.recv()
        await gw.send({"type": "session.teleport", "event_id": "ev-t"}, "s1")
        unknown = await gw.recv()
        await gw.send({"type": "session.create", "session": {"model": "turbo"}})
        model = await gw.recv()
        await gw.send({"type": "ping"})
        _, _, reply = await gw.turn()
        return bad, unknown, model, reply

    bad, unknown, model, reply = run(emu, scenario)
    assert bad == {"session_id": None, "event": {"type": "error", "error": {
        "code": "invalid_request", "message": "message is not valid JSON"}}}  # fmt: skip
    assert unknown["session_id"] == "s1" and unknown["event"]["client_event_id"] == "ev-t"
    for err in (unknown, model):
        assert err["event"]["error"]["code"] == "invalid_request"
    assert events(reply)[-1]["response"]["status"] == "completed"  # ping got no answer


def test_idle_connection_is_closed_with_1000_and_pings_keep_it_open(emu) -> None:
    emu.configure(ws_idle_timeout=0.6)

    async def scenario(gw: Gateway):
        for _ in range(6):
            await asyncio.sleep(0.2)
            await gw.send({"type": "ping"})
        assert not gw.ws.closed
        began = time.monotonic()
        msg = await gw.ws.receive(timeout=5)
        return msg.type, gw.ws.close_code, time.monotonic() - began

    kind, code, waited = run(emu, scenario)
    assert kind is aiohttp.WSMsgType.CLOSE and code == 1000
    assert 0.3 < waited < 2.0


def test_idle_close_ends_a_silent_turn(emu) -> None:
    emu.configure(ws_idle_timeout=0.5)

    async def scenario(gw: Gateway):
        sid, _ = await gw.open_session()
        await gw.ask(sid, "hello")
        await gw.send({"type": "response.create"}, sid)
        msg = await gw.ws.receive(timeout=5)
        return msg.type, gw.ws.close_code

    assert run(emu, scenario, token="emu-silent-idle") == (aiohttp.WSMsgType.CLOSE, 1000)
    assert wait_outcome(emu) == "idle_closed"


def wait_outcome(emu: EmulatorHandle, seconds: float = 2.0) -> str:
    deadline = time.monotonic() + seconds
    while emu.streams()[-1]["outcome"] == "streaming" and time.monotonic() < deadline:
        time.sleep(0.05)
    return emu.streams()[-1]["outcome"]


@pytest.mark.parametrize("how", ["close", "drop"])
def test_client_leaving_mid_reply_ends_the_stream(emu, how: str) -> None:
    emu.configure(tokens=1000, tokens_per_second=20)

    async def scenario(gw: Gateway):
        sid, _ = await gw.open_session()
        await gw.ask(sid, "long one")
        await gw.send({"type": "response.create"}, sid)
        await gw.until("response.chunk")
        assert emu.streams()[-1]["outcome"] == "streaming"
        if how == "close":
            await gw.ws.close()
        else:
            gw.ws._response.connection.transport.abort()  # gone without a close frame

    run(emu, scenario)
    assert wait_outcome(emu) == "client_disconnected"
    stream = emu.streams()[-1]
    assert stream["path"] == "/ws/mgw/" and 0 < stream["frames"] < 1000


def test_gateway_dialect_refuses_http_text_chat_but_serves_the_socket() -> None:
    with running_emulator(tokens=4, dialect="gateway") as gw_emu:
        new = gw_emu.base_url + "/rest/app-chat/conversations/new"
        for body in ({"message": "hi", "modeId": "auto"}, {"message": 1}):
            resp = requests.post(new, json=body, cookies=gw_emu.cookies(TOKEN), timeout=5)
            assert resp.status_code == 403
            assert resp.json() == {"error": {"code": 7, "message": ANTI_BOT, "details": []}}
        cont = gw_emu.base_url + "/rest/app-chat/conversations/c1/responses"
        body = {"message": "hi", "modeId": "auto", "parentResponseId": "r"}
        resp = requests.post(cont, json=body, cookies=gw_emu.cookies(TOKEN), timeout=5)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == 7
        image = requests.post(new, cookies=gw_emu.cookies(TOKEN), timeout=5, json={
            "message": "draw a cat", "modeId": "auto", "enableImageGeneration": True})  # fmt: skip
        assert image.status_code == 200 and "streamingImageGenerationResponse" in image.text
        _, _, reply = run(gw_emu, lambda gw: gw.turn())
        assert events(reply)[-1]["response"]["status"] == "completed"
        assert answer_text(reply) == "".join(content.answer_tokens("hello there", 4))
