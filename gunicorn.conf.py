"""gunicorn settings for grokproxy; every value can be overridden by an environment variable.

gthread workers: a chat stream holds one thread for its whole life, and with gthread the
`timeout` is a heartbeat of the worker, not a cap on a request, so long streams are never killed.
"""

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = _int("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1)
# Each open stream holds a thread: workers x threads is the number of concurrent streams.
threads = _int("GUNICORN_THREADS", 128)
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", 1000)
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
    from grokproxy.dbupgrade import upgrade_database

    upgrade_database(create_app())
