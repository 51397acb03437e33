"""/metrics: Prometheus text format, bounded labels, no secrets, summed over gunicorn workers."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from test_server import free_port

from grokproxy import metrics
from grokproxy.grok import errors as grok_errors
from grokproxy.grok.gateway import DegradedTurn

from conftest import CHAT, POOL_KEY, sso_jwt

REPO = Path(__file__).resolve().parent.parent
METRICS_TOKEN = "metrics-scrape-token-for-tests"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    return sum(
        v
        for (sample, sample_labels), v in samples(text).items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


def scrape(client, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return response.get_data(as_text=True)


CHAT_ROUTE = {"route": "/v1/chat/completions", "method": "POST"}


def chat(client, body: dict, headers: dict):
    """One chat request, its body read and closed (which is when it is counted)."""
    return client.post("/v1/chat/completions", json=body, headers=headers, buffered=True)


@pytest.mark.usefixtures("transport")
def test_chat_traffic_counts_requests_attempts_and_timings_by_route_model_status(
    emu_app, add_accounts
):
    token = "emu-metrics-counted-account-0001"
    app = emu_app()
    add_accounts(app, [token])
    client = app.test_client()
    before = scrape(client)
    key = {"Authorization": f"Bearer {POOL_KEY}"}
    assert chat(client, CHAT, key).status_code == 200
    streamed = chat(client, {**CHAT, "stream": True}, key)
    assert b"[DONE]" in streamed.get_data()
    unknown = {**CHAT, "model": "made-up-model-user@example.com"}
    assert chat(client, unknown, key).status_code == 404
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {**CHAT_ROUTE, "status": "200", "model": "grok-3"}
    assert grew("grokproxy_http_requests_total", **ok) == 2
    # A model the catalog does not know is `other`: a client cannot mint label values.
    other = {**CHAT_ROUTE, "status": "404", "model": "other"}
    assert grew("grokproxy_http_requests_total", **other) == 1
    assert "example.com" not in after
    timed = {"route": "/v1/chat/completions", "model": "grok-3"}
    assert grew("grokproxy_http_time_to_first_byte_seconds_count", **timed) == 2
    assert grew("grokproxy_http_request_duration_seconds_count", **timed) == 2
    assert grew("grokproxy_http_request_duration_seconds_sum", **timed) > 0
    assert grew("grokproxy_upstream_attempts_total", outcome="ok") == 2
    assert grew("grokproxy_account_picks_total", source="pool") == 2
    # Both streams were closed: none is left open.
    assert value(after, "grokproxy_open_streams") == value(before, "grokproxy_open_streams")
    assert token not in after and POOL_KEY not in after


@pytest.mark.usefixtures("transport")
def test_a_rate_limited_account_counts_a_failed_attempt_and_a_failover(emu_app, add_accounts):
    app = emu_app()
    add_accounts(app, ["emu-ratelimited-metrics-0001", "emu-metrics-healthy-0002"])
    client = app.test_client()
    before = scrape(client)
    key = {"Authorization": f"Bearer {POOL_KEY}"}
    # Two tries so the rotation meets the rate-limited account at least once.
    for _ in range(2):
        assert chat(client, CHAT, key).status_code == 200
    after = scrape(client)
    limited = "grokproxy_upstream_attempts_total"
    assert (
        value(after, limited, outcome="rate_limited")
        - value(before, limited, outcome="rate_limited")
        == 1
    )
    assert (
        value(after, "grokproxy_failovers_total") - value(before, "grokproxy_failovers_total") == 1
    )


def test_accounts_by_status_are_read_from_the_database_at_scrape_time(emu_app, add_accounts):
    from grokproxy import pool

    app = emu_app()
    first, second, _ = add_accounts(
        app, ["emu-metrics-pool-0001", "emu-metrics-pool-0002", "emu-metrics-pool-0003"]
    )
    client = app.test_client()
    text = scrape(client)
    assert value(text, "grokproxy_accounts", status="active") == 3
    assert value(text, "grokproxy_accounts", status="invalid") == 0
    with app.app_context():
        pool.mark_invalid(first, "invalid_credentials: test")
        pool.mark_cooling(second, 60, "rate_limited: test")
    text = scrape(client)
    assert value(text, "grokproxy_accounts", status="active") == 1
    assert value(text, "grokproxy_accounts", status="invalid") == 1
    assert value(text, "grokproxy_accounts", status="cooling") == 1


def test_metrics_token_is_required_when_set_and_never_echoed(emu_app):
    client = emu_app(METRICS_TOKEN=METRICS_TOKEN).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.get_json()["error"]["code"] == "invalid_metrics_token"
        assert METRICS_TOKEN not in refused.get_data(as_text=True)
    assert "grokproxy_http_requests_total" in scrape(client, METRICS_TOKEN)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, "ok"),
        (grok_errors.RateLimited("429"), "rate_limited"),
        (grok_errors.InvalidCredentials("401"), "invalid"),
        (grok_errors.CloudflareChallenge("just a moment"), "cloudflare"),
        (grok_errors.AntiBotRejected("code 7"), "anti_bot"),
        (grok_errors.UpstreamBroken("HTTP 502"), "broken"),
        (grok_errors.UpstreamBroken("POST grok.com via direct timed out: ReadTimeout"), "timeout"),
        (grok_errors.UpstreamBroken("grok.com's chat gateway sent nothing for 1 s"), "timeout"),
        (DegradedTurn("placeholder query"), "degraded"),
        (ValueError("not an upstream error"), "other"),
    ],
)
def test_each_upstream_failure_kind_has_its_outcome_label(error, outcome):
    assert metrics.upstream_outcome(error) == outcome


def test_daily_limit_refusals_are_counted_by_the_function_the_limits_call(make_app):
    client = make_app().test_client()
    before = value(scrape(client), "grokproxy_daily_limit_refusals_total")
    metrics.count_daily_limit_refusal()
    assert value(scrape(client), "grokproxy_daily_limit_refusals_total") == before + 1


# --- a real gunicorn with two workers -----------------------------------------------------------


@contextlib.contextmanager
def gunicorn(tmp_path: Path, **env_vars: str) -> Iterator[tuple[str, Path]]:
    """gunicorn.conf.py with 2 single-connection workers; yields its URL and its log file."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        # One connection at a time per worker and no keep-alive: concurrent requests must be
        # shared between the two workers.
        "GUNICORN_THREADS": "1",
        "GUNICORN_WORKER_CONNECTIONS": "1",
        "GUNICORN_KEEPALIVE": "0",
        "GROKPROXY_INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/served.sqlite",
        "SECRET_KEY": "k" * 40,
        **env_vars,
    }
    for name in ("PROMETHEUS_MULTIPROC_DIR", "AUTHORIZATION", "METRICS_TOKEN"):
        if name not in env_vars:
            env.pop(name, None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=REPO,
            env=env,
            stdout=out,
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
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
                time.sleep(0.2)
        yield url, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def per_process_chat_counts(folder: Path) -> list[float]:
    """Each process's own count of answered chat requests, read from its file alone."""
    counts = []
    for file in sorted(folder.glob("counter_*.db")):
        alone = folder.parent / f"alone-{file.stem}"
        shutil.rmtree(alone, ignore_errors=True)
        alone.mkdir()
        shutil.copy(file, alone / file.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        text = generate_latest(registry).decode()
        counts.append(value(text, "grokproxy_http_requests_total", **CHAT_ROUTE, status="200"))
    return [count for count in counts if count]


def test_two_gunicorn_workers_scrape_as_one_with_counters_summed(tmp_path, emu):
    emu.configure(first_byte_delay=0.3)
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_99999.db").write_bytes(b"left over from an earlier run")
    headers = {"Authorization": f"Bearer {sso_jwt('emu-metrics-two-workers')}"}
    sent = 0
    with gunicorn(
        tmp_path,
        GROK_BASE_URL=emu.base_url,
        PROMETHEUS_MULTIPROC_DIR=str(folder),
        METRICS_TOKEN=METRICS_TOKEN,
    ) as (url, _):
        # The stale file was removed at start (it would not even parse).
        assert not (folder / "counter_99999.db").exists()

        def chat(_: int) -> int:
            return requests.post(
                f"{url}/v1/chat/completions", json=CHAT, headers=headers, timeout=30
            ).status_code

        with ThreadPoolExecutor(4) as threads:
            for _ in range(5):
                statuses = list(threads.map(chat, range(4)))
                assert statuses == [200] * 4
                sent += 4
                if len(per_process_chat_counts(folder)) >= 2:
                    break
        per_worker = per_process_chat_counts(folder)
        response = requests.get(
            f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
        )
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 401
    assert response.status_code == 200
    text = response.text
    assert len(per_worker) == 2, f"one worker served all {sent} requests: {per_worker}"
    total = value(text, "grokproxy_http_requests_total", **CHAT_ROUTE, status="200")
    assert total == sum(per_worker) == sent
    assert value(text, "grokproxy_upstream_attempts_total", outcome="ok") == sent
    assert value(text, "grokproxy_account_picks_total", source="sso") == sent
    assert value(text, "grokproxy_open_streams") == 0
    assert value(text, "grokproxy_accounts", status="active") == 0
    assert "emu-metrics-two-workers" not in text


def test_gunicorn_makes_a_private_metrics_folder_and_removes_it_on_exit(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    with gunicorn(tmp_path, TMPDIR=str(scratch)) as (url, _):
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 200
        [made] = scratch.glob("grokproxy-metrics-*")
        assert list(made.glob("counter_*.db")), "the workers keep no values in the folder"
    assert not list(scratch.glob("grokproxy-metrics-*"))
