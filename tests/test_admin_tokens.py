"""Admin API of the token pool: batch-add, list, delete, admin auth; tokens never leak."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from grokproxy import pool, tokens
from grokproxy.crypto import preview
from grokproxy.extensions import db
from grokproxy.grok import errors as grok_errors
from grokproxy.models import Account, AccountStatus, Conversation, User, utcnow

from conftest import md5_of

GOOD_1 = "good-admin-token-one-0123456789abcdef"
GOOD_2 = "good-admin-token-two-0123456789abcdef"
INVALID = "emu-invalid-admin-token-0123456789"
BLOCKED = "emu-blocked-admin-token-0123456789"
CLOUDFLARE = "emu-cloudflare-admin-token-012345"
OVERLONG = "L" * 5000
SPACED = "good-admin token-with-space-0123456789"
SECRETS = (GOOD_1, GOOD_2, INVALID, BLOCKED, CLOUDFLARE, OVERLONG, SPACED)


@pytest.fixture
def pool_app(make_app, emu):
    return make_app(GROK_BASE_URL=emu.base_url, GROK_ASSETS_URL=emu.assets_url)


@pytest.fixture
def api(pool_app, admin_headers):
    """POST/GET helpers on the admin API that also record every answer for the leak check."""
    client = pool_app.test_client()
    bodies: list[str] = []

    class Api:
        app = pool_app
        answers = bodies

        def post(self, path, **kw):
            kw.setdefault("headers", admin_headers)
            response = client.post(path, **kw)
            bodies.append(response.get_data(as_text=True))
            return response

        def get(self, path, **kw):
            kw.setdefault("headers", admin_headers)
            response = client.get(path, **kw)
            bodies.append(response.get_data(as_text=True))
            return response

        def add(self, *token_list):
            return self.post("/api/batch-add-grok-token", json={"sso_token_list": list(token_list)})

    yield Api()
    for body in bodies:
        assert_no_secret(body)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert "L" * 50 not in text


def stored(app) -> list[Account]:
    with app.app_context():
        accounts = db.session.scalars(db.select(Account).order_by(Account.id)).all()
        db.session.expunge_all()
        return accounts


# --- batch-add ------------------------------------------------------------------------------


def test_batch_add_stores_exactly_the_good_tokens_and_reports_each_other_one(api, emu):
    entries = [
        GOOD_1,  # 0 added
        INVALID,  # 1 rejected by grok.com
        f"sso={GOOD_2};",  # 2 added (prefix and `;` tolerated)
        BLOCKED,  # 3 rejected (session blocked)
        CLOUDFLARE,  # 4 Cloudflare challenge
        f"  {GOOD_1}  ",  # 5 duplicate of 0
        "",  # 6 empty
        42,  # 7 not a string
        None,  # 8 not a string
        OVERLONG,  # 9 too long
        SPACED,  # 10 whitespace inside
    ]
    response = api.add(*entries)
    assert response.status_code == 200
    body = response.get_json()
    assert body["email_list"] == [
        {"email": emu.email(GOOD_1), "email_md5": md5_of(GOOD_1), "status": "added"},
        {"email": emu.email(GOOD_2), "email_md5": md5_of(GOOD_2), "status": "added"},
    ]
    failed = {entry["index"]: entry for entry in body["failed"]}
    assert sorted(failed) == [1, 3, 4, 5, 6, 7, 8, 9, 10]
    assert [entry["index"] for entry in body["failed"]] == sorted(failed)
    assert "rejected" in failed[1]["error"] and failed[1]["code"] == "invalid_token"
    assert failed[3]["code"] == "invalid_token"
    assert "Cloudflare" in failed[4]["error"] and failed[4]["code"] == "cloudflare"
    assert "entry 0" in failed[5]["error"] and failed[5]["code"] == "duplicate"
    assert "empty" in failed[6]["error"]
    assert "not a string" in failed[7]["error"] and failed[7]["token_preview"] is None
    assert "not a string" in failed[8]["error"]
    assert "too long" in failed[9]["error"]
    assert "whitespace" in failed[10]["error"]
    assert failed[1]["token_preview"] == preview(INVALID)

    accounts = stored(api.app)
    assert [a.email for a in accounts] == [emu.email(GOOD_1), emu.email(GOOD_2)]
    box = api.app.extensions["grokproxy.secrets"]
    assert [box.decrypt(a.token_encrypted) for a in accounts] == [GOOD_1, GOOD_2]
    assert all(GOOD_1 not in a.token_encrypted for a in accounts)
    assert accounts[0].token_digest == box.digest(GOOD_1)
    assert accounts[0].upstream_user_id == emu.user_id(GOOD_1)
    # Each token was checked once, duplicates and malformed ones not at all.
    assert len(emu.requests("/api/auth/session")) == 5


def test_batch_add_fetches_the_quota_of_each_new_account(api, emu):
    api.add(GOOD_1)
    (account,) = stored(api.app)
    assert account.quota["fast"]["remaining"] == 140
    assert account.quota["heavy"]["total"] == 20
    assert account.quota_checked_at is not None


def test_a_quota_failure_does_not_fail_the_add(api, monkeypatch):
    client = api.app.extensions["grokproxy.grok"]

    def broken(token, mode):
        raise grok_errors.UpstreamBroken("grok.com rate-limits answer is not JSON")

    monkeypatch.setattr(client, "rate_limits", broken)
    body = api.add(GOOD_1).get_json()
    assert body["email_list"][0]["status"] == "added"
    (account,) = stored(api.app)
    assert account.status == AccountStatus.ACTIVE and not account.quota


def test_a_used_up_quota_blocks_that_mode_for_the_cooldown(api, emu):
    emu.set_quota("heavy", token=GOOD_1, remaining=0)
    api.add(GOOD_1, GOOD_2)
    with api.app.app_context():
        assert {pool.pick_account("heavy").email_md5 for _ in range(3)} == {md5_of(GOOD_2)}


def test_same_token_again_is_unchanged(api):
    api.add(GOOD_1)
    body = api.add(GOOD_1).get_json()
    assert body["email_list"][0]["status"] == "unchanged"
    assert len(stored(api.app)) == 1


def test_new_token_for_a_known_email_replaces_it_and_revives_the_account(api, emu):
    api.add(GOOD_1)
    box = api.app.extensions["grokproxy.secrets"]
    old = "old-token-of-the-same-account-0123456"
    with api.app.app_context():
        account = db.session.scalars(db.select(Account)).one()
        account.token_encrypted = box.encrypt(old)
        account.token_digest = box.digest(old)
        db.session.commit()
        pool.mark_invalid(account.id, "invalid_credentials: expired")
    body = api.add(GOOD_1).get_json()
    assert body["email_list"] == [
        {"email": emu.email(GOOD_1), "email_md5": md5_of(GOOD_1), "status": "updated"}
    ]
    (account,) = stored(api.app)
    assert box.decrypt(account.token_encrypted) == GOOD_1
    assert account.status == AccountStatus.ACTIVE and account.last_error is None


def test_readding_the_same_token_revives_an_invalid_account(api):
    api.add(GOOD_1)
    (account,) = stored(api.app)
    with api.app.app_context():
        pool.mark_invalid(account.id, "invalid_credentials: code 16")
    body = api.add(GOOD_1).get_json()
    assert body["email_list"][0]["status"] == "updated"
    (account,) = stored(api.app)
    assert account.status == AccountStatus.ACTIVE


def test_two_tokens_of_one_account_in_one_call_store_the_first(api, emu, monkeypatch):
    client = api.app.extensions["grokproxy.grok"]
    real = client.auth_session

    def same_identity(token):
        return real(GOOD_1)

    monkeypatch.setattr(client, "auth_session", same_identity)
    body = api.add(GOOD_1, GOOD_2).get_json()
    assert [e["status"] for e in body["email_list"]] == ["added"]
    assert body["failed"][0]["index"] == 1 and body["failed"][0]["code"] == "duplicate_account"
    box = api.app.extensions["grokproxy.secrets"]
    assert [box.decrypt(a.token_encrypted) for a in stored(api.app)] == [GOOD_1]


def test_more_than_500_tokens_is_a_400_and_nothing_is_stored(api, emu):
    response = api.add(*[f"bulk-token-{i:04d}-0123456789abcdef" for i in range(501)])
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "500" in error["message"] and "sso_token_list" in error["details"]
    assert stored(api.app) == []
    assert emu.requests("/api/auth/session") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sso_token_list": GOOD_1}, "sso_token_list"),
        ({"sso_token_list": {"a": GOOD_1}}, "sso_token_list"),
        ({"sso_token_list": []}, "sso_token_list"),
        ({"tokens": [GOOD_1]}, "sso_token_list"),
        # Not a JSON object at all: the whole body is at fault, not one field.
        ([GOOD_1], "_schema"),
        ("just a string", "_schema"),
    ],
)
def test_a_body_without_a_token_list_is_a_clear_400(api, body, field):
    response = api.post("/api/batch-add-grok-token", json=body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["message"].startswith(f"invalid request: {field}: ")
    assert list(error["details"]) == [field]
    assert stored(api.app) == []


def test_invalid_json_is_a_400(api):
    response = api.post(
        "/api/batch-add-grok-token", data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"


def test_tokens_may_come_as_form_data(api, emu):
    response = api.post("/api/batch-add-grok-token", data={"sso_token_list": [GOOD_1, GOOD_2]})
    assert [e["status"] for e in response.get_json()["email_list"]] == ["added", "added"]
    response = api.post("/api/batch-add-grok-token", data={"sso_token_list": f"{GOOD_1}\n"})
    assert response.get_json()["email_list"][0]["status"] == "unchanged"


# --- list -----------------------------------------------------------------------------------


def test_list_shows_every_field_of_the_contract(api, emu):
    api.add(GOOD_1)
    (account,) = stored(api.app)
    with api.app.app_context():
        db.session.add(
            User(
                user_name="alice", account_id=account.id, api_key_encrypted="x", api_key_digest="d"
            )
        )
        db.session.commit()
        pool.pick_account()
    body = api.post("/api/get-grok-list", json={}).get_json()
    assert (body["total"], body["page"], body["page_size"]) == (1, 1, 20)
    (item,) = body["data"]
    assert set(item) >= {
        "id",
        "email",
        "email_md5",
        "status",
        "token_preview",
        "use_count",
        "fail_count",
        "last_used_at",
        "cooldown_until",
        "last_error",
        "quota",
        "users",
        "created_at",
        "updated_at",
    }
    assert item["email"] == emu.email(GOOD_1)
    assert item["token_preview"] == preview(GOOD_1)
    assert (item["status"], item["use_count"], item["users"]) == ("active", 1, 1)
    assert item["created_at"].endswith("Z") and item["last_used_at"].endswith("Z")
    assert item["quota"]["fast"]["total"] == 140


def test_a_passed_cooldown_lists_as_active(api):
    api.add(GOOD_1, GOOD_2)
    first, second = stored(api.app)
    with api.app.app_context():
        pool.mark_cooling(first.id, 600, "rate_limited: code 8")
        pool.mark_cooling(second.id, 600, "rate_limited: code 8")
        db.session.execute(
            db.update(Account)
            .where(Account.id == second.id)
            .values(cooldown_until=utcnow() - timedelta(seconds=5))
        )
        db.session.commit()
    data = api.get("/api/get-grok-list").get_json()["data"]
    assert [item["status"] for item in data] == ["cooling", "active"]
    assert data[0]["cooldown_until"] is not None and data[1]["cooldown_until"] is None
    assert data[0]["last_error"] == "rate_limited: code 8"


def test_pages_are_stable_and_come_from_query_form_or_json(api, emu):
    api.add(*[f"page-token-{i}-0123456789abcdef" for i in range(5)])
    ids = [a.id for a in stored(api.app)]
    by_query = api.get("/api/get-grok-list?page=2&page_size=2").get_json()
    by_form = api.post("/api/get-grok-list", data={"page": "2", "page_size": "2"}).get_json()
    by_json = api.post("/api/get-grok-list", json={"page": 2, "page_size": "2"}).get_json()
    assert by_query == by_form == by_json
    assert [item["id"] for item in by_query["data"]] == ids[2:4]
    assert (by_query["total"], by_query["pages"]) == (5, 3)
    last = api.get("/api/get-grok-list?page=3&page_size=2").get_json()
    assert [item["id"] for item in last["data"]] == ids[4:]
    beyond = api.get("/api/get-grok-list?page=9&page_size=2").get_json()
    assert beyond["data"] == [] and beyond["total"] == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": 0}, "page"),
        ({"page": -1}, "page"),
        ({"page": "abc"}, "page"),
        ({"page": 1.5}, "page"),
        ({"page": True}, "page"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
    ],
)
def test_bad_pagination_is_a_400_naming_the_field(api, params, field):
    response = api.post("/api/get-grok-list", json=params)
    assert response.status_code == 400
    assert field in response.get_json()["error"]["details"]


def test_bad_pagination_in_the_query_is_a_400(api):
    response = api.get("/api/get-grok-list?page_size=1000")
    assert response.status_code == 400
    assert "page_size" in response.get_json()["error"]["details"]


# --- delete ---------------------------------------------------------------------------------


def test_delete_removes_accounts_unbinds_users_and_drops_conversations(api, emu):
    api.add(GOOD_1, GOOD_2)
    first, second = stored(api.app)
    with api.app.app_context():
        db.session.add(
            User(user_name="bob", account_id=first.id, api_key_encrypted="x", api_key_digest="d")
        )
        db.session.add(
            Conversation(conversation_id="c-1", account_id=first.id, owner="user:1", model="m")
        )
        db.session.commit()
    unknown = "0" * 32
    response = api.post(
        "/api/delete-grok-token", json={"email_md5_list": [first.email_md5.upper(), unknown]}
    )
    assert response.status_code == 200
    assert response.get_json() == {"deleted": [first.email_md5], "not_found": [unknown]}
    assert [a.id for a in stored(api.app)] == [second.id]
    with api.app.app_context():
        user = db.session.scalars(db.select(User)).one()
        assert user.account_id is None
        assert db.session.scalars(db.select(Conversation)).all() == []


@pytest.mark.parametrize(
    "body",
    [{"email_md5_list": ["not-an-md5"]}, {"email_md5_list": []}, {"email_md5_list": "x"}, {}],
)
def test_delete_validates_its_list(api, body):
    response = api.post("/api/delete-grok-token", json=body)
    assert response.status_code == 400
    assert "email_md5_list" in response.get_json()["error"]["details"]


# --- admin auth -----------------------------------------------------------------------------

ROUTES = [
    ("post", "/api/batch-add-grok-token"),
    ("post", "/api/get-grok-list"),
    ("get", "/api/get-grok-list"),
    ("post", "/api/delete-grok-token"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_admin_routes_need_the_admin_password(pool_app, method, path):
    client = pool_app.test_client()
    call = getattr(client, method)
    missing = call(path, json={"sso_token_list": [GOOD_1]})
    wrong = call(path, json={}, headers={"Authorization": "Bearer not-the-password"})
    pool_key = call(path, json={}, headers={"Authorization": "Bearer sk-pool-key-for-tests"})
    for response in (missing, wrong, pool_key):
        assert response.status_code == 401
        assert response.get_json()["error"]["type"] == "authentication_error"
        assert "ADMIN_PASSWORD" in response.get_json()["error"]["message"]
    assert "not-the-password" not in wrong.get_data(as_text=True)
    assert stored(pool_app) == []


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_admin_routes_are_403_while_no_admin_password_is_set(make_app, method, path):
    client = make_app(ADMIN_PASSWORD=None).test_client()
    response = getattr(client, method)(path, headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403
    assert "set ADMIN_PASSWORD" in response.get_json()["error"]["message"]


# --- the whole flow leaks no token, in answers or logs ----------------------------------------


def test_no_answer_or_log_line_contains_a_token(api, emu, caplog):
    caplog.set_level(logging.DEBUG)
    api.add(GOOD_1, INVALID, BLOCKED, CLOUDFLARE, OVERLONG, SPACED, GOOD_1, 7)
    api.add(GOOD_2)
    api.post("/api/get-grok-list", json={"page_size": 100})
    with api.app.app_context():
        tokens.refresh_quotas()
    api.post("/api/delete-grok-token", json={"email_md5_list": [md5_of(GOOD_2)]})
    assert caplog.records, "the flow should log something"
    for record in caplog.records:
        assert_no_secret(record.getMessage())
        if record.exc_text:
            assert_no_secret(record.exc_text)
    # `api` checks every answer body on teardown.
