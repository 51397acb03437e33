"""The real server: gunicorn with gunicorn.conf.py migrates on start and serves /healthz."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from grokproxy.extensions import db

from conftest import postgres_url, sso_jwt


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn(tmp_path: Path, repo_root: Path, **env_vars: str) -> Iterator[str]:
    """Run the real server (gunicorn.conf.py; gevent workers unless GUNICORN_WORKER_CLASS says
    otherwise) on SQLite unless DATABASE_URL is given; yields its base URL. Its output goes to
    `gunicorn.log` in tmp_path (a pipe nobody reads would stall a chatty server)."""
    port = free_port()
    env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "4",
        # A gevent worker that stops waits this long for kept-alive connections a test's client
        # still holds (gthread drops idle ones at once).
        "GUNICORN_GRACEFUL_TIMEOUT": "3",
        "GROKPROXY_INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/served.sqlite",
        **env_vars,
    }
    env.pop("SECRET_KEY", None)
    executable = Path(sys.executable).parent / "gunicorn"
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(executable), "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=repo_root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, log_path.read_text(errors="replace")
                assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_gunicorn_starts_on_an_empty_database_and_serves_healthz(tmp_path, repo_root: Path):
    with gunicorn(tmp_path, repo_root) as url:
        response = requests.get(f"{url}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json()["database"] == {"ok": True, "dialect": "sqlite"}
    # The key was generated once into the instance folder, shared by both workers.
    assert (tmp_path / "instance" / "secret_key").exists()


def test_under_gunicorn_a_client_hang_up_closes_upstream_within_a_second(
    tmp_path, repo_root: Path, emu
):
    emu.configure(tokens=400, tokens_per_second=20)
    with gunicorn(tmp_path, repo_root, GROK_BASE_URL=emu.base_url) as url:
        body = {"model": "grok-3", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        response = requests.post(
            f"{url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {sso_jwt('emu-gunicorn-hang-up-token')}"},
            json=body,
            stream=True,
            timeout=30,
        )
        lines = response.iter_lines()
        assert any(next(lines).startswith(b"data: ") for _ in range(6))
        response.close()
        hung_up = time.monotonic()
        while True:
            (stream,) = emu.streams()
            if stream["outcome"] != "streaming":
                break
            assert time.monotonic() - hung_up < 1.0, "upstream still streaming a second after"
            time.sleep(0.05)
    assert stream["outcome"] == "client_disconnected"


def test_the_suite_runs_on_the_database_it_was_asked_for(app):
    # PostgreSQL through psycopg 3 when TEST_DATABASE_URL is set, else the SQLite file.
    expected = ("postgresql", "psycopg") if postgres_url() else ("sqlite", "pysqlite")
    with app.app_context():
        assert (db.engine.dialect.name, db.engine.dialect.driver) == expected
