"""The real server: gunicorn with gunicorn.conf.py migrates on start and serves /healthz."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from conftest import postgres_url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gunicorn_starts_on_an_empty_database_and_serves_healthz(tmp_path, repo_root: Path):
    port = free_port()
    env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "4",
        "GROKPROXY_INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/served.sqlite",
    }
    env.pop("SECRET_KEY", None)
    gunicorn = Path(sys.executable).parent / "gunicorn"
    proc = subprocess.Popen(
        [str(gunicorn), "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=repo_root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.json()["database"] == {"ok": True, "dialect": "sqlite"}
        # The key was generated once into the instance folder, shared by both workers.
        assert (tmp_path / "instance" / "secret_key").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_postgres_url_shape_is_psycopg3_when_set():
    url = postgres_url()
    if url is not None:
        assert url.startswith("postgresql+psycopg://")
