"""Hostile input the fuzz battery found: each is a clear 400 naming the field, never a 500."""

from __future__ import annotations

import json

import pytest

from conftest import ADMIN_PASSWORD, POOL_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_PASSWORD}"}


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()["error"]


@pytest.mark.parametrize("page", ["99999999999999999999", "92233720368547758", "1000000001"])
def test_a_page_past_any_offset_is_a_400_naming_page(client, page):
    for response in (
        client.get(f"/api/get-grok-list?page={page}", headers=ADMIN),
        client.post("/api/get-grok-list", json={"page": int(page)}, headers=ADMIN),
    ):
        error = error_of(response, 400)
        assert error["param"] == "page" and "page" in error["message"]


def test_the_last_allowed_page_is_an_empty_page(client):
    response = client.get("/api/get-grok-list?page=1000000000&page_size=100", headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["data"] == []


POOL = {"Authorization": f"Bearer {POOL_KEY}"}


@pytest.fixture
def chat_client(emu_app, add_accounts):
    app = emu_app()
    add_accounts(app, ["emu-good-account-hardening-1"])
    return app.test_client()


def post_chat(client, body: dict):
    """POST a chat body as ASCII JSON: lone surrogates travel as `\\udXXX` escapes."""
    return client.post(
        "/v1/chat/completions", data=json.dumps(body), content_type="application/json", headers=POOL
    )


def ask(content, **extra) -> dict:
    return {"model": "grok-3", "messages": [{"role": "user", "content": content}], **extra}


@pytest.mark.parametrize("field", ["conversation_id", "parent_message_id"])
@pytest.mark.parametrize("value", ["\ud800", "abc\u0000def", "line\nbreak"])
def test_an_id_with_unstorable_characters_is_a_400_naming_it(chat_client, field, value):
    response = post_chat(chat_client, ask("hi", **{field: value}))
    error = error_of(response, 400)
    assert error["param"] == field and "printable" in error["message"]


@pytest.mark.parametrize(
    "content",
    [
        "hi \ud800 there",
        "hi \u0000 there",
        [{"type": "text", "text": "x\udfffy"}],
        [{"type": "text", "text": "hello"}, {"type": "text", "text": "\u0000"}],
    ],
)
def test_message_text_with_nul_or_a_lone_surrogate_is_a_400_naming_messages(chat_client, content):
    response = post_chat(chat_client, ask(content))
    error = error_of(response, 400)
    assert error["param"] == "messages" and "surrogate" in error["message"]


def test_a_system_message_with_a_lone_surrogate_is_refused_too(chat_client):
    body = ask("hi")
    body["messages"].insert(0, {"role": "system", "content": "be \ud83d nice"})
    error = error_of(post_chat(chat_client, body), 400)
    assert error["param"] == "messages"


def test_paired_surrogates_that_are_one_character_pass(chat_client):
    response = post_chat(chat_client, ask("a smile 😀"))
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/x.png",
        "http://[::1",
        "http://" + "a" * 300 + ".example.com/x.png",
        "https://" + ("abcdefghij." * 25) + "com/x.png",
        "http:///x.png",
        "https://exa..mple.com/x.png",
    ],
)
def test_an_image_url_that_cannot_be_fetched_is_a_400_naming_messages(chat_client, url):
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    response = post_chat(chat_client, ask(content))
    error = error_of(response, 400)
    assert error["param"] == "messages" and "image_url" in error["message"]


def test_batch_add_reports_a_token_with_a_lone_surrogate_and_stores_the_others(emu_app):
    client = emu_app().test_client()
    tokens = [
        "emu-good-batch-token-0001",
        "emu-bad-\ud800-token-x\udfff",
        "emu-good-batch-token-0002",
    ]
    response = client.post(
        "/api/batch-add-grok-token",
        data=json.dumps({"sso_token_list": tokens}),
        content_type="application/json",
        headers=ADMIN,
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert len(answer["email_list"]) == 2
    (failed,) = answer["failed"]
    assert failed["index"] == 1 and failed["code"] == "malformed" and failed["error"]
    assert failed["token_preview"] == "emu-ba…n-x?"
    listed = client.get("/api/get-grok-list", headers=ADMIN).get_json()
    assert listed["total"] == 2
