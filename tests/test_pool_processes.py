"""Rotation is fair across processes: 4 processes picking from one database use each account
K times (±1) after N×K picks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

from grokproxy.extensions import db
from grokproxy.models import Account

# Each process builds its own app on the shared database, waits at a barrier (a folder where each
# one leaves a file) so the picks really overlap, and prints the ids it got.
WORKER = """
import json, os, sys, time
from grokproxy import create_app, pool
url, secret, picks, barrier, parties = sys.argv[1:6]
picks, parties = int(picks), int(parties)
app = create_app({"DATABASE_URL": url, "SECRET_KEY": secret, "GROK_BASE_URL": "http://127.0.0.1:9"})
with app.app_context():
    with app.extensions["sqlalchemy"].engine.connect():
        pass  # connect before the start line
    open(os.path.join(barrier, str(os.getpid())), "w").close()
    deadline = time.time() + 60
    while len(os.listdir(barrier)) < parties and time.time() < deadline:
        time.sleep(0.005)
    print(json.dumps([pool.pick_account().account_id for _ in range(picks)]))
"""

PROCESSES = 4
ACCOUNTS = 6
ROUNDS = 50  # K: every account should be used ROUNDS times, ±1


def add_accounts(app, n: int) -> list[int]:
    box = app.extensions["grokproxy.secrets"]
    with app.app_context():
        accounts = [
            Account.for_token(box, f"proc-token-{i}-" + "x" * 20, f"proc{i}@example.com")
            for i in range(n)
        ]
        db.session.add_all(accounts)
        db.session.commit()
        return [account.id for account in accounts]


def run_pickers(app, picks_each: int, barrier) -> list[list[int]]:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    args = [
        app.config["DATABASE_URL"],
        app.config["SECRET_KEY"],
        str(picks_each),
        str(barrier),
        str(PROCESSES),
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_picks_from_four_processes_use_each_account_k_times(app, tmp_path):
    ids = add_accounts(app, ACCOUNTS)
    with app.app_context():
        db.engine.dispose()  # the workers own the database while they run
    total = ACCOUNTS * ROUNDS
    assert total % PROCESSES == 0
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    results = run_pickers(app, total // PROCESSES, barrier)

    uses = Counter(account for picks in results for account in picks)
    assert sum(uses.values()) == total
    assert set(uses) == set(ids)
    assert all(ROUNDS - 1 <= count <= ROUNDS + 1 for count in uses.values()), uses
    # Every process took part (the picks overlapped rather than ran one after another).
    assert all(len(picks) == total // PROCESSES for picks in results)
    with app.app_context():
        counted = dict(db.session.execute(db.select(Account.id, Account.use_count)).all())
    assert counted == dict(uses)
