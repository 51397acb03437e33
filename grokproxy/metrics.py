"""Prometheus metrics: what the gateway served, how grok.com answered, how the pool stands.

Under gunicorn every worker is its own process, so the values live in prometheus-client's
multiprocess mode: `PROMETHEUS_MULTIPROC_DIR` (set up and emptied by gunicorn.conf.py before any
worker starts) holds one file per process and metric, and a scrape sums them. Without that
variable (the dev server, tests) the values are plain in-process ones.

Labels are bounded and carry nothing secret: a route is its URL rule (never the raw path, which
may hold a login link), a model is a catalog name or `other`, an outcome one word.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# `_created` series double every counter's lines and multiprocess mode has none: off everywhere.
disable_created_metrics()

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
NAMESPACE = "grokproxy"

# A chat's first byte can wait for grok.com's first token; its end for a long reasoning answer.
TTFB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by route (URL rule), method, status and model.",
    ("route", "method", "status", "model"),
    namespace=NAMESPACE,
)
TIME_TO_FIRST_BYTE = Histogram(
    "http_time_to_first_byte_seconds",
    "Seconds from a request's arrival to the first byte of its answer body.",
    ("route", "model"),
    namespace=NAMESPACE,
    buckets=TTFB_BUCKETS,
)
DURATION = Histogram(
    "http_request_duration_seconds",
    "Seconds from a request's arrival to the end of its answer body (a stream's whole life).",
    ("route", "model"),
    namespace=NAMESPACE,
    buckets=DURATION_BUCKETS,
)
UPSTREAM_ATTEMPTS = Counter(
    "upstream_attempts",
    "Chat turns opened on grok.com, by outcome (ok or what went wrong before the first byte).",
    ("outcome",),
    namespace=NAMESPACE,
)
FAILOVERS = Counter(
    "failovers",
    "Failed attempts followed by a retry on another pool account.",
    namespace=NAMESPACE,
)
PICKS = Counter(
    "account_picks",
    "Accounts chosen for an attempt, by source (pool rotation, a user's own, a raw SSO token).",
    ("source",),
    namespace=NAMESPACE,
)
DAILY_LIMIT_REFUSALS = Counter(
    "daily_limit_refusals",
    "Requests refused because a daily limit was reached.",
    namespace=NAMESPACE,
)
OPEN_STREAMS = Gauge(
    "open_streams",
    "Streamed chat answers being relayed right now.",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)

# GrokError.kind -> outcome label; anything else is `other`.
OUTCOMES = {
    "rate_limited": "rate_limited",
    "invalid_credentials": "invalid",
    "cloudflare": "cloudflare",
    "anti_bot": "anti_bot",
    "blocked": "blocked",
    "broken": "broken",
    "degraded": "degraded",
    "timeout": "timeout",
    "conversation_not_found": "conversation_not_found",
}
PICK_SOURCES = frozenset({"pool", "user", "sso"})
UNMATCHED_ROUTE = "unmatched"
NO_MODEL = ""


def upstream_outcome(exc: BaseException | None) -> str:
    """The outcome label of an attempt: `ok`, a GrokError kind's word, `timeout` or `other`."""
    if exc is None:
        return "ok"
    kind = getattr(exc, "kind", None)
    if kind == "broken" and _is_timeout(exc):
        return "timeout"
    return OUTCOMES.get(kind, "other") if isinstance(kind, str) else "other"


def _is_timeout(exc: BaseException) -> bool:
    # The transports raise UpstreamBroken for a timeout too; its cause or message tells which.
    cause = exc.__cause__
    if cause is not None and "timeout" in type(cause).__name__.lower():
        return True
    message = str(exc)
    return "timed out" in message or "sent nothing for" in message


def count_attempt(exc: BaseException | None = None) -> None:
    """Count one upstream attempt: a success when `exc` is None, else its failure kind."""
    UPSTREAM_ATTEMPTS.labels(upstream_outcome(exc)).inc()


def count_failover() -> None:
    """Count one move to the next pool account after a failed attempt."""
    FAILOVERS.inc()


def count_pick(source: str) -> None:
    """Count one account chosen for an attempt (`pool`, `user` or `sso`)."""
    PICKS.labels(source if source in PICK_SOURCES else "other").inc()


def count_daily_limit_refusal() -> None:
    """Count one request refused by a daily limit (for the daily-limit checks to call)."""
    DAILY_LIMIT_REFUSALS.inc()


def observe_request(
    route: str,
    method: str,
    status: str,
    model: str,
    first_byte_seconds: float | None,
    total_seconds: float,
) -> None:
    """Record one answered request: its count, time to first byte and duration."""
    REQUESTS.labels(route, method, status, model).inc()
    if first_byte_seconds is not None:
        TIME_TO_FIRST_BYTE.labels(route, model).observe(first_byte_seconds)
    DURATION.labels(route, model).observe(total_seconds)


def stream_opened() -> None:
    """A streamed answer starts being relayed."""
    OPEN_STREAMS.inc()


def stream_closed() -> None:
    """A streamed answer ended (finished, failed or abandoned by the client)."""
    OPEN_STREAMS.dec()


class AccountsCollector:
    """`grokproxy_accounts{status}`: the pool by status, one GROUP BY at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Count the accounts per status (needs an app context)."""
        from sqlalchemy import func, select

        from .extensions import db
        from .models import Account, AccountStatus

        counts = dict.fromkeys(
            (
                AccountStatus.ACTIVE,
                AccountStatus.COOLING,
                AccountStatus.INVALID,
                AccountStatus.DISABLED,
            ),
            0,
        )
        rows = db.session.execute(select(Account.status, func.count()).group_by(Account.status))
        for status, count in rows:
            counts[status] = count
        family = GaugeMetricFamily(
            f"{NAMESPACE}_accounts", "Pool accounts by status.", labels=("status",)
        )
        for status, count in counts.items():
            family.add_metric((status,), count)
        yield family

    def describe(self) -> list:
        """Nothing up front: the registry must not collect (query the database) on register."""
        return []


def multiprocess_dir() -> str | None:
    """The multiprocess directory when metrics are shared between worker processes."""
    return os.environ.get(MULTIPROC_ENV) or None


def exposition() -> tuple[bytes, str]:
    """The text format of every metric, summed over the worker processes, and its type."""
    scrape = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        MultiProcessCollector(scrape)
        body = generate_latest(scrape)
    else:
        body = generate_latest(REGISTRY)
    pool = CollectorRegistry(auto_describe=False)
    pool.register(AccountsCollector())
    return body + generate_latest(pool), CONTENT_TYPE_LATEST


def worker_exited(pid: int) -> None:
    """gunicorn child_exit: drop the dead worker's live gauges (its counters stay summed)."""
    if multiprocess_dir():
        mark_process_dead(pid)
