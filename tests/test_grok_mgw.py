"""The WebSocket gateway parser against the mgw samples and every event shape of
docs/upstream.md §4.6-4.7."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from grokproxy.grok.errors import (
    AntiBotRejected,
    ConversationNotFound,
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
    SearchResult,
    SearchResults,
    StreamEnd,
    TextDelta,
    ThinkingDelta,
    ToolStep,
    UserTurn,
)
from grokproxy.grok.mgw import GatewayParser

FIXTURES = Path(__file__).parent / "fixtures" / "upstream"
ANSWER = "CHANNEL_ASSISTANT_RESPONSE"
CARD_URL = "https://example.org/paper"


def sample_messages(name: str) -> list[str]:
    """The WebSocket messages of a sample (its first line is the provenance comment)."""
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines()[1:]
    return [line for line in lines if line.strip()]


def ev(kind: str, **fields) -> dict:
    return {"session_id": "s-1", "event": {"type": kind, **fields}}


def text(t: str, channel: str = ANSWER) -> dict:
    return ev("response.chunk", chunk={"text": {"text": t, "channel": channel}})


def card(card_id: str, url: str = CARD_URL, **extra) -> dict:
    return ev(
        "response.grok.output", output={"card_attachment": {"id": card_id, "url": url, **extra}}
    )


def tag(card_id: str, number: int = 1) -> str:
    return (
        f'<grok:render card_id="{card_id}" card_type="citation_card" '
        f'type="render_inline_citation"><argument name="citation_id">{number}</argument>'
        "</grok:render>"
    )


DONE = ev("response.done", response={"id": "resp-9", "status": "completed"})


def run(messages, *, finish: bool = True) -> list:
    parser = GatewayParser()
    out: list = []
    for message in messages:
        out.extend(parser.feed(message))
    if finish:
        out.extend(parser.finish())
    return out


def answer(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def reasoning(events) -> str:
    return "".join(e.text for e in events if isinstance(e, ThinkingDelta))


def finished(events) -> ReplyFinished:
    (record,) = [e for e in events if isinstance(e, ReplyFinished)]
    return record


# ---- the samples ------------------------------------------------------------------------------


def test_basic_sample_gives_answer_reasoning_and_ids():
    parser = GatewayParser()
    events = [e for m in sample_messages("mgw-ws-frames-basic.ndjson") for e in parser.feed(m)]
    events += parser.finish()
    assert events[0] == ConversationStarted("conversation-1")
    assert answer(events) == "TOKENLESS"
    assert reasoning(events) == "thought"
    assert events[-3:] == [
        ReplyStarted("response-1"),
        StreamEnd(),
        ReplyFinished("response-1", "TOKENLESS", None, ()),
    ]
    assert parser.done and parser.response_id == "response-1"
    assert parser.conversation_id == "conversation-1"
    assert not parser.unknown_types


def test_search_sample_gives_tool_steps_results_and_numbered_citations():
    messages = sample_messages("mgw-ws-frames-search-citations.ndjson")
    events = run([*messages, DONE])
    assert [e for e in events if isinstance(e, ToolStep)] == [
        ToolStep("web_search", {"query": "grok 4.6"}),
        ToolStep("x_search", {"query": "from:elonmusk"}),
    ]
    results = [r for e in events if isinstance(e, SearchResults) for r in e.results]
    assert results == [
        SearchResult("https://www.ithome.com/0/981/947.htm", "IT之家 Grok 4.6", "..."),
        SearchResult(
            "https://x.com/elonmusk/status/2082707547203518569",
            "@elonmusk",
            "And Grok 4.6 comes out in a week",
        ),
    ]
    answer_part = [e for e in events if isinstance(e, TextDelta | Citation)]
    assert answer_part == [
        TextDelta("预计发布"),
        Citation(1, "https://x.com/elonmusk/status/2082707547203518569", "@elonmusk"),
        Citation(2, "https://www.ithome.com/0/981/947.htm", "IT之家 Grok 4.6"),
        TextDelta("。"),
    ]
    assert finished(events).message == "预计发布。"
    assert finished(events).response_id == "resp-9"


def test_search_sample_alone_never_finished_so_finish_raises():
    parser = GatewayParser()
    for message in sample_messages("mgw-ws-frames-search-citations.ndjson"):
        parser.feed(message)
    assert not parser.done
    with pytest.raises(UpstreamBroken, match="closed before the reply finished"):
        parser.finish()


@pytest.mark.parametrize("form", ["str", "bytes", "dict", "bare"])
def test_every_message_form_gives_the_same_events(form):
    messages = [json.loads(m) for m in sample_messages("mgw-ws-frames-basic.ndjson")]
    encode = {
        "str": json.dumps,
        "bytes": lambda m: json.dumps(m, ensure_ascii=False).encode(),
        "dict": lambda m: m,
        "bare": lambda m: m["event"],
    }[form]
    events = run([encode(m) for m in messages])
    assert answer(events) == "TOKENLESS" and reasoning(events) == "thought"
    assert finished(events).response_id == "response-1"


# ---- ids and lifecycle -------------------------------------------------------------------------


def test_ids_come_from_created_attached_and_done_and_done_wins():
    parser = GatewayParser()
    events = parser.feed(ev("session.created", session={"id": "s-1"}))
    events += parser.feed(ev("conversation.attached", conversation={"id": "conv-1"}))
    events += parser.feed(
        ev("conversation.item.added", item={"id": "user-1", "role": "user", "type": "message"})
    )
    events += parser.feed(ev("conversation.item.added", item={"id": "a-1", "role": "assistant"}))
    events += parser.feed(ev("response.created", response={"id": "early", "status": "in_progress"}))
    assert parser.response_id == "early"
    events += parser.feed(text("hi"))
    events += parser.feed(ev("response.done", response={"id": "final", "status": "completed"}))
    assert events[:3] == [ConversationStarted("conv-1"), UserTurn("user-1"), ReplyStarted("early")]
    assert parser.response_id == "final" and parser.session_id == "s-1"
    assert finished(events) == ReplyFinished("final", "hi", "user-1", ())
    assert parser.finish() == []


def test_lifecycle_events_are_ignored_without_being_counted():
    messages = [
        ev("session.created"),
        ev("ping"),
        ev("pong"),
        ev("response.output_item.added", item={}),
        ev("response.content_part.added", part={}),
        ev("response.chunk", chunk={"phase_marker": {"kind": "KIND_RESPONSE_START"}}),
        text("ok"),
        ev("response.content_part.done", part={}),
        ev("response.output_item.done", item={}),
        ev("response.completed", response={}),
        DONE,
    ]
    parser = GatewayParser()
    events = [e for m in messages for e in parser.feed(m)]
    assert answer(events) == "ok"
    assert not parser.unknown_types


def test_unknown_events_and_chunk_kinds_are_counted_and_logged_once(caplog):
    parser = GatewayParser()
    with caplog.at_level(logging.DEBUG, logger="grokproxy.grok.mgw"):
        for _ in range(3):
            assert parser.feed(ev("response.hologram", data=1)) == []
        assert parser.feed(ev("response.chunk", chunk={"sparkle": {}})) == []
    assert parser.unknown_types == {"response.hologram": 3, "response.chunk.sparkle": 1}
    logged = [r.getMessage() for r in caplog.records if "hologram" in r.getMessage()]
    assert len(logged) == 1


def test_events_after_done_change_nothing():
    parser = GatewayParser()
    parser.feed(text("answer"))
    parser.feed(DONE)
    assert parser.feed(text(" more")) == []
    assert parser.feed(ev("session.ended")) == []
    assert parser.feed(ev("error", error={"code": 8, "message": "Too many requests"})) == []
    assert parser.finish() == []


# ---- text formats, channels, duplicates ------------------------------------------------------


def test_chunk_text_wins_over_the_other_two_formats():
    events = run(
        [
            text("Hel"),
            ev("response.output_text.delta", delta="Hel"),
            text("lo"),
            ev("response.output_text.delta", delta="lo"),
            ev("response.output_text.done", text="Hello"),
            DONE,
        ]
    )
    assert answer(events) == "Hello"
    assert finished(events).message == "Hello"


def test_output_text_delta_wins_when_it_comes_first():
    events = run(
        [
            ev("response.output_text.delta", delta="Bon"),
            text("Bon"),
            ev("response.output_text.delta", delta="jour"),
            ev("response.output_text.done", text="Bonjour"),
            DONE,
        ]
    )
    assert answer(events) == "Bonjour"


def test_output_text_done_alone_is_the_answer():
    events = run([ev("response.output_text.done", text="Only at the end"), DONE])
    assert answer(events) == "Only at the end"


def test_reasoning_chunks_do_not_lock_the_answer_format():
    events = run(
        [
            text("plan", "CHANNEL_ANALYSIS"),
            ev("response.output_text.delta", delta="answer"),
            DONE,
        ]
    )
    assert reasoning(events) == "plan" and answer(events) == "answer"


def test_every_channel_but_the_answer_is_reasoning():
    events = run(
        [
            text("Thinking about it", "CHANNEL_ASSISTANT_NOTETAKER_HEADER"),
            text("step one", "CHANNEL_ANALYSIS"),
            text(" step two", "CHANNEL_ANALYSIS"),
            text("??", "CHANNEL_FROM_THE_FUTURE"),
            text("Done."),
            DONE,
        ]
    )
    assert reasoning(events) == "Thinking about it\n\nstep one step two\n\n??"
    assert answer(events) == "Done."


def test_events_with_a_seen_event_id_are_ignored():
    first = {
        "event": {"type": "response.chunk", "event_id": "e1", "chunk": text("A")["event"]["chunk"]}
    }
    second = {
        "event": {"type": "response.chunk", "event_id": "e2", "chunk": text("B")["event"]["chunk"]}
    }
    events = run([first, first, second, first, second, DONE])
    assert answer(events) == "AB"


# ---- inline citation tags ----------------------------------------------------------------------


def test_text_before_a_tag_flows_at_once_and_the_rest_waits_for_its_card():
    parser = GatewayParser()
    assert parser.feed(text("Fact " + tag("c1")[:20])) == [TextDelta("Fact ")]
    assert parser.feed(text(tag("c1")[20:] + " and more")) == []
    assert parser.feed(card("c1", title="Paper")) == [
        Citation(1, CARD_URL, "Paper"),
        TextDelta(" and more"),
    ]
    events = parser.feed(DONE)
    assert finished(events).message == "Fact  and more"


def test_card_that_came_before_its_tag_resolves_at_once():
    events = run([card("c7"), text("Known" + tag("c7")), text("."), DONE])
    assert [e for e in events if isinstance(e, TextDelta | Citation)] == [
        TextDelta("Known"),
        Citation(1, CARD_URL, ""),
        TextDelta("."),
    ]


def test_same_url_keeps_its_number_and_new_urls_get_the_next():
    events = run(
        [
            card("a", "https://one.example/"),
            card("b", "https://two.example/"),
            card("c", "https://one.example/"),
            text("x" + tag("a") + "y" + tag("b") + "z" + tag("c")),
            DONE,
        ]
    )
    assert [e.index for e in events if isinstance(e, Citation)] == [1, 2, 1]


def test_unresolved_tag_is_dropped_at_the_end_and_the_text_after_it_survives():
    events = run([text("Claim" + tag("missing") + " tail"), text(" end"), DONE])
    assert answer(events) == "Claim tail end"
    assert not [e for e in events if isinstance(e, Citation)]
    assert finished(events).message == "Claim tail end"


def test_unterminated_tag_is_dropped_at_the_end():
    events = run([text("Start " + tag("x")[:30]), DONE])
    assert answer(events) == "Start "


def test_a_lone_tag_prefix_that_never_grows_is_plain_text():
    events = run([text("a <grok"), DONE])
    assert answer(events) == "a <grok"


def test_non_citation_renders_are_removed():
    image_render = '<grok:render card_id="i1" type="render_searched_image"></grok:render>'
    events = run([text("pic" + image_render + "!"), DONE])
    assert answer(events) == "pic!"


def test_render_citation_waits_behind_held_text_to_keep_its_place():
    parser = GatewayParser()
    parser.feed(text("A" + tag("late")))
    assert (
        parser.feed(
            ev(
                "response.chunk",
                chunk={"render_citation": {"id": "r", "url": "https://r.example/"}},
            )
        )
        == []
    )
    events = parser.feed(card("late")) + parser.feed(DONE)
    assert [e for e in events if isinstance(e, Citation)] == [
        Citation(1, CARD_URL, ""),
        Citation(2, "https://r.example/", ""),
    ]


def test_random_splits_of_tagged_text_never_leak_markup():
    rng = random.Random(1234)
    full = "Alpha" + tag("k1") + " beta " + tag("k2", 2) + " gamma" + tag("gone", 3) + "."
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(full)), rng.randint(1, 12)))
        pieces = [full[a:b] for a, b in zip([0, *cuts], [*cuts, len(full)], strict=True)]
        messages = [text(p) for p in pieces]
        messages.insert(rng.randint(0, len(messages)), card("k1", "https://k1.example/"))
        messages.insert(rng.randint(0, len(messages)), card("k2", "https://k2.example/"))
        events = run([*messages, DONE])
        for event in events:
            assert "<grok:render" not in getattr(event, "text", "")
            assert "grok:render" not in getattr(event, "message", "")
        assert answer(events) == "Alpha beta  gamma."
        assert [(e.index, e.url) for e in events if isinstance(e, Citation)] == [
            (1, "https://k1.example/"),
            (2, "https://k2.example/"),
        ]


# ---- tools, search, images, degraded turns ---------------------------------------------------


def test_tool_cards_in_every_shape_become_one_step_each():
    events = run(
        [
            ev("response.chunk", chunk={"tool_usage_card": {"tool_usage_card_id": "t1",
               "browse_page": {"args": {"url": "https://a.example/"}}}}),
            ev("response.chunk", chunk={"tool_usage_card": {"tool_usage_card_id": "t2",
               "web_search": {"query": "flat form"}}}),
            ev("response.grok.output", output={"tool_usage_card": {"tool_usage_card_id": "t2",
               "web_search": {"query": "flat form"}}}),
            ev("response.grok.output", output={"tool_usage_card": {"tool_usage_card_id": "t3",
               "xKeywordSearch": {"args": {"query": "grok"}}}}),
            DONE,
        ]
    )  # fmt: skip
    assert [e for e in events if isinstance(e, ToolStep)] == [
        ToolStep("browse_page", {"url": "https://a.example/"}),
        ToolStep("web_search", {"query": "flat form"}),
        ToolStep("x_keyword_search", {"query": "grok"}),
    ]


def test_search_result_event_with_webpages_gives_search_results():
    page = {"url": "https://s.example/", "title": "S", "snippet": "snip"}
    events = run([ev("response.search.result", webpages=[page]), DONE])
    assert SearchResults((SearchResult("https://s.example/", "S", "snip"),)) in events


def test_generated_image_cards_become_images_and_land_in_the_record():
    events = run(
        [
            ev("response.grok.output", output={"card_attachment": {
               "id": "img1", "card_type": "generated_image_card",
               "url": "users/u/generated/1/image.jpg"}}),
            ev("response.grok.output", output={"card_attachment": {
               "id": "img2", "card_type": "generated_image_card",
               "image_url": "https://assets.grok.com/users/u/generated/2/image.jpg"}}),
            ev("response.grok.output", output={"card_attachment": {
               "id": "img3", "json_data": json.dumps({
                   "card_type": "generated_image_card",
                   "image_url": "users/u/generated/3/image.jpg"})}}),
            DONE,
        ]
    )  # fmt: skip
    paths = tuple(f"users/u/generated/{n}/image.jpg" for n in (1, 2, 3))
    assert [e.path for e in events if isinstance(e, ImageGenerated)] == list(paths)
    assert finished(events).generated_image_paths == paths


@pytest.mark.parametrize(
    "query",
    [
        "current information and recent sources",
        "Best expert recommendations and evidence",
        "latest updates and authoritative references",
    ],
)
def test_placeholder_search_query_marks_the_turn_degraded(query):
    parser = GatewayParser()
    parser.feed(
        ev("response.chunk", chunk={"tool_usage_card": {"tool_usage_card_id": "t1",
           "web_search": {"args": {"query": query}}}})
    )  # fmt: skip
    assert parser.degraded_query == query


def test_real_queries_do_not_mark_the_turn_degraded():
    parser = GatewayParser()
    for message in sample_messages("mgw-ws-frames-search-citations.ndjson"):
        parser.feed(message)
    assert parser.degraded_query is None


# ---- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        ({"code": "rate_limit_exceeded", "message": "Rate limit exceeded"}, RateLimited),
        ({"code": 8, "message": "Too many requests"}, RateLimited),
        ({"message": "You've reached your usage limit. Please try again later."}, RateLimited),
        ({"message": "personal-team-blocked:spending-limit"}, RateLimited),
        ({"code": 16, "message": "[WKE=unauthenticated:invalid-credentials]"}, InvalidCredentials),
        ({"code": 3, "message": "[WKE=account:email-domain-rejected]"}, InvalidCredentials),
        ({"message": "bad-credentials"}, InvalidCredentials),
        ({"message": "User is blocked. [WKE=unauthenticated:blocked-user]"}, InvalidCredentials),
        ({"code": "conversation_not_found", "message": "cannot load"}, ConversationNotFound),
        ({"code": 7, "message": "Request rejected by anti-bot rules."}, AntiBotRejected),
        ({"code": 13, "message": "internal"}, UpstreamBroken),
    ],
)
def test_error_events_raise_the_classified_error_and_stay_raised(error, cls):
    parser = GatewayParser()
    parser.feed(text("partial"))
    with pytest.raises(cls):
        parser.feed(ev("error", error=error))
    with pytest.raises(cls):
        parser.feed(text("more"))
    with pytest.raises(cls):
        parser.finish()


def test_flat_error_event_and_http_style_error_envelope_are_classified():
    with pytest.raises(RateLimited):
        GatewayParser().feed(ev("error", code=8, message="Too many requests"))
    with pytest.raises(InvalidCredentials):
        GatewayParser().feed({"error": {"code": 16, "message": "unauthenticated"}})


def test_stream_error_raises_and_the_failed_done_keeps_its_reason():
    parser = GatewayParser()
    stream_error = {"stream_error": {"code": 8, "message": "Too many requests"}}
    with pytest.raises(RateLimited):
        parser.feed(ev("response.grok.output", output=stream_error))
    with pytest.raises(RateLimited):
        parser.feed(ev("response.done", response={"id": "r", "status": "failed"}))


@pytest.mark.parametrize("status", ["failed", "incomplete", "cancelled"])
def test_done_with_another_status_is_upstream_broken(status):
    parser = GatewayParser()
    parser.feed(text("half"))
    with pytest.raises(UpstreamBroken, match=status):
        parser.feed(ev("response.done", response={"id": "r", "status": status}))
    assert not parser.done


def test_session_ended_before_done_is_upstream_broken():
    parser = GatewayParser()
    parser.feed(text("half"))
    with pytest.raises(UpstreamBroken, match="session ended"):
        parser.feed(ev("session.ended"))


def test_socket_closing_early_drops_held_markup_and_raises():
    parser = GatewayParser()
    assert parser.feed(text("before" + tag("c1")[:10])) == [TextDelta("before")]
    with pytest.raises(UpstreamBroken, match="closed before the reply finished"):
        parser.finish()


@pytest.mark.parametrize("message", ["not json", b"\xff\xfe", "[1, 2]"])
def test_garbage_messages_are_upstream_broken(message):
    with pytest.raises(UpstreamBroken):
        GatewayParser().feed(message)


def test_error_messages_never_contain_a_token():
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzZXNzaW9uX2lkIjoiYWJjIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
    with pytest.raises(InvalidCredentials) as caught:
        GatewayParser().feed(ev("error", error={"code": 16, "message": f"bad sso={jwt}"}))
    assert jwt not in str(caught.value) and "eyJ" not in caught.value.message


def test_a_card_cited_by_tag_and_by_render_citation_is_cited_once():
    events = run(
        [
            card("c0"),
            text("Fact" + tag("c0")),
            ev("response.chunk", chunk={"render_citation": {"id": "c0", "url": CARD_URL}}),
            text(" more"),
            DONE,
        ]
    )
    assert [(e.index, e.url) for e in events if isinstance(e, Citation)] == [(1, CARD_URL)]
    assert answer(events) == "Fact more"
