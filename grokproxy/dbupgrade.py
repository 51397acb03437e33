"""Bring the database schema up to date once, before any worker serves a request.

gunicorn's `on_starting` hook calls `upgrade_database` in the master process. Hosts that share a
PostgreSQL database take an advisory lock first, so two hosts starting together run the migrations
one after the other (the second finds nothing to do); on SQLite a file lock does the same for two
servers started on one machine.
"""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path

import flask_migrate
from flask import Flask
from sqlalchemy import text

from .extensions import db

log = logging.getLogger(__name__)

# Arbitrary but fixed: every grokproxy host must use the same advisory lock key.
ADVISORY_LOCK_KEY = 0x67726F6B  # "grok"
MIGRATIONS_DIR = str(Path(__file__).resolve().parent.parent / "migrations")


def upgrade_database(app: Flask) -> None:
    """Run `flask db upgrade` under a lock that serialises concurrent starters."""
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
                conn.commit()  # the lock is session-level: it outlives this transaction
                try:
                    flask_migrate.upgrade(directory=MIGRATIONS_DIR)
                finally:
                    conn.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY}
                    )
                    conn.commit()
        else:
            lock_path = Path(app.instance_path) / "migrate.lock"
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            with open(lock_path, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    flask_migrate.upgrade(directory=MIGRATIONS_DIR)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        log.info("database schema is up to date (%s)", engine.dialect.name)
        # gunicorn forks the workers from this process next: no connection may be inherited.
        engine.dispose()
