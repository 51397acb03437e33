"""gunicorn settings for grokproxy; every value can be overridden by an environment variable.

gthread workers: a chat stream holds one thread for its whole life, and with gthread the
`timeout` is a heartbeat of the worker, not a cap on a request, so long streams are never killed.
"""

import multiprocessing
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


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = _int("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1, least=1)
# Each open stream holds a thread: workers x threads is the number of concurrent streams.
threads = _int("GUNICORN_THREADS", 128, least=1)
# A gthread worker accepts while it holds fewer connections than this, and queues what its
# threads cannot take yet. At 1000 the first worker to wake took most of a burst and made
# streams wait for its threads while other workers idled; a little above `threads` leaves the
# rest in the shared listen backlog for whichever worker has a thread free (docs/benchmarks.md).
# The margin is for kept-alive connections (gthread keeps at most this minus `threads`).
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", threads + 8, least=1)
timeout = _int("GUNICORN_TIMEOUT", 120)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 75)
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
errorlog = os.environ.get("GUNICORN_ERRORLOG", "-")
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# No query strings in the log; grokproxy.logs scrubs login-link paths from these lines.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms "%(a)s" [%({x-request-id}o)s]'
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server):
    """Migrate the database once, in the master, before any worker starts."""
    from grokproxy import create_app
    from grokproxy.config import ConfigError, config_error_line
    from grokproxy.dbupgrade import upgrade_database

    try:
        app = create_app()
    except ConfigError as error:
        sys.exit(config_error_line(error))
    upgrade_database(app)
