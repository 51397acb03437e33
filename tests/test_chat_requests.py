"""Chat request handling: auth, bad input, failover and error answers (Flask test client)."""

from __future__ import annotations

import pytest

from grokproxy.extensions import db
from grokproxy.models import Account, AccountStatus, Conversation

from conftest import POOL_KEY, error_of, sso_jwt

AUTH = {"Authorization": f"Bearer {POOL_KEY}"}
GOOD = {"model": "grok-3", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def chat(emu_app, add_accounts):
    """Factory: a test client over the emulator with the given pool tokens."""

    def build(tokens=("emu-good-account-0001",), **settings):
        app = emu_app(**settings)
        ids = add_accounts(app, list(tokens))
        return app, app.test_client(), ids

    return build


@pytest.mark.parametrize(
    ("headers", "message"),
    [({}, "missing API key"), ({"Authorization": "Bearer sk-wrong-key-123"}, "invalid API key")],
)
def test_unknown_callers_get_401(chat, headers, message):
    _, client, _ = chat()
    error = error_of(client.post("/v1/chat/completions", json=GOOD, headers=headers), 401)
    assert message in error["message"]
    assert error["type"] == "authentication_error"


def test_models_need_a_key_too(chat):
    _, client, _ = chat()
    error_of(client.get("/v1/models"), 401)
    assert client.get("/models", headers=AUTH).status_code == 200


def test_sso_bearer_can_be_switched_off(chat):
    _, client, _ = chat(ALLOW_SSO_BEARER=False)
    headers = {"Authorization": f"Bearer {sso_jwt('emu-my-own-sso-token-1234')}"}
    error_of(client.post("/v1/chat/completions", json=GOOD, headers=headers), 401)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "grok-3", "messages": []}', "messages"),
        (b'{"model": "grok-3", "messages": "hi"}', "messages"),
        (b'{"model": "grok-3", "messages": [{"role": "user", "content": 5}]}', "content"),
        (b'{"model": 3, "messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "grok-3", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}',
         "stream"),
    ],
)  # fmt: skip
def test_bad_bodies_get_a_400_saying_what_is_wrong(chat, body, fragment):
    _, client, _ = chat()
    response = client.post(
        "/v1/chat/completions", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    error = error_of(response, 400)
    assert fragment.lower() in (error["message"] + str(error.get("details"))).lower()
    assert response.headers["x-should-retry"] == "false"


def test_unknown_model_is_a_404_listing_the_models(chat):
    _, client, _ = chat()
    body = {**GOOD, "model": "gpt-4o"}
    error = error_of(client.post("/v1/chat/completions", json=body, headers=AUTH), 404)
    assert error["code"] == "model_not_found" and "grok-3" in error["message"]


def test_a_model_alias_answers_as_its_catalog_entry(chat, emu):
    _, client, _ = chat(GROK_MODEL_ALIASES={"gpt-5": "grok-expert"})
    body = {**GOOD, "model": "gpt-5"}
    answer = client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["model"] == "gpt-5"  # the name the client asked for
    assert answer.get_json()["choices"][0]["message"]["reasoning_content"]  # expert thinks
    (turn,) = emu.requests(path="/ws/mgw/")
    created = [m for m in turn["messages"] if m["event"]["type"] == "session.create"]
    assert created[0]["event"]["session"]["model"] == "expert"
    # An alias is listed among the names an unknown model's 404 offers.
    missing = {**GOOD, "model": "gpt-4o"}
    error = error_of(client.post("/v1/chat/completions", json=missing, headers=AUTH), 404)
    assert "gpt-5" in error["message"]


def test_unknown_openai_fields_are_ignored(chat):
    _, client, _ = chat()
    body = {**GOOD, "temperature": 0.2, "max_tokens": 5, "user": "u1", "tools": [], "n": 1}
    assert client.post("/v1/chat/completions", json=body, headers=AUTH).status_code == 200


def test_oversized_body_is_a_json_413(chat):
    _, client, _ = chat(MAX_REQUEST_BYTES=2048)
    body = {**GOOD, "messages": [{"role": "user", "content": "x" * 5000}]}
    error_of(client.post("/v1/chat/completions", json=body, headers=AUTH), 413)


def test_malformed_data_url_is_a_400(chat):
    _, client, _ = chat()
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]
    body = {
        **GOOD,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, *content]}],
    }
    error_of(client.post("/v1/chat/completions", json=body, headers=AUTH), 400)


def test_first_account_rate_limited_is_answered_by_the_second(chat, emu):
    app, client, (limited, good) = chat(["emu-ratelimited-first-0001", "emu-good-second-0002"])
    response = client.post("/v1/chat/completions", json=GOOD, headers=AUTH)
    assert response.status_code == 200
    assert response.get_json()["choices"][0]["message"]["content"].startswith("Echo")
    with app.app_context():
        # Only the mode asked for (grok-3 is fast) is blocked; the account stays in rotation.
        account = db.session.get(Account, limited)
        assert account.status == AccountStatus.ACTIVE
        assert account.quota["fast"]["remaining"] == 0 and account.quota["fast"]["reset_at"]
        assert db.session.get(Account, good).use_count == 1


def test_invalid_account_is_marked_and_the_next_one_answers(chat):
    app, client, (bad, _) = chat(["emu-invalid-first-0001", "emu-good-second-0002"])
    assert client.post("/v1/chat/completions", json=GOOD, headers=AUTH).status_code == 200
    with app.app_context():
        account = db.session.get(Account, bad)
        assert account.status == AccountStatus.INVALID
        # The reason names the failure kind, then what grok.com said (its code 16 answer).
        assert account.last_error.startswith("invalid_credentials: ")
        assert account.last_error.endswith("(code 16)")


def test_all_accounts_rate_limited_is_a_429_with_retry_after(chat):
    _, client, _ = chat(["emu-ratelimited-a-0001", "emu-ratelimited-b-0002"])
    response = client.post("/v1/chat/completions", json=GOOD, headers=AUTH)
    error = error_of(response, 429)
    assert error["type"] == "rate_limit_error"
    assert int(response.headers["Retry-After"]) >= 1


def test_cloudflare_everywhere_is_a_502_saying_grok_blocked_us(chat):
    app, client, ids = chat(["emu-cloudflare-a-0001", "emu-cloudflare-b-0002"])
    error = error_of(client.post("/v1/chat/completions", json=GOOD, headers=AUTH), 502)
    assert "Cloudflare" in error["message"]
    with app.app_context():  # not the accounts' fault: nobody is marked
        assert {db.session.get(Account, i).status for i in ids} == {AccountStatus.ACTIVE}


def test_antibot_is_a_502_and_changes_no_account(chat):
    app, client, (only,) = chat(["emu-antibot-a-0001"])
    error = error_of(client.post("/v1/chat/completions", json=GOOD, headers=AUTH), 502)
    assert "anti-bot" in error["message"]
    with app.app_context():
        assert db.session.get(Account, only).status == AccountStatus.ACTIVE


def test_attempts_stop_at_max_attempts(chat, emu):
    tokens = [f"emu-invalid-n{i}-000{i}" for i in range(4)]
    _, client, _ = chat(tokens, MAX_ATTEMPTS=2)
    error_of(client.post("/v1/chat/completions", json=GOOD, headers=AUTH), 503)
    # Each attempt reached grok.com's chat (the gateway refuses a dead session at the upgrade).
    attempts = emu.requests(path="/ws/mgw/") + emu.requests(path="/rest/app-chat/conversations/")
    assert len(attempts) == 2


def test_empty_pool_is_a_503_that_says_how_to_fill_it(chat):
    _, client, _ = chat([])
    error = error_of(client.post("/v1/chat/completions", json=GOOD, headers=AUTH), 503)
    assert "batch-add" in error["message"]


def test_no_token_ever_appears_in_an_answer(chat):
    tokens = ["emu-invalid-secret-0001", "emu-cloudflare-secret-0002"]
    _, client, _ = chat(tokens)
    response = client.post("/v1/chat/completions", json=GOOD, headers=AUTH)
    # The invalid account is marked, the Cloudflare one blocks: a 502 that names neither token.
    assert "Cloudflare" in error_of(response, 502)["message"]
    body = response.get_data(as_text=True)
    assert all(token not in body for token in tokens)


def test_conversation_is_recorded_with_its_owner_and_account(chat):
    app, client, (account_id,) = chat()
    response = client.post("/v1/chat/completions", json=GOOD, headers=AUTH)
    conversation_id = response.get_json()["conversation_id"]
    with app.app_context():
        row = db.session.scalars(
            db.select(Conversation).where(Conversation.conversation_id == conversation_id)
        ).one()
        assert row.account_id == account_id and row.owner.startswith("key:")
        assert row.last_response_id == response.get_json()["message_id"]


def test_a_rejected_raw_sso_token_is_a_403_that_never_echoes_it(chat):
    _, client, _ = chat([])
    token = sso_jwt("emu-invalid-callers-own-0001")
    response = client.post(
        "/v1/chat/completions", json=GOOD, headers={"Authorization": f"Bearer {token}"}
    )
    error = error_of(response, 403)
    assert error["type"] == "permission_error" and error["code"] == "invalid_sso_token"
    assert token not in response.get_data(as_text=True)
