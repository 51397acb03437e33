"""The chat page's own API (/chat/api): each user's stored conversations, over the test client."""

from __future__ import annotations

import json

import pytest

from grokproxy.emulator import content

from conftest import error_of, md5_of

TOKENS = ["emu-history-account-0001", "emu-history-account-0002"]
PAGE = {"X-Chat-Page": "1"}


@pytest.fixture
def site(emu_app, add_accounts, admin_headers):
    """An app with two accounts; `browser(name, token)` signs a new test client in by link."""
    app = emu_app()
    add_accounts(app, TOKENS)
    admin = app.test_client()

    def browser(name: str, token: str = TOKENS[0]):
        body = {"user_name": name, "email_md5": md5_of(token)}
        answer = admin.post("/api/login", json=body, headers=admin_headers).get_json()
        client = app.test_client()
        assert client.get(answer["login_url"]).status_code == 303
        return client, answer["api_key"]

    return app, browser


def chat(
    client, api_key: str, text: str, conversation_id: str | None = None, on_headers=None
) -> dict:
    """One streamed turn as the page sends it; returns its ids, answer and reasoning.

    `on_headers(conversation_id)` runs before the body is read, as the page records the
    question as soon as it knows the conversation.
    """
    body = {"model": "grok-4", "stream": True, "messages": [{"role": "user", "content": text}]}
    if conversation_id:
        body["conversation_id"] = conversation_id
    response = client.post(
        "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {api_key}"},
        buffered=False,
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    if on_headers is not None:
        on_headers(response.headers["X-Conversation-Id"])
    answer, reasoning, message_id = [], [], None
    for line in response.get_data(as_text=True).splitlines():
        if line.startswith("data: {"):
            chunk = json.loads(line[6:])
            message_id = chunk.get("message_id") or message_id
            for choice in chunk.get("choices", []):
                answer.append(choice["delta"].get("content") or "")
                reasoning.append(choice["delta"].get("reasoning_content") or "")
    response.close()  # runs what the server does once the stream is over (grok's title)
    return {
        "conversation_id": response.headers["X-Conversation-Id"],
        "message_id": message_id,
        "content": "".join(answer),
        "reasoning": "".join(reasoning),
    }


def turn(text: str, reply: dict) -> list[dict]:
    return [
        {"role": "user", "content": text, "image_count": 1},
        {
            "role": "assistant",
            "content": reply["content"],
            "reasoning": reply["reasoning"],
            "response_id": reply["message_id"],
        },
    ]


def record(client, reply: dict, messages: list[dict], thread_id: int | None = None, **extra):
    body = {"conversation_id": reply["conversation_id"], "model": "grok-4", "messages": messages}
    body.update(extra)
    path = "/chat/api/conversations"
    if thread_id:
        path += f"/{thread_id}/messages"
    return client.post(path, json=body, headers=PAGE)


@pytest.mark.usefixtures("transport")
def test_history_survives_another_device_titled_by_grok_or_by_the_first_words(site, emu, transport):
    _, browser = site
    client, key = browser("alice")
    text = "tell me about the tides of the northern sea"
    created = []

    def record_question(conversation_id: str) -> None:
        question = {"role": "user", "content": text, "image_count": 1}
        created.append(record(client, {"conversation_id": conversation_id}, [question]))

    first = chat(client, key, text, on_headers=record_question)
    assert created[0].status_code == 201
    thread = created[0].get_json()
    assert record(client, first, turn(text, first)[1:], thread["id"]).status_code == 200
    # The gateway sends no title, so the first words name it; the HTTP chat sends grok's title
    # at the end of the stream, stored on the conversation the page recorded meanwhile.
    listed = client.get("/chat/api/conversations").get_json()["data"]
    if transport == "gateway":
        assert listed[0]["title"] == "tell me about the tides of…"
        assert listed[0]["title_source"] == "words"
    else:
        assert emu.conversation(first["conversation_id"])["title"] == content.title_for(text)
        assert listed[0]["title"] == content.title_for(text)
        assert listed[0]["title_source"] == "grok"

    second = chat(client, key, "and the moon", first["conversation_id"])
    assert second["conversation_id"] == first["conversation_id"]
    answer = record(client, second, turn("and the moon", second), thread["id"])
    assert answer.status_code == 200

    # Another device of the same user (signed in again by a new link) sees all of it in order.
    other, _ = browser("alice")
    opened = other.get(f"/chat/api/conversations/{thread['id']}").get_json()
    assert [m["role"] for m in opened["messages"]] == ["user", "assistant"] * 2
    assert opened["messages"][0]["content"] == text
    assert opened["messages"][0]["image_count"] == 1
    assert opened["messages"][1]["content"] == first["content"]
    assert "The user asks" in opened["messages"][1]["reasoning"]
    assert opened["messages"][3]["response_id"] == second["message_id"]


def test_newest_first_and_regenerate_replaces_the_last_exchange(site):
    _, browser = site
    client, key = browser("bob")
    old = chat(client, key, "first conversation")
    old_thread = record(client, old, turn("first conversation", old)).get_json()
    new = chat(client, key, "second conversation")
    new_thread = record(client, new, turn("second conversation", new)).get_json()
    titles = [t["title"] for t in client.get("/chat/api/conversations").get_json()["data"]]
    assert titles == ["second conversation", "first conversation"]

    # A turn added to the older one brings it to the top.
    more = chat(client, key, "more", old["conversation_id"])
    record(client, more, turn("more", more), old_thread["id"])
    ids = [t["id"] for t in client.get("/chat/api/conversations").get_json()["data"]]
    assert ids == [old_thread["id"], new_thread["id"]]

    # Regenerating the last answer replaces the last exchange, not the ones before it.
    again = chat(client, key, "more", old["conversation_id"])
    record(client, again, turn("more", again), old_thread["id"], replace_last=True)
    messages = client.get(f"/chat/api/conversations/{old_thread['id']}").get_json()["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["first conversation", "more"]
    assert messages[-1]["response_id"] == again["message_id"] != more["message_id"]


def test_rename_sticks_and_delete_soft_deletes_upstream(site, emu):
    app, browser = site
    client, key = browser("carol")
    reply = chat(client, key, "a conversation to rename")
    thread = record(client, reply, turn("a conversation to rename", reply)).get_json()
    renamed = client.patch(
        f"/chat/api/conversations/{thread['id']}", json={"title": "  My   tides  "}, headers=PAGE
    )
    assert renamed.status_code == 200
    assert renamed.get_json()["title"] == "My tides"
    # grok's title never replaces the user's own.
    from grokproxy import chat_history

    with app.app_context():
        chat_history.note_grok_title(reply["conversation_id"], "Grok's idea")
    listed = client.get("/chat/api/conversations").get_json()["data"]
    assert [(t["title"], t["title_source"]) for t in listed] == [("My tides", "user")]

    deleted = client.delete(f"/chat/api/conversations/{thread['id']}", headers=PAGE)
    assert deleted.get_json() == {"id": thread["id"], "deleted": True, "upstream_deleted": True}
    assert emu.conversation(reply["conversation_id"])["deleted"] is True
    assert client.get("/chat/api/conversations").get_json()["data"] == []
    error_of(client.get(f"/chat/api/conversations/{thread['id']}"), 404)


def test_nobody_reads_files_or_changes_another_persons_conversations(site):
    _, browser = site
    alice, alice_key = browser("alice")
    mallory, _ = browser("mallory", TOKENS[1])
    reply = chat(alice, alice_key, "private things")
    thread = record(alice, reply, turn("private things", reply)).get_json()

    assert mallory.get("/chat/api/conversations").get_json()["data"] == []
    path = f"/chat/api/conversations/{thread['id']}"
    assert error_of(mallory.get(path), 404)["code"] == "conversation_not_found"
    error_of(mallory.patch(path, json={"title": "mine"}, headers=PAGE), 404)
    error_of(mallory.delete(path, headers=PAGE), 404)
    error_of(record(mallory, reply, turn("x", reply), thread["id"]), 404)
    # Nor can alice's upstream conversation be filed under mallory's name.
    refused = error_of(record(mallory, reply, turn("x", reply)), 404)
    assert refused["param"] == "conversation_id"
    assert len(alice.get(path).get_json()["messages"]) == 2


def test_refusals_are_json_errors_a_page_can_show(site, app):
    _, browser = site
    client, key = browser("dave")
    reply = chat(client, key, "hello")
    # Changes need the page's header (a cross-site form cannot send it).
    forbidden = client.post(
        "/chat/api/conversations",
        json={"conversation_id": reply["conversation_id"], "model": "grok-4", "messages": []},
    )
    assert error_of(forbidden, 403)["code"] == "forbidden"
    bad = [
        "not json",
        [],
        {"conversation_id": reply["conversation_id"], "model": "grok-4", "messages": []},
        {"conversation_id": reply["conversation_id"], "model": "grok-4"},
        {"conversation_id": "", "model": "grok-4", "messages": [{"role": "user"}]},
        {"conversation_id": "c", "model": "m", "messages": [{"role": "system", "content": "x"}]},
        {"conversation_id": "c", "model": "m", "messages": [{"role": "user", "image_count": -1}]},
    ]
    for body in bad:
        data = body if isinstance(body, str) else json.dumps(body)
        response = client.post(
            "/chat/api/conversations",
            data=data,
            headers={**PAGE, "Content-Type": "application/json"},
        )
        assert error_of(response, 400)["message"], body
    thread = record(client, reply, turn("hello", reply)).get_json()
    for title in ("", "   ", "x" * 201, None):
        response = client.patch(
            f"/chat/api/conversations/{thread['id']}", json={"title": title}, headers=PAGE
        )
        error_of(response, 400)
    # Signed out: 401 in JSON, never the sign-in page's redirect.
    client.post("/logout")
    assert error_of(client.get("/chat/api/conversations"), 401)["code"] == "signed_out"
    assert error_of(app.test_client().get("/chat/api/models"), 401)["code"] == "signed_out"


def test_models_for_the_picker_default_to_the_newest_generation(site):
    _, browser = site
    client, _ = browser("erin")
    data = client.get("/chat/api/models").get_json()
    assert data["default"] == "grok-auto"
    described = {m["id"]: m["description"] for m in data["data"]}
    assert described["grok-2"] == "Fast mode"
    assert described["grok-4"] == "Thinks first, expert mode"
    assert described["grok-3-deepersearch"] == "Deeper search, thinks first, expert mode"
