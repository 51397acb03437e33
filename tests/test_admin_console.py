"""The operator console: sign-in with a secure cookie, CSRF and cross-site refusals, slowing
down after wrong passwords, the pages, and the account and user actions behind them."""

from __future__ import annotations

import re

import pytest

from grokproxy import pool
from grokproxy.extensions import db
from grokproxy.models import Account, AccountStatus

from conftest import ADMIN_PASSWORD, CHAT, error_of, md5_of

TOKENS = ["emu-console-account-0001", "emu-console-account-0002"]


def csrf_of(response) -> str:
    match = re.search(r'name="csrf-token" content="([0-9a-f]+)"', response.get_data(as_text=True))
    assert match, "the page carries no CSRF token"
    return match.group(1)


def sign_in(client, password: str = ADMIN_PASSWORD, **headers):
    """Open the sign-in page, then post the password with the page's CSRF token."""
    form = client.get("/admin/")
    token = csrf_of(form)
    return client.post(
        "/admin/login", data={"password": password, "csrf_token": token}, headers=headers
    )


def signed_in(client) -> str:
    """Sign in; the CSRF token of the signed-in session."""
    assert sign_in(client).status_code == 303
    page = client.get("/admin/")
    assert page.status_code == 200 and "Overview" in page.get_data(as_text=True)
    return csrf_of(page)


@pytest.fixture
def console(emu_app, add_accounts):
    app = emu_app()
    add_accounts(app, TOKENS)
    return app


def test_console_cookie_is_http_only_strict_and_not_secure_over_plain_http(console):
    client = console.test_client()
    response = sign_in(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "./"  # relative: right behind any proxy prefix
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie
    assert "Path=" not in cookie  # the browser scopes it to the console's folder


@pytest.mark.parametrize(
    ("settings", "headers"),
    [
        ({"PUBLIC_URL": "https://grok.example.com"}, {}),
        ({"TRUSTED_PROXY_COUNT": 1}, {"X-Forwarded-Proto": "https"}),
    ],
)
def test_console_cookie_is_secure_when_the_site_is_https(emu_app, settings, headers):
    client = emu_app(**settings).test_client()
    form = client.get("/admin/", headers=headers)
    response = client.post(
        "/admin/login",
        data={"password": ADMIN_PASSWORD, "csrf_token": csrf_of(form)},
        headers=headers,
    )
    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"]


def test_pages_need_a_sign_in_and_sign_out_ends_the_session(console):
    client = console.test_client()
    assert client.get("/admin/accounts").status_code == 303
    assert client.get("/admin").headers["Location"] == "admin/"
    csrf = signed_in(client)
    stolen = client.get_cookie("grokproxy_admin", path="/admin").value
    assert client.get("/admin/accounts").status_code == 200
    assert client.post("/admin/logout", data={"csrf_token": csrf}).status_code == 303
    assert client.get("/admin/accounts").status_code == 303
    # A copy of the cookie taken before the sign-out is dead too (the session is gone server-side).
    other = console.test_client()
    other.set_cookie("grokproxy_admin", stolen, path="/admin")
    assert other.get("/admin/users").status_code == 303


def test_change_without_csrf_token_is_refused(console):
    client = console.test_client()
    signed_in(client)
    body = {"action": "disable", "email_md5_list": [md5_of(TOKENS[0])]}
    response = client.post("/admin/api/accounts", json=body)
    assert error_of(response, 403)["code"] == "csrf_refused"
    response = client.post("/admin/api/accounts", json=body, headers={"X-CSRF-Token": "0" * 64})
    assert error_of(response, 403)["code"] == "csrf_refused"
    with console.app_context():
        assert db.session.scalar(db.select(Account.status).where(Account.id == 1)) == "active"


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
    ],
)
def test_cross_origin_change_is_refused_even_with_the_token(console, headers):
    client = console.test_client()
    csrf = signed_in(client)
    body = {"action": "disable", "email_md5_list": [md5_of(TOKENS[0])]}
    response = client.post(
        "/admin/api/accounts", json=body, headers={"X-CSRF-Token": csrf, **headers}
    )
    assert error_of(response, 403)["code"] == "csrf_refused"
    ok = client.post(
        "/admin/api/accounts",
        json=body,
        headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-origin"},
    )
    assert ok.status_code == 200 and ok.get_json()["disabled"] == [md5_of(TOKENS[0])]


def test_sign_in_form_without_its_csrf_token_is_refused(console):
    client = console.test_client()
    client.get("/admin/")
    response = client.post("/admin/login", data={"password": ADMIN_PASSWORD})
    assert response.status_code == 403
    assert client.get("/admin/accounts").status_code == 303


def test_five_wrong_passwords_slow_every_worker_down(console, make_app):
    client = console.test_client()
    for attempt in range(1, 5):
        response = sign_in(client, "wrong")
        assert response.status_code == 401, attempt
        assert "Retry-After" not in response.headers
    fifth = sign_in(client, "wrong")
    assert fifth.status_code == 401
    assert int(fifth.headers["Retry-After"]) == 30
    # Now even the right password waits: the count is in the database, so another app on the
    # same database (another worker or host) refuses too.
    refused = sign_in(client)
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 30
    other = make_app(DATABASE_URL=console.config["DATABASE_URL"]).test_client()
    assert sign_in(other).status_code == 429
    assert other.get("/admin/accounts").status_code == 303


def test_console_is_off_without_admin_password(emu_app):
    client = emu_app(ADMIN_PASSWORD=None).test_client()
    assert client.get("/admin/").status_code == 403
    assert client.post("/admin/login", data={"password": ""}).status_code == 403


def test_disabled_account_is_never_picked_and_keeps_its_data(console):
    client = console.test_client()
    csrf = signed_in(client)
    target = md5_of(TOKENS[0])
    response = client.post(
        "/admin/api/accounts",
        json={"action": "disable", "email_md5_list": [target]},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.get_json() == {"disabled": [target], "not_found": []}
    with console.app_context():
        picked = {pool.pick_account().email_md5 for _ in range(6)}
        # A failure recorded by a request that was running on it does not bring it back.
        disabled = db.session.scalars(db.select(Account).where(Account.email_md5 == target)).one()
        pool.mark_cooling(disabled.id, 1, "late failure")
        db.session.expire_all()
        assert db.session.get(Account, disabled.id).status == AccountStatus.DISABLED
        assert db.session.get(Account, disabled.id).token_preview  # its data stays
    assert target not in picked
    page = client.get("/admin/accounts?status=disabled").get_data(as_text=True)
    assert target in page and md5_of(TOKENS[1]) not in page
    client.post(
        "/admin/api/accounts",
        json={"action": "enable", "email_md5_list": [target]},
        headers={"X-CSRF-Token": csrf},
    )
    with console.app_context():
        assert target in {pool.pick_account().email_md5 for _ in range(4)}


def test_accounts_page_sorts_filters_and_pages(emu_app, add_accounts):
    app = emu_app()
    add_accounts(app, [f"emu-page-account-{i:04d}" for i in range(120)])
    client = app.test_client()
    signed_in(client)
    page = client.get("/admin/accounts?sort=email&dir=desc&page=2").get_data(as_text=True)
    assert "page 2 of 3" in page
    emails = re.findall(r'<span class="email">([^<]+)</span>', page)
    assert len(emails) == 50 and emails == sorted(emails, reverse=True)
    assert "(120)" in page
    filtered = client.get("/admin/accounts?status=invalid").get_data(as_text=True)
    assert "No account is invalid" in filtered, filtered[filtered.find("<tbody>") :][:600]


def test_add_tokens_answers_one_result_per_token_in_order(console):
    client = console.test_client()
    csrf = signed_in(client)
    batch = ["sso=emu-console-new-0001", TOKENS[0], "emu-invalid-console-0003", "bad token"]
    response = client.post(
        "/admin/api/tokens", json={"tokens": batch}, headers={"X-CSRF-Token": csrf}
    )
    results = response.get_json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert [r["status"] for r in results] == ["added", "unchanged", "failed", "failed"]
    assert results[2]["code"] == "invalid_token" and results[3]["code"] == "malformed"
    assert all("emu-" not in str(r.get("token_preview") or "")[6:-4] for r in results)


def test_user_actions_rotate_revoke_limit_and_link(console, admin_headers):
    api = console.test_client()
    login = api.post(
        "/api/login",
        json={"user_name": "ann", "email_md5": md5_of(TOKENS[0])},
        headers=admin_headers,
    ).get_json()
    old_key = login["api_key"]
    client = console.test_client()
    csrf = signed_in(client)

    def act(action, **extra):
        return client.post(
            "/admin/api/users",
            json={"action": action, "user_name": "ann", **extra},
            headers={"X-CSRF-Token": csrf},
        )

    new_key = act("rotate").get_json()["api_key"]
    assert new_key != old_key
    chat = {"Authorization": f"Bearer {old_key}"}
    assert api.post("/v1/chat/completions", json=CHAT, headers=chat).status_code == 401
    chat = {"Authorization": f"Bearer {new_key}"}
    assert api.post("/v1/chat/completions", json=CHAT, headers=chat).status_code == 200

    assert act("limit", daily_limit=1).get_json()["daily_limit"] == 1
    assert api.post("/v1/chat/completions", json=CHAT, headers=chat).status_code == 429
    assert act("limit", daily_limit=None).get_json()["daily_limit_override"] is None
    assert error_of(act("limit", daily_limit=-1), 400)["param"] == "daily_limit"

    page = client.get("/admin/users").get_data(as_text=True)
    assert "ann" in page and ">1<" in page  # one request counted today

    link = act("link").get_json()["login_url"]
    assert link.startswith("/login/")
    assert act("revoke").get_json() == {"user_name": "ann", "revoked": True}
    assert api.post("/v1/chat/completions", json=CHAT, headers=chat).status_code == 401
    assert api.get(link).status_code == 410  # links issued before the revocation are dead
    assert error_of(act("link"), 409)["code"] == "user_revoked"
    assert error_of(act("nothing"), 400)["param"] == "action"


def test_overview_counts_requests_and_draws_the_chart(console, admin_headers):
    api = console.test_client()
    from conftest import POOL_KEY

    for _ in range(3):
        api.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {POOL_KEY}"})
    api.post(
        "/v1/chat/completions",
        json={"model": "nope", "messages": []},
        headers={"Authorization": f"Bearer {POOL_KEY}"},
    )
    client = console.test_client()
    signed_in(client)
    page = client.get("/admin/").get_data(as_text=True)
    assert "<svg" in page and "4 requests, 1 errors" in page
    assert "requests, last hour (1 errors)" in page
    assert "pool key" in page
