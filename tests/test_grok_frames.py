"""The frame parser against the real upstream samples and every framing grok.com is known to use."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest

from grokproxy.grok.errors import (
    AntiBotRejected,
    InvalidCredentials,
    RateLimited,
    UpstreamBroken,
)
from grokproxy.grok.events import (
    Citation,
    ConversationStarted,
    GrokEvent,
    ImageGenerated,
    ImageProgress,
    ModelInfo,
    ReplyFinished,
    ReplyStarted,
    SearchResult,
    SearchResults,
    StreamEnd,
    TextDelta,
    ThinkingDelta,
    TitleChanged,
    ToolStep,
    UserTurn,
)
from grokproxy.grok.frames import FrameParser

from conftest import sample_bytes, sample_text

CAPTURE = "real-capture-2026-03-08-new-conversation-auto.ndjson"


def parse_frames(chunks) -> Iterator[GrokEvent]:
    """Events of a whole grok.com stream given as byte chunks (raises on in-band errors)."""
    parser = FrameParser()
    for chunk in chunks:
        if chunk:
            yield from parser.feed(chunk)
    yield from parser.finish()


def sample_lines(name: str) -> list[dict]:
    return [json.loads(line) for line in sample_bytes(name).splitlines() if line.strip()]


def ndjson(*objects: dict) -> bytes:
    return b"".join(json.dumps(o, ensure_ascii=False).encode() + b"\n" for o in objects)


def resp(**fields) -> dict:
    return {"result": {"response": fields}}


END = resp(token="", isSoftStop=True, responseId="r1")


def events(data: bytes) -> list:
    return list(parse_frames([data]))


def text_of(evs: list) -> str:
    return "".join(e.text for e in evs if isinstance(e, TextDelta))


def thinking_of(evs: list) -> str:
    return "".join(e.text for e in evs if isinstance(e, ThinkingDelta))


def kinds(evs: list) -> list[type]:
    """Event types with consecutive text deltas collapsed (chunking may split text differently)."""
    out: list[type] = []
    for e in evs:
        if isinstance(e, TextDelta | ThinkingDelta) and out and out[-1] is type(e):
            continue
        out.append(type(e))
    return out


def merged(evs: list) -> list:
    """Events with consecutive deltas of one kind joined, for chunking-independent comparison."""
    out: list = []
    for e in evs:
        if isinstance(e, TextDelta | ThinkingDelta) and out and type(out[-1]) is type(e):
            out[-1] = type(e)(out[-1].text + e.text)
        else:
            out.append(e)
    return out


# ---- the real 2026-03-08 capture ------------------------------------------------------------


def test_real_capture_yields_the_exact_event_sequence():
    evs = events(sample_bytes(CAPTURE))
    lines = sample_lines(CAPTURE)
    model_response = lines[-2]["result"]["response"]["modelResponse"]
    n_tokens = sum(1 for x in lines if x["result"].get("response", {}).get("token"))

    assert evs[0] == ConversationStarted("519dce3f-387b-47fa-bd14-4dfc4e30102a", "New conversation")
    assert evs[1] == UserTurn("569fd0dc-fa2c-49eb-ac55-21456fbc622c")
    assert evs[2] == ReplyStarted("70c96a48-1939-41ef-804a-4f86ae41f8fc")
    assert evs[3] == ModelInfo("f54V4nLGp4IcuJf0V+H7yBgHbw0FdgMUlmc0eOqrGR0=", "grok-4-auto")
    deltas = evs[4 : 4 + n_tokens]
    assert all(isinstance(e, TextDelta) for e in deltas)
    assert "".join(e.text for e in deltas) == model_response["message"]
    assert evs[4 + n_tokens :] == [
        StreamEnd(),
        ReplyFinished(
            "70c96a48-1939-41ef-804a-4f86ae41f8fc",
            model_response["message"],
            "569fd0dc-fa2c-49eb-ac55-21456fbc622c",
            (),
        ),
        TitleChanged("精简模式测试"),
    ]


def test_real_capture_split_at_every_byte_offset_gives_identical_events():
    data = sample_bytes(CAPTURE)
    reference = events(data)
    for offset in range(len(data) + 1):
        assert list(parse_frames([data[:offset], data[offset:]])) == reference, offset


def test_real_capture_fed_byte_by_byte_and_randomly_gives_the_same_events():
    data = sample_bytes(CAPTURE)
    reference = events(data)
    bytewise = list(parse_frames(data[i : i + 1] for i in range(len(data))))
    assert merged(bytewise) == merged(reference)
    rng = random.Random(1234)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), 12))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert merged(list(parse_frames(pieces))) == merged(reference)


def test_utf8_characters_split_between_chunks_are_reassembled():
    data = ndjson(resp(token="😄精", responseId="r1"), END)
    cut = data.index("😄".encode()) + 2  # in the middle of the 4-byte emoji
    evs = list(parse_frames([data[:cut], data[cut:]]))
    assert text_of(evs) == "😄精"


# ---- framing --------------------------------------------------------------------------------


def test_data_prefixes_done_markers_and_sse_comments_are_tolerated():
    lines = sample_bytes(CAPTURE).splitlines()
    sse = (
        b"".join(b"data: " + line + b"\n\n" for line in lines) + b": keep-alive\n\ndata: [DONE]\n\n"
    )
    assert events(sse) == events(sample_bytes(CAPTURE))


def test_concatenated_objects_without_newlines_are_split():
    joined = b"".join(sample_bytes(CAPTURE).splitlines())
    assert events(joined) == events(sample_bytes(CAPTURE))


def test_pretty_printed_multiline_objects_are_parsed():
    data = (
        json.dumps(resp(token="hi", responseId="r1"), indent=2).encode() + json.dumps(END).encode()
    )
    assert text_of(events(data)) == "hi"


def test_garbage_lines_are_skipped():
    data = b"<html>oops</html>\n" + ndjson(resp(token="ok", responseId="r1"), END)
    assert text_of(events(data)) == "ok"


def test_flattened_continuation_frames_are_read_like_wrapped_ones():
    data = ndjson(
        {"result": {"userResponse": {"responseId": "u2", "message": "next", "sender": "human"}}},
        {"result": {"token": "Hel", "messageTag": "final", "responseId": "a2"}},
        {"result": {"token": "lo", "messageTag": "final", "responseId": "a2"}},
        {"result": {"token": "", "isSoftStop": True, "responseId": "a2"}},
        {"result": {"modelResponse": {"responseId": "a2", "message": "Hello",
                                      "parentResponseId": "u2", "sender": "assistant"}}},
    )  # fmt: skip
    evs = events(data)
    assert evs[:2] == [UserTurn("u2"), ReplyStarted("a2")]
    assert text_of(evs) == "Hello"
    assert evs[-2:] == [StreamEnd(), ReplyFinished("a2", "Hello", "u2", ())]
    assert not any(isinstance(e, ConversationStarted) for e in evs)


def test_final_metadata_ends_the_stream_like_a_soft_stop():
    data = ndjson(resp(token="x", responseId="r1"), resp(finalMetadata={"followUpSuggestions": []}))
    assert events(data)[-1] == StreamEnd()
    # An empty finalMetadata is not an end marker.
    with pytest.raises(UpstreamBroken):
        events(ndjson(resp(token="x", responseId="r1"), resp(finalMetadata={})))


def test_ui_layout_survey_and_unknown_frames_are_ignored():
    data = ndjson(
        resp(uiLayout={"reasoningUiLayout": "SPLIT"}),
        resp(survey={"id": 1}),
        {"something": "else"},
        {"event": {"type": "session.created"}},
        END,
    )
    assert events(data) == [ReplyStarted("r1"), StreamEnd()]


def test_model_response_without_streamed_tokens_becomes_the_answer():
    data = ndjson(resp(modelResponse={"responseId": "r9", "message": "whole answer"}))
    evs = events(data)
    assert evs == [
        ReplyStarted("r9"),
        TextDelta("whole answer"),
        StreamEnd(),
        ReplyFinished("r9", "whole answer", None, ()),
    ]


# ---- thinking and tool steps ------------------------------------------------------------------


def test_thinking_tokens_headers_and_summaries_go_to_thinking():
    data = ndjson(
        resp(token="Thinking about it", isThinking=True, messageTag="header", responseId="r1"),
        resp(token="step one. ", isThinking=True, responseId="r1"),
        resp(token="in short", isThinking=False, messageTag="summary", responseId="r1"),
        resp(token="Answer", isThinking=False, messageTag="final", responseId="r1"),
        resp(token="(raw)", messageTag="raw_function_result", responseId="r1"),
        END,
    )
    evs = events(data)
    assert thinking_of(evs) == "\n\nThinking about it\n\nstep one. in short"
    assert text_of(evs) == "Answer"


def test_xml_tool_card_in_thinking_becomes_a_tool_step_even_when_split():
    card = sample_text("tool-usage-card-in-thinking-2026-02.xml")
    thinking = "Let me search. " + card + " Found it."
    pieces = [thinking[i : i + 7] for i in range(0, len(thinking), 7)]
    frames = [resp(token=p, isThinking=True, responseId="r1") for p in pieces]
    evs = events(ndjson(*frames, END))
    steps = [e for e in evs if isinstance(e, ToolStep)]
    assert steps == [ToolStep("web_search", {"query": "最新 AI 新闻 2026年2月", "num_results": 10})]
    assert steps[0].summary == "web_search: 最新 AI 新闻 2026年2月"
    assert "xai:" not in thinking_of(evs)
    assert thinking_of(evs).replace("\n", "").replace(" ", "") == "Letmesearch.Foundit."
    # The step comes between the text before and after the card.
    order = kinds(evs)
    assert order.index(ToolStep) > order.index(ThinkingDelta)


def test_structured_tool_usage_card_objects_become_tool_steps():
    data = ndjson(
        resp(messageTag="tool_usage_card", isThinking=True, responseId="r1",
             toolUsageCard={"toolUsageCardId": "c1", "webSearch": {"args": {"query": "grok"}}}),
        resp(messageTag="tool_usage_card", responseId="r1",
             toolUsageCard={"toolUsageCardId": "c2", "xKeywordSearch": {"args": {"query": "x"}}}),
        resp(messageTag="tool_usage_card", responseId="r1",
             toolUsageCard={"toolUsageCardId": "c3", "browsePage": {"args": {"url": "https://a.b"}}}),
        END,
    )  # fmt: skip
    steps = [e for e in events(data) if isinstance(e, ToolStep)]
    assert steps == [
        ToolStep("web_search", {"query": "grok"}),
        ToolStep("x_keyword_search", {"query": "x"}),
        ToolStep("browse_page", {"url": "https://a.b"}),
    ]


def test_e1_token_objects_become_tool_steps():
    data = ndjson(
        resp(token={"action": "webSearch", "action_input": {"query": "news"}},
             messageTag="assistant", messageStepId=1, responseId="r1"),
        resp(token="I searched.", messageTag="assistant", messageStepId=1, responseId="r1"),
        resp(token=["ignored"], responseId="r1"),
        resp(token="Result", messageTag="final", responseId="r1"),
        END,
    )  # fmt: skip
    evs = events(data)
    assert [e for e in evs if isinstance(e, ToolStep)] == [
        ToolStep("web_search", {"query": "news"})
    ]
    assert thinking_of(evs) == "I searched."
    assert text_of(evs) == "Result"


# ---- search results and citations -------------------------------------------------------------


def test_web_and_x_search_results_are_reported():
    item = json.loads(sample_bytes("web-search-result-item-shape-2026-02.json"))
    data = ndjson(
        resp(webSearchResults={"results": [item]}, responseId="r1"),
        resp(xSearchResults={"results": [{"postId": "42", "username": "xai", "text": "hi"}]}),
        END,
    )
    found = [e for e in events(data) if isinstance(e, SearchResults)]
    assert found == [
        SearchResults(
            (SearchResult("https://example.com/article", "文章标题", "文章摘要预览..."),)
        ),
        SearchResults((SearchResult("https://x.com/xai/status/42", "@xai", "hi"),)),
    ]


def _citation_stream(render: str, split: int) -> bytes:
    card = {"id": "6b619a", "type": "render_inline_citation", "url": "https://example.com/a",
            "title": "Example"}  # fmt: skip
    answer = "Grok is fast" + render + ". More" + render + "."
    pieces = [answer[i : i + split] for i in range(0, len(answer), split)]
    return ndjson(
        resp(cardAttachment={"jsonData": json.dumps(card)}, responseId="r1"),
        *[resp(token=p, messageTag="final", responseId="r1") for p in pieces],
        END,
        resp(modelResponse={"responseId": "r1", "message": answer}),
    )


@pytest.mark.parametrize("split", [1, 3, 10, 1000])
def test_inline_citations_resolve_cards_at_the_right_point(split):
    render = sample_text("grok-render-inline-citation-2026-02.xml")
    evs = events(_citation_stream(render.strip(), split))
    body = [e for e in merged(evs) if isinstance(e, TextDelta | Citation)]
    cite = Citation(1, "https://example.com/a", "Example")
    assert body == [TextDelta("Grok is fast"), cite, TextDelta(". More"), cite, TextDelta(".")]
    finished = next(e for e in evs if isinstance(e, ReplyFinished))
    assert finished.message == "Grok is fast. More."


def test_unknown_citation_cards_and_other_render_types_are_dropped():
    unknown = '<grok:render card_id="nope" card_type="citation_card" type="render_inline_citation">'
    unknown += '<argument name="citation_id">1</argument></grok:render>'
    image = '<grok:render card_id="i1" card_type="image_card" type="render_searched_image">'
    image += '<argument name="size">LARGE</argument></grok:render>'
    data = ndjson(
        resp(token="a" + unknown + "b" + image + "c", messageTag="final", responseId="r1"), END
    )
    evs = events(data)
    assert text_of(evs) == "abc"
    assert not any(isinstance(e, Citation) for e in evs)


def test_citation_falls_back_to_search_result_citation_id():
    data = ndjson(
        resp(webSearchResults={"results": [{"url": "https://s.example", "title": "S",
                                            "citationId": "7"}]}, responseId="r1"),
        resp(token='x<grok:render card_id="zz" card_type="citation_card" '
                   'type="render_inline_citation"><argument name="citation_id">7</argument>'
                   "</grok:render>", messageTag="final", responseId="r1"),
        END,
    )  # fmt: skip
    assert [e for e in events(data) if isinstance(e, Citation)] == [
        Citation(1, "https://s.example", "S")
    ]


# ---- images ---------------------------------------------------------------------------------


def test_streaming_image_frames_report_progress_and_one_image():
    evs = events(sample_bytes("image-streaming-frames.ndjson"))
    path = "users/test/generated/edit/image.jpg"
    assert evs == [
        ImageProgress(path, 50),
        ImageProgress(path, 100),
        ImageGenerated(path),
        StreamEnd(),
        ReplyFinished("", "", None, (path,)),
    ]


def test_card_attachment_image_chunk_reports_the_generated_image():
    card = sample_bytes("image-card-attachment-jsondata.json").decode().strip()
    data = ndjson(resp(cardAttachment={"jsonData": card}, responseId="r1"), END)
    evs = events(data)
    assert ImageProgress("card_1", 100) in evs
    assert evs.count(ImageGenerated("generated/image.jpg")) == 1


def test_cached_image_and_model_response_urls_yield_each_path_once():
    data = ndjson(
        resp(cachedImageGenerationResponse={"imageUrl": "users/u/a.jpg"}, responseId="r1"),
        resp(streamingImageGenerationResponse={"imageId": "b", "imageUrl": "users/u/b-part-0.jpg",
                                               "progress": 100}),
        END,
        resp(modelResponse={"responseId": "r1", "message": "",
                            "generatedImageUrls": ["users/u/a.jpg", "users/u/c.jpg"]}),
    )  # fmt: skip
    images = [e for e in events(data) if isinstance(e, ImageGenerated)]
    assert images == [ImageGenerated("users/u/a.jpg"), ImageGenerated("users/u/c.jpg")]


def test_video_fixture_streams_to_its_soft_stop():
    evs = events(sample_bytes("video-streaming-frames-fixture.ndjson"))
    assert evs[0] == ConversationStarted("conversation_1", None)
    assert text_of(evs) == "I generated a video"
    assert evs[-1] == StreamEnd()


# ---- in-band errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("error-anti-bot-code7.json", AntiBotRejected),
        ("error-invalid-sso-code16.json", InvalidCredentials),
        ("error-too-many-requests-code8.json", RateLimited),
        ("error-usage-limit-in-stream.json", RateLimited),
    ],
)
def test_in_band_error_samples_raise_their_class(name, error):
    with pytest.raises(error) as info:
        events(sample_bytes(name).strip() + b"\n")
    assert info.value.message


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_in_band_error_after_some_text_raises_mid_stream(trailing_newline):
    error_line = sample_bytes("error-too-many-requests-code8.json").strip()
    data = ndjson(resp(token="partial", responseId="r1")) + error_line
    data += b"\n" if trailing_newline else b""
    seen = []
    with pytest.raises(RateLimited):
        for event in parse_frames([data]):
            seen.append(event)
    assert text_of(seen) == "partial"


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        ({"code": 13, "message": "internal"}, UpstreamBroken),
        ({"code": 3, "message": "You are a blocked-user"}, InvalidCredentials),
        ({"message": "rate limit exceeded"}, RateLimited),
    ],
)
def test_top_level_error_lines_are_classified(error, cls):
    with pytest.raises(cls):
        events(ndjson({"error": error}))


@pytest.mark.parametrize(
    ("stream_error", "cls"),
    [
        ({"code": 7, "message": "Request rejected by anti-bot rules."}, AntiBotRejected),
        ({"message": "You've reached your usage quota"}, RateLimited),
        ({"message": "model crashed"}, UpstreamBroken),
    ],
)
def test_model_response_stream_errors_raise(stream_error, cls):
    data = ndjson(
        resp(token="a", responseId="r1"),
        resp(modelResponse={"responseId": "r1", "message": "a", "streamErrors": [stream_error]}),
    )
    with pytest.raises(cls):
        events(data)


def test_stream_without_an_end_is_truncated():
    data = ndjson(resp(token="half an ans", messageTag="final", responseId="r1"))
    with pytest.raises(UpstreamBroken, match="truncated"):
        events(data)
    with pytest.raises(UpstreamBroken, match="truncated"):
        events(b"")


def test_incremental_parser_returns_events_as_frames_complete():
    parser = FrameParser()
    line = ndjson(resp(token="hi", responseId="r1"))
    assert parser.feed(line[:10]) == []
    assert parser.feed(line[10:]) == [ReplyStarted("r1"), TextDelta("hi")]
    assert parser.feed(ndjson(END)) == [StreamEnd()]
    assert list(parser.finish()) == []
