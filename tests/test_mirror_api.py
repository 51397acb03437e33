"""MIRROR_API_PREFIX hides the OpenAI API under a secret path; ENABLE_MIRROR_API=false turns it
off for API clients and leaves the chat page and the admin API."""

from __future__ import annotations

import pytest

from conftest import CHAT, POOL_KEY, md5_of

TOKEN = "emu-mirror-api-account-0001"
PREFIX = "/k3y-9f2c"
KEY = {"Authorization": f"Bearer {POOL_KEY}"}


@pytest.fixture
def site(emu_app, add_accounts, admin_headers):
    """Factory: an app with one account; returns (client, login()) for the given settings."""

    def build(**settings):
        app = emu_app(**settings)
        add_accounts(app, [TOKEN])
        client = app.test_client()

        def login() -> dict:
            answer = client.post(
                "/api/login",
                json={"user_name": "mirror-user", "email_md5": md5_of(TOKEN)},
                headers=admin_headers,
            )
            assert answer.status_code == 200
            return answer.get_json()

        return client, login

    return build


def unknown_route(client):
    """What any URL nothing serves answers."""
    return client.get("/no-such-route-anywhere")


def test_the_api_answers_under_its_prefix_and_not_at_the_bare_paths(site):
    client, _ = site(MIRROR_API_PREFIX=PREFIX)
    served = client.post(f"{PREFIX}/v1/chat/completions", json=CHAT, headers=KEY, buffered=True)
    assert served.status_code == 200
    assert served.get_json()["object"] == "chat.completion"
    assert client.get(f"{PREFIX}/v1/models", headers=KEY).status_code == 200
    assert client.get(f"{PREFIX}/models/grok-3", headers=KEY).status_code == 200
    nothing = unknown_route(client)
    for method, path in (
        ("POST", "/v1/chat/completions"),
        ("POST", "/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/models"),
        ("GET", "/v1/chat/completions"),  # the wrong method says nothing either
        ("OPTIONS", "/v1/chat/completions"),
    ):
        hidden = client.open(path, method=method, json=CHAT, headers=KEY)
        assert hidden.status_code == 404, (method, path)
        assert hidden.get_json() == nothing.get_json()
        assert "Access-Control-Allow-Origin" not in hidden.headers
    # Only API paths live under the prefix; the admin API and health stay where they are.
    assert client.get(f"{PREFIX}/healthz").status_code == 404
    assert client.get("/healthz").status_code == 200


def test_nothing_public_reveals_the_prefix(site):
    client, _ = site(MIRROR_API_PREFIX=PREFIX)
    for path in ("/", "/healthz", "/openapi.json", "/docs", "/login", "/v1/models", "/chat"):
        answer = client.get(path, follow_redirects=True)
        assert PREFIX.strip("/") not in answer.get_data(as_text=True), path
        assert all(PREFIX.strip("/") not in value for _, value in answer.headers), path


def test_the_signed_in_chat_page_is_told_the_prefix(site):
    client, login = site(MIRROR_API_PREFIX=PREFIX)
    assert client.get(login()["login_url"]).status_code == 303
    page = client.get("/chat")
    assert page.status_code == 200
    assert f'data-api-prefix="{PREFIX}"' in page.get_data(as_text=True)


def test_without_a_prefix_the_chat_page_gets_an_empty_one(site):
    client, login = site()
    client.get(login()["login_url"])
    assert 'data-api-prefix=""' in client.get("/chat").get_data(as_text=True)


def test_a_disabled_api_answers_api_clients_404_and_keeps_chat_page_and_admin_api(site):
    client, login = site(ENABLE_MIRROR_API=False)
    nothing = unknown_route(client).get_json()
    for path in ("/v1/models", "/models"):
        refused = client.get(path, headers=KEY)
        assert refused.status_code == 404 and refused.get_json() == nothing
    refused = client.post("/v1/chat/completions", json=CHAT, headers=KEY)
    assert refused.status_code == 404
    # The admin API still answers (login is one of its routes) ...
    answer = login()
    # ... and the signed-in chat page's own calls, which carry the session, are served.
    client.get(answer["login_url"])
    own_key = {"Authorization": f"Bearer {answer['api_key']}"}
    assert client.get("/chat").status_code == 200
    assert client.get("/v1/models", headers=own_key).status_code == 200
    served = client.post("/v1/chat/completions", json=CHAT, headers=own_key, buffered=True)
    assert served.status_code == 200
    # Signed out, the same key is an API client again.
    client.post("/logout")
    assert client.get("/v1/models", headers=own_key).status_code == 404


def test_the_prefix_must_be_a_plain_path(make_app):
    from grokproxy.config import ConfigError, load_config

    assert load_config({"MIRROR_API_PREFIX": "k3y/"})["MIRROR_API_PREFIX"] == "/k3y"
    assert load_config({"MIRROR_API_PREFIX": " "})["MIRROR_API_PREFIX"] is None
    for bad in ("/a b", "/../x", "/k?y", "/%2e"):
        with pytest.raises(ConfigError) as raised:
            load_config({"MIRROR_API_PREFIX": bad})
        assert bad not in str(raised.value)  # a secret: named, never echoed
