"""The `flask tokens` commands show each account's tier and limited modes."""

from __future__ import annotations

from grokproxy import pool


def test_tokens_list_shows_the_tier_and_each_limited_mode(app, add_accounts):
    (account_id,) = add_accounts(app, ["cli-modes-0123456789abcdef"])
    with app.app_context():
        pool.set_tier(account_id, "paid")
        pool.limit_mode(account_id, "fast", 600, "rate_limited: code 8")
    result = app.test_cli_runner().invoke(args=["tokens", "list"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.lstrip().startswith("1 "))
    assert "paid" in line and "limited: fast until " in line
    assert "expert until" not in line
    assert "active" in line  # a limited mode leaves the account in rotation
