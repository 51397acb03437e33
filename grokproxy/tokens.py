"""The token service: add SSO tokens to the pool (checked upstream), list, delete, refresh quotas.

No Flask request in here: views and CLI commands call these functions inside an app context.
Network work (grok.com's session and rate-limit endpoints) runs in worker threads with no app
context and never inside a database transaction; each account is then stored in one short
transaction of its own.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from . import pool
from .crypto import SecretBox, preview
from .errors import database_unavailable
from .extensions import db
from .grok import errors as grok_errors
from .grok.client import AccountIdentity, GrokClient, Quota
from .grok.headers import normalize_token
from .models import Account, AccountStatus, User, email_md5, utcnow
from .upstream import grok_client, model_catalog

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 4096
MAX_BATCH = 500


class TokenFormatError(ValueError):
    """A token that cannot be an SSO cookie value (the message never contains the token)."""


@dataclass
class BatchResult:
    """What batch-add did: one entry per stored account, one per token it could not use."""

    email_list: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON answer of the admin API."""
        return {"email_list": self.email_list, "failed": self.failed}


def normalize(raw: Any) -> str:
    """The bare SSO token from operator input, or TokenFormatError saying what is wrong."""
    if not isinstance(raw, str):
        raise TokenFormatError(f"not a string (got {type(raw).__name__})")
    if len(raw) > MAX_TOKEN_LENGTH * 2:
        raise TokenFormatError(f"too long: an SSO token has at most {MAX_TOKEN_LENGTH} characters")
    try:
        token = normalize_token(raw)
    except ValueError as exc:
        text = raw.strip()
        if text and any(c.isspace() for c in text.rstrip(";").strip()):
            raise TokenFormatError("contains whitespace inside the token") from None
        raise TokenFormatError(str(exc)) from None
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenFormatError(f"too long: an SSO token has at most {MAX_TOKEN_LENGTH} characters")
    return token


def safe_preview(raw: Any) -> str | None:
    """A preview of whatever was sent (first 6 and last 4 characters), None for non-strings."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    with contextlib.suppress(ValueError):
        text = normalize_token(text)
    shown = preview(text[:MAX_TOKEN_LENGTH] if len(text) > MAX_TOKEN_LENGTH else text)
    # A malformed entry may hold anything, lone surrogates included, which no JSON answer can
    # encode: show those characters as "?" so the answer still reports every entry.
    return "".join(c if c.isprintable() else "?" for c in shown)


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(code, message) for a token grok.com did not accept, written for an operator."""
    if isinstance(exc, grok_errors.InvalidCredentials):
        return (
            "invalid_token",
            f"grok.com rejected the token (expired, signed out or blocked): {exc}",
        )
    if isinstance(exc, grok_errors.CloudflareChallenge):
        return "cloudflare", (
            "blocked by Cloudflare while checking the token; not stored. Retry later, change "
            "PROXY_URL_POOL or refresh GROK_CF_CLEARANCE"
        )
    if isinstance(exc, grok_errors.AntiBotRejected):
        return "anti_bot", (
            "grok.com's anti-bot rules rejected the check; not stored. Retry later or change "
            "GROK_STATSIG_ID / proxy"
        )
    if isinstance(exc, grok_errors.Blocked):
        return "blocked", f"grok.com blocked the check at its edge; not stored. Retry later: {exc}"
    if isinstance(exc, grok_errors.RateLimited):
        return "rate_limited", f"grok.com rate-limited the check; not stored. Retry later: {exc}"
    if isinstance(exc, grok_errors.GrokError):
        return "upstream_error", f"could not check the token (network or grok.com error): {exc}"
    return "internal_error", "could not check the token: unexpected error (see the server log)"


# Failures of the path, not of the account: the same call through the next proxy may succeed.
# The transport has already benched the proxy that failed (as for chat), so a retry takes another.
_PATH_FAILURES = (grok_errors.Blocked, grok_errors.UpstreamBroken)
MAX_PROXY_RETRIES = 3


def _through_proxies(client: GrokClient, call, *args: Any, **kwargs: Any) -> Any:
    """`call(*args)`, retried through the next proxy when the path failed (bounded by the
    number of proxies configured, at most MAX_PROXY_RETRIES more tries)."""
    retries = max(0, min(MAX_PROXY_RETRIES, len(client.settings.proxy_urls) - 1))
    for attempt in range(retries + 1):
        try:
            return call(*args, **kwargs)
        except _PATH_FAILURES as exc:
            if attempt == retries:
                raise
            log.info("%s failed through a proxy (%s); trying the next", call.__name__, exc.kind)
    raise AssertionError("unreachable")


def _resolve(client: GrokClient, token: str) -> AccountIdentity | BaseException:
    """Who a token belongs to, or the exception that says why not (runs in a worker thread)."""
    try:
        return _through_proxies(client, client.auth_session, token)
    except grok_errors.GrokError as exc:
        return exc
    except Exception as exc:  # a bug must cost one token, not the whole batch
        log.exception("unexpected error while checking a token (%s)", preview(token))
        return exc


def quota_entry(quota: Quota, now: datetime, default_wait: float) -> dict[str, Any]:
    """The stored snapshot of one mode; a used-up mode without a wait blocks for default_wait."""
    reset = None
    if quota.remaining == 0:
        wait = quota.wait_seconds if quota.wait_seconds else default_wait
        reset = now + timedelta(seconds=wait)
    return {
        "remaining": quota.remaining,
        "total": quota.total,
        "window_seconds": quota.window_seconds,
        "reset_at": reset.isoformat() if reset else None,
    }


def quota_modes() -> list[str]:
    """The distinct quota modes of the model catalog."""
    modes: list[str] = []
    for spec in model_catalog():
        if spec.mode not in modes:
            modes.append(spec.mode)
    return modes


def _fetch_quotas(
    client: GrokClient, token: str, modes: Sequence[str]
) -> dict[str, Quota | BaseException]:
    """Each mode's quota, or the error fetching it (runs in a worker thread)."""
    result: dict[str, Quota | BaseException] = {}
    for mode in modes:
        try:
            result[mode] = _through_proxies(client, client.rate_limits, token, mode)
        except grok_errors.GrokError as exc:
            result[mode] = exc
            if isinstance(exc, grok_errors.InvalidCredentials | grok_errors.Blocked):
                break  # the next modes would fail the same way
        except Exception as exc:
            log.exception("unexpected error while fetching a quota (%s)", preview(token))
            result[mode] = exc
            break
    return result


# A free account's fast window is a day long and holds 30 queries (paid ones: 2 h, 140 or more).
FREE_FAST_TOTAL = 30
FREE_WINDOW_SECONDS = 14400
HEAVY_FAST_TOTAL = 400


def detect_tier(quotas: dict[str, Quota]) -> str | None:
    """free / paid / heavy from the rate-limit totals per mode (None when they do not say)."""
    heavy, fast, expert = quotas.get("heavy"), quotas.get("fast"), quotas.get("expert")
    if (heavy is not None and (heavy.total or 0) > 0) or (
        fast is not None and (fast.total or 0) >= HEAVY_FAST_TOTAL
    ):
        return "heavy"
    if fast is not None and fast.total is not None:
        small = fast.total <= FREE_FAST_TOTAL
        long_window = (fast.window_seconds or 0) >= FREE_WINDOW_SECONDS
        if small or long_window or (expert is not None and expert.total == 0):
            return "free"
        return "paid"
    if expert is not None and (expert.total or 0) > 0:
        return "paid"
    return None


def _store_quotas(account_id: int, fetched: dict[str, Quota | BaseException]) -> str | None:
    """Remember the fetched quotas and the tier they show; returns the first error's message."""
    now = utcnow()
    default_wait = float(current_app.config["COOLDOWN_SECONDS"])
    problem = None
    read: dict[str, Quota] = {}
    for mode, quota in fetched.items():
        if isinstance(quota, Quota):
            read[mode] = quota
            if quota.total == 0:
                continue  # a mode the tier lacks: the tier says so, no snapshot needed
            pool.store_quota(account_id, mode, quota_entry(quota, now, default_wait))
        elif problem is None:
            problem = describe_failure(quota)[1]
    pool.set_tier(account_id, detect_tier(read))
    return problem


def _executor(jobs: int) -> ThreadPoolExecutor:
    workers = max(1, min(int(current_app.config["TOKEN_CHECK_CONCURRENCY"]), jobs))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="token-check")


def add_tokens(raw_list: Sequence[Any], *, fetch_quota: bool = True) -> BatchResult:
    """Check each token upstream and store the good ones; one bad token never fails the rest."""
    result = BatchResult()
    box: SecretBox = current_app.extensions["grokproxy.secrets"]
    client = grok_client()

    # 1. Local checks: format and duplicates within this call.
    to_check: list[tuple[int, str]] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(raw_list):
        try:
            token = normalize(raw)
        except TokenFormatError as exc:
            result.failed.append(_failure(index, raw, "malformed", f"not an SSO token: {exc}"))
            continue
        if token in first_index:
            result.failed.append(
                _failure(
                    index,
                    raw,
                    "duplicate",
                    f"same token as entry {first_index[token]}",
                )
            )
            continue
        first_index[token] = index
        to_check.append((index, token))

    # 2. Ask grok.com who each token belongs to, a bounded number at a time, outside any
    # transaction.
    if to_check:
        with _executor(len(to_check)) as executor:
            identities = list(executor.map(lambda item: _resolve(client, item[1]), to_check))
    else:
        identities = []

    # 3. Store each account in a transaction of its own.
    seen_md5: dict[str, int] = {}
    quota_jobs: list[tuple[int, str]] = []
    for (index, token), identity in zip(to_check, identities, strict=True):
        if not isinstance(identity, AccountIdentity):
            code, message = describe_failure(identity)
            result.failed.append(_failure(index, token, code, message))
            continue
        key = email_md5(identity.email)
        if key in seen_md5:
            result.failed.append(
                _failure(
                    index,
                    token,
                    "duplicate_account",
                    f"same grok account as entry {seen_md5[key]} ({key}); only that one is stored",
                )
            )
            continue
        seen_md5[key] = index
        try:
            account_id, status = _upsert(box, token, identity)
        except Exception as exc:
            if database_unavailable(exc):
                raise  # a 503: the whole call can be retried, re-adding a token is harmless
            log.exception("could not store the account of a token (%s)", preview(token))
            result.failed.append(
                _failure(index, token, "internal_error", "could not store the account (see log)")
            )
            continue
        result.email_list.append(
            {"email": identity.email.strip(), "email_md5": key, "status": status}
        )
        if status != "unchanged":
            quota_jobs.append((account_id, token))
        log.info("token %s %s account %s", preview(token), status, key)

    # 4. Remember the new accounts' quotas (a failure here does not undo the add).
    if fetch_quota and quota_jobs:
        _refresh(client, quota_jobs)
    result.failed.sort(key=lambda entry: entry["index"])
    return result


def _failure(index: int, raw: Any, code: str, message: str) -> dict[str, Any]:
    return {"index": index, "token_preview": safe_preview(raw), "error": message, "code": code}


def _upsert(box: SecretBox, token: str, identity: AccountIdentity) -> tuple[int, str]:
    """Insert or refresh the account of a checked token; one transaction, one retry on a race."""
    for attempt in (1, 2):
        try:
            return _upsert_once(box, token, identity)
        except IntegrityError:
            db.session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _upsert_once(box: SecretBox, token: str, identity: AccountIdentity) -> tuple[int, str]:
    email = identity.email.strip()
    key = email_md5(email)
    digest = box.digest(token)
    session = db.session()
    if session.in_transaction():
        session.commit()  # end a caller's read, so the transaction below starts fresh
    # SQLite: take the write lock at BEGIN, so the read-then-write below cannot be overtaken.
    session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    try:
        query = select(Account).where(Account.email_md5 == key).with_for_update()
        account = session.scalars(query).first()
        if account is None:
            # The same token under another e-mail: the account's e-mail changed upstream.
            query = select(Account).where(Account.token_digest == digest).with_for_update()
            account = session.scalars(query).first()
        if account is None:
            account = Account.for_token(box, token, email, identity.user_id)
            session.add(account)
            session.flush()
            account_id = account.id
            session.commit()
            return account_id, "added"
        changed = False
        if account.token_digest != digest:
            # A token held by another row (its e-mail changed) is released first.
            other = session.scalars(
                select(Account).where(Account.token_digest == digest, Account.id != account.id)
            ).first()
            if other is not None:
                session.delete(other)
                session.flush()
            account.token_encrypted = box.encrypt(token)
            account.token_digest = digest
            account.token_preview = preview(token)
            changed = True
        if account.email_md5 != key or account.email != email:
            account.email, account.email_md5 = email, key
            changed = True
        if identity.user_id and account.upstream_user_id != identity.user_id:
            account.upstream_user_id = identity.user_id
        if account.status == AccountStatus.INVALID:
            # grok.com just accepted this token. A disabled account stays disabled: enabling
            # it is an act of its own (console, API or CLI), not a side effect of a re-add.
            account.status = AccountStatus.ACTIVE
            account.cooldown_until = None
            account.last_error = None
            changed = True
        if changed and account.status == AccountStatus.ACTIVE:
            account.last_error = None
        account_id = account.id
        session.commit()
        return account_id, "updated" if changed else "unchanged"
    except Exception:
        session.rollback()
        raise


def _refresh(client: GrokClient, jobs: list[tuple[int, str]]) -> dict[int, str | None]:
    """Fetch and store every mode's quota of each (account id, token); returns problems by id."""
    modes = quota_modes()
    with _executor(len(jobs)) as executor:
        fetched = list(executor.map(lambda job: _fetch_quotas(client, job[1], modes), jobs))
    problems: dict[int, str | None] = {}
    for (account_id, token), quotas in zip(jobs, fetched, strict=True):
        try:
            problems[account_id] = _store_quotas(account_id, quotas)
        except Exception:
            log.exception("could not store the quota of account %s", account_id)
            problems[account_id] = "could not store the quota (see the server log)"
        if problems[account_id]:
            log.warning(
                "quota of account %s (%s) not fully fetched: %s",
                account_id,
                preview(token),
                problems[account_id],
            )
        invalid = next(
            (q for q in quotas.values() if isinstance(q, grok_errors.InvalidCredentials)), None
        )
        if invalid is not None:
            pool.mark_invalid(account_id, f"{invalid.kind}: {invalid.message}")
    return problems


def refresh_quotas(ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Fetch every usable account's quotas, or those of `ids` (invalid and disabled ones are
    left alone)."""
    box: SecretBox = current_app.extensions["grokproxy.secrets"]
    query = (
        select(Account.id, Account.email_md5, Account.token_encrypted)
        .where(Account.status.in_((AccountStatus.ACTIVE, AccountStatus.COOLING)))
        .order_by(Account.id)
    )
    if ids is not None:
        query = query.where(Account.id.in_(list(ids)))
    rows = db.session.execute(query).all()
    db.session.commit()  # end the read before the network work
    jobs = [(row.id, box.decrypt(row.token_encrypted)) for row in rows]
    problems = _refresh(grok_client(), jobs) if jobs else {}
    return [
        {"id": row.id, "email_md5": row.email_md5, "error": problems.get(row.id)} for row in rows
    ]


def _due(row: Any, stale_before: datetime, now: datetime) -> bool:
    """Whether an account's snapshot is too old, or one of its used-up windows has reset."""
    if row.quota_checked_at is None or row.quota_checked_at < stale_before:
        return True
    for entry in (row.quota or {}).values():
        if isinstance(entry, dict) and entry.get("remaining") == 0 and entry.get("reset_at"):
            with contextlib.suppress(TypeError, ValueError):
                if datetime.fromisoformat(entry["reset_at"]) <= now:
                    return True
    return False


def refresh_due(limit: int | None = None) -> list[dict[str, Any]]:
    """Re-read the quotas of usable accounts whose snapshot is older than QUOTA_REFRESH_SECONDS
    or whose used-up window has reset, oldest first, at most `limit` of them."""
    now = utcnow()
    stale_before = now - timedelta(seconds=current_app.config["QUOTA_REFRESH_SECONDS"])
    rows = db.session.execute(
        select(Account.id, Account.email_md5, Account.quota, Account.quota_checked_at)
        .where(Account.status.in_((AccountStatus.ACTIVE, AccountStatus.COOLING)))
        .order_by(Account.quota_checked_at.is_not(None), Account.quota_checked_at, Account.id)
    ).all()
    db.session.commit()
    due = [row.id for row in rows if _due(row, stale_before, now)]
    return refresh_quotas(due[:limit] if limit is not None else due) if due else []


def refresh_batch_size(accounts: int, tick: float) -> int:
    """Accounts to refresh per tick so that every snapshot is read once per
    QUOTA_REFRESH_SECONDS, evenly over time rather than in one burst."""
    interval = float(current_app.config["QUOTA_REFRESH_SECONDS"])
    return max(1, math.ceil(accounts * tick / interval))


def usable_count() -> int:
    """How many accounts are active or cooling (those whose quotas are kept current)."""
    count = db.session.scalar(
        select(func.count())
        .select_from(Account)
        .where(Account.status.in_((AccountStatus.ACTIVE, AccountStatus.COOLING)))
    )
    db.session.commit()
    return count or 0


def display_status(account: Account, now: datetime) -> str:
    """The status shown to operators: `cooling` only while the cooldown lasts."""
    if account.status == AccountStatus.COOLING and not (
        account.cooldown_until and account.cooldown_until > now
    ):
        return AccountStatus.ACTIVE
    return account.status


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def mode_states(account: Account, now: datetime) -> dict[str, dict[str, Any]]:
    """Each catalog mode of an account: `ready`, `limited` (until `reset_at`) or `unavailable`
    (its tier lacks the mode), with the last known remaining and total counts."""
    snapshot = account.quota or {}
    states: dict[str, dict[str, Any]] = {}
    for mode in dict.fromkeys([*quota_modes(), *snapshot]):
        entry = snapshot.get(mode) if isinstance(snapshot.get(mode), dict) else {}
        remaining, total = entry.get("remaining"), entry.get("total")
        reset = pool.quota_blocks(snapshot, mode, now)
        if not pool.tier_has(account.tier, mode):
            state = "unavailable"
        elif reset is not None:
            state = "limited"
        else:
            state = "ready"
            if remaining == 0 and total is not None:
                remaining = total  # its window has reset since the snapshot was taken
        states[mode] = {
            "state": state,
            "remaining": remaining,
            "total": total,
            "reset_at": _iso(reset),
        }
    return states


def account_view(account: Account, users: int, now: datetime) -> dict[str, Any]:
    """One account as the admin API shows it (never the token itself)."""
    status = display_status(account, now)
    return {
        "id": account.id,
        "email": account.email,
        "email_md5": account.email_md5,
        "status": status,
        "token_preview": account.token_preview,
        "use_count": account.use_count,
        "fail_count": account.fail_count,
        "last_used_at": _iso(account.last_used_at),
        "cooldown_until": _iso(account.cooldown_until) if status == AccountStatus.COOLING else None,
        "last_error": account.last_error,
        "tier": account.tier,
        "modes": mode_states(account, now),
        "stream_failures": account.stream_failures,
        "quota": account.quota or {},
        "quota_checked_at": _iso(account.quota_checked_at),
        "users": users,
        "created_at": _iso(account.created_at),
        "updated_at": _iso(account.updated_at),
    }


def users_per_account() -> Any:
    """A subquery of (account_id, users): how many users each account has bound."""
    return (
        select(User.account_id, func.count(User.id).label("users"))
        .where(User.account_id.is_not(None))
        .group_by(User.account_id)
        .subquery()
    )


def list_accounts(page: int = 1, page_size: int = 20) -> dict[str, Any]:
    """One page of the pool, ordered by id."""
    now = utcnow()
    total = db.session.scalar(select(func.count()).select_from(Account)) or 0
    user_counts = users_per_account()
    rows = db.session.execute(
        select(Account, func.coalesce(user_counts.c.users, 0))
        .outerjoin(user_counts, user_counts.c.account_id == Account.id)
        .order_by(Account.id)
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).all()
    data = [account_view(account, users, now) for account, users in rows]
    db.session.commit()
    return {
        "total": total,
        "page": page,
        "page_size": page_size,
        "pages": math.ceil(total / page_size) if total else 0,
        "data": data,
    }


def delete_accounts(md5_list: Iterable[str]) -> dict[str, list[str]]:
    """Remove accounts by e-mail md5 (users are unbound, conversations go); one transaction."""
    wanted = list(dict.fromkeys(value.lower() for value in md5_list))
    try:
        found = set(
            db.session.scalars(select(Account.email_md5).where(Account.email_md5.in_(wanted)))
        )
        if found:
            db.session.execute(delete(Account).where(Account.email_md5.in_(found)))
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    deleted = [value for value in wanted if value in found]
    for value in deleted:
        log.info("account %s deleted from the pool", value)
    return {"deleted": deleted, "not_found": [value for value in wanted if value not in found]}
