"""Measure what grokproxy costs on top of grok.com: the emulator direct vs. through grokproxy.

    .venv/bin/python bench/run.py                       # every scenario, SQLite, ~20 min
    .venv/bin/python bench/run.py --scenario held --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/run.py --quick               # under a minute: the harness still works
    .venv/bin/python bench/run.py --scenario ttfb --transport gateway
    .venv/bin/python bench/run.py --scenario hold2k --streams 300 --stream-seconds 15
    .venv/bin/python bench/run.py --scenario nonstream --client both --worker-class gevent

Starts the emulator and grokproxy (gunicorn with the real gunicorn.conf.py) as subprocesses,
drives them from a separate load-generator process (bench/load.py), samples CPU time, RSS and
PSS of the gunicorn master + workers and of the emulator from /proc, and prints one markdown
table per scenario, transport and client: the direct figure, the proxied figure and
proxied/direct. Each transport and client gets its own emulator and grokproxy: `http` = emulator
`--dialect modes`, GROK_DIALECT=modes, direct target conversations/new; `gateway` = emulator
`--dialect gateway` (HTTP text chat refused), GROK_DIALECT=gateway, direct target the WebSocket
`/ws/mgw/`. `--client curl_cffi` sets GROK_IMPERSONATE (`--impersonate`, chrome136) so grokproxy
reaches the emulator through curl_cffi on either transport; requests (and `websockets` for the
gateway) otherwise. `--worker-class` is passed as GUNICORN_WORKER_CLASS (unset: gunicorn.conf.py's
default). The direct target is the same whatever the client: each column has its own floor,
measured in the same run.

Scenarios: `nonstream` (concurrency 8 and 32, each against its floor, CPU per 1,000 requests),
`ttfb` (unloaded and under load), `held` (500 × 30 s at 20 tokens/s: the relay), `hold2k`
(issue 17's scale: 2,000 × 60 s at 2 tokens/s opened over 10 s: holding, memory per stream),
`pick` (bench/pick.py once, SQLite, and PostgreSQL when --postgres-url or a PostgreSQL
--database-url is set). A side-by-side table compares the transports and clients, and a last
one lists issue 17's targets with the figure measured and met/missed. The run raises its own
open-file limit to the hard limit (inherited by grokproxy's gunicorn and the emulator): a held
stream is two sockets in grokproxy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grokproxy.emulator.testing import (  # noqa: E402
    EmulatorHandle,
    free_port,
    running_emulator,
    stop_process,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
POOL_KEY = "sk-bench-pool-key"
ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 (a throwaway local benchmark secret)
SCENARIOS = ("nonstream", "ttfb", "held", "hold2k", "pick")
TRANSPORTS = ("http", "gateway")
# grokproxy's HTTP client for grok.com: plain requests, or curl_cffi when GROK_IMPERSONATE is set.
CLIENTS = ("requests", "curl_cffi")
# The emulator's --dialect and grokproxy's GROK_DIALECT for each transport.
DIALECT = {"http": "modes", "gateway": "gateway"}
LABEL = {"http": "HTTP NDJSON", "gateway": "WebSocket gateway"}


# ---- /proc -----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    """Resident set size in MiB (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KIB / 1024
    except OSError:
        return 0.0


def pss_mib(pid: int) -> float:
    """Proportional set size in MiB: shared pages split among the processes sharing them, so
    the sum over master + workers is what they occupy together (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """Direct child processes (gunicorn workers of a master)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Sampler:
    """CPU seconds used and peak summed RSS (and PSS) of a group of processes while a block runs."""

    def __init__(self, pids: Callable[[], list[int]], every: float = 0.2):
        self._pids = pids
        self._every = every
        self.cpu = 0.0
        self.peak_rss = 0.0
        self.peak_pss = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> Sampler:
        self._start = {pid: cpu_seconds(pid) for pid in self._pids()}
        self._last = dict(self._start)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        pids = self._pids()
        for pid in pids:
            self._start.setdefault(pid, 0.0)  # a worker born during the run counts from zero
            self._last[pid] = max(self._last.get(pid, 0.0), cpu_seconds(pid))
        self.peak_rss = max(self.peak_rss, sum(rss_mib(pid) for pid in pids))
        self.peak_pss = max(self.peak_pss, sum(pss_mib(pid) for pid in pids))

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.cpu = sum(self._last[pid] - self._start[pid] for pid in self._start)


# ---- the system under test -------------------------------------------------------------------


@dataclass
class Proxy:
    """A running grokproxy (gunicorn master + workers)."""

    process: subprocess.Popen
    base_url: str
    log_path: Path
    env: dict[str, str] = field(repr=False)

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]


def proxy_env(
    emu: EmulatorHandle, workdir: Path, database_url: str, args, transport: str, client: str
) -> dict[str, str]:
    """grokproxy's environment: this emulator, this database, the transport's GROK_DIALECT,
    the client's GROK_IMPERSONATE (unset for requests)."""
    env = dict(os.environ)
    env.pop("GROK_IMPERSONATE", None)
    if client == "curl_cffi":
        env["GROK_IMPERSONATE"] = args.impersonate
    env.update(
        GUNICORN_BIND=f"127.0.0.1:{free_port()}",
        GROKPROXY_INSTANCE_PATH=str(workdir / "instance"),
        GROK_DIALECT=DIALECT[transport],
        DATABASE_URL=database_url,
        SECRET_KEY="bench-" + secrets.token_hex(16),
        AUTHORIZATION=POOL_KEY,
        ADMIN_PASSWORD=ADMIN_PASSWORD,
        GROK_BASE_URL=emu.base_url,
        GROK_ASSETS_URL=emu.assets_url,
        # One pool key drives every stream: the per-caller bound (64 by default) would refuse
        # most of them, and what is measured is the gateway, not that limit.
        MAX_CONCURRENT_PER_KEY="0",
        PYTHONPATH=str(ROOT),
    )
    if args.workers:
        env["GUNICORN_WORKERS"] = str(args.workers)
    if args.threads:
        env["GUNICORN_THREADS"] = str(args.threads)
    if args.worker_class:
        env["GUNICORN_WORKER_CLASS"] = args.worker_class
    return env


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit, for this process and so for the gunicorn and
    emulator it starts (children inherit it). A held stream is two sockets in grokproxy (the
    client's and grok.com's), so 2,000 streams need more than the usual soft limit of 1,024.
    Returns the limit now in force."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@contextlib.contextmanager
def running_proxy(env: dict[str, str], workdir: Path) -> Iterator[Proxy]:
    """gunicorn -c gunicorn.conf.py wsgi:app, until /healthz answers; stopped on exit."""
    log_path = workdir / "gunicorn.log"
    log = open(log_path, "wb")  # noqa: SIM115 (closed in the finally below)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proxy = Proxy(process, f"http://{env['GUNICORN_BIND']}", log_path, env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(proxy.base_url + "/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer: {log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        # Every worker up before anything is measured: as many as GUNICORN_WORKERS says, else
        # (gunicorn.conf.py's default, which may depend on the worker class) until the count
        # has held still for a second.
        want = int(env["GUNICORN_WORKERS"]) if env.get("GUNICORN_WORKERS") else None
        seen, still_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            count = len(children(process.pid))
            if count != seen:
                seen, still_since = count, time.monotonic()
            if (want is not None and count >= want) or (
                want is None and count and time.monotonic() - still_since >= 1.0
            ):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        yield proxy
    finally:
        stop_process(process, timeout=35)
        log.close()


def add_accounts(proxy: Proxy, tokens: list[str]) -> str:
    """Put the tokens in the pool: the admin API when it exists, else straight into the DB."""
    with contextlib.suppress(requests.RequestException):
        resp = requests.post(
            proxy.base_url + "/api/batch-add-grok-token",
            json={"sso_token_list": tokens},
            headers={"Authorization": f"Bearer {ADMIN_PASSWORD}"},
            timeout=120,
        )
        if resp.status_code == 200:
            answer = resp.json()
            added = len(answer.get("email_list") or [])
            if added == len(tokens):
                return "admin API"
            raise RuntimeError(f"batch-add stored {added} of {len(tokens)}: {answer['failed'][:3]}")
        if resp.status_code != 404:
            raise RuntimeError(f"batch-add answered {resp.status_code}: {resp.text[:500]}")
    seed_database(proxy.env, tokens)  # before the admin API existed
    return "database"


def seed_database(env: dict[str, str], tokens: list[str]) -> None:
    """Insert pool accounts the way the admin API stores them (encrypted token, digest)."""
    saved = dict(os.environ)
    os.environ.update(
        {k: env[k] for k in ("DATABASE_URL", "SECRET_KEY", "GROKPROXY_INSTANCE_PATH")}
    )
    try:
        from grokproxy import create_app
        from grokproxy.emulator.accounts import email_for, user_id_for
        from grokproxy.extensions import db
        from grokproxy.models import Account

        app = create_app()
        box = app.extensions["grokproxy.secrets"]
        with app.app_context():
            for token in tokens:
                # The gateway dials ?uid=<user id>; batch-add stores it from the auth session.
                account = Account.for_token(box, token, email_for(token), user_id_for(token))
                db.session.add(account)
            db.session.commit()
            db.engine.dispose()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def private_postgres(url: str) -> Iterator[str]:
    """A fresh database next to the one `url` names, dropped on exit."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"grokproxy_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# ---- scenarios -------------------------------------------------------------------------------


@dataclass
class Run:
    """One load-generator run and what the processes used meanwhile."""

    figures: dict[str, Any]
    proxy_cpu: float | None = None
    proxy_rss: float | None = None
    proxy_pss: float | None = None
    proxy_idle_rss: float | None = None  # summed RSS just before the load started
    proxy_idle_pss: float | None = None
    emu_cpu: float = 0.0
    emu_rss: float = 0.0


def drive(
    target: str,
    url: str,
    scenario: str,
    options: list[str],
    proxy: Proxy,
    emu,
    tokens_file,
    transport: str = "http",
) -> Run:
    """Run bench/load.py once against `url`, sampling the proxy and the emulator meanwhile."""
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "load.py"),
        "--scenario",
        scenario,
        "--target",
        target,
        "--url",
        url,
        "--tokens-file",
        str(tokens_file),
        "--transport",
        transport,
        *options,
    ]
    if target == "proxy":
        cmd += ["--api-key", POOL_KEY]
    idle_rss = sum(rss_mib(pid) for pid in proxy.pids())
    idle_pss = sum(pss_mib(pid) for pid in proxy.pids())
    with Sampler(proxy.pids) as p_sample, Sampler(lambda: [emu.process.pid]) as e_sample:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-3000:]}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    run = Run(figures, emu_cpu=e_sample.cpu, emu_rss=e_sample.peak_rss)
    if target == "proxy":
        run.proxy_cpu, run.proxy_rss = p_sample.cpu, p_sample.peak_rss
        run.proxy_pss = p_sample.peak_pss
        run.proxy_idle_rss, run.proxy_idle_pss = idle_rss, idle_pss
    return run


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(direct: Any, proxied: Any) -> str:
    if not isinstance(direct, int | float) or not isinstance(proxied, int | float) or not direct:
        return "–"
    return f"{proxied / direct:.2f}×"


def table(title: str, rows: list[tuple[str, Any, Any, bool]]) -> str:
    """A markdown table: figure | direct | proxied | ratio (ratio only where it means something)."""
    lines = [f"### {title}", "", "| figure | direct | proxied | proxied / direct |"]
    lines.append("| --- | ---: | ---: | ---: |")
    for name, direct, proxied, with_ratio in rows:
        lines.append(
            f"| {name} | {fmt(direct)} | {fmt(proxied)} | "
            f"{ratio(direct, proxied) if with_ratio else '–'} |"
        )
    return "\n".join(lines)


def resource_rows(
    direct: Run, proxied: Run, prefix: str = "", rss: bool = True
) -> list[tuple[str, Any, Any, bool]]:
    """CPU and memory of grokproxy, the emulator and the load generator (grokproxy's peak RSS
    left out with rss=False, where memory_rows says more)."""
    peak_rss = (
        f"{prefix}grokproxy peak RSS MiB (master + workers)",
        None,
        round(proxied.proxy_rss or 0),
        False,
    )
    return [
        (
            f"{prefix}grokproxy CPU s (master + workers)",
            None,
            round(proxied.proxy_cpu or 0, 1),
            False,
        ),
        *([peak_rss] if rss else []),
        (f"{prefix}emulator CPU s", round(direct.emu_cpu, 1), round(proxied.emu_cpu, 1), True),
        (f"{prefix}emulator peak RSS MiB", round(direct.emu_rss), round(proxied.emu_rss), False),
        (
            f"{prefix}load generator CPU s",
            direct.figures.get("client_cpu_s"),
            proxied.figures.get("client_cpu_s"),
            False,
        ),
    ]


def memory_rows(proxied: Run, streams: int) -> list[tuple[str, Any, Any, bool]]:
    """grokproxy's memory at idle (sampled just before the load), at peak, and per held stream
    above idle (`streams`: those held at once); RSS sums count pages the forked workers share
    once per worker, PSS splits them."""
    rows: list[tuple[str, Any, Any, bool]] = []
    for kind, idle, peak in (
        ("RSS", proxied.proxy_idle_rss, proxied.proxy_rss),
        ("PSS", proxied.proxy_idle_pss, proxied.proxy_pss),
    ):
        rows += [
            (f"grokproxy idle {kind} MiB (master + workers)", None, round(idle or 0), False),
            (f"grokproxy peak {kind} MiB (master + workers)", None, round(peak or 0), False),
            (
                f"grokproxy peak {kind} above idle per held stream KiB",
                None,
                per(difference(peak, idle, 3), streams, 1024),
                False,
            ),
        ]
    return rows


def errors_note(name: str, run: Run) -> str:
    samples = run.figures.get("error_samples") or []
    return f"\n{name} errors, first ones: {samples}" if samples else ""


def cpu_per_thousand(run: Run) -> float | None:
    """grokproxy CPU seconds per 1,000 requests it served (warm-up included on both sides)."""
    return per(run.proxy_cpu, run.figures.get("served"), 1000, 2)


def scenario_nonstream(ctx) -> str:
    args = ctx.args
    warm_up(ctx)  # a fresh grokproxy's first turns per worker cost many times a warm one's
    ctx.emu.configure(tokens=ctx.reply_tokens, tokens_per_second=0, first_byte_delay=0)
    # The two points, each against its own floor; --concurrency measures one alone.
    levels = [args.concurrency] if args.concurrency else [8, 32]
    duration = args.duration or (1.0 if args.quick else 10.0)
    rows: list[tuple[str, Any, Any, bool]] = []
    notes = ""
    at: dict[int, dict[str, Run]] = {}
    for conc in levels:
        opts = ["--concurrency", str(conc), "--duration", str(duration)]
        opts += ["--warmup", "0.2" if args.quick else "2"]
        direct = ctx.drive("direct", ctx.emu.base_url, "nonstream", opts)
        proxied = ctx.drive("proxy", ctx.proxy.base_url, "nonstream", opts)
        at[conc] = {"direct": direct, "proxied": proxied}
        d, p = direct.figures, proxied.figures
        c = f"c={conc}: "
        rows += [
            (f"{c}requests/s", d["rps"], p["rps"], True),
            (f"{c}latency p50 ms", d["p50_ms"], p["p50_ms"], True),
            (f"{c}latency p99 ms", d["p99_ms"], p["p99_ms"], True),
            (f"{c}errors", d["errors"], p["errors"], False),
            (f"{c}grokproxy CPU s per 1,000 requests", None, cpu_per_thousand(proxied), False),
            *resource_rows(direct, proxied, c),
        ]
        notes += errors_note(f"c={conc} direct", direct) + errors_note(f"c={conc} proxied", proxied)
    title = f"1. Non-stream replies, {ctx.label} ({ctx.reply_tokens} tokens), "
    title += f"concurrency {' and '.join(map(str, levels))}, {duration:g} s each"
    ctx.results[("nonstream", *ctx.key)] = {"levels": at}
    return table(title, rows) + notes


def scenario_ttfb(ctx) -> str:
    args = ctx.args
    ctx.emu.configure(tokens=ctx.reply_tokens, tokens_per_second=0, first_byte_delay=0)
    conc = args.concurrency or (8 if args.quick else 64)
    duration = args.duration or (0.5 if args.quick else 10.0)
    opts = ["--concurrency", str(conc), "--duration", str(duration)]
    opts += ["--warmup", "0.2" if args.quick else "2"]
    # Unloaded first: one stream at a time shows what grokproxy adds to a single request;
    # at concurrency 64 both sides are saturated and the figure is mostly queueing.
    light = ["--concurrency", "1", "--duration", str(min(duration, 3.0))]
    light += ["--warmup", "0.2" if args.quick else "1"]
    d1 = ctx.drive("direct", ctx.emu.base_url, "ttfb", light).figures
    p1 = ctx.drive("proxy", ctx.proxy.base_url, "ttfb", light).figures
    direct = ctx.drive("direct", ctx.emu.base_url, "ttfb", opts)
    proxied = ctx.drive("proxy", ctx.proxy.base_url, "ttfb", opts)
    d, p = direct.figures, proxied.figures
    added = None if None in (p1["p50_ms"], d1["p50_ms"]) else round(p1["p50_ms"] - d1["p50_ms"], 1)
    rows = [
        ("unloaded (1 at a time): first content p50 ms", d1["p50_ms"], p1["p50_ms"], True),
        ("unloaded (1 at a time): first content p99 ms", d1["p99_ms"], p1["p99_ms"], True),
        ("unloaded: p50 added by grokproxy ms", None, added, False),
        (f"concurrency {conc}: first content p50 ms", d["p50_ms"], p["p50_ms"], True),
        (f"concurrency {conc}: first content p99 ms", d["p99_ms"], p["p99_ms"], True),
        (f"concurrency {conc}: streams/s", d["rps"], p["rps"], True),
        ("errors", d["errors"] + d1["errors"], p["errors"] + p1["errors"], False),
        *resource_rows(direct, proxied),
    ]
    title = f"2. Streaming time to first content, {ctx.label} "
    title += f"({ctx.reply_tokens} tokens), concurrency {conc}, {duration:g} s"
    ctx.results[("ttfb", *ctx.key)] = {
        "unloaded_direct": d1,
        "unloaded_proxied": p1,
        "concurrency": conc,
        "direct": direct,
        "proxied": proxied,
    }
    return table(title, rows) + errors_note("direct", direct) + errors_note("proxied", proxied)


def warm_up(ctx) -> None:
    """A few short streams through grokproxy before its idle memory is sampled: every worker
    has served a turn (imports done, pools and clients made), so what the held load adds on top
    is the streams' own cost."""
    ctx.emu.configure(tokens=ctx.reply_tokens, tokens_per_second=0, first_byte_delay=0)
    opts = ["--concurrency", "8", "--duration", "0.3" if ctx.args.quick else "2", "--warmup", "0"]
    ctx.drive("proxy", ctx.proxy.base_url, "ttfb", opts)
    time.sleep(0.2 if ctx.args.quick else 1.0)


def held_streams(ctx, key: str, streams: int, seconds: float, pace: float, ramp: float):
    """Direct, then proxied: `streams` streams of `seconds` at `pace` tokens/s, opened over
    `ramp` seconds; the figures both held scenarios report."""
    warm_up(ctx)
    ctx.emu.configure(tokens=int(seconds * pace), tokens_per_second=pace, first_byte_delay=0)
    opts = ["--concurrency", str(streams), "--interval", str(1 / pace), "--ramp", str(ramp)]
    # A stream not finished at 5x its length (plus a minute to start) counts as an error.
    opts += ["--timeout", str(seconds * 5 + 60)]
    direct = ctx.drive("direct", ctx.emu.base_url, "held", opts)
    proxied = ctx.drive("proxy", ctx.proxy.base_url, "held", opts)
    d, p = direct.figures, proxied.figures
    added = difference(p["gap_p99_ms"], d["gap_p99_ms"])
    # Memory per stream is per stream grokproxy held at once: streams it refused or queued
    # cost it nothing meanwhile, and dividing by them would flatter it.
    held_at_once = p["peak_open"] or streams
    result = {
        "streams": streams,
        "seconds": seconds,
        "pace": pace,
        "direct": direct,
        "proxied": proxied,
        "added_gap_p99": added,
        "wall_ratio": round(p["wall_s"] / d["wall_s"], 3) if d["wall_s"] else None,
        "per_stream_kib": per(
            difference(proxied.proxy_rss, proxied.proxy_idle_rss, 3), held_at_once, 1024
        ),
        "per_stream_pss_kib": per(
            difference(proxied.proxy_pss, proxied.proxy_idle_pss, 3), held_at_once, 1024
        ),
    }
    ctx.results[(key, *ctx.key)] = result
    rows = [
        ("streams completed", d["completed"], p["completed"], False),
        ("errors", d["errors"], p["errors"], False),
        ("streams open at once, peak", d["peak_open"], p["peak_open"], False),
        ("content chunks received", d["chunks"], p["chunks"], True),
        ("first content p50 ms", d["ttfb_p50_ms"], p["ttfb_p50_ms"], True),
        ("first content p99 ms", d["ttfb_p99_ms"], p["ttfb_p99_ms"], True),
        ("first content max ms", d["ttfb_max_ms"], p["ttfb_max_ms"], True),
        ("extra gap between chunks p50 ms", d["gap_p50_ms"], p["gap_p50_ms"], False),
        ("extra gap between chunks p99 ms", d["gap_p99_ms"], p["gap_p99_ms"], False),
        ("extra gap between chunks max ms", d["gap_max_ms"], p["gap_max_ms"], False),
        ("p99 extra gap added by grokproxy ms", None, added, False),
        ("wall s (proxied / direct: vs the floor's wall)", d["wall_s"], p["wall_s"], True),
        *memory_rows(proxied, held_at_once),
        *resource_rows(direct, proxied, rss=False),
    ]
    note = (
        f"\n\nExtra gap = a content chunk's arrival gap minus the emulator's {1000 / pace:g} ms "
        "pace. Open at once = streams between their first content chunk and their end. Idle "
        "memory is sampled after a warm-up, just before the load. Emulator CPU for the same "
        f"streams: {proxied.emu_cpu:.1f} s vs grokproxy {proxied.proxy_cpu or 0:.1f} s."
    )
    if p["peak_open"] < d["peak_open"]:
        note += (
            f" grokproxy held at most {p['peak_open']:,} streams at once where the floor held "
            f"{d['peak_open']:,}: its gaps and CPU are for a lighter load than the floor's; "
            "memory per held stream divides by the streams it held."
        )
    return rows, note + errors_note("direct", direct) + errors_note("proxied", proxied)


def scenario_held(ctx) -> str:
    args = ctx.args
    streams = args.streams or (10 if args.quick else 500)
    seconds = args.stream_seconds or (1.0 if args.quick else 30.0)
    pace = args.pace or 20.0
    ramp = args.ramp if args.ramp is not None else (0.1 if args.quick else 2.0)
    rows, note = held_streams(ctx, "held", streams, seconds, pace, ramp)
    title = f"3. Held streams, {ctx.label}: {streams:,} × {seconds:g} s at {pace:g} tokens/s"
    return table(title, rows) + note


def scenario_hold2k(ctx) -> str:
    """Issue 17's scale: 2,000 streams of 60 s held at once, opened over a 10 s ramp. The pace
    is low (2 tokens/s, 4,000 chunks/s in all) because the point is holding many streams in
    little memory, not relaying chunks fast; the held scenario measures the relay."""
    args = ctx.args
    streams = args.streams or (20 if args.quick else 2000)
    # Quick streams of 2 s still overlap on a busy machine, so "all held at once" is checkable.
    seconds = args.stream_seconds or (2.0 if args.quick else 60.0)
    pace = args.pace or (10.0 if args.quick else 2.0)
    ramp = args.ramp if args.ramp is not None else (0.2 if args.quick else 10.0)
    rows, note = held_streams(ctx, "hold2k", streams, seconds, pace, ramp)
    title = f"3b. Thousands of held streams, {ctx.label}: {streams:,} × {seconds:g} s at "
    title += f"{pace:g} tokens/s, opened over {ramp:g} s"
    return table(title, rows) + note


PICK_LINE = re.compile(
    r"(?P<kind>\w+): (?P<procs>\d+) processes x (?P<picks>\d+) picks over (?P<accounts>\d+) "
    r"accounts: (?P<rate>[\d,]+) picks/s.*?uses per account min (?P<min>\d+) max (?P<max>\d+) "
    r"\(spread (?P<spread>\d+)"
)


def scenario_pick(ctx) -> str:
    args = ctx.args
    script = ROOT / "bench" / "pick.py"
    title = "4. Token pick alone (bench/pick.py), 4 processes"
    if not script.exists():
        return f"### {title}\n\nbench/pick.py is not there yet: not measured."
    targets = [("SQLite", None, 1000)]
    pg = args.postgres_url or (
        args.database_url
        if args.database_url and args.database_url.startswith("postgres")
        else None
    )
    if pg:
        targets.append(("PostgreSQL", pg, 2000))
    lines = [
        f"### {title}",
        "",
        "| database | picks/s | uses per account min–max | spread | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, url, goal in targets:
        cmd = [sys.executable, str(script), "--processes", "4"]
        if args.quick:
            cmd += ["--picks", "100"]
        if url:
            cmd += ["--database-url", url]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
        match = PICK_LINE.search(out.stdout)
        if out.returncode != 0 or not match:
            lines.append(f"| {name} | failed: {out.stderr.strip()[-300:]!r} | – | – | – |")
            continue
        rate = int(match["rate"].replace(",", ""))
        spread = int(match["spread"])
        met = "met" if rate >= goal and spread <= 1 else "missed"
        lines.append(
            f"| {name} | {rate:,} | {match['min']}–{match['max']} | {spread} | "
            f"≥ {goal:,}/s, spread ≤ 1: {met} |"
        )
    if not pg:
        lines.append("\nPostgreSQL not measured: pass --postgres-url.")
    return "\n".join(lines)


def difference(a: Any, b: Any, digits: int = 1) -> float | None:
    """a − b, rounded (None when either is missing)."""
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return None
    return round(a - b, digits)


def per(amount: float | None, count: Any, scale: float, digits: int = 1) -> float | None:
    """amount × scale / count (None when there is nothing to divide by)."""
    if amount is None or not isinstance(count, int | float) or not count:
        return None
    value = round(amount * scale / count, digits)
    return int(value) if digits == 0 else value


def side_by_side(results: dict[tuple[str, ...], dict[str, Any]], combos: list[tuple[str, str]]):
    """The transports (and clients) compared: what grokproxy adds to TTFB, what a held stream
    and a non-stream request cost. One column per transport and client that ran."""
    rows: list[tuple[str, list[Any]]] = []

    def both(name: str, scenario: str, figure: Callable[[dict[str, Any]], Any]) -> None:
        got = [results.get((scenario, *combo)) for combo in combos]
        if any(g is None for g in got):
            return
        rows.append((name, [figure(g) for g in got]))

    def added(kind: str, key: str) -> Callable[[dict[str, Any]], Any]:
        def figure(r: dict[str, Any]) -> Any:
            if kind == "unloaded":
                return difference(r["unloaded_proxied"][key], r["unloaded_direct"][key])
            return difference(r["proxied"].figures[key], r["direct"].figures[key])

        return figure

    both(
        "TTFB unloaded: direct first content p50 ms",
        "ttfb",
        lambda r: r["unloaded_direct"]["p50_ms"],
    )
    both(
        "TTFB unloaded: proxied first content p50 ms",
        "ttfb",
        lambda r: r["unloaded_proxied"]["p50_ms"],
    )
    both("**added TTFB unloaded p50 ms** (proxied − direct)", "ttfb", added("unloaded", "p50_ms"))
    both("**added TTFB unloaded p99 ms** (proxied − direct)", "ttfb", added("unloaded", "p99_ms"))
    both("added TTFB under load p50 ms (proxied − direct)", "ttfb", added("loaded", "p50_ms"))
    both("added TTFB under load p99 ms (proxied − direct)", "ttfb", added("loaded", "p99_ms"))
    both("proxied streams/s under load", "ttfb", lambda r: r["proxied"].figures["rps"])
    both(
        "grokproxy CPU ms per streamed turn (ttfb under load)",
        "ttfb",
        lambda r: per(r["proxied"].proxy_cpu, r["proxied"].figures.get("served"), 1000),
    )
    for key, name in (("held", "held"), ("hold2k", "hold2k")):
        both(
            f"{name}: streams completed / errors (proxied)",
            key,
            lambda r: f"{r['proxied'].figures['completed']} / {r['proxied'].figures['errors']}",
        )
        both(
            f"{name}: streams open at once, peak (proxied, of the streams)",
            key,
            lambda r: f"{r['proxied'].figures['peak_open']} of {r['streams']}",
        )
        both(
            f"{name}: proxied wall / floor's wall",
            key,
            lambda r: times(r["wall_ratio"]),
        )
        bold = "**" if key == "held" else ""
        label = "" if key == "held" else "hold2k: "
        both(
            f"{bold}{label}grokproxy CPU ms per held stream{bold}",
            key,
            lambda r: per(r["proxied"].proxy_cpu, r["streams"], 1000),
        )
        both(
            f"{bold}{label}grokproxy CPU µs per relayed chunk{bold}",
            key,
            lambda r: per(r["proxied"].proxy_cpu, r["proxied"].figures["chunks"], 1e6, 0),
        )
        both(
            f"{name}: grokproxy RSS before the load MiB",
            key,
            lambda r: round(r["proxied"].proxy_idle_rss or 0),
        )
        both(f"{name}: grokproxy peak RSS MiB", key, lambda r: round(r["proxied"].proxy_rss or 0))
        both(f"{name}: grokproxy peak PSS MiB", key, lambda r: round(r["proxied"].proxy_pss or 0))
        both(
            f"{bold}{label}grokproxy peak RSS above idle per held stream KiB{bold}",
            key,
            lambda r: r["per_stream_kib"],
        )
        both(
            f"{name}: grokproxy peak PSS above idle per held stream KiB",
            key,
            lambda r: r["per_stream_pss_kib"],
        )
        both(
            f"{bold}{label}p99 extra gap added by grokproxy ms{bold}",
            key,
            lambda r: r["added_gap_p99"],
        )
        both(
            f"{name}: first content p50 / p99 ms, direct",
            key,
            lambda r: (
                f"{fmt(r['direct'].figures['ttfb_p50_ms'])} / "
                f"{fmt(r['direct'].figures['ttfb_p99_ms'])}"
            ),
        )
        both(
            f"{name}: first content p50 / p99 ms, proxied",
            key,
            lambda r: (
                f"{fmt(r['proxied'].figures['ttfb_p50_ms'])} / "
                f"{fmt(r['proxied'].figures['ttfb_p99_ms'])}"
            ),
        )
        both(
            f"{name}: emulator CPU s for the proxied streams",
            key,
            lambda r: round(r["proxied"].emu_cpu, 1),
        )
    levels = sorted({c for k, r in results.items() if k[0] == "nonstream" for c in r["levels"]})
    for conc in levels:

        def level(r: dict[str, Any], conc: int = conc) -> dict[str, Run] | None:
            return r["levels"].get(conc)

        both(
            f"non-stream c={conc}: proxied requests/s",
            "nonstream",
            lambda r, level=level: level(r) and level(r)["proxied"].figures["rps"],
        )
        both(
            f"non-stream c={conc}: proxied / floor requests/s",
            "nonstream",
            lambda r, level=level: (
                level(r)
                and times(
                    share(level(r)["proxied"].figures["rps"], level(r)["direct"].figures["rps"])
                )
            ),
        )
        both(
            f"non-stream c={conc}: grokproxy CPU s per 1,000 requests",
            "nonstream",
            lambda r, level=level: level(r) and cpu_per_thousand(level(r)["proxied"]),
        )
    if not rows:
        return None
    clients = {client for _transport, client in combos}
    names = [column_label(combo, len(clients) > 1) for combo in combos]
    # A ratio column when exactly two columns differ in one thing: the transport or the client.
    ratio_name = None
    if len(combos) == 2:
        (t1, c1), (t2, c2) = combos
        if c1 == c2 and {t1, t2} == set(TRANSPORTS):
            ratio_name = "gateway / http"
        elif t1 == t2:
            ratio_name = f"{c2} / {c1}"
    title = "5. Transports side by side (HTTP NDJSON vs WebSocket gateway)"
    if len(clients) > 1:
        title = "5. Transports and HTTP clients side by side"
    header = f"| figure | {' | '.join(names)} |"
    rule = "| --- |" + " ---: |" * len(names)
    if ratio_name:
        header += f" {ratio_name} |"
        rule += " ---: |"
    lines = [f"### {title}", "", header, rule]
    for name, values in rows:
        line = f"| {name} | {' | '.join(fmt(v) for v in values)} |"
        if ratio_name:
            first, second = values
            # A ratio of two differences near zero (or of opposite signs) says nothing.
            meaningful = all(isinstance(v, int | float) and v > 0 for v in values)
            line += f" {ratio(first, second) if meaningful else '–'} |"
        lines.append(line)
    return "\n".join(lines)


def share(proxied: Any, direct: Any) -> float | None:
    """proxied / direct as a number (None when there is nothing to divide by)."""
    if not isinstance(proxied, int | float) or not isinstance(direct, int | float) or not direct:
        return None
    return round(proxied / direct, 2)


def times(value: float | None) -> str | None:
    """A ratio as the tables print it ("0.52×"); a string, so no ratio of ratios is taken."""
    return None if value is None else f"{value:.2f}×"


def column_label(combo: tuple[str, str], with_client: bool) -> str:
    transport, client = combo
    return f"{LABEL[transport]}, {client}" if with_client else LABEL[transport]


# Issue 17's targets: (name, goal as written, scenario, figure of a result, whether it is met).
Figure = Callable[[dict[str, Any]], Any]


def _hold_wall(r: dict[str, Any]) -> str:
    peak = r["proxied"].figures["peak_open"]
    return f"{fmt(r['wall_ratio'], 2)}×, peak open {peak:,} of {r['streams']:,}"


def _level(conc: int, pick: Callable[[dict[str, Run]], Any]) -> Figure:
    def figure(r: dict[str, Any]) -> Any:
        runs = r["levels"].get(conc)
        return None if runs is None else pick(runs)

    return figure


def _worst_cpu(r: dict[str, Any]) -> float | None:
    values = [cpu_per_thousand(runs["proxied"]) for runs in r["levels"].values()]
    values = [v for v in values if v is not None]
    return max(values) if values else None


def _at_most(limit: float) -> Callable[[Any, dict[str, Any]], bool]:
    return lambda value, _r: isinstance(value, int | float) and value <= limit


def _held_at_once(_value: Any, r: dict[str, Any]) -> bool:
    wall = r["wall_ratio"]
    return wall is not None and wall <= 1.10 and r["proxied"].figures["peak_open"] == r["streams"]


TARGETS: list[tuple[str, str, str, Figure, Callable[[Any, dict[str, Any]], bool]]] = [
    (
        "held streams: errors",
        "0",
        "hold2k",
        lambda r: r["proxied"].figures["errors"],
        lambda v, _r: v == 0,
    ),
    ("held streams: all held at once", "wall ≤ 1.10× floor's", "hold2k", _hold_wall, _held_at_once),
    (
        "held streams: p99 added inter-chunk gap ms",
        "≤ 20",
        "hold2k",
        lambda r: r["added_gap_p99"],
        _at_most(20),
    ),
    (
        "held streams: grokproxy peak RSS MiB (master + workers)",
        "≤ 300",
        "hold2k",
        lambda r: round(r["proxied"].proxy_rss or 0),
        _at_most(300),
    ),
    (
        "held streams: peak RSS above idle per held stream KiB",
        "≤ 100",
        "hold2k",
        lambda r: r["per_stream_kib"],
        _at_most(100),
    ),
    (
        "non-stream throughput c=8: proxied / floor",
        "≥ 0.5×",
        "nonstream",
        _level(8, lambda x: share(x["proxied"].figures["rps"], x["direct"].figures["rps"])),
        lambda v, _r: isinstance(v, int | float) and v >= 0.5,
    ),
    (
        "non-stream throughput c=32: proxied / floor",
        "≥ 0.5×",
        "nonstream",
        _level(32, lambda x: share(x["proxied"].figures["rps"], x["direct"].figures["rps"])),
        lambda v, _r: isinstance(v, int | float) and v >= 0.5,
    ),
    (
        "non-stream: grokproxy CPU s per 1,000 requests (worse level)",
        "≤ 1.5",
        "nonstream",
        _worst_cpu,
        _at_most(1.5),
    ),
    (
        "added TTFB unloaded p50 ms",
        "≤ 1.5",
        "ttfb",
        lambda r: difference(r["unloaded_proxied"]["p50_ms"], r["unloaded_direct"]["p50_ms"], 2),
        _at_most(1.5),
    ),
]


def targets_summary(
    results: dict[tuple[str, ...], dict[str, Any]], combos: list[tuple[str, str]]
) -> str | None:
    """Each issue-17 target with the figure measured for each transport and client, met or
    missed ("–": that scenario did not run)."""
    if not any(key[0] in {t[2] for t in TARGETS} for key in results):
        return None
    clients = {client for _transport, client in combos}
    names = [column_label(combo, len(clients) > 1) for combo in combos]
    lines = [
        "### 6. Issue 17 targets",
        "",
        f"| target | goal | {' | '.join(names)} |",
        "| --- | --- |" + " ---: |" * len(names),
    ]
    met = measured = 0
    for name, goal, scenario, figure, check in TARGETS:
        cells = []
        for combo in combos:
            r = results.get((scenario, *combo))
            value = None if r is None else figure(r)
            if value is None:
                cells.append("–")
                continue
            ok = check(value, r)
            cell = fmt(value, 2)
            if scenario == "hold2k" and r["proxied"].figures["peak_open"] < r["streams"]:
                # Every held-stream target is for all the streams held at once: figures of a
                # server that held fewer describe a lighter load, so none of them counts as met.
                ok = False
                if check is not _held_at_once:
                    cell += f" ({r['proxied'].figures['peak_open']:,} of {r['streams']:,} held)"
            measured += 1
            met += ok
            cells.append(f"{cell} {'**met**' if ok else 'missed'}")
        lines.append(f"| {name} | {goal} | {' | '.join(cells)} |")
    scale = sorted(
        {(r["streams"], r["seconds"], r["pace"]) for k, r in results.items() if k[0] == "hold2k"}
    )
    notes = [f"\n{met} of {measured} measured figures meet their target."]
    for streams, seconds, pace in scale:
        if (streams, seconds) != (2000, 60.0):
            notes.append(
                f"Held streams measured at {streams:,} × {seconds:g} s ({pace:g} tokens/s), "
                "not the target's 2,000 × 60 s."
            )
    return "\n".join(lines) + "\n" + "\n".join(notes)


@dataclass
class Context:
    args: argparse.Namespace
    emu: EmulatorHandle
    proxy: Proxy
    tokens_file: Path
    transport: str
    client: str
    results: dict[tuple[str, ...], dict[str, Any]]
    reply_tokens: int = 24
    describe: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.transport, self.client

    @property
    def label(self) -> str:
        """The tables' name for this transport and client."""
        return f"{LABEL[self.transport]} ({self.client})"

    def drive(self, target: str, url: str, scenario: str, options: list[str]) -> Run:
        return drive(
            target, url, scenario, options, self.proxy, self.emu, self.tokens_file, self.transport
        )


def _stop(signum, _frame):
    raise SystemExit(128 + signum)  # unwind: every context manager stops what it started


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", choices=("all", *SCENARIOS), default="all")
    p.add_argument(
        "--transport",
        choices=(*TRANSPORTS, "both"),
        default="both",
        help="upstream transport: HTTP NDJSON (modes), the WebSocket gateway, or both (both)",
    )
    p.add_argument(
        "--client",
        choices=(*CLIENTS, "both"),
        default="requests",
        help="grokproxy's HTTP client: requests, curl_cffi (GROK_IMPERSONATE set) or both",
    )
    p.add_argument(
        "--impersonate",
        default="chrome136",
        help="GROK_IMPERSONATE for the curl_cffi client (a curl_cffi browser profile)",
    )
    p.add_argument(
        "--worker-class",
        help="GUNICORN_WORKER_CLASS, e.g. gevent or gthread (default: gunicorn.conf.py's)",
    )
    p.add_argument("--duration", type=float, help="measured seconds of nonstream/ttfb (10)")
    p.add_argument(
        "--concurrency", type=int, help="nonstream concurrency (8 and 32) / ttfb concurrency (64)"
    )
    p.add_argument("--streams", type=int, help="held streams (500; hold2k 2,000)")
    p.add_argument("--stream-seconds", type=float, help="length of each held stream (30; 60)")
    p.add_argument("--pace", type=float, help="held tokens/s per stream (20; hold2k 2)")
    p.add_argument("--ramp", type=float, help="seconds over which held streams open (2; 10)")
    p.add_argument("--database-url", help="grokproxy's database (default: SQLite temp file)")
    p.add_argument("--postgres-url", help="PostgreSQL for the pick scenario")
    p.add_argument("--accounts", type=int, default=50, help="pool accounts")
    p.add_argument("--workers", type=int, help="GUNICORN_WORKERS (default: gunicorn.conf.py)")
    p.add_argument("--threads", type=int, help="GUNICORN_THREADS (default: gunicorn.conf.py)")
    p.add_argument("--quick", action="store_true", help="a few-second smoke run")
    p.add_argument("--output", help="also write the tables (markdown) to this file")
    args = p.parse_args()

    chosen = SCENARIOS if args.scenario == "all" else (args.scenario,)
    transports = TRANSPORTS if args.transport == "both" else (args.transport,)
    clients = CLIENTS if args.client == "both" else (args.client,)
    combos = [(t, c) for t in transports for c in clients]
    fd_limit = raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="grokproxy-bench-"))
    tokens = [f"bench-account-{i:04d}-{secrets.token_hex(12)}" for i in range(args.accounts)]
    tokens_file = workdir / "tokens.txt"
    tokens_file.write_text("\n".join(tokens) + "\n")
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    header = [
        f"grokproxy benchmark, {started}, {os.cpu_count()} CPUs, {platform_line()}",
        f"command: {' '.join(['python', 'bench/run.py', *sys.argv[1:]])}",
        f"load average at start: {load_average()}; open-file limit {fd_limit:,}",
    ]
    print("\n".join(header), flush=True)
    sections: list[str] = []
    results: dict[tuple[str, ...], dict[str, Any]] = {}

    def emit(section: str, began: float | None) -> None:
        took = "" if began is None else f"{time.monotonic() - began:.0f} s, "
        section += f"\n\n({took}load average {load_average()})"
        print("\n" + section, flush=True)
        sections.append(section)

    with contextlib.ExitStack() as outer:
        outer.callback(shutil.rmtree, workdir, ignore_errors=True)
        served = [s for s in chosen if s != "pick"]
        for transport, client in combos if served else ():
            with contextlib.ExitStack() as stack:
                ctx = start_servers(stack, args, transport, client, tokens, workdir, results)
                print(ctx.describe, flush=True)
                header.append(ctx.describe)
                for name in served:
                    began = time.monotonic()
                    emit(globals()[f"scenario_{name}"](ctx), began)
        if "pick" in chosen:
            began = time.monotonic()
            emit(scenario_pick(args_ctx(args)), began)
        compared = side_by_side(results, combos)
        if compared:
            emit(compared, None)
        goals = targets_summary(results, combos)
        if goals:
            emit(goals, None)
    if args.output:
        Path(args.output).write_text("\n".join(header) + "\n\n" + "\n\n".join(sections) + "\n")


WORKER_LINE = re.compile(r"Using worker: (\S+)")


def start_servers(
    stack: contextlib.ExitStack,
    args: argparse.Namespace,
    transport: str,
    client: str,
    tokens: list[str],
    workdir: Path,
    results: dict[tuple[str, ...], dict[str, Any]],
) -> Context:
    """A fresh emulator, database and grokproxy for one transport and client, its pool filled."""
    home = workdir / f"{transport}-{client}"
    home.mkdir()
    database_url = args.database_url
    if database_url and database_url.startswith("postgres"):
        database_url = stack.enter_context(private_postgres(database_url))
    database_url = database_url or f"sqlite:///{home / 'grokproxy.sqlite'}"
    emu = stack.enter_context(running_emulator(tokens=24, dialect=DIALECT[transport]))
    env = proxy_env(emu, home, database_url, args, transport, client)
    proxy = stack.enter_context(running_proxy(env, home))
    how = add_accounts(proxy, tokens)
    for token in tokens:  # no quota runs out during a benchmark
        emu.set_quota("fast", token=token, remaining=10**9, total=10**9, window_seconds=10**6)
    workers = len(children(proxy.process.pid))
    threads = env.get("GUNICORN_THREADS") or "conf default"
    # gunicorn names the worker class it loaded on its first lines.
    found = WORKER_LINE.search(proxy.log_path.read_text(errors="replace"))
    worker_class = found[1].rsplit(".", 1)[-1] if found else env.get("GUNICORN_WORKER_CLASS", "?")
    ctx = Context(args, emu, proxy, workdir / "tokens.txt", transport, client, results)
    impersonate = f" (GROK_IMPERSONATE={args.impersonate})" if client == "curl_cffi" else ""
    ctx.describe = (
        f"{ctx.label}: emulator --dialect {DIALECT[transport]}, grokproxy "
        f"GROK_DIALECT={DIALECT[transport]}, client {client}{impersonate}, {workers} "
        f"{worker_class} workers, threads {threads}, database {database_url.split(':', 1)[0]}, "
        f"{len(tokens)} pool accounts (added via {how})"
    )
    return ctx


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (other people's jobs share this machine)."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def args_ctx(args: argparse.Namespace):
    return argparse.Namespace(args=args)


def platform_line() -> str:
    import platform

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model or platform.processor()}, Python {platform.python_version()}"


if __name__ == "__main__":
    main()
