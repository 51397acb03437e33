"""Web sessions can be revoked: sign-out and a new sign-in end every earlier session of the user,
copied cookies included; a session lasts SESSION_LIFETIME_SECONDS from its sign-in."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

import itsdangerous.timed
import pytest

from grokproxy.emulator.accounts import email_for

TOKEN = "emu-session-account-0001"


@pytest.fixture
def site(emu_app, add_accounts, admin_headers):
    """Factory: (app, login(name) -> login answer) over an app with one pool account."""

    def build(**settings):
        app = emu_app(**settings)
        add_accounts(app, [TOKEN])
        md5 = hashlib.md5(email_for(TOKEN).encode(), usedforsecurity=False).hexdigest()

        def login(name="ann"):
            answer = app.test_client().post(
                "/api/login", json={"user_name": name, "email_md5": md5}, headers=admin_headers
            )
            assert answer.status_code == 200
            return answer.get_json()

        return app, login

    return build


def signed_in(app, link: str):
    """A fresh browser that opened `link`; returns it and its session cookie value."""
    browser = app.test_client()
    assert browser.get(link).status_code == 303
    return browser, browser.get_cookie("grokproxy_session").value


def copy_of(app, cookie: str):
    """Another browser holding a copy of `cookie`."""
    thief = app.test_client()
    thief.set_cookie("grokproxy_session", cookie)
    return thief


def assert_signed_out(browser, api_key: str) -> None:
    response = browser.get("/chat")
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")
    assert api_key not in response.get_data(as_text=True)


def test_a_copied_cookie_is_dead_after_sign_out(site):
    app, login = site()
    answer = login()
    browser, cookie = signed_in(app, answer["login_url"])
    thief = copy_of(app, cookie)
    assert answer["api_key"] in thief.get("/chat").get_data(as_text=True)  # the copy works...

    assert browser.post("/logout").status_code == 303
    assert_signed_out(browser, answer["api_key"])
    assert_signed_out(thief, answer["api_key"])  # ...until the owner signs out
    assert_signed_out(copy_of(app, cookie), answer["api_key"])


def test_a_new_sign_in_ends_every_earlier_session(site):
    app, login = site()
    first = login()
    _, old_cookie = signed_in(app, first["login_url"])
    newer, _ = signed_in(app, login()["login_url"])

    assert_signed_out(copy_of(app, old_cookie), first["api_key"])
    assert first["api_key"] in newer.get("/chat").get_data(as_text=True)


def test_signing_out_one_user_leaves_other_users_signed_in(site):
    app, login = site()
    ann, bob = login("ann"), login("bob")
    ann_browser, _ = signed_in(app, ann["login_url"])
    bob_browser, _ = signed_in(app, bob["login_url"])
    ann_browser.post("/logout")
    assert bob["api_key"] in bob_browser.get("/chat").get_data(as_text=True)


def test_a_session_without_the_epoch_is_not_accepted(site):
    app, login = site()
    answer = login()
    browser, _ = signed_in(app, answer["login_url"])
    with browser.session_transaction() as session:
        del session["session_epoch"]  # a cookie signed before sessions carried an epoch
    assert_signed_out(browser, answer["api_key"])


def test_a_session_ends_its_lifetime_after_the_sign_in_even_when_used(site, monkeypatch):
    app, login = site(SESSION_LIFETIME_SECONDS=60)
    assert app.config["PERMANENT_SESSION_LIFETIME"] == timedelta(seconds=60)
    answer = login()
    browser, _ = signed_in(app, answer["login_url"])
    signed_at = int(time.time())

    def at(seconds: int) -> None:
        monkeypatch.setattr(
            itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: signed_at + seconds
        )

    at(49)  # still valid, and using it does not push its end further out
    response = browser.get("/chat")
    assert response.status_code == 200
    assert "grokproxy_session" not in response.headers.get("Set-Cookie", "")
    at(62)
    assert_signed_out(browser, answer["api_key"])


def test_the_default_session_lifetime_is_seven_days(app):
    assert app.config["SESSION_LIFETIME_SECONDS"] == 7 * 86400
    assert app.config["PERMANENT_SESSION_LIFETIME"] == timedelta(days=7)
