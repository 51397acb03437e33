"""Measure `pool.pick_account` throughput and fairness from several processes on one database.

    .venv/bin/python bench/pick.py                        # SQLite file in a temp folder
    .venv/bin/python bench/pick.py --database-url postgresql+psycopg://postgres@127.0.0.1/test

A PostgreSQL URL gets a private database created (and dropped) next to the one named. Prints
picks/s over all processes and the fairness spread (max - min uses per account).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

SETTINGS = {
    "SECRET_KEY": "bench-secret-key",
    "GROK_BASE_URL": "http://127.0.0.1:9",
    "LOG_LEVEL": "WARNING",
}


def make_app(url: str):
    """An app on `url` (imported late so each process builds its own)."""
    from grokproxy import create_app

    return create_app({**SETTINGS, "DATABASE_URL": url})


def seed(url: str, accounts: int) -> None:
    """Migrate the database and add `accounts` accounts."""
    from grokproxy.dbupgrade import upgrade_database
    from grokproxy.extensions import db
    from grokproxy.models import Account

    app = make_app(url)
    upgrade_database(app)
    box = app.extensions["grokproxy.secrets"]
    with app.app_context():
        for i in range(accounts):
            token = f"bench-token-{i}-" + "x" * 24
            email = f"bench{i}@example.com"
            db.session.add(Account.for_token(box, token, email))
        db.session.commit()
        db.engine.dispose()


def worker(url: str, picks: int, start_at: float, queue, mode: str | None = None) -> None:
    """Pick `picks` times from `start_at` on and report the account ids and elapsed time."""
    from grokproxy import pool

    app = make_app(url)
    with app.app_context():
        pool.pick_account(mode)  # warm the connection pool before the clock starts
        time.sleep(max(0.0, start_at - time.time()))
        began, cpu = time.perf_counter(), time.process_time()
        used = [pool.pick_account(mode).account_id for _ in range(picks)]
        queue.put((used, time.perf_counter() - began, time.process_time() - cpu))


def run(
    url: str, processes: int, accounts: int, picks: int, mode: str | None = None
) -> tuple[float, float, Counter]:
    """Run the workers: picks/s, client CPU ms per pick, uses per account (warm-up excluded)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 3.0
    procs = [
        ctx.Process(target=worker, args=(url, picks, start_at, queue, mode))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join()
    uses = Counter(account for used, _, _ in results for account in used)
    slowest = max(elapsed for _, elapsed, _ in results)
    cpu_ms = 1000 * sum(cpu for _, _, cpu in results) / (processes * picks)
    return processes * picks / slowest, cpu_ms, uses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a SQLite temp file)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--picks", type=int, default=2000, help="picks per process")
    parser.add_argument("--mode", help="pick for this quota mode (per-mode quota and tier filter)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    os.environ.setdefault("GROKPROXY_INSTANCE_PATH", tempfile.mkdtemp(prefix="gp-bench-"))
    drop = None
    if args.database_url:
        base = make_url(args.database_url)
        name = f"{base.database}_bench_{uuid.uuid4().hex[:6]}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = base.set(database=name).render_as_string(hide_password=False)

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        kind = "postgresql"
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='gp-bench-')) / 'pick.sqlite'}"
        kind = "sqlite"
    try:
        seed(url, args.accounts)
        rate, cpu_ms, uses = run(url, args.processes, args.accounts, args.picks, args.mode)
    finally:
        if drop:
            drop()
    counts = sorted(uses.values())
    label = f" (mode {args.mode})" if args.mode else ""
    print(
        f"{kind}{label}: {args.processes} processes x {args.picks} picks over "
        f"{args.accounts} accounts: "
        f"{rate:,.0f} picks/s ({cpu_ms:.2f} ms client CPU per pick); "
        f"uses per account min {counts[0]} max {counts[-1]} "
        f"(spread {counts[-1] - counts[0]}, {len(counts)} accounts used)"
    )


if __name__ == "__main__":
    main()
