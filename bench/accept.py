"""How gunicorn's workers share held streams, and two drills: a frozen grok.com, a lost database.

    .venv/bin/python bench/accept.py held --streams 500 --seconds 20 [--workers 2 --threads 128]
    .venv/bin/python bench/accept.py freeze --chats 300 [--budget 10]
    .venv/bin/python bench/accept.py postgres --chats 100        # needs initdb/pg_ctl

Every run starts the emulator and a real gunicorn with gunicorn.conf.py (environment overrides
such as GUNICORN_WORKER_CONNECTIONS pass through), drives it with aiohttp from this process and
prints one JSON line of figures.

- held: N streams of S seconds opened at once. Samples, every 0.25 s, how many streams have had
  their first byte and not ended ("held"), and the established connections of each worker (from
  /proc): how evenly the workers accepted.
- freeze: N chats while the emulator is stopped (SIGSTOP) after they are sent; /healthz is asked
  every 0.2 s throughout. Every chat must end as 504 within the budget, /healthz within 1 s.
- postgres: a private PostgreSQL cluster on a free port (never the machine's server), chats
  under way while it is stopped and started again: no 500, every answer a 503 JSON or a reply.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grokproxy.emulator.accounts import sso_cookie  # noqa: E402
from grokproxy.emulator.testing import (  # noqa: E402
    EmulatorHandle,
    free_port,
    running_emulator,
    stop_process,
)

POOL_KEY = "sk-accept-bench-pool-key"
ADMIN_PASSWORD = "accept-bench-admin-password"  # noqa: S105 (a throwaway local secret)
CHAT = {"model": "grok-3", "messages": [{"role": "user", "content": "hello"}]}


# ---- processes -------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The direct children of `pid` (gunicorn's workers)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(entry.name))
    return out


def established_by_pid(pids: list[int], port: int) -> dict[int, int]:
    """Established TCP connections on local `port` held by each pid (/proc/net/tcp + fds)."""
    inodes: dict[str, None] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        local_port = int(parts[1].split(":")[1], 16)
        if local_port == port and parts[3] == "01":
            inodes[parts[9]] = None
    counts = {}
    for pid in pids:
        count = 0
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        count += 1
        counts[pid] = count
    return counts


@contextlib.contextmanager
def running_gunicorn(emu: EmulatorHandle, database_url: str, **env_over: str) -> Iterator[Any]:
    """gunicorn -c gunicorn.conf.py wsgi:app over the emulator, until /healthz answers."""
    workdir = Path(tempfile.mkdtemp(prefix="grokproxy-accept-"))
    port = free_port()
    env = dict(os.environ)
    env.update(
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_ACCESSLOG="/dev/null",
        GROKPROXY_INSTANCE_PATH=str(workdir / "instance"),
        DATABASE_URL=database_url or f"sqlite:///{workdir}/grokproxy.sqlite",
        SECRET_KEY="accept-" + secrets.token_hex(16),
        AUTHORIZATION=POOL_KEY,
        ADMIN_PASSWORD=ADMIN_PASSWORD,
        GROK_BASE_URL=emu.base_url,
        GROK_ASSETS_URL=emu.assets_url,
        PYTHONPATH=str(ROOT),
        **env_over,
    )
    log = open(workdir / "gunicorn.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError((workdir / "gunicorn.log").read_text()[-3000:])
            with contextlib.suppress(requests.RequestException):
                if requests.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not answer within 90 s")
            time.sleep(0.2)
        want = int(env.get("GUNICORN_WORKERS") or os.cpu_count() * 2 + 1)
        while len(children(process.pid)) < want and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        yield process, base, port, workdir
    finally:
        stop_process(process, timeout=40)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def add_tokens(base: str, count: int) -> None:
    """Put `count` emulator accounts in the pool through the admin API."""
    tokens = [sso_cookie(f"emu-accept-{i:05d}-{secrets.token_hex(4)}") for i in range(count)]
    answer = requests.post(
        base + "/api/batch-add-grok-token",
        json={"sso_token_list": tokens},
        headers={"Authorization": f"Bearer {ADMIN_PASSWORD}"},
        timeout=300,
    )
    answer.raise_for_status()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


# ---- held streams ----------------------------------------------------------------------------


async def held(base: str, port: int, master: int, streams: int) -> dict[str, Any]:
    """Open every stream at once; sample held streams and connections per worker."""
    first_byte: list[float] = []
    state = {"held": 0, "done": 0, "errors": 0}
    samples: list[int] = []
    per_worker: list[dict[int, int]] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    headers = {"Authorization": f"Bearer {POOL_KEY}"}
    body = {**CHAT, "stream": True}

    async def one(session: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        seen = False
        try:
            async with session.post(base + "/v1/chat/completions", json=body, headers=headers) as r:
                async for _chunk in r.content.iter_any():
                    if not seen:
                        seen = True
                        first_byte.append(time.monotonic() - started)
                        state["held"] += 1
                if r.status != 200:
                    state["errors"] += 1
        except Exception:
            state["errors"] += 1
        finally:
            if seen:
                state["held"] -= 1
            state["done"] += 1

    async def sample() -> None:
        workers = children(master)
        while state["done"] < streams:
            samples.append(state["held"])
            per_worker.append(established_by_pid(workers, port))
            await asyncio.sleep(0.25)

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(one(session) for _ in range(streams)))
        await sampler
    peak = max(range(len(per_worker)), key=lambda i: sum(per_worker[i].values()), default=None)
    return {
        "streams": streams,
        "errors": state["errors"],
        "held_max": max(samples, default=0),
        "first_byte_p50_s": percentile(first_byte, 0.5),
        "first_byte_p99_s": percentile(first_byte, 0.99),
        "first_byte_max_s": percentile(first_byte, 1.0),
        "connections_per_worker_at_peak": sorted(per_worker[peak].values()) if peak else [],
        "wall_s": round(time.monotonic() - started, 1),
    }


# ---- drills ----------------------------------------------------------------------------------


async def health_probe(base: str, stop: asyncio.Event, latencies: list[float]) -> None:
    """Ask /healthz every 0.2 s until `stop`; a failure or a >5 s wait is recorded as 5 s."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop.is_set():
            started = time.monotonic()
            try:
                async with session.get(base + "/healthz") as r:
                    await r.read()
                    latencies.append(time.monotonic() - started if r.status < 500 else 5.0)
            except Exception:
                latencies.append(5.0)
            await asyncio.sleep(0.2)


async def chats(base: str, count: int, stream: bool, results: list[tuple[int, float, str]]) -> None:
    """`count` chats at once; each result is (status, seconds, error code or '')."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=600)
    headers = {"Authorization": f"Bearer {POOL_KEY}"}

    async def one(session: aiohttp.ClientSession, index: int) -> None:
        started = time.monotonic()
        body = {**CHAT, "stream": stream and index % 2 == 0}
        try:
            async with session.post(base + "/v1/chat/completions", json=body, headers=headers) as r:
                text = await r.text()
                code = ""
                if r.content_type == "application/json" and r.status >= 400:
                    code = json.loads(text)["error"]["code"]
                elif r.status >= 400:
                    code = f"not-json:{r.content_type}"
                elif '"error"' in text:
                    code = "stream-error:" + text.split('"code":', 1)[-1][:40]
                results.append((r.status, time.monotonic() - started, code))
        except Exception as exc:
            results.append((0, time.monotonic() - started, type(exc).__name__))

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(one(session, i) for i in range(count)))


async def freeze(base: str, emu: EmulatorHandle, count: int) -> dict[str, Any]:
    """Chats sent, the emulator frozen, every chat answered; /healthz sampled throughout."""
    stop = asyncio.Event()
    latencies: list[float] = []
    results: list[tuple[int, float, str]] = []
    probe = asyncio.create_task(health_probe(base, stop, latencies))
    await asyncio.sleep(1)
    os.kill(emu.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        await chats(base, count, True, results)
        wall = time.monotonic() - started
    finally:
        os.kill(emu.process.pid, signal.SIGCONT)
    await asyncio.sleep(1)
    stop.set()
    await probe
    return {
        "chats": count,
        "answers": dict(Counter(f"{status} {code}".strip() for status, _, code in results)),
        "answer_max_s": percentile([s for _, s, _ in results], 1.0),
        "answer_p50_s": percentile([s for _, s, _ in results], 0.5),
        "healthz_probes": len(latencies),
        "healthz_max_s": percentile(latencies, 1.0),
        "healthz_over_1s": sum(1 for v in latencies if v > 1.0),
        "wall_s": round(wall, 1),
    }


@contextlib.contextmanager
def private_cluster() -> Iterator[tuple[str, Any]]:
    """A throwaway PostgreSQL cluster on a free port, run as the postgres user; its URL and a
    function start(bool) that starts (True) or stops (False) it."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        raise SystemExit("postgres drill skipped: initdb/pg_ctl not found")
    folder = Path(tempfile.mkdtemp(prefix="grokproxy-pgdrill-"))
    data = folder / "data"
    port = free_port()
    user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if user:
        shutil.chown(folder, "postgres")

    def run(*cmd: str) -> None:
        subprocess.run([*user, *cmd], check=True, capture_output=True)

    run(initdb, "-D", str(data), "-A", "trust", "-U", "postgres")

    def start(up: bool) -> None:
        if up:
            options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
            run(pg_ctl, "-D", str(data), "-o", options, "-w", "-l", str(folder / "log"), "start")
        else:
            run(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")

    start(True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", start
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            start(False)
        shutil.rmtree(folder, ignore_errors=True)


async def postgres_drill(base: str, count: int, start) -> dict[str, Any]:
    """Waves of chats while the database goes away for 6 s and comes back."""
    results: list[tuple[int, float, str]] = []
    wave = asyncio.create_task(chats(base, count, True, results))
    await asyncio.sleep(0.5)
    await asyncio.to_thread(start, False)
    down = time.monotonic()
    during: list[tuple[int, float, str]] = []
    await chats(base, max(10, count // 5), False, during)
    await asyncio.sleep(max(0.0, 6 - (time.monotonic() - down)))
    await asyncio.to_thread(start, True)
    await wave
    after: list[tuple[int, float, str]] = []
    await asyncio.sleep(1)
    await chats(base, 20, False, after)

    def tally(rows: list[tuple[int, float, str]]) -> dict[str, int]:
        return dict(Counter(f"{status} {code}".strip() for status, _, code in rows))

    return {
        "wave_while_stopped": tally(results),
        "sent_while_down": tally(during),
        "after_restart": tally(after),
        "any_500": any(s == 500 for s, _, _ in results + during + after),
    }


# ---- main ------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("scenario", choices=("held", "freeze", "postgres"))
    p.add_argument("--streams", type=int, default=500)
    p.add_argument("--seconds", type=float, default=20.0, help="length of a held stream")
    p.add_argument("--chats", type=int, default=300)
    p.add_argument("--budget", type=float, default=None, help="UPSTREAM_TOTAL_TIMEOUT (drills)")
    p.add_argument("--workers", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--accounts", type=int, default=50)
    p.add_argument("--database-url", default="")
    args = p.parse_args()
    env: dict[str, str] = {}
    if args.workers:
        env["GUNICORN_WORKERS"] = str(args.workers)
    if args.threads:
        env["GUNICORN_THREADS"] = str(args.threads)
    if args.budget:
        env["UPSTREAM_TOTAL_TIMEOUT"] = str(args.budget)
    env.setdefault("MAX_CONCURRENT_PER_KEY", "0")  # one key drives everything here
    pace = 20.0
    with running_emulator() as emu:
        emu.configure(tokens=int(args.seconds * pace), tokens_per_second=pace, first_byte_delay=0)
        with contextlib.ExitStack() as stack:
            url, start = args.database_url, None
            if args.scenario == "postgres":
                url, start = stack.enter_context(private_cluster())
            process, base, port, _ = stack.enter_context(running_gunicorn(emu, url, **env))
            add_tokens(base, args.accounts)
            config = {
                "workers": len(children(process.pid)),
                "threads": int(env.get("GUNICORN_THREADS") or 128),
                "worker_connections": os.environ.get("GUNICORN_WORKER_CONNECTIONS", "default"),
                "reuse_port": os.environ.get("GUNICORN_REUSE_PORT", "default"),
            }
            if args.scenario == "held":
                figures = asyncio.run(held(base, port, process.pid, args.streams))
            elif args.scenario == "freeze":
                emu.configure(tokens=20, tokens_per_second=pace)
                figures = asyncio.run(freeze(base, emu, args.chats))
            else:
                emu.configure(tokens=40, tokens_per_second=pace)
                figures = asyncio.run(postgres_drill(base, args.chats, start))
    print(json.dumps({"scenario": args.scenario, **config, **figures}))


if __name__ == "__main__":
    main()
