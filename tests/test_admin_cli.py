"""`flask tokens add|list|delete|refresh-quotas`: ops commands that never print a token."""

from __future__ import annotations

import logging

import pytest

from grokproxy.extensions import db
from grokproxy.models import Account

from conftest import md5_of

GOOD_1 = "cli-good-token-one-0123456789abcdef"
GOOD_2 = "cli-good-token-two-0123456789abcdef"
INVALID = "emu-invalid-cli-token-0123456789ab"
SECRETS = (GOOD_1, GOOD_2, INVALID)


@pytest.fixture
def cli(make_app, emu, caplog):
    """Run `flask tokens ...` on an app whose upstream is the emulator; checks output for leaks."""
    caplog.set_level(logging.DEBUG)
    app = make_app(GROK_BASE_URL=emu.base_url, GROK_ASSETS_URL=emu.assets_url)
    runner = app.test_cli_runner()
    outputs: list[str] = []

    def run(*args: str, input: str | None = None):
        result = runner.invoke(args=["tokens", *args], input=input)
        outputs.append(result.output)
        return result

    run.app = app
    yield run
    for text in outputs + [record.getMessage() for record in caplog.records]:
        for secret in SECRETS:
            assert secret not in text


def test_add_reads_a_file_skipping_comments_and_blank_lines(cli, emu, tmp_path):
    source = tmp_path / "tokens.txt"
    source.write_text(f"# pool of 2025-11\n{GOOD_1}\n\n  sso={GOOD_2};  \n# end\n{INVALID}\n")
    result = cli("add", str(source))
    assert result.exit_code == 0, result.output
    assert f"added      {md5_of(GOOD_1)}" in result.output
    assert "line 6" in result.output and "rejected" in result.output
    assert "2 stored, 1 failed" in result.output
    with cli.app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Account)) == 2


def test_add_reads_stdin(cli, emu):
    result = cli("add", "-", input=f"{GOOD_1}\n")
    assert result.exit_code == 0
    assert "1 stored, 0 failed" in result.output


def test_add_with_only_failures_exits_non_zero(cli):
    result = cli("add", "-", input=f"{INVALID}\n")
    assert result.exit_code == 1


def test_add_of_an_empty_file_says_so(cli):
    result = cli("add", "-", input="# nothing\n\n")
    assert result.exit_code != 0
    assert "no tokens found" in result.output


def test_list_shows_previews_and_statuses(cli, emu):
    cli("add", "-", input=f"{GOOD_1}\n{GOOD_2}\n")
    result = cli("list")
    assert result.exit_code == 0
    assert md5_of(GOOD_1) in result.output and "active" in result.output
    assert "cli-go…cdef" in result.output
    assert "2 accounts" in result.output


def test_delete_by_md5(cli, emu):
    cli("add", "-", input=f"{GOOD_1}\n{GOOD_2}\n")
    key = md5_of(GOOD_1)
    result = cli("delete", key, "f" * 32)
    assert result.exit_code == 0
    assert f"deleted    {key}" in result.output and "not found  " + "f" * 32 in result.output
    assert cli("delete", "not-an-md5").exit_code != 0


def test_refresh_quotas_reports_each_account(cli, emu):
    cli("add", "-", input=f"{GOOD_1}\n")
    emu.set_quota("fast", token=GOOD_1, remaining=7)
    result = cli("refresh-quotas")
    assert result.exit_code == 0
    assert "1 accounts checked, 0 with problems" in result.output
    with cli.app.app_context():
        account = db.session.scalars(db.select(Account)).one()
        assert account.quota["fast"]["remaining"] == 7


def test_refresh_quotas_marks_a_dead_token_invalid(cli, emu):
    cli("add", "-", input=f"{GOOD_1}\n")
    emu.set_fault("invalid", token=GOOD_1)  # rate-limits answers 403 code 16, like grok.com
    result = cli("refresh-quotas")
    assert result.exit_code == 0
    assert "1 with problems" in result.output and "rejected" in result.output
    with cli.app.app_context():
        account = db.session.scalars(db.select(Account)).one()
    assert account.status == "invalid"
    assert "invalid_credentials" in account.last_error
