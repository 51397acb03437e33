"""The benchmark harness still runs: `bench/run.py --quick` end to end, both transports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TRANSPORTS = ("HTTP NDJSON", "WebSocket gateway")
SECTIONS = (
    "### 1. Non-stream replies, {}",
    "### 2. Streaming time to first content, {}",
    "### 3. Held streams, {}",
)
EXPECTED_ROWS = (
    "| requests/s |",
    "| latency p99 ms |",
    "| unloaded: p50 added by grokproxy ms |",
    "| p99 extra gap added by grokproxy ms |",
    "| grokproxy CPU s (master + workers) |",
    "| emulator CPU s |",
    "### 4. Token pick alone",
    "| SQLite |",
    "### 5. Transports side by side (HTTP NDJSON vs WebSocket gateway)",
    "| figure | HTTP NDJSON | WebSocket gateway | gateway / http |",
)
# Side-by-side rows that must carry a number for both transports.
COMPARED = (
    "| **added TTFB unloaded p50 ms** (proxied − direct) |",
    "| **added TTFB unloaded p99 ms** (proxied − direct) |",
    "| **grokproxy CPU ms per held stream** |",
    "| **grokproxy CPU µs per relayed chunk** |",
    "| **grokproxy peak RSS above idle per held stream KiB** |",
    "| **p99 extra gap added by grokproxy ms** |",
)


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_quick_benchmark_runs_both_transports_and_compares_them(tmp_path):
    output = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    for transport in TRANSPORTS:
        for section in SECTIONS:
            assert section.format(transport) in out, f"{section.format(transport)!r} missing"
    for row in EXPECTED_ROWS + COMPARED:
        assert row in out, f"{row!r} missing from:\n{out}"
    assert "failed" not in out
    # Three scenarios per transport, the pick, the comparison.
    assert output.read_text().count("\n### ") == 3 * len(TRANSPORTS) + 2
    lines = out.splitlines()
    # Each direct and proxied row carries numbers, and no request failed either way.
    for line in lines:
        if line.startswith(("| requests/s |", "| streams completed |")):
            direct, proxied = cells(line)[1:3]
            assert direct not in ("–", "0", "0.0") and proxied not in ("–", "0", "0.0"), line
        if line.startswith("| errors |"):
            assert cells(line)[1:3] == ["0", "0"], line
    for row in COMPARED:
        (line,) = [x for x in lines if x.startswith(row)]
        http, gateway = cells(line)[1:3]
        assert http != "–" and gateway != "–", line
    (held,) = [x for x in lines if x.startswith("| held: streams completed / errors (proxied) |")]
    assert cells(held)[1:3] == ["10 / 0", "10 / 0"], held
