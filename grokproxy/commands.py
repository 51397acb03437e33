"""Ops commands for the `flask` CLI (`flask --app wsgi <command>`)."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from typing import TextIO

import click
from flask import Flask, current_app
from flask.cli import AppGroup


def register(app: Flask) -> None:
    """Attach grokproxy's commands to the app's CLI."""
    from .demo import demo

    app.cli.add_command(upgrade_db)
    app.cli.add_command(tokens_group)
    app.cli.add_command(users_group)
    app.cli.add_command(demo)


@click.command("upgrade-db")
def upgrade_db() -> None:
    """Apply pending migrations under the same lock gunicorn's start-up uses."""
    from .dbupgrade import upgrade_database

    upgrade_database(current_app._get_current_object())
    click.echo("database schema is up to date")


@click.group("tokens", cls=AppGroup)
def tokens_group() -> None:
    """Manage the pool of grok.com SSO tokens (output shows previews, never a token)."""


def read_token_lines(stream: TextIO) -> list[tuple[int, str]]:
    """(line number, token) for each line; blank lines and `#` comments are skipped."""
    tokens = []
    for number, line in enumerate(stream, start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            tokens.append((number, text))
    return tokens


@tokens_group.command("add")
@click.argument("source", type=click.File("r", encoding="utf-8"))
def tokens_add(source: TextIO) -> None:
    """Check and add the tokens of SOURCE (a file, or - for stdin), one per line."""
    from .tokens import MAX_BATCH, add_tokens

    lines = read_token_lines(source)
    if not lines:
        raise click.ClickException("no tokens found (one per line; # starts a comment)")
    added = failed = 0
    # Batches of the API's size keep each round's memory and answer small.
    for start in range(0, len(lines), MAX_BATCH):
        batch = lines[start : start + MAX_BATCH]
        result = add_tokens([token for _, token in batch])
        for entry in result.email_list:
            click.echo(f"{entry['status']:9}  {entry['email_md5']}  {entry['email']}")
            added += 1
        for entry in result.failed:
            line = batch[entry["index"]][0]
            preview = entry["token_preview"] or "-"
            click.echo(f"failed     line {line} ({preview}): {entry['error']}", err=True)
            failed += 1
    click.echo(f"{added} stored, {failed} failed")
    if failed and not added:
        raise SystemExit(1)


@tokens_group.command("list")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--page-size", type=click.IntRange(1, 100), default=100, show_default=True)
def tokens_list(page: int, page_size: int) -> None:
    """Show the pool's accounts: status, use and failure counts, previews."""
    from .tokens import list_accounts

    listing = list_accounts(page, page_size)
    click.echo(
        f"{'id':>5}  {'email_md5':32}  {'status':8}  {'uses':>6}  {'fails':>5}  "
        f"{'token':12}  email / last error"
    )
    for item in listing["data"]:
        note = item["email"]
        if item["tier"]:
            note += f"  {item['tier']}"
        limited = [
            f"{mode} until {state['reset_at']}"
            for mode, state in item["modes"].items()
            if state["state"] == "limited"
        ]
        if limited:
            note += f"  (limited: {', '.join(limited)})"
        if item["status"] == "cooling":
            note += f"  (cooling until {item['cooldown_until']})"
        if item["last_error"]:
            note += f"  [{item['last_error'][:80]}]"
        click.echo(
            f"{item['id']:>5}  {item['email_md5']:32}  {item['status']:8}  "
            f"{item['use_count']:>6}  {item['fail_count']:>5}  {item['token_preview']:12}  {note}"
        )
    click.echo(f"page {listing['page']} of {max(1, listing['pages'])}, {listing['total']} accounts")


_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")


@tokens_group.command("delete")
@click.argument("email_md5", nargs=-1, required=True)
def tokens_delete(email_md5: tuple[str, ...]) -> None:
    """Remove accounts by the md5 of their e-mail (their users are unbound)."""
    from .tokens import delete_accounts

    bad = [value for value in email_md5 if not _MD5.match(value)]
    if bad:
        raise click.BadParameter(
            f"{len(bad)} value(s) are not an email_md5 (32 hex digits)", param_hint="EMAIL_MD5"
        )
    result = delete_accounts(email_md5)
    for value in result["deleted"]:
        click.echo(f"deleted    {value}")
    for value in result["not_found"]:
        click.echo(f"not found  {value}")
    if result["not_found"] and not result["deleted"]:
        raise SystemExit(1)


@tokens_group.command("refresh-quotas")
@click.option(
    "--loop",
    is_flag=True,
    help="Keep running: every TICK seconds re-read the accounts whose snapshot is older than "
    "QUOTA_REFRESH_SECONDS (or whose used-up window has reset), a few per tick.",
)
@click.option(
    "--tick", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="With --loop."
)
def tokens_refresh_quotas(loop: bool, tick: float) -> None:
    """Fetch every active or cooling account's quota from grok.com (or keep them current)."""
    from .tokens import refresh_quotas

    if loop:
        _refresh_loop(tick)
        return
    report = refresh_quotas()
    for entry in report:
        outcome = entry["error"] or "ok"
        click.echo(f"{entry['id']:>5}  {entry['email_md5']}  {outcome}")
    problems = sum(1 for entry in report if entry["error"])
    click.echo(f"{len(report)} accounts checked, {problems} with problems")


def _check_md5(values: tuple[str, ...]) -> None:
    bad = [value for value in values if not _MD5.match(value)]
    if bad:
        raise click.BadParameter(
            f"{len(bad)} value(s) are not an email_md5 (32 hex digits)", param_hint="EMAIL_MD5"
        )


@tokens_group.command("disable")
@click.argument("email_md5", nargs=-1, required=True)
def tokens_disable(email_md5: tuple[str, ...]) -> None:
    """Take accounts out of rotation (never picked; their data stays) until enabled."""
    from .console import set_disabled

    _check_md5(email_md5)
    result = set_disabled(email_md5, True)
    for value in result["disabled"]:
        click.echo(f"disabled   {value}")
    for value in result["not_found"]:
        click.echo(f"not found  {value}")
    if result["not_found"] and not result["disabled"]:
        raise SystemExit(1)


@tokens_group.command("enable")
@click.argument("email_md5", nargs=-1, required=True)
def tokens_enable(email_md5: tuple[str, ...]) -> None:
    """Put disabled accounts back into rotation."""
    from .console import set_disabled

    _check_md5(email_md5)
    result = set_disabled(email_md5, False)
    for value in result["enabled"]:
        click.echo(f"enabled    {value}")
    for value in result["not_found"]:
        click.echo(f"not found  {value}")
    if result["not_found"] and not result["enabled"]:
        raise SystemExit(1)


@contextlib.contextmanager
def _answers_as_errors() -> Iterator[None]:
    """A service's refusal (no such user, bad limit) ends the command with its message."""
    from .errors import APIError

    try:
        yield
    except APIError as error:
        raise click.ClickException(error.message) from None


@click.group("users", cls=AppGroup)
def users_group() -> None:
    """Manage the users of the share platform: keys, daily limits, login links."""


@users_group.command("list")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
def users_list(page: int) -> None:
    """Show users: account, today's use and limit, last activity."""
    from .users import list_users

    listing = list_users(page, 100)
    for item in listing["data"]:
        limit = item["daily_limit"] or "unlimited"
        state = "  (revoked)" if item["revoked"] else ""
        click.echo(
            f"{item['user_name']:24}  {item['email'] or '-':40}  "
            f"{item['used_today']:>5}/{limit!s:<9}  {item['last_activity_at'] or 'never'}{state}"
        )
    click.echo(f"page {listing['page']} of {max(1, listing['pages'])}, {listing['total']} users")


@users_group.command("rotate-key")
@click.argument("user_name")
def users_rotate_key(user_name: str) -> None:
    """Give USER_NAME a new API key (printed once); the old key stops working at once."""
    from .users import rotate_key

    with _answers_as_errors():
        click.echo(rotate_key(user_name))


@users_group.command("revoke")
@click.argument("user_name")
def users_revoke(user_name: str) -> None:
    """Shut USER_NAME out: API key, web sessions and login links."""
    from .users import revoke_user

    with _answers_as_errors():
        revoke_user(user_name)
    click.echo(f"revoked    {user_name}")


@users_group.command("set-limit")
@click.argument("user_name")
@click.argument("limit")
def users_set_limit(user_name: str, limit: str) -> None:
    """Set USER_NAME's daily limit: a number (0 = unlimited) or `default`."""
    from .users import effective_limit, set_daily_limit

    if limit == "default":
        value = None
    elif limit.isdigit():
        value = int(limit)
    else:
        raise click.BadParameter("a whole number, or default", param_hint="LIMIT")
    with _answers_as_errors():
        user = set_daily_limit(user_name, value)
    click.echo(f"{user.user_name}: {effective_limit(user) or 'unlimited'} requests a day")


@users_group.command("link")
@click.argument("user_name")
def users_link(user_name: str) -> None:
    """Print a new one-time login link for USER_NAME."""
    from .users import new_login_link

    with _answers_as_errors():
        _user, token, expires_at = new_login_link(user_name)
    base = (current_app.config.get("PUBLIC_URL") or "").rstrip("/")
    click.echo(f"{base}/login/{token}")
    click.echo(f"valid until {expires_at.isoformat(timespec='seconds')}", err=True)


def _refresh_loop(tick: float, ticks: int | None = None) -> None:
    """Refresh due quotas every `tick` seconds (for ever, or `ticks` times); one process only:
    run it as a systemd service or a supervised container next to the web workers."""
    from .extensions import db
    from .tokens import refresh_batch_size, refresh_due, usable_count

    log = logging.getLogger("grokproxy.refresher")
    done = 0
    while ticks is None or done < ticks:
        started = time.monotonic()
        try:
            # Spread evenly: each tick takes its share of the pool, oldest snapshots first.
            report = refresh_due(refresh_batch_size(usable_count(), tick))
            for entry in report:
                if entry["error"]:
                    log.warning("quota of account %s: %s", entry["id"], entry["error"])
            if report:
                log.info("refreshed the quotas of %d accounts", len(report))
        except Exception:
            # A database or network outage must not end the refresher: the next tick retries.
            log.exception("quota refresh failed; retrying next tick")
            db.session.rollback()
        done += 1
        if ticks is None or done < ticks:
            time.sleep(max(0.0, tick - (time.monotonic() - started)))
