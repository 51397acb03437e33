"""The login link and the web pages over the Flask test client: cookies, refusals, redirects."""

from __future__ import annotations

import time

import itsdangerous.timed
import pytest
from sqlalchemy import delete, select

from grokproxy.extensions import db
from grokproxy.models import Account, User

from conftest import md5_of

TOKEN = "emu-web-account-0001"


@pytest.fixture
def site(emu_app, add_accounts, admin_headers):
    """Factory: an app with one account; `site(**settings)` returns (app, client, login())."""

    def build(**settings):
        app = emu_app(**settings)
        add_accounts(app, [TOKEN])
        client = app.test_client()

        def login(name="web-user"):
            response = client.post(
                "/api/login", json={"user_name": name, "email_md5": md5_of(TOKEN)}, **auth
            )
            assert response.status_code == 200
            return response.get_json()

        auth = {"headers": admin_headers}
        return app, client, login

    return build


def html_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def test_login_link_signs_in_and_lands_on_the_chat_page(site):
    app, client, login = site()
    answer = login()
    response = client.get(answer["login_url"])
    assert response.status_code == 303 and response.headers["Location"] == "/chat"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("grokproxy_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    page = html_of(client.get("/chat"), 200)
    assert "web-user" in page and answer["api_key"] in page
    assert "data-api-base" not in page  # the page derives it from its own location
    with app.app_context():
        user = db.session.scalars(select(User)).one()
        assert user.login_generation == 1 and user.last_login_at is not None


def test_session_cookie_is_secure_behind_https_public_url(site):
    _, client, login = site(PUBLIC_URL="https://chat.example.org")
    response = client.get(login()["login_url"])
    assert "Secure" in response.headers["Set-Cookie"]
    # Test client requests are http; the cookie is sent anyway when told to be.
    page = html_of(client.get("/chat", base_url="https://localhost"), 200)
    assert "web-user" in page


def test_a_link_works_once(site):
    _, client, login = site()
    url = login()["login_url"]
    assert client.get(url).status_code == 303
    other_browser = client.application.test_client()
    assert "already used" in html_of(other_browser.get(url), 410)
    assert "Open your login link" in html_of(other_browser.get("/chat", follow_redirects=True), 200)


def test_using_a_link_retires_the_links_issued_before_it(site):
    _, client, login = site()
    older = login()["login_url"]
    newer = login()["login_url"]
    assert client.get(newer).status_code == 303
    assert "already used" in html_of(client.get(older), 410)


def test_a_link_issued_after_sign_in_works(site):
    _, client, login = site()
    assert client.get(login()["login_url"]).status_code == 303
    assert client.get(login()["login_url"]).status_code == 303


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: t.split(".")[0] + ".x." + t.split(".")[-1],  # payload changed
        lambda t: "not-a-link-at-all",
        lambda t: t + "/extra",
        lambda t: t[: len(t) // 2],
    ],
)
def test_a_tampered_link_is_refused_politely(site, mangle):
    app, client, login = site()
    token = login()["login_url"].removeprefix("/login/")
    response = client.get("/login/" + mangle(token))
    page = html_of(response, 400)
    assert "not valid" in page and "Set-Cookie" not in response.headers
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    with app.app_context():
        assert db.session.scalars(select(User)).one().login_generation == 0
    # The genuine link still works afterwards.
    assert client.get("/login/" + token).status_code == 303


def test_a_link_signed_with_another_secret_key_is_refused(site):
    _, client, login = site()
    token = login()["login_url"].removeprefix("/login/")
    forged = itsdangerous.URLSafeTimedSerializer("guess", salt="grokproxy.login-link.v1").dumps(
        {"u": 1, "g": 0}
    )
    assert forged != token
    assert "not valid" in html_of(client.get("/login/" + forged), 400)


def test_an_expired_link_is_refused(site, monkeypatch):
    _, client, login = site(LOGIN_LINK_TTL_SECONDS=60)
    real = itsdangerous.timed.TimestampSigner.get_timestamp
    monkeypatch.setattr(
        itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 120
    )
    url = login()["login_url"]
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", real)
    assert "expired" in html_of(client.get(url), 410)


def test_chat_page_without_session_redirects_to_the_sign_in_help(site):
    _, client, _ = site()
    response = client.get("/chat")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    for path in ("/login", "/login/"):
        assert "Open your login link" in html_of(client.get(path), 200)


def test_logout_ends_the_session(site):
    _, client, login = site()
    client.get(login()["login_url"])
    assert client.get("/chat").status_code == 200
    response = client.post("/logout")
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")
    assert client.get("/chat").status_code == 303
    assert "signed out" in html_of(client.get(response.headers["Location"]), 200)


def test_chat_page_warns_when_the_account_was_deleted(site):
    app, client, login = site()
    client.get(login()["login_url"])
    with app.app_context():
        db.session.execute(delete(Account))
        db.session.commit()
        assert db.session.scalars(select(User)).one().account_id is None
    assert "removed from this gateway" in html_of(client.get("/chat"), 200)


def test_session_of_a_deleted_user_goes_back_to_sign_in(site):
    app, client, login = site()
    client.get(login()["login_url"])
    with app.app_context():
        db.session.execute(delete(User))
        db.session.commit()
    assert client.get("/chat").headers["Location"] == "/login"


def test_pages_and_assets_are_served_and_unknown_routes_stay_json(site):
    _, client, login = site()
    client.get(login()["login_url"])
    page = html_of(client.get("/chat"), 200)
    for asset in ("/static/chat.js", "/static/grokproxy.css"):
        assert asset in page
        assert client.get(asset).status_code == 200
    response = client.get("/chat")
    assert response.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    for path in ("/nope", "/chat/nope", "/static/missing.js", "/api/nope"):
        response = client.get(path)
        assert response.status_code == 404 and response.mimetype == "application/json"
    # Wrong methods on the pages are still the JSON error shape.
    assert client.post("/chat").mimetype == "application/json"
    assert client.get("/logout").status_code == 405
