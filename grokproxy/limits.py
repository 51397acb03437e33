"""Daily request limits of users and pool keys, and the per-hour request counts of the overview.

A chat request is admitted by one conditional upsert on `usage_counters` (scope, day): the row's
count goes up by one only while it is below the limit, and the statement answers the new count,
or nothing when the limit is reached. Both SQLite and PostgreSQL run that statement atomically,
so however many workers and hosts share the database, exactly the limit is admitted each day.
A request that fails before grok.com answered anything gives its count back (`refund`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import bindparam, select, text, update

from . import metrics, relay
from .auth import NOT_READ, Caller
from .errors import RateLimited
from .extensions import db, end_read, write_transaction
from .models import RequestStat, UsageCounter, User, utcnow

log = logging.getLogger(__name__)


class DailyLimitReached(RateLimited):
    """429: this key made its requests for today."""

    code = "daily_limit_reached"

    def __init__(self, message: str, *, limit: int, retry_after: int):
        super().__init__(message, retry_after=retry_after)
        self.limit = limit

    def headers(self) -> dict[str, str]:
        """Retry-After, and the request-limit headers saying none is left."""
        return {
            **super().headers(),
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{self.retry_after}s",
        }


@dataclass(frozen=True)
class Admission:
    """A chat request let in: its counter (None when not counted) and what is left today."""

    scope: str | None
    day: str | None
    limit: int  # 0: unlimited
    used: int
    # An unlimited caller's count, written with the request's other bookkeeping (relay).
    pending: Any = field(default=None, repr=False)

    def headers(self) -> dict[str, str]:
        """OpenAI's request-limit headers; none when the caller has no limit."""
        if not self.limit:
            return {}
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(max(0, self.limit - self.used)),
            "x-ratelimit-reset-requests": f"{seconds_until_next_day()}s",
        }


def _zone() -> ZoneInfo:
    return ZoneInfo(current_app.config.get("LIMIT_TIMEZONE") or "UTC")


def today(now: datetime | None = None) -> str:
    """The current day of the limits (LIMIT_TIMEZONE), as ISO text."""
    return (now or utcnow()).astimezone(_zone()).date().isoformat()


def seconds_until_next_day(now: datetime | None = None) -> int:
    """Whole seconds until midnight of LIMIT_TIMEZONE (at least 1)."""
    now = (now or utcnow()).astimezone(_zone())
    midnight = datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=now.tzinfo)
    # Subtract in UTC: across a daylight-saving change the wall clocks differ by an hour.
    wait = midnight.astimezone(UTC) - now.astimezone(UTC)
    return max(1, int(wait.total_seconds() + 0.999))


def limit_of(caller: Caller) -> tuple[str | None, int]:
    """(counter scope, daily limit) of a chat caller; a raw SSO caller is not counted."""
    config = current_app.config
    if caller.kind == "user":
        override = caller.daily_limit
        if override is NOT_READ:
            override = db.session.scalar(select(User.daily_limit).where(User.id == caller.user_id))
        limit = config["USER_DAILY_LIMIT"] if override is None else override
        return caller.owner, int(limit)
    if caller.kind == "pool":
        return caller.owner, int(config["POOL_KEY_DAILY_LIMIT"])
    return None, 0


# The counters' upserts, as text: SQLAlchemy gives an ON CONFLICT construct no cache key, so
# built as Core it was compiled afresh on every request (a third of the request's SQL cost).
# SQLite (3.35+) and PostgreSQL read the same statement.
_COUNT_SQL = """
INSERT INTO usage_counters (scope, day, count, updated_at) VALUES (:scope, :day, 1, :now)
ON CONFLICT (scope, day) DO UPDATE
SET count = usage_counters.count + 1, updated_at = :now{only_below}
RETURNING count"""
_COUNT = text(_COUNT_SQL.format(only_below="")).bindparams(
    bindparam("now", type_=UsageCounter.__table__.c.updated_at.type)
)
_COUNT_BELOW_LIMIT = text(
    _COUNT_SQL.format(only_below=" WHERE usage_counters.count < :limit")
).bindparams(bindparam("now", type_=UsageCounter.__table__.c.updated_at.type))
_REQUEST_STAT = text(
    """
INSERT INTO request_stats (hour, requests, errors) VALUES (:hour, 1, :errors)
ON CONFLICT (hour) DO UPDATE
SET requests = request_stats.requests + 1, errors = request_stats.errors + :errors"""
).bindparams(bindparam("hour", type_=RequestStat.__table__.c.hour.type))


def admit(caller: Caller) -> Admission:
    """Count one chat request of `caller`, or raise 429 daily_limit_reached once it has its fill.

    A caller without a limit has nothing to check first: its count is written with the rest of
    the request's bookkeeping once the request is done (one transaction instead of two, and no
    refund when it failed early). A limit is checked and counted here, atomically.
    """
    scope, limit = limit_of(caller)
    if scope is None:
        return Admission(None, None, 0, 0)
    now = utcnow()
    day = today(now)
    if not limit:
        pending = relay.defer_write(
            _COUNT, {"scope": scope, "day": day, "now": now}, what=f"the daily count of {scope}"
        )
        return Admission(scope, day, 0, 0, pending)
    end_read()  # end the caller lookup's read: the counter has a transaction of its own
    with write_transaction() as conn:
        used = conn.execute(
            _COUNT_BELOW_LIMIT, {"scope": scope, "day": day, "now": now, "limit": limit}
        ).scalar()
    if used is None:
        wait = seconds_until_next_day(now)
        metrics.count_daily_limit_refusal()
        raise DailyLimitReached(
            f"the daily limit of {limit} requests is reached; it resets at midnight "
            f"({current_app.config.get('LIMIT_TIMEZONE') or 'UTC'}), in {wait} s",
            limit=limit,
            retry_after=wait,
        )
    return Admission(scope, day, limit, int(used))


@contextlib.contextmanager
def admitted(caller: Caller) -> Iterator[Admission]:
    """Count one chat request of `caller` (429 past the limit), given back if the body raises:
    a request that failed before grok.com answered anything does not count."""
    admission = admit(caller)
    try:
        yield admission
    except BaseException:
        refund(admission)
        raise


def refund(admission: Admission) -> None:
    """Give back the count of a request that failed before grok.com answered anything."""
    if admission.scope is None:
        return
    if admission.pending is not None:
        relay.cancel_write(admission.pending)  # not written yet: nothing to give back
        return
    try:
        with write_transaction() as conn:
            conn.execute(
                update(UsageCounter)
                .where(
                    UsageCounter.scope == admission.scope,
                    UsageCounter.day == admission.day,
                    UsageCounter.count > 0,
                )
                .values(count=UsageCounter.count - 1)
            )
    except Exception:
        # The request has failed already; an uncounted refund only costs the caller one request.
        log.exception("could not give back the daily count of %s", admission.scope)


def record_request(failed: bool, now: datetime | None = None) -> None:
    """Count one chat request (and whether it was answered with an error) in its UTC hour,
    with the rest of the request's bookkeeping (at once outside a request)."""
    hour = (now or utcnow()).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    relay.defer_write(
        _REQUEST_STAT, {"hour": hour, "errors": int(failed)}, what="the overview's request count"
    )


def usage_today(scopes: list[str]) -> dict[str, int]:
    """Requests admitted today per scope (0 for a scope with none)."""
    if not scopes:
        return {}
    rows = db.session.execute(
        select(UsageCounter.scope, UsageCounter.count).where(
            UsageCounter.day == today(), UsageCounter.scope.in_(scopes)
        )
    ).all()
    found = {row.scope: row.count for row in rows}
    return {scope: found.get(scope, 0) for scope in scopes}


def last_activity(scopes: list[str]) -> dict[str, datetime]:
    """The last admitted request of each scope that ever made one."""
    if not scopes:
        return {}
    rows = db.session.execute(
        select(UsageCounter.scope, db.func.max(UsageCounter.updated_at))
        .where(UsageCounter.scope.in_(scopes))
        .group_by(UsageCounter.scope)
    ).all()
    return {scope: _aware(moment) for scope, moment in rows if moment is not None}


def _aware(moment: datetime | str) -> datetime:
    # max() over a SQLite column comes back as text, outside the column type's conversion.
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def busiest_today(limit: int = 5) -> list[tuple[str, int]]:
    """The scopes with the most requests today, most first."""
    rows = db.session.execute(
        select(UsageCounter.scope, UsageCounter.count)
        .where(UsageCounter.day == today(), UsageCounter.count > 0)
        .order_by(UsageCounter.count.desc(), UsageCounter.scope)
        .limit(limit)
    ).all()
    return [(row.scope, row.count) for row in rows]


def hourly(hours: int = 24, now: datetime | None = None) -> list[tuple[datetime, int, int]]:
    """(hour, requests, errors) for each of the last `hours` UTC hours, oldest first."""
    end = (now or utcnow()).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours - 1)
    rows = db.session.execute(
        select(RequestStat.hour, RequestStat.requests, RequestStat.errors).where(
            RequestStat.hour >= start
        )
    ).all()
    found = {row.hour: (row.requests, row.errors) for row in rows}
    series = []
    for step in range(hours):
        hour = start + timedelta(hours=step)
        requests, errors = found.get(hour, (0, 0))
        series.append((hour, requests, errors))
    return series
