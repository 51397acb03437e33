"""The benchmark harness still runs: `bench/run.py --quick` end to end (a few seconds)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_ROWS = (
    "### 1. Non-stream replies",
    "| requests/s |",
    "| latency p99 ms |",
    "### 2. Streaming time to first content",
    "| unloaded: p50 added by grokproxy ms |",
    "### 3. Held streams",
    "| p99 extra gap added by grokproxy ms |",
    "| grokproxy CPU s (master + workers) |",
    "| emulator CPU s |",
    "### 4. Token pick alone",
    "| SQLite |",
)


def test_quick_benchmark_runs_and_prints_tables(tmp_path):
    output = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for row in EXPECTED_ROWS:
        assert row in done.stdout, f"{row!r} missing from:\n{done.stdout}"
    assert "failed" not in done.stdout
    assert output.read_text().count("### ") == 4
    # Each direct and proxied row carries numbers, and no request failed through the proxy.
    for line in done.stdout.splitlines():
        if line.startswith(("| requests/s |", "| streams completed |")):
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[1] not in ("–", "0", "0.0") and cells[2] not in ("–", "0", "0.0"), line
        if line.startswith("| errors |"):
            assert line.split("|")[3].strip() == "0", line
