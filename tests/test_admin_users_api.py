"""Admin API and CLI of the console's actions: disable/enable accounts, users' keys, revocation,
daily limits and login links."""

from __future__ import annotations

from grokproxy import pool

from conftest import CHAT, error_of, md5_of

TOKENS = ["emu-adminapi-account-0001", "emu-adminapi-account-0002"]


def test_disable_and_enable_grok_token_routes(make_gateway, admin_headers):
    gateway = make_gateway(TOKENS)
    target, unknown = md5_of(TOKENS[0]), "0" * 32
    response = gateway.client.post(
        "/api/disable-grok-token",
        json={"email_md5_list": [target, unknown]},
        headers=admin_headers,
    )
    assert response.get_json() == {"disabled": [target], "not_found": [unknown]}
    listed = {a["email_md5"]: a for a in gateway.accounts()}
    assert listed[target]["status"] == "disabled" and listed[target]["token_preview"]
    with gateway.app.app_context():
        assert target not in {pool.pick_account().email_md5 for _ in range(5)}
    # Re-adding the token does not bring it back: enabling is its own act.
    assert gateway.add(TOKENS[0])["email_list"][0]["status"] == "unchanged"
    assert {a["email_md5"]: a for a in gateway.accounts()}[target]["status"] == "disabled"
    response = gateway.client.post(
        "/api/enable-grok-token", data={"email_md5_list": target}, headers=admin_headers
    )
    assert response.get_json() == {"enabled": [target], "not_found": []}
    assert error_of(gateway.client.post("/api/disable-grok-token", json={}), 401)
    bad = gateway.client.post(
        "/api/disable-grok-token", json={"email_md5_list": ["x"]}, headers=admin_headers
    )
    assert bad.status_code == 400


def test_user_routes_rotate_limit_link_revoke(make_gateway, admin_headers):
    gateway = make_gateway(TOKENS)
    old = gateway.login("eve")
    post = gateway.client.post
    new = post("/api/rotate-user-key", json={"user_name": "eve"}, headers=admin_headers)
    new_key = new.get_json()["api_key"]
    assert new.headers["Cache-Control"] == "no-store"
    gateway.chat(old, status=401)
    gateway.chat(new_key)
    limit = post(
        "/api/set-user-daily-limit",
        json={"user_name": "eve", "daily_limit": 2},
        headers=admin_headers,
    )
    assert limit.get_json()["daily_limit"] == 2
    assert gateway.chat(new_key).headers["x-ratelimit-remaining-requests"] == "0"
    listing = gateway.client.get("/api/get-user-list", headers=admin_headers).get_json()
    (eve,) = listing["data"]
    assert (eve["used_today"], eve["daily_limit"], eve["email_md5"]) == (2, 2, md5_of(TOKENS[0]))
    assert eve["last_activity_at"]
    link = post("/api/user-login-link", json={"user_name": "eve"}, headers=admin_headers)
    assert gateway.client.get(link.get_json()["login_url"]).status_code == 303
    post("/api/revoke-user", json={"user_name": "eve"}, headers=admin_headers)
    gateway.chat(new_key, status=401)
    missing = post("/api/revoke-user", json={"user_name": "nobody"}, headers=admin_headers)
    assert error_of(missing, 404)["code"] == "user_not_found"
    assert error_of(post("/api/revoke-user", json={}, headers=admin_headers), 400)
    # Binding the user again lets them back in, with the key it now has.
    back = gateway.login("eve")
    gateway.chat(back, body=CHAT, status=429)  # still today's two requests used


def test_cli_disables_enables_and_manages_users(make_gateway):
    gateway = make_gateway(TOKENS)
    key = gateway.login("fay")
    runner = gateway.app.test_cli_runner()
    target = md5_of(TOKENS[1])
    result = runner.invoke(args=["tokens", "disable", target])
    assert result.exit_code == 0 and f"disabled   {target}" in result.output
    assert {a["email_md5"]: a["status"] for a in gateway.accounts()}[target] == "disabled"
    assert runner.invoke(args=["tokens", "enable", target]).exit_code == 0
    assert runner.invoke(args=["tokens", "disable", "nope"]).exit_code == 2

    rotated = runner.invoke(args=["users", "rotate-key", "fay"])
    new_key = rotated.output.strip()
    assert rotated.exit_code == 0 and new_key.startswith("sk-") and new_key != key
    gateway.chat(key, status=401)
    gateway.chat(new_key)
    limit = runner.invoke(args=["users", "set-limit", "fay", "0"])
    assert "unlimited" in limit.output
    listed = runner.invoke(args=["users", "list"])
    assert "fay" in listed.output and "1/unlimited" in listed.output
    link = runner.invoke(args=["users", "link", "fay"])
    assert link.exit_code == 0 and link.output.startswith("/login/")
    assert runner.invoke(args=["users", "revoke", "fay"]).exit_code == 0
    gateway.chat(new_key, status=401)
    missing = runner.invoke(args=["users", "revoke", "nobody"])
    assert missing.exit_code == 1 and "no user is called" in missing.output
