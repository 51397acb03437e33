"""Admin login routes: `POST /api/login` and `POST /api/login-v2` (Flask test client)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from grokproxy.emulator.accounts import email_for
from grokproxy.extensions import db
from grokproxy.models import Account, User

from conftest import ADMIN_PASSWORD, error_of, md5_of

TOKEN = "emu-login-account-0001"
OTHER_TOKEN = "emu-login-account-0002"


@pytest.fixture
def pool(emu_app, add_accounts):
    """An app over the emulator with two pool accounts; returns (app, client, account ids)."""
    app = emu_app()
    ids = add_accounts(app, [TOKEN, OTHER_TOKEN])
    return app, app.test_client(), ids


def test_login_binds_the_user_and_answers_link_and_key(pool, admin_headers):
    app, client, (account_id, _) = pool
    response = client.post(
        "/api/login", json={"user_name": "alice", "email_md5": md5_of(TOKEN)}, headers=admin_headers
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["user_name"] == "alice" and body["email_md5"] == md5_of(TOKEN)
    assert body["api_key"].startswith("sk-") and len(body["api_key"]) > 40
    assert body["login_url"].startswith("/login/")
    assert "login_url_absolute" not in body
    assert response.headers["Cache-Control"] == "no-store"
    with app.app_context():
        user = db.session.scalars(select(User).where(User.user_name == "alice")).one()
        assert user.account_id == account_id
        # Stored encrypted and by digest only.
        assert body["api_key"] not in user.api_key_encrypted
        assert user.api_key_digest == app.extensions["grokproxy.secrets"].digest(body["api_key"])


def test_api_key_is_stable_across_logins_and_rebinding(pool, admin_headers):
    app, client, (_, other_id) = pool
    first = client.post(
        "/api/login", json={"user_name": "bob", "email_md5": md5_of(TOKEN)}, headers=admin_headers
    ).get_json()
    second = client.post(
        "/api/login",
        json={"user_name": "bob", "email_md5": md5_of(OTHER_TOKEN)},
        headers=admin_headers,
    ).get_json()
    assert second["api_key"] == first["api_key"]
    assert second["login_url"] != first["login_url"] or second["email_md5"] != first["email_md5"]
    with app.app_context():
        users = db.session.scalars(select(User)).all()
        assert len(users) == 1 and users[0].account_id == other_id


def test_different_users_get_different_keys(pool, admin_headers):
    _, client, _ = pool
    auth = {"headers": admin_headers}
    keys = {
        client.post(
            "/api/login", json={"user_name": name, "email_md5": md5_of(TOKEN)}, **auth
        ).get_json()["api_key"]
        for name in ("carol", "dave", "Carol")
    }
    assert len(keys) == 3


def test_login_accepts_form_bodies_and_upper_case_md5(pool, admin_headers):
    _, client, _ = pool
    response = client.post(
        "/api/login",
        data={"user_name": "  erin  ", "email_md5": md5_of(TOKEN).upper()},
        headers=admin_headers,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["user_name"] == "erin" and body["email_md5"] == md5_of(TOKEN)


def test_login_url_absolute_when_public_url_is_set(emu_app, add_accounts, admin_headers):
    app = emu_app(PUBLIC_URL="https://gw.example.com/")
    add_accounts(app, [TOKEN])
    body = (
        app.test_client()
        .post(
            "/api/login", json={"user_name": "f", "email_md5": md5_of(TOKEN)}, headers=admin_headers
        )
        .get_json()
    )
    assert body["login_url"].startswith("/login/")
    assert body["login_url_absolute"] == "https://gw.example.com" + body["login_url"]


def test_unknown_md5_is_a_404_saying_how_to_add_the_account(pool, admin_headers):
    _, client, _ = pool
    response = client.post(
        "/api/login", json={"user_name": "g", "email_md5": "0" * 32}, headers=admin_headers
    )
    error = error_of(response, 404)
    assert error["code"] == "account_not_found" and error["param"] == "email_md5"
    assert "batch-add" in error["message"]


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"email_md5": "0" * 32}, "user_name", "Required"),
        ({"user_name": "", "email_md5": "0" * 32}, "user_name", "empty"),
        ({"user_name": "   ", "email_md5": "0" * 32}, "user_name", "empty"),
        ({"user_name": "x" * 65, "email_md5": "0" * 32}, "user_name", "at most 64"),
        ({"user_name": "bad\nname", "email_md5": "0" * 32}, "user_name", "printable"),
        ({"user_name": "bad\x00name", "email_md5": "0" * 32}, "user_name", "printable"),
        ({"user_name": 42, "email_md5": "0" * 32}, "user_name", "string"),
        ({"user_name": "h"}, "email_md5", "Required"),
        ({"user_name": "h", "email_md5": "0" * 31}, "email_md5", "32 hexadecimal"),
        ({"user_name": "h", "email_md5": "g" * 32}, "email_md5", "32 hexadecimal"),
        ({"user_name": "h", "email_md5": "user@example.com"}, "email_md5", "32 hexadecimal"),
    ],
)
def test_login_validation_errors_name_the_field_and_problem(
    pool, admin_headers, body, field, fragment
):
    _, client, _ = pool
    error = error_of(client.post("/api/login", json=body, headers=admin_headers), 400)
    assert error["type"] == "invalid_request_error"
    assert field in error["details"] and fragment in " ".join(error["details"][field])
    assert field in error["message"]


def test_sixty_four_printable_characters_are_fine(pool, admin_headers):
    _, client, _ = pool
    name = "名前-émoji🙂" + "x" * 55
    assert len(name) == 64
    response = client.post(
        "/api/login", json={"user_name": name, "email_md5": md5_of(TOKEN)}, headers=admin_headers
    )
    assert response.status_code == 200 and response.get_json()["user_name"] == name


def test_non_object_bodies_are_a_400(pool, admin_headers):
    _, client, _ = pool
    error = error_of(
        client.post(
            "/api/login", data="[1]", content_type="application/json", headers=admin_headers
        ),
        400,
    )
    assert "JSON object" in error["message"]
    error = error_of(client.post("/api/login", headers=admin_headers), 400)
    assert "user_name" in error["details"]


@pytest.mark.parametrize("route", ["/api/login", "/api/login-v2"])
def test_login_routes_need_the_admin_password(pool, route):
    _, client, _ = pool
    body = {"user_name": "i", "email_md5": md5_of(TOKEN), "sso_token": TOKEN}
    assert error_of(client.post(route, json=body), 401)["code"] == "invalid_admin_password"
    wrong = {"Authorization": "Bearer not-the-password"}
    assert error_of(client.post(route, json=body, headers=wrong), 401)
    assert error_of(client.get(route), 405)


def test_login_routes_are_off_without_admin_password(emu_app, add_accounts):
    app = emu_app(ADMIN_PASSWORD=None)
    add_accounts(app, [TOKEN])
    response = app.test_client().post(
        "/api/login",
        json={"user_name": "j", "email_md5": md5_of(TOKEN)},
        headers={"Authorization": f"Bearer {ADMIN_PASSWORD}"},
    )
    assert error_of(response, 403)["code"] == "admin_disabled"


# ---- login-v2 ---------------------------------------------------------------------------------


def test_login_v2_adds_the_token_and_binds_the_user(emu_app, emu, admin_headers):
    app = emu_app()
    client = app.test_client()
    response = client.post(
        "/api/login-v2",
        json={"user_name": "kim", "sso_token": f"sso={TOKEN};"},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["email_md5"] == md5_of(TOKEN)
    assert body["login_url"].startswith("/login/") and body["api_key"].startswith("sk-")
    with app.app_context():
        account = db.session.scalars(select(Account)).one()
        assert account.email == email_for(TOKEN)
        user = db.session.scalars(select(User)).one()
        assert user.account_id == account.id and user.user_name == "kim"
    assert emu.requests(path="/api/auth/session"), "the token was checked upstream"


def test_login_v2_refreshes_a_known_account_and_keeps_the_key(pool, admin_headers):
    app, client, (account_id, _) = pool
    first = client.post(
        "/api/login", json={"user_name": "lee", "email_md5": md5_of(TOKEN)}, headers=admin_headers
    ).get_json()
    second = client.post(
        "/api/login-v2", json={"user_name": "lee", "sso_token": TOKEN}, headers=admin_headers
    )
    assert second.status_code == 200, second.get_data(as_text=True)
    assert second.get_json()["api_key"] == first["api_key"]
    with app.app_context():
        assert db.session.scalars(select(Account)).all().__len__() == 2
        assert db.session.scalars(select(User)).one().account_id == account_id


def test_login_v2_with_a_token_grok_rejects_is_a_400_saying_so(emu_app, emu, admin_headers):
    app = emu_app()
    token = "emu-invalid-login-0003"
    response = app.test_client().post(
        "/api/login-v2", json={"user_name": "mo", "sso_token": token}, headers=admin_headers
    )
    error = error_of(response, 400)
    assert "rejected" in error["message"] and token not in error["message"]
    assert error["param"] == "sso_token"
    with app.app_context():
        assert db.session.scalars(select(User)).all() == []
        assert db.session.scalars(select(Account)).all() == []


def test_login_v2_behind_cloudflare_is_a_502_saying_so(emu_app, emu, admin_headers):
    app = emu_app()
    token = "emu-cloudflare-login-0004"
    response = app.test_client().post(
        "/api/login-v2", json={"user_name": "ned", "sso_token": token}, headers=admin_headers
    )
    error = error_of(response, 502)
    assert "Cloudflare" in error["message"] and token not in error["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_name": "o"}, "sso_token"),
        ({"user_name": "o", "sso_token": "   "}, "sso_token"),
        ({"user_name": "o", "sso_token": 5}, "sso_token"),
        ({"sso_token": TOKEN}, "user_name"),
        ({"user_name": "a\tb", "sso_token": TOKEN}, "user_name"),
    ],
)
def test_login_v2_validation_errors(emu_app, admin_headers, body, field):
    app = emu_app()
    error = error_of(app.test_client().post("/api/login-v2", json=body, headers=admin_headers), 400)
    assert field in error["details"]


def test_no_key_token_or_link_in_any_log_line(emu_app, add_accounts, emu, admin_headers, caplog):
    caplog.set_level(logging.DEBUG)
    app = emu_app()
    add_accounts(app, [TOKEN])
    client = app.test_client()
    auth = {"headers": admin_headers}
    answers = [
        client.post(
            "/api/login", json={"user_name": "p", "email_md5": md5_of(TOKEN)}, headers=admin_headers
        ).get_json(),
        client.post(
            "/api/login-v2", json={"user_name": "q", "sso_token": OTHER_TOKEN}, **auth
        ).get_json(),
    ]
    client.post(
        "/api/login-v2",
        json={"user_name": "r", "sso_token": "emu-invalid-log-0005"},
        headers=admin_headers,
    )
    secrets = [TOKEN, OTHER_TOKEN, "emu-invalid-log-0005"]
    for answer in answers:
        secrets += [answer["api_key"], answer["login_url"].removeprefix("/login/")]
        client.get(answer["login_url"])
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    assert caplog.records, "the routes log what they do"
    for secret in secrets:
        assert secret not in logged
