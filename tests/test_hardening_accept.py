"""gunicorn's gthread workers share a burst of streams: none accepts far more connections than it
has threads (bench/accept.py measures the effect on a real server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Run in a fresh interpreter: with gevent workers the file monkey-patches the process reading it.
_READ_SETTINGS = """
import json, os, runpy, sys
settings = runpy.run_path(sys.argv[1])
from grokproxy.concurrency import automatic_chat_limit
names = ("worker_class", "workers", "threads", "worker_connections")
print(json.dumps({
    **{name: settings[name] for name in names},
    "environ": {k: v for k, v in os.environ.items() if k.startswith("GUNICORN_")},
    "chat_limit": automatic_chat_limit(),
}))
"""


def gunicorn_settings(repo_root, tmp_path, **env: str) -> dict:
    """What gunicorn.conf.py sets from `env` (and nothing else of the GUNICORN_* environment),
    with the environment it leaves to the workers and the chat limit they derive from it."""
    return read_gunicorn_conf(repo_root, tmp_path, _READ_SETTINGS, **env)


def read_gunicorn_conf(repo_root, tmp_path, script: str, **env: str) -> dict:
    """Run `script` in a fresh interpreter with gunicorn.conf.py's path as its argument and
    `env` as the only GUNICORN_* settings; its last output line, as JSON."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN_")}
    # The file sets up a metrics directory; point it into this test's folder.
    environ.update(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"), **env)
    done = subprocess.run(
        [sys.executable, "-c", script, str(repo_root / "gunicorn.conf.py")],
        cwd=repo_root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("threads", ["128", "4", "32"])
def test_a_worker_accepts_only_a_few_connections_beyond_its_threads(repo_root, tmp_path, threads):
    settings = gunicorn_settings(
        repo_root, tmp_path, GUNICORN_WORKER_CLASS="gthread", GUNICORN_THREADS=threads
    )
    # More would queue streams inside one worker while another has threads free.
    assert settings["threads"] < settings["worker_connections"] <= settings["threads"] + 8


@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_worker_connections_can_still_be_set(repo_root, tmp_path, worker_class):
    settings = gunicorn_settings(
        repo_root,
        tmp_path,
        GUNICORN_WORKER_CLASS=worker_class,
        GUNICORN_WORKER_CONNECTIONS="300",
    )
    assert settings["worker_connections"] == 300
