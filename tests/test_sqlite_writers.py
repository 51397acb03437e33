"""SQLite writers of different processes take turns on a lock file beside the database, waiting
with time.sleep: under the gevent worker that wait lets the worker's other greenlets run, where
SQLite's own busy handler would stop them all."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest
from sqlalchemy import text

from grokproxy.extensions import db, write_transaction

from conftest import postgres_url

# SQLite's own concern: the PostgreSQL pass has nothing to show here.
pytestmark = pytest.mark.skipif(postgres_url() is not None, reason="SQLite writers only")

# Another worker in the middle of a write: the writers' lock of a database file, then SQLite's
# own write lock (BEGIN IMMEDIATE), both held until told to stop (a line on stdin).
HOLDER = textwrap.dedent(
    """
    import fcntl, os, sqlite3, sys
    fd = os.open(sys.argv[1] + "-writers.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("held", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    """
)


def hold_writers_lock(database: str) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, database],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_write_waits_for_another_process_writer_and_then_goes(app):
    with app.app_context():
        database = db.engine.url.database
    holder = hold_writers_lock(database)
    entered = threading.Event()

    def write() -> None:
        with app.app_context(), write_transaction() as conn:
            entered.set()
            conn.execute(text("CREATE TABLE IF NOT EXISTS writers_probe (x INTEGER)"))

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        # While the other process holds the lock, the write has not begun.
        assert not entered.wait(0.5)
    finally:
        holder.communicate("go\n", timeout=10)
    assert entered.wait(10)
    writer.join(10)
    assert not writer.is_alive()


GEVENT_PROBE = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()
    import sys, gevent
    from sqlalchemy import text
    from grokproxy import create_app
    from grokproxy.extensions import write_transaction
    app = create_app({"DATABASE_URL": "sqlite:///" + sys.argv[1], "TESTING": True})
    with app.app_context(), write_transaction() as conn:  # the file exists, in WAL mode
        conn.execute(text("SELECT 1"))
    ticks, wrote = [], []
    def writer():
        with app.app_context(), write_transaction() as conn:
            conn.execute(text("SELECT 1"))
            wrote.append(len(ticks))
    def ticker():
        while not wrote:
            ticks.append(1)
            gevent.sleep(0.01)
    print("ready", flush=True)
    sys.stdin.readline()  # the lock is held by the test now
    w, t = gevent.spawn(writer), gevent.spawn(ticker)
    gevent.sleep(0.3)
    print("ticks while waiting", len(ticks), "wrote", bool(wrote), flush=True)
    sys.stdin.readline()  # the lock was let go
    gevent.joinall([w, t], timeout=10)
    print("wrote", bool(wrote), repr(w.exception)[:300], flush=True)
    """
)


def test_under_gevent_a_waiting_writer_lets_the_other_greenlets_run(tmp_path, repo_root):
    database = str(tmp_path / "gevent.sqlite")
    probe = subprocess.Popen(
        [sys.executable, "-c", GEVENT_PROBE, database],
        cwd=repo_root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "GROKPROXY_INSTANCE_PATH": str(tmp_path / "instance")},
    )
    try:
        assert probe.stdout.readline().strip() == "ready"
        holder = hold_writers_lock(database)
        probe.stdin.write("go\n")
        probe.stdin.flush()
        words = probe.stdout.readline().split()
        holder.communicate("go\n", timeout=10)
        probe.stdin.write("go\n")
        probe.stdin.flush()
        last = probe.stdout.readline().strip()
    finally:
        probe.kill()
        probe.wait(10)
    # ['ticks', 'while', 'waiting', N, 'wrote', 'False']: the writer waited, the ticker ran.
    assert words[-1] == "False", words
    assert int(words[3]) >= 5, words
    assert last == "wrote True None"  # and no exception
