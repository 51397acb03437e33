"""Operator services behind the console and the admin API: disable and enable accounts, re-check
them, list the pool sorted and filtered, and the overview's figures.

No Flask request in here (like tokens.py): views and CLI commands call these in an app context.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, func, or_, select, update

from . import limits, pool, tokens
from .crypto import SecretBox
from .extensions import db, write_transaction
from .grok import errors as grok_errors
from .grok.client import AccountIdentity
from .models import Account, AccountStatus, User, utcnow
from .upstream import grok_client

log = logging.getLogger(__name__)

SORTS = {
    "id": Account.id,
    "email": Account.email,
    "status": Account.status,
    "use_count": Account.use_count,
    "fail_count": Account.fail_count,
    "last_used_at": Account.last_used_at,
}
STATUSES = (
    AccountStatus.ACTIVE,
    AccountStatus.COOLING,
    AccountStatus.INVALID,
    AccountStatus.DISABLED,
)


def _wanted(md5_list: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(value.strip().lower() for value in md5_list))


def set_disabled(md5_list: Iterable[str], disabled: bool) -> dict[str, list[str]]:
    """Disable (never picked, data kept) or enable accounts by e-mail md5; one transaction."""
    wanted = _wanted(md5_list)
    now = utcnow()
    with write_transaction() as conn:
        found = set(
            conn.scalars(select(Account.email_md5).where(Account.email_md5.in_(wanted))).all()
        )
        if found and disabled:
            conn.execute(
                update(Account)
                .where(Account.email_md5.in_(found))
                .values(status=AccountStatus.DISABLED, cooldown_until=None, updated_at=now)
            )
        elif found:
            # Only a disabled account changes: enabling an invalid or cooling one would hide
            # why it is out of rotation.
            conn.execute(
                update(Account)
                .where(Account.email_md5.in_(found), Account.status == AccountStatus.DISABLED)
                .values(status=AccountStatus.ACTIVE, cooldown_until=None, updated_at=now)
            )
    done = [value for value in wanted if value in found]
    for value in done:
        log.info("account %s %s by the operator", value, "disabled" if disabled else "enabled")
    key = "disabled" if disabled else "enabled"
    return {key: done, "not_found": [value for value in wanted if value not in found]}


def list_accounts(
    page: int = 1,
    page_size: int = 50,
    *,
    status: str | None = None,
    sort: str = "id",
    descending: bool = False,
    search: str | None = None,
) -> dict[str, Any]:
    """One page of the pool, filtered by shown status and e-mail, sorted by a known column."""
    now = utcnow()
    conditions = []
    if status == AccountStatus.ACTIVE:
        # Shown as active: a cooling account whose cooldown is over is back in rotation.
        conditions.append(
            or_(
                Account.status == AccountStatus.ACTIVE,
                and_(Account.status == AccountStatus.COOLING, Account.cooldown_until <= now),
            )
        )
    elif status == AccountStatus.COOLING:
        conditions.append(
            and_(Account.status == AccountStatus.COOLING, Account.cooldown_until > now)
        )
    elif status:
        conditions.append(Account.status == status)
    if search:
        conditions.append(Account.email.ilike(f"%{search.strip()}%"))
    column = SORTS.get(sort, Account.id)
    order = column.desc() if descending else column.asc()
    total = db.session.scalar(select(func.count()).select_from(Account).where(*conditions)) or 0
    users = tokens.users_per_account()
    rows = db.session.execute(
        select(Account, func.coalesce(users.c.users, 0))
        .outerjoin(users, users.c.account_id == Account.id)
        .where(*conditions)
        .order_by(order, Account.id)
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).all()
    data = [tokens.account_view(account, count, now) for account, count in rows]
    db.session.commit()
    return {
        "total": total,
        "page": page,
        "page_size": page_size,
        "pages": math.ceil(total / page_size) if total else 0,
        "data": data,
    }


def recheck(md5_list: Iterable[str]) -> list[dict[str, Any]]:
    """Check each account's session and quotas with grok.com again; one result per md5."""
    wanted = _wanted(md5_list)
    box: SecretBox = current_app.extensions["grokproxy.secrets"]
    rows = db.session.execute(
        select(Account.id, Account.email_md5, Account.token_encrypted, Account.status).where(
            Account.email_md5.in_(wanted)
        )
    ).all()
    db.session.commit()  # no transaction stays open during the network work
    client = grok_client()
    modes = tokens.quota_modes()
    jobs = [(row, box.decrypt(row.token_encrypted)) for row in rows]

    def check(job) -> tuple[Any, Any]:
        row, token = job
        try:
            identity = client.auth_session(token)
        except grok_errors.GrokError as exc:
            return exc, {}
        except Exception as exc:
            log.exception("unexpected error while re-checking account %s", row.id)
            return exc, {}
        return identity, tokens._fetch_quotas(client, token, modes)

    workers = max(1, min(int(current_app.config["TOKEN_CHECK_CONCURRENCY"]), len(jobs) or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="token-recheck") as executor:
        checked = list(executor.map(check, jobs))
    results: dict[str, dict[str, Any]] = {}
    for (row, _token), (identity, quotas) in zip(jobs, checked, strict=True):
        if not isinstance(identity, AccountIdentity):
            _code, message = tokens.describe_failure(identity)
            if isinstance(identity, grok_errors.InvalidCredentials):
                pool.mark_invalid(row.id, message)
            results[row.email_md5] = {"email_md5": row.email_md5, "ok": False, "error": message}
            continue
        if row.status == AccountStatus.INVALID:
            # grok.com accepts the token again: back in rotation (disabled stays disabled).
            with write_transaction() as conn:
                conn.execute(
                    update(Account)
                    .where(Account.id == row.id, Account.status == AccountStatus.INVALID)
                    .values(status=AccountStatus.ACTIVE, last_error=None, updated_at=utcnow())
                )
        problem = tokens._store_quotas(row.id, quotas)
        results[row.email_md5] = {"email_md5": row.email_md5, "ok": problem is None}
        if problem:
            results[row.email_md5]["error"] = problem
    return [
        results.get(value, {"email_md5": value, "ok": False, "error": "no such account"})
        for value in wanted
    ]


def overview() -> dict[str, Any]:
    """Accounts by status, requests and errors in the last hour and day, busiest callers."""
    now = utcnow()
    counts = dict.fromkeys(STATUSES, 0)
    rows = db.session.execute(select(Account.status, Account.cooldown_until)).all()
    for row in rows:
        status = row.status
        cooling = row.cooldown_until is not None and row.cooldown_until > now
        if status == AccountStatus.COOLING and not cooling:
            status = AccountStatus.ACTIVE
        counts[status] = counts.get(status, 0) + 1
    series = limits.hourly(24, now)
    last_hour = series[-1]
    busiest = limits.busiest_today(5)
    ids = [int(scope[5:]) for scope, _ in busiest if scope.startswith("user:")]
    names = dict(db.session.execute(select(User.id, User.user_name).where(User.id.in_(ids))).all())
    callers = []
    for scope, count in busiest:
        if scope.startswith("user:"):
            label = names.get(int(scope[5:]), f"user {scope[5:]} (deleted)")
        else:
            label = "pool key " + scope[4:12]
        callers.append({"caller": label, "requests": count})
    db.session.commit()
    return {
        "accounts": counts,
        "accounts_total": sum(counts.values()),
        "last_hour": {"requests": last_hour[1], "errors": last_hour[2]},
        "last_day": {
            "requests": sum(point[1] for point in series),
            "errors": sum(point[2] for point in series),
        },
        "hourly": [
            {"hour": hour.isoformat().replace("+00:00", "Z"), "requests": r, "errors": e}
            for hour, r, e in series
        ],
        "busiest": callers,
        "generated_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "day_ends_in": str(timedelta(seconds=limits.seconds_until_next_day(now))),
    }
