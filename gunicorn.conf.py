"""gunicorn settings for grokproxy; every value can be overridden by an environment variable.

Two worker models (GUNICORN_WORKER_CLASS; README "Worker model"):

- `gevent`, the default: a worker serves all its connections on greenlets of one OS thread, so a
  held stream costs a greenlet and two sockets; `worker_connections` bounds them per worker.
- `gthread`: a chat stream holds one OS thread of its worker for its whole life; `threads`
  bounds them per worker.

With either, gunicorn's `timeout` is a heartbeat of the worker, not a cap on a request, so long
streams are never killed.
"""

import os
import sys


def _config_error(message: str):
    # gunicorn prints a traceback for anything raised here; one line is what an operator needs.
    sys.exit(f"grokproxy: configuration error: {message}")


def _int(name: str, default: int, least: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = least - 1
    if value < least:
        _config_error(f"{name} must be an integer of at least {least}, got {raw!r}")
    return value


WORKER_CLASSES = ("gevent", "gthread")
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent").strip().lower()
if worker_class not in WORKER_CLASSES:
    _config_error(
        f"GUNICORN_WORKER_CLASS must be one of {', '.join(WORKER_CLASSES)}, "
        f"got {os.environ['GUNICORN_WORKER_CLASS']!r}"
    )
if worker_class == "gevent":
    # Before anything else is imported. The master builds the app and migrates in on_starting,
    # and what that creates is inherited by every forked worker: ssl contexts, the SQLite write
    # lock (unpatched, a real OS lock that would stop all of a worker's greenlets while one
    # waits for it), psycopg's choice of wait function and curl_cffi's WebSocket selectors (both
    # picked when they are imported). The worker patches again after the fork; that is a no-op.
    from gevent import monkey

    monkey.patch_all()

import multiprocessing  # noqa: E402  (below the patching on purpose)
import shutil  # noqa: E402
import tempfile  # noqa: E402

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
CPUS = multiprocessing.cpu_count()
if worker_class == "gevent":
    # One worker per CPU, not 2n+1: a worker is one thread, so more workers than CPUs add no
    # parallelism, only another copy of the app's imports (README, "Worker model").
    workers = _int("GUNICORN_WORKERS", CPUS, least=1)
    # Connections (held streams, kept-alive clients) one worker serves at once. The defaults
    # hold 2,560 across the workers, over the 2,000 concurrent streams grokproxy is sized for:
    # workers rarely split a burst evenly, and health checks and the admin API need room too.
    worker_connections = _int(
        "GUNICORN_WORKER_CONNECTIONS", max(1280, -(-2560 // workers)), least=1
    )
    threads = _int("GUNICORN_THREADS", 1, least=1)  # unused by gevent workers
else:
    workers = _int("GUNICORN_WORKERS", CPUS * 2 + 1, least=1)
    # Each open stream holds a thread: workers x threads is the number of concurrent streams.
    threads = _int("GUNICORN_THREADS", 128, least=1)
    # A gthread worker accepts while it holds fewer connections than this, and queues what its
    # threads cannot take yet. At 1000 the first worker to wake took most of a burst and made
    # streams wait for its threads while other workers idled; a little above `threads` leaves
    # the rest in the shared listen backlog for whichever worker has a thread free
    # (docs/benchmarks.md). The margin is for kept-alive connections (gthread keeps at most
    # this minus `threads`).
    worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", threads + 8, least=1)
# The app sizes its chat limit from these (grokproxy.concurrency.automatic_chat_limit): the
# workers are forked from this process, so they see what gunicorn actually runs with.
os.environ["GUNICORN_WORKER_CLASS"] = worker_class
os.environ["GUNICORN_THREADS"] = str(threads)
os.environ["GUNICORN_WORKER_CONNECTIONS"] = str(worker_connections)
timeout = _int("GUNICORN_TIMEOUT", 120)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 75)
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
errorlog = os.environ.get("GUNICORN_ERRORLOG", "-")
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# No query strings in the log; grokproxy.logs scrubs login-link paths from these lines.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms "%(a)s" [%({x-request-id}o)s]'
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def _metrics_dir() -> str:
    """Where the workers' Prometheus values live (one file per process and metric).

    Set here, before anything imports prometheus_client, so master and workers agree; an
    operator's PROMETHEUS_MULTIPROC_DIR is used (and emptied at start), else a private one."""
    global _OWN_METRICS_DIR
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="grokproxy-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        _OWN_METRICS_DIR = True
    return path


_OWN_METRICS_DIR = False
_METRICS_DIR = _metrics_dir()

if os.environ.get("LOG_FORMAT", "").strip().lower() == "json":
    # gunicorn logs before the app exists: JSON from its first line (LOG_FORMAT in README).
    # Imported only now: prometheus_client must see PROMETHEUS_MULTIPROC_DIR when it loads.
    from grokproxy.logs import gunicorn_json_logger

    logger_class = gunicorn_json_logger()


def _empty_metrics_dir() -> None:
    # Values of an earlier run's processes would be summed into this run's: start empty.
    if os.path.isdir(_METRICS_DIR):
        for entry in os.scandir(_METRICS_DIR):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    os.makedirs(_METRICS_DIR, exist_ok=True)


def child_exit(server, worker):
    """A worker ended: its live gauges (open streams) leave the sum; its counters stay."""
    from grokproxy.metrics import worker_exited

    worker_exited(worker.pid)


def on_starting(server):
    """Empty the metrics directory, then migrate the database once, in the master, before any
    worker starts."""
    _empty_metrics_dir()
    from grokproxy import create_app
    from grokproxy.config import ConfigError, config_error_line
    from grokproxy.dbupgrade import upgrade_database

    try:
        app = create_app()
    except ConfigError as error:
        sys.exit(config_error_line(error))
    upgrade_database(app)


def on_exit(server):
    """Remove the private metrics directory made at start (an operator's own one stays)."""
    if _OWN_METRICS_DIR:
        shutil.rmtree(_METRICS_DIR, ignore_errors=True)
