"""OpenAI translation: messages -> grok prompt, grok events -> chat completion chunks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

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
from grokproxy.openai import (
    SSE_DONE,
    SSE_KEEPALIVE,
    CompletionBuilder,
    ImageInput,
    decode_data_url,
    estimate_tokens,
    flatten_messages,
    last_user_message,
    sse,
    strip_echoed_reasoning,
)


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": None}}


def builder(**kwargs: Any) -> CompletionBuilder:
    options: dict[str, Any] = {
        "model": "grok-3",
        "thinking_format": "reasoning_content",
        "image_url": lambda path: f"https://proxy.test/images/{path}",
        "include_usage": False,
        "prompt_text": "hello",
    }
    options.update(kwargs)
    return CompletionBuilder(**options)


def run(b: CompletionBuilder, events: list[GrokEvent]) -> list[dict[str, Any]]:
    """The whole stream for `events`: start, every event's chunks, finish."""
    chunks = [b.start()]
    for event in events:
        chunks += b.feed(event)
    return chunks + b.finish()


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def streamed(chunks: list[dict[str, Any]], key: str) -> str:
    return "".join(d.get(key) or "" for d in deltas(chunks))


THINKING_REPLY: list[GrokEvent] = [
    ConversationStarted("conv-1", title="New conversation"),
    UserTurn("user-resp-1"),
    ReplyStarted("resp-1"),
    ModelInfo(model_hash="hash-abc"),
    ThinkingDelta("Let me think."),
    TextDelta("The answer"),
    TextDelta(" is 42."),
    StreamEnd(),
    ReplyFinished("resp-1", "The answer is 42.", parent_response_id="user-resp-1"),
    TitleChanged("Answers"),
]


# -- flattening -----------------------------------------------------------------------------------


def test_single_user_message_goes_up_bare():
    assert flatten_messages([user("  hi there ")]).text == "hi there"


def test_history_is_role_tagged_with_system_first_and_last_user_last():
    prompt = flatten_messages(
        [
            user("first question"),
            assistant("first answer"),
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Answer in English."},
            user("second question"),
        ]
    )
    assert prompt.text == (
        "[system]: You are terse.\n\n"
        "[system]: Answer in English.\n\n"
        "[user]: first question\n\n"
        "[assistant]: first answer\n\n"
        "[user]: second question"
    )


def test_last_user_message_is_moved_after_a_trailing_assistant_turn():
    prompt = flatten_messages([user("q"), assistant("partial")])
    assert prompt.text == "[assistant]: partial\n\n[user]: q"


def test_tool_results_are_tagged_and_empty_turns_skipped():
    prompt = flatten_messages(
        [
            user("weather?"),
            assistant(None),
            {"role": "tool", "content": "20C"},
            user("thanks"),
        ]
    )
    assert prompt.text == (
        "[user]: weather?\n\n"
        '[tool]: <tool_result>{"content": "20C"}</tool_result>\n\n'
        "[user]: thanks"
    )


def test_text_parts_are_joined_by_newlines():
    prompt = flatten_messages(
        [user([{"type": "text", "text": "line one"}, {"type": "text", "text": "line two"}])]
    )
    assert prompt.text == "line one\nline two"


def test_echoed_think_block_is_stripped_from_assistant_turns():
    prompt = flatten_messages(
        [user("a"), assistant("<think>\nsecret plan\n</think>\n\nvisible"), user("b")]
    )
    assert prompt.text == "[user]: a\n\n[assistant]: visible\n\n[user]: b"


def test_open_webui_details_reasoning_is_stripped():
    echoed = (
        '<details type="reasoning" done="true" duration="3">\n'
        "<summary>Thought for 3 seconds</summary>\n> pondering\n</details>\nreal answer"
    )
    assert strip_echoed_reasoning(echoed) == "real answer"


def test_other_details_blocks_are_kept():
    text = "<details><summary>Spoiler</summary>hidden</details>"
    assert strip_echoed_reasoning(text) == text


def test_unclosed_think_block_is_all_reasoning():
    assert strip_echoed_reasoning("<think>cut off mid-thought") == ""


def test_think_tags_in_user_messages_are_left_alone():
    prompt = flatten_messages([user("explain <think>tags</think> please")])
    assert prompt.text == "explain <think>tags</think> please"


def test_assistant_turn_that_was_only_reasoning_disappears():
    prompt = flatten_messages([user("a"), assistant("<think>only</think>"), user("b")])
    assert prompt.text == "[user]: a\n\n[user]: b"


def test_quoted_thinking_is_kept_because_it_looks_like_a_quote():
    prompt = flatten_messages([user("a"), assistant("> maybe thinking\n\nanswer"), user("b")])
    assert "[assistant]: > maybe thinking\n\nanswer" in prompt.text


def test_images_from_all_turns_are_attached_in_order():
    prompt = flatten_messages(
        [
            user([{"type": "text", "text": "look"}, image_part("https://x.test/1.png")]),
            assistant("nice"),
            user([image_part("data:image/png;base64,aGVsbG8="), {"type": "text", "text": "and"}]),
        ]
    )
    assert prompt.images == [
        ImageInput(url="https://x.test/1.png"),
        ImageInput(data=b"hello", mime_type="image/png"),
    ]
    assert prompt.text.endswith("[user]: and")


def test_bare_string_image_url_is_accepted():
    prompt = flatten_messages([user([{"type": "image_url", "image_url": "https://x.test/a"}])])
    assert prompt.images == [ImageInput(url="https://x.test/a")]


def test_last_user_message_sends_only_the_newest_turn():
    prompt = last_user_message(
        [
            {"role": "system", "content": "sys"},
            user([{"type": "text", "text": "old"}, image_part("https://x.test/old.png")]),
            assistant("reply"),
            user([{"type": "text", "text": " new "}, image_part("https://x.test/new.png")]),
        ]
    )
    assert prompt.text == "new"
    assert prompt.images == [ImageInput(url="https://x.test/new.png")]


def test_flatten_without_user_message_raises():
    with pytest.raises(ValueError):
        flatten_messages([{"role": "system", "content": "sys"}])


# -- data URLs ------------------------------------------------------------------------------------


def test_data_url_base64_is_decoded_with_mime():
    image = decode_data_url("data:image/JPEG;base64,/9j/4AAQ")
    assert image == ImageInput(data=b"\xff\xd8\xff\xe0\x00\x10", mime_type="image/jpeg")


def test_data_url_tolerates_missing_padding_and_line_breaks():
    assert decode_data_url("data:image/png;base64,aGVs\nbG8").data == b"hello"


def test_data_url_without_base64_is_percent_decoded():
    assert decode_data_url("data:text/plain,hi%20there").data == b"hi there"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("data:image/png;base64", "no ','"),
        ("data:image/png;base64,***", "base64 data is invalid"),
        ("data:image/png;base64,", "carries no data"),
    ],
)
def test_malformed_data_url_raises_value_error(url, reason):
    with pytest.raises(ValueError, match=reason):
        decode_data_url(url)


def test_malformed_data_url_in_messages_raises_value_error():
    with pytest.raises(ValueError, match="malformed data URL"):
        flatten_messages([user([image_part("data:image/png;base64,@@@")])])


def test_image_url_with_unsupported_scheme_raises_value_error():
    with pytest.raises(ValueError, match="http"):
        flatten_messages([user([image_part("ftp://x.test/a.png")])])


# -- SSE framing and token estimate ---------------------------------------------------------------


def test_sse_is_compact_utf8_json_data_line():
    assert sse({"a": "é 中", "b": [1, 2]}) == 'data: {"a":"é 中","b":[1,2]}\n\n'.encode()


def test_sse_escapes_newlines_inside_strings():
    frame = sse({"t": "line1\n\nline2"})
    assert frame.count(b"\n\n") == 1
    assert json.loads(frame[6:]) == {"t": "line1\n\nline2"}


def test_sse_constants_have_no_id_or_event_lines():
    assert SSE_DONE == b"data: [DONE]\n\n"
    assert SSE_KEEPALIVE == b": keep-alive\n\n"


def test_estimate_tokens_counts_cjk_per_character_and_latin_per_four():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("你好世界") == 4
    assert estimate_tokens("你好 abcd") == 2 + 2


# -- stream envelope ------------------------------------------------------------------------------


def test_every_chunk_has_the_full_envelope_and_validates_with_the_sdk():
    b = builder(include_usage=True)
    chunks = run(b, THINKING_REPLY)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert len({c["created"] for c in chunks}) == 1
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert isinstance(chunk["created"], int)
        assert chunk["model"] == "grok-3"
        # Always present: null until grok names its model, then its hash.
        assert "system_fingerprint" in chunk
        for choice in chunk["choices"]:
            assert choice.keys() == {"index", "delta", "logprobs", "finish_reason"}
            assert choice["logprobs"] is None
        ChatCompletionChunk.model_validate(chunk)


def test_first_chunk_is_role_with_empty_content():
    first = builder().start()
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["choices"][0]["finish_reason"] is None


def test_last_choice_chunk_has_finish_reason_stop_and_only_it():
    chunks = run(builder(), THINKING_REPLY)
    reasons = [c["choices"][0]["finish_reason"] for c in chunks]
    assert reasons[-1] == "stop"
    assert reasons[:-1] == [None] * (len(reasons) - 1)


def test_conversation_and_message_ids_appear_once_known():
    b = builder()
    assert "conversation_id" not in b.start()
    chunks = run(b, THINKING_REPLY)
    text_chunk = next(c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content"))
    assert text_chunk["conversation_id"] == "conv-1"
    assert text_chunk["message_id"] == "resp-1"
    assert (b.conversation_id, b.message_id) == ("conv-1", "resp-1")


def test_reply_finished_sets_message_id_without_reply_started():
    b = builder()
    b.feed(ReplyFinished("resp-9", "done"))
    assert b.message_id == "resp-9"


def test_system_fingerprint_comes_from_model_info():
    b = builder()
    assert b.start()["system_fingerprint"] is None
    b.feed(ModelInfo(model_hash="hash-abc", model="grok-4"))
    assert b.feed(TextDelta("x"))[0]["system_fingerprint"] == "hash-abc"


def test_bookkeeping_events_produce_no_chunks():
    b = builder()
    for event in (
        ConversationStarted("c"),
        UserTurn("u"),
        ReplyStarted("r"),
        ModelInfo("h"),
        TitleChanged("t"),
        StreamEnd(),
    ):
        assert b.feed(event) == []


def test_empty_text_delta_produces_no_chunk():
    assert builder().feed(TextDelta("")) == []


# -- usage ----------------------------------------------------------------------------------------


def test_usage_chunk_only_when_asked():
    chunks = run(builder(include_usage=False), THINKING_REPLY)
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)


def test_usage_chunk_is_last_with_empty_choices():
    chunks = run(builder(include_usage=True, prompt_text="abcdefgh"), THINKING_REPLY)
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": estimate_tokens("The answer is 42.")
        + estimate_tokens("Let me think."),
        "total_tokens": 2 + estimate_tokens("The answer is 42.") + estimate_tokens("Let me think."),
        "completion_tokens_details": {"reasoning_tokens": estimate_tokens("Let me think.")},
    }
    assert all(c["usage"] is None for c in chunks[:-1])
    ChatCompletionChunk.model_validate(last)


def test_finish_is_emitted_once():
    b = builder()
    assert b.finish()
    assert b.finish() == []


# -- thinking formats -----------------------------------------------------------------------------


def test_reasoning_content_format_streams_thinking_separately():
    chunks = run(builder(thinking_format="reasoning_content"), THINKING_REPLY)
    assert streamed(chunks, "reasoning_content") == "Let me think."
    assert streamed(chunks, "content") == "The answer is 42."


def test_content_and_reasoning_never_share_a_delta():
    events = [ThinkingDelta("a"), TextDelta("b"), ThinkingDelta("c"), ToolStep("web_search")]
    for fmt in ("reasoning_content", "think_tags", "hidden"):
        for delta in deltas(run(builder(thinking_format=fmt), events)):
            assert not (delta.get("content") and delta.get("reasoning_content"))


def test_think_tags_open_and_close_in_their_own_chunks():
    chunks = run(builder(thinking_format="think_tags"), THINKING_REPLY)
    contents = [d.get("content") for d in deltas(chunks)]
    assert contents[1] == "<think>\n"
    close = contents.index("\n</think>")
    assert contents[2:close] == ["Let me think."]
    assert contents[close + 1].startswith("\n\nThe answer")
    assert all("reasoning_content" not in d for d in deltas(chunks))
    assert streamed(chunks, "content") == "<think>\nLet me think.\n</think>\n\nThe answer is 42."


def test_think_tags_closed_at_finish_when_no_answer_followed():
    chunks = run(builder(thinking_format="think_tags"), [ThinkingDelta("hmm")])
    assert streamed(chunks, "content") == "<think>\nhmm\n</think>"


def test_think_tags_drop_thinking_after_the_answer_started():
    events = [TextDelta("answer"), ThinkingDelta("late thought"), TextDelta(" more")]
    chunks = run(builder(thinking_format="think_tags"), events)
    assert streamed(chunks, "content") == "answer more"


def test_hidden_format_drops_thinking_but_counts_it_in_usage():
    b = builder(thinking_format="hidden", include_usage=True)
    chunks = run(b, THINKING_REPLY)
    assert streamed(chunks, "content") == "The answer is 42."
    assert all("reasoning_content" not in d for d in deltas(chunks))
    reasoning_tokens = estimate_tokens("Let me think.")
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == reasoning_tokens


def test_unknown_thinking_format_is_refused():
    with pytest.raises(ValueError):
        builder(thinking_format="reasoning")


# -- deep search ----------------------------------------------------------------------------------


def test_tool_step_is_a_readable_reasoning_line():
    b = builder()
    b.feed(ThinkingDelta("Searching."))
    chunks = b.feed(ToolStep("web_search", {"query": "latest AI news"}))
    assert deltas(chunks) == [{"reasoning_content": "\n\nweb_search: latest AI news\n\n"}]


def test_tool_step_without_arguments_shows_its_name():
    chunks = builder().feed(ToolStep("browse_page"))
    assert deltas(chunks) == [{"reasoning_content": "browse_page\n\n"}]


def test_search_results_are_listed_as_a_few_links_in_reasoning():
    results = tuple(SearchResult(f"https://s.test/{i}", title=f"Result [{i}]") for i in range(8))
    chunks = builder().feed(SearchResults(results))
    text = streamed(chunks, "reasoning_content")
    lines = text.strip().splitlines()
    assert lines[0] == "- [Result (0)](https://s.test/0)"
    assert len(lines) == 5
    assert "<" not in text


def test_search_result_without_title_shows_its_url():
    chunks = builder().feed(SearchResults((SearchResult("https://s.test/x"),)))
    assert streamed(chunks, "reasoning_content").strip() == "- [https://s.test/x](https://s.test/x)"


def test_empty_search_results_produce_no_chunk():
    assert builder().feed(SearchResults(())) == []


def test_citation_becomes_markdown_link_in_content():
    b = builder()
    b.feed(TextDelta("Grok is a model"))
    chunks = b.feed(Citation(1, "https://x.ai/news", title="xAI news"))
    assert deltas(chunks) == [{"content": " [[1]](https://x.ai/news)"}]


def test_citation_becomes_url_citation_annotation_pointing_at_the_link():
    b = builder(thinking_format="think_tags")
    for event in (ThinkingDelta("t"), TextDelta("Grok"), Citation(2, "https://x.ai", "xAI")):
        b.feed(event)
    message = b.completion()["choices"][0]["message"]
    annotation = message["annotations"][0]
    assert annotation["type"] == "url_citation"
    span = annotation["url_citation"]
    assert message["content"][span["start_index"] : span["end_index"]] == "[[2]](https://x.ai)"
    assert span["title"] == "xAI"


# -- images ---------------------------------------------------------------------------------------


def test_generated_image_becomes_markdown_image_served_by_grokproxy():
    chunks = builder().feed(ImageGenerated("users/u1/generated/img.jpg"))
    assert streamed(chunks, "content") == (
        "![image](https://proxy.test/images/users/u1/generated/img.jpg)\n\n"
    )


def test_generated_image_is_shown_once_even_if_reply_finished_repeats_it():
    b = builder()
    events: list[GrokEvent] = [
        TextDelta("Here you go."),
        ImageGenerated("a.jpg"),
        ReplyFinished("r", "Here you go.", generated_image_paths=("a.jpg", "b.jpg")),
    ]
    content = streamed(run(b, events), "content")
    assert content.count("a.jpg") == 1
    assert content.count("b.jpg") == 1
    assert content.startswith("Here you go.\n\n![image](")


def test_image_progress_gives_one_reasoning_line_per_image():
    b = builder()
    first = b.feed(ImageProgress("img-1", 10))
    assert streamed(first, "reasoning_content").strip() == "Generating image…"
    assert b.feed(ImageProgress("img-1", 50)) == []
    assert b.feed(ImageProgress("img-2", 5))


# -- reply finished fallback ----------------------------------------------------------------------


def test_reply_finished_message_is_the_answer_when_no_text_streamed():
    chunks = run(builder(), [ReplyFinished("r", "Full answer.")])
    assert streamed(chunks, "content") == "Full answer."


def test_reply_finished_message_is_ignored_after_streamed_text():
    chunks = run(builder(), THINKING_REPLY)
    assert streamed(chunks, "content") == "The answer is 42."


def test_reply_finished_fallback_never_leaks_grok_markup():
    message = (
        'Fact<grok:render card_id="c1" card_type="citation_card" type="render_inline_citation">'
        '<argument name="citation_id">1</argument></grok:render>.'
    )
    chunks = run(builder(), [ReplyFinished("r", message)])
    assert streamed(chunks, "content") == "Fact."


# -- non-stream completion ------------------------------------------------------------------------


def test_completion_has_every_openai_field_and_validates_with_the_sdk():
    b = builder(prompt_text="hello world")
    for event in THINKING_REPLY:
        b.feed(event)
    completion = b.completion()
    ChatCompletion.model_validate(completion)
    assert completion["id"].startswith("chatcmpl-")
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "grok-3"
    assert completion["system_fingerprint"] == "hash-abc"
    assert (completion["conversation_id"], completion["message_id"]) == ("conv-1", "resp-1")
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    assert choice["message"] == {
        "role": "assistant",
        "content": "The answer is 42.",
        "reasoning_content": "Let me think.",
        "refusal": None,
        "annotations": [],
    }
    usage = completion["usage"]
    assert usage["prompt_tokens"] == estimate_tokens("hello world")
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == estimate_tokens(
        "Let me think."
    )


def test_completion_ids_are_null_when_upstream_never_sent_them():
    b = builder()
    b.feed(TextDelta("x"))
    completion = b.completion()
    assert completion["conversation_id"] is None
    assert completion["message_id"] is None


def test_completion_in_think_tags_mode_puts_the_block_in_content():
    b = builder(thinking_format="think_tags")
    for event in THINKING_REPLY:
        b.feed(event)
    message = b.completion()["choices"][0]["message"]
    assert message["content"] == "<think>\nLet me think.\n</think>\n\nThe answer is 42."
    assert "reasoning_content" not in message


def test_completion_in_hidden_mode_has_no_reasoning():
    b = builder(thinking_format="hidden")
    for event in THINKING_REPLY:
        b.feed(event)
    message = b.completion()["choices"][0]["message"]
    assert message["content"] == "The answer is 42."
    assert "reasoning_content" not in message


def test_completion_reasoning_is_null_without_thinking():
    b = builder()
    b.feed(TextDelta("x"))
    assert b.completion()["choices"][0]["message"]["reasoning_content"] is None


def test_stream_and_completion_agree_on_content():
    b = builder()
    events: list[GrokEvent] = [
        TextDelta("A"),
        Citation(1, "https://c.test"),
        ImageGenerated("i.png"),
    ]
    chunks = run(b, events)
    assert b.completion()["choices"][0]["message"]["content"] == streamed(chunks, "content")


# -- errors ---------------------------------------------------------------------------------------


def test_error_chunk_has_the_openai_error_shape():
    chunk = builder().error_chunk(
        {"message": "grok.com rate limited every account", "type": "rate_limit_error", "code": 8}
    )
    assert chunk == {
        "error": {
            "message": "grok.com rate limited every account",
            "type": "rate_limit_error",
            "code": "8",
            "param": None,
        }
    }


def test_error_chunk_accepts_an_already_wrapped_error():
    wrapped = {"error": {"message": "boom", "type": "upstream_error", "code": "upstream_error"}}
    assert builder().error_chunk(wrapped)["error"]["message"] == "boom"


def test_error_chunk_fills_defaults():
    assert builder().error_chunk({}) == {
        "error": {
            "message": "upstream error",
            "type": "upstream_error",
            "code": None,
            "param": None,
        }
    }
