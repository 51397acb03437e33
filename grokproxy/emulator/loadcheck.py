"""Hold N concurrent slow chat streams against a fresh emulator and report its CPU and memory.

    .venv/bin/python -m grokproxy.emulator.loadcheck --streams 1000 --seconds 30

The client runs in this process; the figures are the emulator process's own (from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time

import aiohttp

from .testing import running_emulator

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def raise_fd_limit() -> None:
    """Let this process open one socket per stream."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def one_stream(session: aiohttp.ClientSession, base: str, i: int) -> tuple[bool, int]:
    """Run one chat to its end; return whether the modelResponse arrived and frames read."""
    token = f"loadcheck-{i}"
    body = {"message": f"load test stream {i}", "modeId": "auto"}
    async with session.post(
        f"{base}/rest/app-chat/conversations/new",
        json=body,
        cookies={"sso": token, "sso-rw": token},
    ) as resp:
        frames, done = 0, False
        async for line in resp.content:
            if line.strip():
                frames += 1
                done = done or "modelResponse" in json.loads(line)["result"].get("response", {})
        return done, frames


async def run(base: str, pid: int, streams: int, seconds: float) -> dict[str, float]:
    """Start every stream at once, sample the emulator while they run."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=seconds * 4 + 60)
    cpu0, rss0 = cpu_seconds(pid), rss_mib(pid)
    peak = rss0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.monotonic()
        tasks = [asyncio.create_task(one_stream(session, base, i)) for i in range(streams)]
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0.5)
            peak = max(peak, rss_mib(pid))
        results = [t.result() for t in tasks]
        wall = time.monotonic() - began
    return {
        "streams": streams,
        "completed": sum(ok for ok, _ in results),
        "frames": sum(n for _, n in results),
        "wall_seconds": round(wall, 1),
        "emulator_cpu_seconds": round(cpu_seconds(pid) - cpu0, 2),
        "emulator_rss_mib_idle": round(rss0, 1),
        "emulator_rss_mib_peak": round(peak, 1),
    }


def main() -> None:
    """Parse options, run the check, print the figures as JSON."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=30.0, help="length of each stream")
    p.add_argument("--tokens-per-second", type=float, default=5.0)
    args = p.parse_args()
    raise_fd_limit()
    tokens = max(1, int(args.seconds * args.tokens_per_second))
    with running_emulator(tokens=tokens, tokens_per_second=args.tokens_per_second) as emu:
        report = asyncio.run(run(emu.base_url, emu.process.pid, args.streams, args.seconds))
        outcomes = [s["outcome"] for s in emu.streams()]
        report["emulator_completed_streams"] = outcomes.count("completed")
        report["tokens_per_stream"] = tokens
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
