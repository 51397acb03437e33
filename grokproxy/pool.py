"""The token pool: pick an account fairly, claim a specific one, record how it fared.

Rotation is least-recently-used by a database-issued number: each pick takes the usable account
with the smallest `last_used_seq` and stamps it with the next number (a PostgreSQL sequence; on
SQLite the current maximum plus one, under the write lock). Because the order lives in the
database, rotation is fair across every worker process and every host sharing it.

Health is kept per mode where grok.com's answer is about one mode: a rate limit (HTTP 429,
code 8, usage or spending limit) blocks only that mode of the account, in its quota snapshot,
until the reset; the account's other modes stay in rotation. Only rejected credentials make the
whole account `invalid`, and only replies that keep breaking off mid-stream cool the whole
account (`cooling`). An account's tier (free / paid / heavy, read from its quota totals) says
which modes it has at all: the pick never sends a mode to a tier that lacks it.

Every function here is one short transaction, committed before grok.com is called.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    create_engine,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)

from .crypto import SecretBox
from .errors import NoAccount, RateLimited
from .extensions import db, write_transaction
from .models import Account, AccountStatus, UTCDateTime, utcnow

log = logging.getLogger(__name__)

accounts = Account.__table__
PICK_SEQUENCE = "account_pick_seq"
MAX_ERROR_LENGTH = 500

# Modes each tier has (docs/upstream.md §5.2: a free account has fast and a small auto quota,
# SuperGrok adds expert and grok-4.3, Heavy adds heavy). A mode no tier lists (a custom catalog's)
# is allowed on every tier; an account of unknown tier (no quota read yet) is tried for any mode.
TIER_MODES: dict[str, frozenset[str]] = {
    "free": frozenset({"auto", "fast"}),
    "paid": frozenset({"auto", "fast", "expert", "grok-420-computer-use-sa"}),
    "heavy": frozenset({"auto", "fast", "expert", "heavy", "grok-420-computer-use-sa"}),
}
TIERS = tuple(TIER_MODES)


@functools.lru_cache(maxsize=64)
def tiers_lacking(mode: str | None) -> tuple[str, ...]:
    """The tiers that do not have `mode` (none for a mode no tier lists)."""
    if not mode or not any(mode in modes for modes in TIER_MODES.values()):
        return ()
    return tuple(tier for tier, modes in TIER_MODES.items() if mode not in modes)


def tier_has(tier: str | None, mode: str | None) -> bool:
    """Whether an account of `tier` (None: not known yet) may be sent `mode`."""
    return tier not in tiers_lacking(mode)


@dataclass(frozen=True)
class Lease:
    """An account picked for one request, with its decrypted token (never logged)."""

    account_id: int
    email_md5: str
    token: str
    token_preview: str
    upstream_user_id: str | None = None  # grok's userId (the chat gateway needs it)

    def __repr__(self) -> str:
        return f"Lease(account_id={self.account_id}, token={self.token_preview})"


def _secrets() -> SecretBox:
    return current_app.extensions["grokproxy.secrets"]


# Decrypted pool tokens by their stored ciphertext, per SecretBox: a Fernet decryption (HMAC
# check and AES) on every pick was a tenth of the pick's cost. A ciphertext never changes its
# plaintext (a new token is a new ciphertext), so entries never go stale; the bound only keeps
# a pool whose tokens are re-added over and over from growing the cache.
_TOKEN_CACHE_SIZE = 4096
# The entry keeps its box alive, so no later box can take its id while the entry stands.
_tokens: dict[tuple[int, str], tuple[SecretBox, str]] = {}


def _decrypt_token(ciphertext: str) -> str:
    box = _secrets()
    key = (id(box), ciphertext)
    cached = _tokens.get(key)
    if cached is not None and cached[0] is box:
        return cached[1]
    token = box.decrypt(ciphertext)
    if len(_tokens) >= _TOKEN_CACHE_SIZE:
        _tokens.clear()
    _tokens[key] = (box, token)
    return token


def _usable(now: datetime):
    """Active accounts, and cooling ones whose cooldown has passed (they return by themselves)."""
    return or_(
        accounts.c.status == AccountStatus.ACTIVE,
        and_(accounts.c.status == AccountStatus.COOLING, accounts.c.cooldown_until <= now),
    )


def quota_blocks(quota: dict[str, Any] | None, mode: str | None, now: datetime) -> datetime | None:
    """When the known quota of `mode` is used up, the time it resets; else None."""
    if not quota or not mode:
        return None
    entry = quota.get(mode)
    if not isinstance(entry, dict) or entry.get("remaining") != 0:
        return None
    reset_at = entry.get("reset_at")
    if not reset_at:
        return None
    try:
        reset = datetime.fromisoformat(reset_at)
    except (TypeError, ValueError):
        return None
    return reset if reset > now else None


def _next_sequence(conn: Connection):
    """The next rotation number, as an expression of the UPDATE that stamps it (no round trip
    of its own)."""
    if conn.dialect.name == "postgresql":
        return literal_column(f"nextval('{PICK_SEQUENCE}')")
    # SQLite: the IMMEDIATE transaction holds the write lock, so max + 1 cannot be taken twice.
    latest = select(func.coalesce(func.max(accounts.c.last_used_seq), 0) + 1)
    return latest.correlate(None).scalar_subquery()


def _stamp_used(conn: Connection, account_id: int, now: datetime) -> Lease:
    """Give the account the next rotation number and count the use; returns its lease."""
    row = conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(
            last_used_seq=_next_sequence(conn),
            use_count=accounts.c.use_count + 1,
            last_used_at=now,
            status=AccountStatus.ACTIVE,
            cooldown_until=None,
            updated_at=now,
        )
        .returning(
            accounts.c.id,
            accounts.c.email_md5,
            accounts.c.token_encrypted,
            accounts.c.token_preview,
            accounts.c.upstream_user_id,
        )
    ).one()
    return _lease(row)


def _lease(row: Any) -> Lease:
    token = _decrypt_token(row.token_encrypted)
    return Lease(row.id, row.email_md5, token, row.token_preview, row.upstream_user_id)


def quota_instant(moment: datetime) -> str:
    """The one text form of a quota reset time (UTC, whole seconds): it sorts like the time."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def reset_instant(moment: datetime) -> str:
    """A reset time in that form, rounded up: a mode never returns before grok.com resets it."""
    if moment.microsecond:
        moment = moment + timedelta(seconds=1)
    return quota_instant(moment)


# The pick is ONE statement: choose the least recently used usable account (skipping those
# whose known quota for the mode is used up) and stamp it with the next rotation number.
# Statements are written once as text: building them with the expression language cost more
# than the database round trip itself.
_PICK_SET = """
UPDATE accounts SET last_used_seq = {next_seq}, use_count = use_count + 1,
    last_used_at = :now, status = 'active', cooldown_until = NULL, updated_at = :now
WHERE id = (
    SELECT id FROM accounts
    WHERE (status = 'active' OR (status = 'cooling' AND cooldown_until <= :now)){quota}{exclude}
    {tier}{fresh}
    ORDER BY last_used_seq, id LIMIT 1{lock})
RETURNING id, email_md5, token_encrypted, token_preview, upstream_user_id
"""
# PostgreSQL re-checks a row it locks on the row's newest version: a row another picker stamped
# after this statement's snapshot would pass that check and be picked twice in a row. Its new
# number is above every number in the snapshot (the max below, computed once from the snapshot),
# so this condition turns such a row down and the scan moves on to the next one.
_FRESH_ONLY = "\n      AND last_used_seq <= (SELECT COALESCE(MAX(last_used_seq), 0) FROM accounts)"
# Quota filter: skip when remaining is 0 and reset_at (canonical text, see store_quota) is later.
_QUOTA_FILTER = {
    "sqlite": "\n      AND NOT (COALESCE(json_extract(quota, :remaining_path), -1) = 0"
    " AND COALESCE(json_extract(quota, :reset_path), '') > :now_text)",
    "postgresql": "\n      AND NOT (COALESCE(quota #>> CAST(:remaining_path AS text[]), '') = '0'"
    " AND COALESCE(quota #>> CAST(:reset_path AS text[]), '') > :now_text)",
}
_pick_statements: dict[tuple[Any, ...], Any] = {}


def _tier_filter(lacking: tuple[str, ...]) -> str:
    """Skip the tiers that lack the mode (literals of TIER_MODES, never request input)."""
    if not lacking:
        return ""
    names = ", ".join(f"'{tier}'" for tier in lacking)
    return f"\n      AND (tier IS NULL OR tier NOT IN ({names}))"


def _pick_statement(with_mode: bool, with_exclude: bool, lacking: tuple[str, ...] = ()):
    """The SQLite pick (PostgreSQL picks run `_postgres_pick_sql` on a raw connection)."""
    key = ("sqlite", with_mode, with_exclude, lacking)
    statement = _pick_statements.get(key)
    if statement is None:
        sql = _PICK_SET.format(
            next_seq="(SELECT COALESCE(MAX(last_used_seq), 0) + 1 FROM accounts)",
            quota=_QUOTA_FILTER["sqlite"] if with_mode else "",
            tier=_tier_filter(lacking),
            exclude=" AND id NOT IN :exclude" if with_exclude else "",
            # SQLite has no row locks: BEGIN IMMEDIATE already serialises the writers.
            lock="",
            fresh="",
        )
        params = [bindparam("now", type_=UTCDateTime())]
        if with_exclude:
            params.append(bindparam("exclude", expanding=True))
        statement = text(sql).bindparams(*params)
        _pick_statements[key] = statement
    return statement


def _quota_paths(dialect: str, mode: str) -> dict[str, str]:
    if dialect == "postgresql":
        return {"remaining_path": f"{{{mode},remaining}}", "reset_path": f"{{{mode},reset_at}}"}
    quoted = '"' + mode.replace('"', "") + '"'
    return {"remaining_path": f"$.{quoted}.remaining", "reset_path": f"$.{quoted}.reset_at"}


# PostgreSQL picks use an engine of their own per process and database: autocommit (the pick is
# one statement), no ping and no reset on checkout/return. That halves the client-side cost of a
# pick; a connection the server dropped fails one pick, which is retried on a fresh connection.
_pick_engines: dict[tuple[int, str], Engine] = {}
_pick_engines_lock = threading.Lock()
# A PostgreSQL pick that found every candidate taken by concurrent pickers tries again this often.
PICK_RACE_RETRIES = 50


def _pick_engine() -> Engine:
    engine = db.engine
    if engine.dialect.name != "postgresql":
        return engine
    key = (os.getpid(), engine.url.render_as_string(hide_password=False))
    pick_engine = _pick_engines.get(key)
    if pick_engine is None:
        with _pick_engines_lock:
            pick_engine = _pick_engines.get(key)
            if pick_engine is None:
                pick_engine = create_engine(
                    engine.url,
                    isolation_level="AUTOCOMMIT",
                    pool_pre_ping=False,
                    pool_reset_on_return=None,
                )
                _pick_engines[key] = pick_engine
    return pick_engine


def _postgres_pick_sql(with_mode: bool, with_exclude: bool, lacking: tuple[str, ...] = ()) -> str:
    """The pick statement in psycopg's own parameter style (run on a raw connection)."""
    key = ("postgresql-raw", with_mode, with_exclude, lacking)
    sql = _pick_statements.get(key)
    if sql is None:
        quota = _QUOTA_FILTER["postgresql"] if with_mode else ""
        sql = _PICK_SET.format(
            next_seq=f"nextval('{PICK_SEQUENCE}')",
            quota=quota.replace("CAST(:remaining_path AS text[])", "%(remaining_path)s::text[]")
            .replace("CAST(:reset_path AS text[])", "%(reset_path)s::text[]")
            .replace(":now_text", "%(now_text)s"),
            tier=_tier_filter(lacking),
            exclude=" AND id <> ALL(%(exclude)s)" if with_exclude else "",
            lock=" FOR UPDATE SKIP LOCKED",
            fresh=_FRESH_ONLY,
        ).replace(":now", "%(now)s")
        _pick_statements[key] = sql
    return sql


def _pick_postgres(mode: str | None, exclude: Collection[int], now: datetime) -> Any:
    """One autocommit statement on a raw connection of the pick engine: one round trip, and
    none of the client-side cost a SQLAlchemy Connection adds to a statement this small."""
    params: dict[str, Any] = {"now": now}
    if mode:
        params.update(
            remaining_path=[mode, "remaining"],
            reset_path=[mode, "reset_at"],
            now_text=quota_instant(now),
        )
    if exclude:
        params["exclude"] = list(exclude)
    sql = _postgres_pick_sql(bool(mode), bool(exclude), tiers_lacking(mode))
    engine = _pick_engine()
    for attempt in (1, 2):
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(sql, params)
            row = cursor.fetchone()
            cursor.close()
            return row
        except engine.dialect.loaded_dbapi.OperationalError:
            # A connection the server dropped (restart, failover): retry once on a fresh one.
            raw.invalidate()
            if attempt == 2:
                raise
            log.info("pick: the database dropped a connection; retrying on a fresh one")
        finally:
            raw.close()
    return None


def pick_account(mode: str | None = None, exclude: Collection[int] = ()) -> Lease:
    """Take the least recently used usable account; raises RateLimited or NoAccount when none."""
    now = utcnow()
    if db.engine.dialect.name == "postgresql":
        for _ in range(PICK_RACE_RETRIES):
            row = _pick_postgres(mode, exclude, now)
            if row is not None:
                account_id, email_md5, token_encrypted, token_preview, user_id = row
                token = _decrypt_token(token_encrypted)
                return Lease(account_id, email_md5, token, token_preview, user_id)
            # Every candidate was locked or restamped by concurrent pickers: that is a lost
            # race, not an empty pool, as long as something usable remains.
            if not _usable_exists(mode, exclude):
                break
            now = utcnow()
        raise exhausted_error(mode, exclude)
    params: dict[str, Any] = {"now": now}
    if exclude:
        params["exclude"] = list(exclude)
    if mode:
        params.update(_quota_paths("sqlite", mode), now_text=quota_instant(now))
    with write_transaction() as conn:
        statement = _pick_statement(bool(mode), bool(exclude), tiers_lacking(mode))
        row = conn.execute(statement, params).first()
    if row is not None:
        return _lease(row)
    raise exhausted_error(mode, exclude)


def claim_account(account_id: int, mode: str | None = None, *, who: str = "this account") -> Lease:
    """Use one given account (a user's binding, a conversation's owner) or say why it cannot."""
    now = utcnow()
    with write_transaction() as conn:
        query = select(accounts).where(accounts.c.id == account_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise NoAccount(f"{who} no longer exists: it was deleted from the pool")
        if row.status == AccountStatus.INVALID:
            raise NoAccount(
                f"{who} is invalid: grok.com rejected its SSO token; the operator must re-add it"
            )
        if row.status == AccountStatus.DISABLED:
            raise NoAccount(f"{who} is disabled by the operator")
        if not tier_has(row.tier, mode):
            raise NoAccount(f"{who} is a {row.tier}-tier grok account, which has no {mode} mode")
        if row.status == AccountStatus.COOLING and row.cooldown_until and row.cooldown_until > now:
            wait = (row.cooldown_until - now).total_seconds()
            why = row.last_error or ""
            what = (
                "is rate-limited by grok.com"
                if why.startswith("rate_limited") or not why
                else f"is cooling ({why})"
            )
            raise RateLimited(
                f"{who} {what}; it returns in {_human(wait)}",
                retry_after=max(1, int(wait + 0.999)),
            )
        reset = quota_blocks(row.quota, mode, now)
        if reset is not None:
            wait = (reset - now).total_seconds()
            raise RateLimited(
                f"{who} is rate-limited for {mode} by grok.com until {clock(reset)}; "
                f"it resets in {_human(wait)}",
                retry_after=max(1, int(wait + 0.999)),
            )
        return _stamp_used(conn, row.id, now)


def _blocked_until(row: Any, mode: str | None, now: datetime) -> datetime | None:
    """When a usable-status row could serve `mode` again (None: it can now)."""
    if row.status == AccountStatus.COOLING and row.cooldown_until and row.cooldown_until > now:
        return row.cooldown_until
    return quota_blocks(row.quota, mode, now)


def _candidates(mode: str | None) -> list[Any]:
    now = utcnow()
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(accounts.c.id, accounts.c.quota, accounts.c.tier).where(_usable(now))
        ).all()
    return [
        row
        for row in rows
        if tier_has(row.tier, mode) and quota_blocks(row.quota, mode, now) is None
    ]


def _usable_exists(mode: str | None, exclude: Collection[int]) -> bool:
    return any(row.id not in exclude for row in _candidates(mode))


def has_usable(mode: str | None = None) -> bool:
    """Whether some account could be picked right now for `mode`."""
    return bool(_candidates(mode))


def servable_tiers() -> set[str | None]:
    """The tiers of the accounts in rotation (active, or cooling for now); None = not known."""
    with db.engine.connect() as conn:
        return set(
            conn.execute(
                select(accounts.c.tier)
                .where(accounts.c.status.in_((AccountStatus.ACTIVE, AccountStatus.COOLING)))
                .distinct()
            ).scalars()
        )


def exhausted_error(mode: str | None, exclude: Collection[int] = ()):
    """Why nothing could be picked: 429 with Retry-After if something returns later, else 503."""
    now = utcnow()
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(
                accounts.c.id,
                accounts.c.status,
                accounts.c.cooldown_until,
                accounts.c.quota,
                accounts.c.tier,
            )
        ).all()
    if not rows:
        return NoAccount(
            "the token pool is empty: add SSO tokens with POST /api/batch-add-grok-token"
        )
    returns: list[datetime] = []
    cooling = False  # some account is out as a whole (its streams kept breaking off)
    lacking: dict[str, int] = {}
    for row in rows:
        if row.id in exclude or row.status in (AccountStatus.INVALID, AccountStatus.DISABLED):
            continue
        if not tier_has(row.tier, mode):
            lacking[row.tier] = lacking.get(row.tier, 0) + 1
            continue
        until = _blocked_until(row, mode, now)
        if until is not None:
            returns.append(until)
            cooling = cooling or row.status == AccountStatus.COOLING
    if returns:
        first = min(returns)
        wait = (first - now).total_seconds()
        what = f"rate-limited for {mode} by grok.com" if mode else "rate-limited by grok.com"
        if cooling:
            what += " or cooling after failures"
        return RateLimited(
            f"every usable account is {what}; "
            f"the first returns at {clock(first)} (in {_human(wait)})",
            retry_after=max(1, int(wait + 0.999)),
        )
    if lacking and mode:
        tiers = ", ".join(f"{n} {tier}-tier" for tier, n in sorted(lacking.items()))
        return NoAccount(
            f"no account in the pool has the {mode} mode ({tiers}); add an account whose "
            f"subscription includes {mode}"
        )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return NoAccount(f"no usable account in the pool ({summary}); add or re-add SSO tokens")


def clock(moment: datetime) -> str:
    """A time of day for messages, "14:05 UTC" (the date too when it is not today)."""
    moment = moment.astimezone(UTC)
    if moment.date() != utcnow().date():
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    return moment.strftime("%H:%M UTC")


def _human(seconds: float) -> str:
    seconds = max(1, int(seconds + 0.999))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _update(account_id: int, **values: Any) -> None:
    with write_transaction() as conn:
        conn.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(updated_at=utcnow(), **values)
        )


def _unless_disabled(status: str):
    """The new status, except that an account the operator disabled stays disabled (a request
    that was already running on it when it was disabled must not bring it back)."""
    return case((accounts.c.status == AccountStatus.DISABLED, AccountStatus.DISABLED), else_=status)


def mark_cooling(account_id: int, seconds: float, reason: str) -> datetime:
    """Rate limited: out of rotation until `seconds` from now, then back by itself."""
    until = utcnow() + timedelta(seconds=max(1.0, seconds))
    _update(
        account_id,
        status=_unless_disabled(AccountStatus.COOLING),
        cooldown_until=until,
        fail_count=accounts.c.fail_count + 1,
        last_error=reason[:MAX_ERROR_LENGTH],
    )
    log.info("account %s cooling for %.0f s: %s", account_id, seconds, reason)
    return until


def mark_invalid(account_id: int, reason: str) -> None:
    """Credentials rejected: never picked again until the token is re-added."""
    _update(
        account_id,
        status=_unless_disabled(AccountStatus.INVALID),
        cooldown_until=None,
        fail_count=accounts.c.fail_count + 1,
        last_error=reason[:MAX_ERROR_LENGTH],
    )
    log.warning("account %s marked invalid: %s", account_id, reason)


def record_failure(account_id: int, reason: str) -> None:
    """grok.com misbehaved on this account: count it, keep the status."""
    _update(account_id, fail_count=accounts.c.fail_count + 1, last_error=reason[:MAX_ERROR_LENGTH])


def limit_mode(account_id: int, mode: str, seconds: float, reason: str) -> datetime:
    """Rate limited on `mode`: that mode only is out of rotation until the reset; returns it.

    The block lives in the mode's quota entry (remaining 0, reset_at), which the pick's quota
    filter already reads, so the account's other modes stay in rotation at no extra cost.
    """
    until = utcnow() + timedelta(seconds=max(1.0, seconds))
    with write_transaction() as conn:
        query = select(accounts.c.quota).where(accounts.c.id == account_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        current = conn.execute(query).scalar_one_or_none()
        snapshot = dict(current or {})
        entry = dict(snapshot.get(mode) or {})
        entry.update(remaining=0, reset_at=reset_instant(until))
        snapshot[mode] = entry
        conn.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(
                quota=snapshot,
                fail_count=accounts.c.fail_count + 1,
                last_error=reason[:MAX_ERROR_LENGTH],
                updated_at=utcnow(),
            )
        )
    log.info("account %s rate-limited for %s for %.0f s: %s", account_id, mode, seconds, reason)
    return until


# A reply that ended well: one query of its mode is spent (the stored count follows grok.com's
# between quota reads) and the account's run of broken streams ends. One statement, so
# concurrent replies on one account each count; a count already at 0 (or unknown) stays.
_SUCCESS_SQL = {
    "sqlite": """
UPDATE accounts SET stream_failures = 0, quota = CASE
    WHEN json_type(quota, :path) IN ('integer', 'real') AND json_extract(quota, :path) > 0
    THEN json_set(quota, :path, json_extract(quota, :path) - 1) ELSE quota END
WHERE id = :id""",
    "postgresql": """
UPDATE accounts SET stream_failures = 0, quota = CASE
    WHEN json_typeof(quota #> CAST(:path AS text[])) = 'number' THEN CASE
        WHEN CAST(quota #>> CAST(:path AS text[]) AS numeric) > 0
        THEN CAST(jsonb_set(CAST(quota AS jsonb), CAST(:path AS text[]),
            to_jsonb(CAST(quota #>> CAST(:path AS text[]) AS numeric) - 1)) AS json)
        ELSE quota END
    ELSE quota END
WHERE id = :id""",
}


_SUCCESS_STATEMENTS = {dialect: text(sql) for dialect, sql in _SUCCESS_SQL.items()}


def record_success(account_id: int, mode: str | None) -> None:
    """A reply on this account ended well: spend one query of `mode`, end a broken-stream run."""
    statement, params = success_statement(account_id, mode, db.engine.dialect.name)
    with write_transaction() as conn:
        conn.execute(statement, params)


def success_statement(account_id: int, mode: str | None, dialect: str) -> tuple[Any, dict]:
    """record_success's statement and parameters, for a caller that writes it in a transaction
    of its own making (a request's bookkeeping, relay.defer_write)."""
    if not mode:
        return update(accounts).where(accounts.c.id == account_id).values(stream_failures=0), {}
    path = _quota_paths(dialect, mode)["remaining_path"]
    return _SUCCESS_STATEMENTS[dialect], {"id": account_id, "path": path}


def record_stream_failure(
    account_id: int, reason: str, *, cool_after: int, cool_seconds: float
) -> datetime | None:
    """A reply broke off mid-stream: count it; `cool_after` in a row cool the account.

    Returns when the account returns if this failure cooled it, else None.
    """
    with write_transaction() as conn:
        failures = conn.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(
                stream_failures=accounts.c.stream_failures + 1,
                fail_count=accounts.c.fail_count + 1,
                last_error=reason[:MAX_ERROR_LENGTH],
                updated_at=utcnow(),
            )
            .returning(accounts.c.stream_failures)
        ).scalar_one_or_none()
        if failures is None or failures < cool_after:
            return None
        until = utcnow() + timedelta(seconds=max(1.0, cool_seconds))
        why = f"{failures} replies in a row broke off mid-stream (last: {reason})"
        conn.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(
                status=AccountStatus.COOLING,
                cooldown_until=until,
                stream_failures=0,
                last_error=why[:MAX_ERROR_LENGTH],
            )
        )
    log.warning("account %s cooling for %.0f s: %s", account_id, cool_seconds, why)
    return until


def set_tier(account_id: int, tier: str | None) -> None:
    """Remember the tier read from the account's quota totals."""
    if tier is not None:
        with write_transaction() as conn:
            conn.execute(update(accounts).where(accounts.c.id == account_id).values(tier=tier))


def store_quota(account_id: int, mode: str, quota: dict[str, Any]) -> None:
    """Remember the last known quota of one mode (merged into the account's snapshot)."""
    with write_transaction() as conn:
        current = conn.execute(
            select(accounts.c.quota).where(accounts.c.id == account_id)
        ).scalar_one_or_none()
        snapshot = dict(current or {})
        snapshot[mode] = _canonical_quota(quota)
        conn.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(quota=snapshot, quota_checked_at=utcnow())
        )


def _canonical_quota(quota: dict[str, Any]) -> dict[str, Any]:
    """Write reset_at in the one text form the pick's SQL filter compares (see quota_instant)."""
    entry = dict(quota)
    reset_at = entry.get("reset_at")
    if isinstance(reset_at, datetime):
        reset = reset_at
    elif isinstance(reset_at, str) and reset_at:
        try:
            reset = datetime.fromisoformat(reset_at.replace("Z", "+00:00"))
        except ValueError:
            reset = None
    else:
        reset = None
    if reset is not None and reset.tzinfo is None:
        reset = reset.replace(tzinfo=UTC)
    entry["reset_at"] = reset_instant(reset) if reset is not None else None
    return entry
