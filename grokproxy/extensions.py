"""Flask extensions, created here once and bound to the app by the factory."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Connection, MetaData, event
from sqlalchemy.engine import Engine

# Named constraints let Alembic's SQLite batch mode alter tables and keep names stable across
# databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def render_migration_type(type_, obj, autogen_context):
    """Write custom column types into migrations as the plain SQLAlchemy type they store as."""
    if type_ == "type" and hasattr(obj, "impl") and obj.__module__.startswith("grokproxy."):
        return f"sa.{obj.impl!r}"
    return False


db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
migrate = Migrate(render_as_batch=True, compare_type=True, render_item=render_migration_type)
log = logging.getLogger(__name__)


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection, _record) -> None:
    """WAL lets readers run beside a writer; busy_timeout makes writers wait instead of failing."""
    import sqlite3

    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    # Let SQLAlchemy, not the driver, open transactions (see _sqlite_begin): pysqlite's own
    # implicit BEGIN comes only before writes, which would leave a read-then-write unprotected.
    dbapi_connection.isolation_level = None


# SQLite allows one writer at a time per database file. Writers of one process queue on this
# lock instead of all sleeping in SQLite's busy handler (whose growing back-off made a few
# unlucky requests wait seconds, then fail "database is locked" under hundreds of threads); only
# one writer per process then competes for the file. Reentrant: a thread never blocks itself.
SQLITE_WRITE_LOCK = threading.RLock()
_HOLDS_WRITE_LOCK = "grokproxy_holds_write_lock"
# How long a writer waits for the other processes' writers before it leaves the wait to SQLite.
WRITERS_LOCK_WAIT = 30.0


class _WritersLock:
    """The turn of this process's writer among every process on one SQLite file: an flock on
    `<database>-writers.lock`, polled.

    Between processes (gunicorn workers) SQLite itself would make a second writer wait in its
    busy handler: a sleep inside the driver, which under the gevent worker stops every greenlet
    of that worker (every stream it relays) for as long as the other worker writes. Waiting
    here sleeps with time.sleep instead, which gevent turns into a switch to the other
    greenlets. Only the holder of SQLITE_WRITE_LOCK calls it, so one thread per process at most;
    reentrant like that lock (a nested write transaction takes it once).
    """

    def __init__(self) -> None:
        self._fds: dict[tuple[int, str], int] = {}
        self._depth = 0
        self._locked_fd: int | None = None

    def acquire(self, database: str) -> None:
        self._depth += 1
        if self._depth > 1:
            return
        fd = self._fd(database)
        if fd is None:
            return
        delay, deadline = 0.0005, time.monotonic() + WRITERS_LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    log.warning("SQLite writers' lock still taken after %.0f s", WRITERS_LOCK_WAIT)
                    return  # SQLite's busy_timeout decides from here
                time.sleep(delay)
                delay = min(delay * 2, 0.005)
                continue
            except OSError:
                return  # a file system without flock: SQLite's busy handler alone
            self._locked_fd = fd
            return

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._locked_fd is not None:
            fd, self._locked_fd = self._locked_fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _fd(self, database: str) -> int | None:
        # One descriptor per process: an flock belongs to the open file, and a forked worker
        # must not share the master's.
        key = (os.getpid(), database)
        fd = self._fds.get(key)
        if fd is None:
            try:
                fd = os.open(f"{database}-writers.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                return None
            self._fds[key] = fd
        return fd


_WRITERS_LOCK = _WritersLock()


def _sqlite_file(conn) -> str | None:
    """The database file of a SQLite connection (None for an in-memory database)."""
    database = conn.engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn) -> None:
    """Open SQLite transactions explicitly; `sqlite_begin="IMMEDIATE"` takes the write lock now."""
    if conn.dialect.name != "sqlite":
        return
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
        raise ValueError(f"unknown sqlite_begin mode {mode!r}")
    # Straight to the driver: through SQLAlchemy's execution machinery a BEGIN cost as much as
    # the statement it opens for (a compiled-statement context, events, a result).
    driver = conn.connection.dbapi_connection
    if mode == "DEFERRED":
        driver.execute("BEGIN")
        return
    SQLITE_WRITE_LOCK.acquire()
    database = _sqlite_file(conn)
    try:
        if database is not None:
            _WRITERS_LOCK.acquire(database)
        try:
            driver.execute(f"BEGIN {mode}")
        except BaseException:
            if database is not None:
                _WRITERS_LOCK.release()
            raise
    except BaseException:
        SQLITE_WRITE_LOCK.release()
        raise
    conn.info[_HOLDS_WRITE_LOCK] = database or True


@event.listens_for(Engine, "commit")
@event.listens_for(Engine, "rollback")
def _sqlite_end(conn) -> None:
    """A write transaction ends: the next writer of this process may go."""
    held = conn.info.pop(_HOLDS_WRITE_LOCK, False)
    if held:
        if isinstance(held, str):
            _WRITERS_LOCK.release()
        SQLITE_WRITE_LOCK.release()


def end_read() -> None:
    """End the request session's read transaction, if it has one: a pool key's chat never
    touches the session, and committing it would create one just to end nothing."""
    if db.session.registry.has():
        session = db.session()
        if session.in_transaction():
            session.commit()


@contextmanager
def write_transaction() -> Iterator[Connection]:
    """One short write transaction on its own connection (SQLite: BEGIN IMMEDIATE, queued)."""
    with db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn
