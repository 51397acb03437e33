"""Concurrency bounds of chat requests: per worker process, and per caller across processes.

A worker serves a bounded number of requests at once: a gevent worker its `worker_connections`,
a gthread worker its threads, and a chat holds one of them for as long as grok.com takes.
`MAX_CONCURRENT_CHATS` keeps some of every worker's room free of chats, so health checks, the
admin API and the pages always get in; a chat over it is answered 503 at once rather than
queued, because a queued request would hold its connection (or thread) too.

`MAX_CONCURRENT_PER_KEY` bounds one caller's chats across every worker of the host: each slot
is a lock file (flock) in the instance folder, shared by the workers of one installation. The
kernel releases a dead worker's locks, so a crash never leaks a slot. Several hosts behind one
database each count their own callers.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import threading
from dataclasses import dataclass, field

from flask import Flask, current_app

from .errors import APIError
from .errors import RateLimited as RateLimitedAnswer

# Seconds a client is told to wait after a refusal for load: chats end and free slots quickly.
BUSY_RETRY_AFTER = 2
DEFAULT_GUNICORN_THREADS = 128
DEFAULT_WORKER_CONNECTIONS = 1280  # gunicorn.conf.py's gevent default on up to two workers


class ServerBusy(APIError):
    """503: every chat slot of this worker is taken; Retry-After says when to try again."""

    status = 503
    type = "service_unavailable"
    code = "server_busy"


def automatic_chat_limit(environ: dict[str, str] | None = None) -> int:
    """Chats one worker runs at once when MAX_CONCURRENT_CHATS is 0: what the worker can serve
    at once (gevent: its connections; gthread: its threads) minus a few for other requests.

    gunicorn.conf.py puts the values gunicorn runs with in the environment of its workers;
    elsewhere (a test, `flask run`) the gevent default applies."""
    env = environ if environ is not None else os.environ
    if env.get("GUNICORN_WORKER_CLASS", "gevent").strip().lower() == "gthread":
        room = _positive(env.get("GUNICORN_THREADS"), DEFAULT_GUNICORN_THREADS)
        return max(1, room - max(1, min(8, room // 4)))
    room = _positive(env.get("GUNICORN_WORKER_CONNECTIONS"), DEFAULT_WORKER_CONNECTIONS)
    # A connection costs a greenlet, not a thread: keep a sixteenth (at least 8, at most 64)
    # for health checks, the admin API, the pages and kept-alive clients between requests.
    return max(1, room - max(1, min(64, max(8, room // 16), room // 4)))


def _positive(raw: str | None, default: int) -> int:
    try:
        return max(1, int(raw or ""))
    except ValueError:
        return default


class _Counter:
    """A non-blocking counting semaphore for one process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.active = max(0, self.active - 1)


@dataclass
class ChatSlot:
    """What one running chat holds; release() is idempotent and safe from any thread."""

    counter: _Counter | None = None
    fd: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def release(self) -> None:
        """Give the slot back (the worker's count and the caller's lock file)."""
        with self._lock:
            counter, fd = self.counter, self.fd
            self.counter = self.fd = None
        if counter is not None:
            counter.release()
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the descriptor drops its flock


_init_lock = threading.Lock()


def _state(app: Flask) -> tuple[_Counter, str]:
    """The worker's chat counter and the caller slot directory of this app (made on first use)."""
    state = app.extensions.get("grokproxy.concurrency")
    if state is None:
        with _init_lock:
            state = app.extensions.get("grokproxy.concurrency")
            if state is None:
                limit = app.config["MAX_CONCURRENT_CHATS"] or automatic_chat_limit()
                database = str(app.config.get("SQLALCHEMY_DATABASE_URI"))
                # The workers of one installation share its instance folder; a folder per
                # database keeps two databases served from one checkout apart.
                digest = hashlib.sha256(database.encode()).hexdigest()[:16]
                directory = os.path.join(app.instance_path, "slots", digest)
                state = app.extensions["grokproxy.concurrency"] = (_Counter(limit), directory)
    return state


def claim_chat(owner: str) -> ChatSlot:
    """A slot for one chat of `owner`, or 429 (the caller's own limit) / 503 (worker full)."""
    app = current_app._get_current_object()
    counter, directory = _state(app)
    slot = ChatSlot()
    per_key = app.config["MAX_CONCURRENT_PER_KEY"]
    if per_key:
        slot.fd = _lock_one(directory, owner, per_key)
        if slot.fd is None:
            raise RateLimitedAnswer(
                f"too many chats at once with this key: at most {per_key} run at the same time "
                "(MAX_CONCURRENT_PER_KEY); retry when one has finished",
                code="too_many_concurrent_requests",
                retry_after=BUSY_RETRY_AFTER,
            )
    if not counter.try_acquire():
        slot.release()
        raise ServerBusy(
            f"this server runs {counter.limit} chats at once (MAX_CONCURRENT_CHATS) and all are "
            "busy; retry in a moment",
            retry_after=BUSY_RETRY_AFTER,
        )
    slot.counter = counter
    return slot


def _lock_one(directory: str, owner: str, limit: int) -> int | None:
    """The descriptor of a locked slot file of `owner` (one of `limit`), or None when all are
    held; the lock lives until the descriptor is closed."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    name = hashlib.sha256(owner.encode()).hexdigest()[:32]
    for index in range(limit):
        path = os.path.join(directory, f"{name}.{index}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                continue
            raise
        return fd
    return None
