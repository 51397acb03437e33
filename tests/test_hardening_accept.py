"""gunicorn's workers share a burst of streams: none accepts far more connections than it has
threads (bench/accept.py measures the effect on a real server)."""

from __future__ import annotations

import runpy

import pytest


def gunicorn_settings(repo_root, monkeypatch, tmp_path, **env: str) -> dict:
    for name in ("GUNICORN_THREADS", "GUNICORN_WORKER_CONNECTIONS"):
        monkeypatch.delenv(name, raising=False)
    # The config file sets up the metrics directory in the environment: keep that change to
    # this test (the suite's own metrics run in one process, without that directory).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(repo_root / "gunicorn.conf.py"))


@pytest.mark.parametrize("threads", ["128", "4", "32"])
def test_a_worker_accepts_only_a_few_connections_beyond_its_threads(
    repo_root, monkeypatch, tmp_path, threads
):
    settings = gunicorn_settings(repo_root, monkeypatch, tmp_path, GUNICORN_THREADS=threads)
    # More would queue streams inside one worker while another has threads free.
    assert settings["threads"] < settings["worker_connections"] <= settings["threads"] + 8


def test_worker_connections_can_still_be_set(repo_root, monkeypatch, tmp_path):
    settings = gunicorn_settings(
        repo_root, monkeypatch, tmp_path, GUNICORN_WORKER_CONNECTIONS="300"
    )
    assert settings["worker_connections"] == 300
