"""Validation of chat completion bodies: every real client shape in, clear errors out."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import ValidationError

from grokproxy.schemas import ChatRequest, load_chat_request


def body(**overrides: Any) -> dict[str, Any]:
    """A minimal valid body, with overrides."""
    payload: dict[str, Any] = {"model": "grok-3", "messages": [{"role": "user", "content": "hi"}]}
    payload.update(overrides)
    return payload


def errors_of(payload: Any) -> dict[str, Any]:
    """The `err.messages` that loading `payload` raises."""
    with pytest.raises(ValidationError) as info:
        load_chat_request(payload)
    messages = info.value.messages
    assert isinstance(messages, dict)
    return messages


# -- accepted shapes ------------------------------------------------------------------------------


def test_minimal_request_loads_into_dataclass_with_defaults():
    request = load_chat_request(body())
    assert request == ChatRequest(
        model="grok-3",
        messages=[{"role": "user", "content": "hi"}],
        stream=False,
        include_usage=False,
        conversation_id=None,
        parent_message_id=None,
    )


def test_extra_openai_fields_are_accepted_and_ignored():
    request = load_chat_request(
        body(
            temperature=0.2,
            max_tokens=100,
            user="lobe-user-1",
            tools=[{"type": "function", "function": {"name": "f"}}],
            tool_choice="auto",
            n=1,
            response_format={"type": "text"},
        )
    )
    assert request.model == "grok-3"


def test_extra_message_fields_are_dropped():
    request = load_chat_request(
        body(
            messages=[
                {"role": "user", "content": "hi", "name": "alice"},
                {"role": "assistant", "content": "yo", "reasoning_content": "thought"},
                {"role": "user", "content": "again"},
            ]
        )
    )
    assert request.messages[0] == {"role": "user", "content": "hi"}
    assert request.messages[1] == {"role": "assistant", "content": "yo"}


def test_stream_and_include_usage_are_read():
    request = load_chat_request(body(stream=True, stream_options={"include_usage": True}))
    assert request.stream is True
    assert request.include_usage is True


def test_null_stream_options_means_no_usage():
    request = load_chat_request(body(stream=True, stream_options=None))
    assert request.include_usage is False


def test_conversation_and_parent_ids_are_kept():
    request = load_chat_request(body(conversation_id="c-1", parent_message_id="r-9"))
    assert (request.conversation_id, request.parent_message_id) == ("c-1", "r-9")


def test_developer_role_is_accepted():
    request = load_chat_request(
        body(
            messages=[
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": "x"},
            ]
        )
    )
    assert request.messages[0]["role"] == "developer"


def test_assistant_content_may_be_null_or_missing():
    request = load_chat_request(
        body(
            messages=[
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
                {"role": "assistant"},
                {"role": "tool", "content": "20C", "tool_call_id": "1"},
            ]
        )
    )
    assert request.messages[1]["content"] is None
    assert request.messages[2]["content"] is None


def test_content_parts_are_normalised():
    request = load_chat_request(
        body(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                        {"type": "image_url", "image_url": "data:image/png;base64,aGk="},
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://x.test/b.png", "detail": "high"},
                        },
                    ],
                }
            ]
        )
    )
    assert request.messages[0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": None}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk=", "detail": None}},
        {"type": "image_url", "image_url": {"url": "https://x.test/b.png", "detail": "high"}},
    ]


def test_image_only_user_message_counts_as_content():
    request = load_chat_request(
        body(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a"}}],
                }
            ]
        )
    )
    assert len(request.messages) == 1


def test_assistant_refusal_part_reads_as_text():
    request = load_chat_request(
        body(
            messages=[
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
                {"role": "user", "content": "b"},
            ]
        )
    )
    assert request.messages[1]["content"] == [{"type": "text", "text": "no"}]


# -- rejected shapes ------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [[], "hello", None, 3])
def test_non_object_body_is_rejected(payload):
    assert errors_of(payload) == {"_schema": ["The request body must be a JSON object."]}


def test_missing_model_is_rejected():
    assert errors_of({"messages": [{"role": "user", "content": "hi"}]}) == {
        "model": ["The model to use is required."]
    }


@pytest.mark.parametrize("model", ["", "   "])
def test_blank_model_is_rejected(model):
    assert errors_of(body(model=model)) == {"model": ["Must be a non-empty model name."]}


def test_model_must_be_a_string():
    assert "model" in errors_of(body(model=3))


def test_missing_messages_are_rejected():
    assert errors_of({"model": "grok-3"}) == {"messages": ["A list of messages is required."]}


def test_empty_messages_are_rejected():
    assert errors_of(body(messages=[])) == {"messages": ["Must contain at least one message."]}


def test_messages_must_be_a_list():
    assert errors_of(body(messages="hi")) == {"messages": ["Must be a list of message objects."]}


def test_message_must_be_an_object():
    errors = errors_of(body(messages=["hi", {"role": "user", "content": "x"}]))
    assert errors == {
        "messages": {0: {"_schema": ["Each message must be an object with 'role' and 'content'."]}}
    }


def test_unknown_role_is_rejected():
    errors = errors_of(body(messages=[{"role": "bot", "content": "x"}]))
    assert "Must be one of" in errors["messages"][0]["role"][0]


def test_missing_role_is_rejected():
    errors = errors_of(body(messages=[{"content": "x"}, {"role": "user", "content": "y"}]))
    assert errors == {"messages": {0: {"role": ["Every message needs a 'role'."]}}}


def test_null_user_content_is_rejected():
    errors = errors_of(body(messages=[{"role": "user", "content": None}]))
    assert errors["messages"][0]["content"] == [
        "Content is required (null is allowed only for assistant messages)."
    ]


def test_content_of_wrong_type_is_rejected():
    errors = errors_of(body(messages=[{"role": "user", "content": 42}]))
    assert errors["messages"][0]["content"] == ["Must be a string or a list of content parts."]


def test_no_user_message_is_rejected():
    errors = errors_of(body(messages=[{"role": "system", "content": "you are grok"}]))
    assert errors == {"messages": ["At least one user message with non-empty content is required."]}


def test_blank_user_message_is_rejected():
    errors = errors_of(body(messages=[{"role": "user", "content": "  "}]))
    assert errors == {"messages": ["At least one user message with non-empty content is required."]}


@pytest.mark.parametrize("part_type", ["input_audio", "file", "video_url"])
def test_unsupported_part_types_are_rejected_by_name(part_type):
    errors = errors_of(
        body(messages=[{"role": "user", "content": [{"type": part_type, part_type: {}}]}])
    )
    assert errors["messages"][0]["content"] == {
        0: [f"Content part type {part_type!r} is not supported; use 'text' or 'image_url'."]
    }


def test_part_without_type_is_rejected():
    errors = errors_of(body(messages=[{"role": "user", "content": [{"text": "x"}]}]))
    assert errors["messages"][0]["content"] == {
        0: ["Content part must be an object with a 'type'."]
    }


def test_text_part_needs_string_text():
    errors = errors_of(body(messages=[{"role": "user", "content": [{"type": "text", "text": 1}]}]))
    assert errors["messages"][0]["content"] == {0: ["Text part needs a string 'text'."]}


def test_image_part_needs_url():
    errors = errors_of(
        body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])
    )
    assert "Image part needs" in errors["messages"][0]["content"][0][0]


def test_image_url_with_other_scheme_is_rejected():
    part = {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}
    errors = errors_of(body(messages=[{"role": "user", "content": [part]}]))
    assert errors["messages"][0]["content"] == {
        0: ["image_url.url must be a data: URL or an http(s) URL."]
    }


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_stream_must_be_a_boolean(value):
    assert errors_of(body(stream=value)) == {"stream": ["Must be true or false."]}


def test_include_usage_must_be_a_boolean():
    errors = errors_of(body(stream_options={"include_usage": "1"}))
    assert errors == {"stream_options": {"include_usage": ["Must be true or false."]}}


def test_overlong_conversation_id_is_rejected():
    errors = errors_of(body(conversation_id="c" * 129))
    assert errors == {"conversation_id": ["Must be 1 to 128 characters."]}


def test_parent_message_id_must_be_a_string():
    assert "parent_message_id" in errors_of(body(parent_message_id=5))
