"""Daily limits: users (USER_DAILY_LIMIT and per-user overrides) and pool keys, counted in the
database, 429 daily_limit_reached with Retry-After, OpenAI's request-limit headers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from grokproxy import limits
from grokproxy.extensions import db
from grokproxy.models import UsageCounter, User

from conftest import CHAT, POOL_KEY, error_of

TOKEN = "emu-limits-account-0001"


def test_user_gets_exactly_the_daily_limit_then_429_with_retry_after(make_gateway):
    gateway = make_gateway([TOKEN], USER_DAILY_LIMIT=3)
    key = gateway.login("limited")
    remaining = []
    for _ in range(3):
        response = gateway.chat(key)
        assert response.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(response.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    refused = gateway.chat(key, status=429)
    error = error_of(refused, 429)
    assert error["code"] == "daily_limit_reached"
    wait = int(refused.headers["Retry-After"])
    with gateway.app.app_context():
        assert wait == limits.seconds_until_next_day()
    assert 0 < wait <= 86400
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_streamed_answer_carries_the_request_limit_headers(make_gateway):
    gateway = make_gateway([TOKEN], USER_DAILY_LIMIT=5)
    key = gateway.login("streamer")
    response = gateway.chat(key, body={**CHAT, "stream": True})
    assert response.headers["x-ratelimit-limit-requests"] == "5"
    assert response.headers["x-ratelimit-remaining-requests"] == "4"
    assert response.get_data(as_text=True).rstrip().endswith("[DONE]")


def test_per_user_override_beats_the_default_and_zero_is_unlimited(make_gateway):
    gateway = make_gateway([TOKEN], USER_DAILY_LIMIT=1)
    capped, free = gateway.login("capped"), gateway.login("free")
    with gateway.app.app_context():
        db.session.execute(db.update(User).where(User.user_name == "capped").values(daily_limit=2))
        db.session.execute(db.update(User).where(User.user_name == "free").values(daily_limit=0))
        db.session.commit()
    gateway.chat(capped)
    gateway.chat(capped)
    gateway.chat(capped, status=429)
    for _ in range(4):
        response = gateway.chat(free)
        assert "x-ratelimit-limit-requests" not in response.headers


def test_pool_key_limit_counts_per_key(make_gateway):
    other = "sk-second-pool-key"
    gateway = make_gateway([TOKEN], POOL_KEY_DAILY_LIMIT=2, AUTHORIZATION=(POOL_KEY, other))
    gateway.chat(POOL_KEY)
    gateway.chat(POOL_KEY)
    assert error_of(gateway.chat(POOL_KEY, status=429), 429)["code"] == "daily_limit_reached"
    assert gateway.chat(other).headers["x-ratelimit-remaining-requests"] == "1"


def test_request_failing_before_any_answer_gives_its_count_back(make_gateway, emu):
    gateway = make_gateway([TOKEN], USER_DAILY_LIMIT=1)
    key = gateway.login("unlucky")
    emu.set_fault("invalid", token=TOKEN)
    gateway.chat(key, status=503)  # its account is now invalid
    with gateway.app.app_context():
        counted = db.session.scalar(db.select(db.func.sum(UsageCounter.count)))
    assert not counted


def test_day_turns_at_midnight_of_limit_timezone(app):
    app.config["LIMIT_TIMEZONE"] = "Asia/Shanghai"
    with app.app_context():
        # 16:30 UTC is 00:30 the next day in Shanghai (UTC+8).
        moment = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)
        assert limits.today(moment) == "2026-03-02"
        assert limits.seconds_until_next_day(moment) == (23 * 60 + 30) * 60


WORKER = """
import json, os, sys, time
from grokproxy import create_app, limits
from grokproxy.auth import Caller
from grokproxy.errors import APIError
url, secret, attempts, barrier, parties, user_id = sys.argv[1:7]
app = create_app({"DATABASE_URL": url, "SECRET_KEY": secret, "USER_DAILY_LIMIT": 25})
caller = Caller("user", owner=f"user:{user_id}", user_id=int(user_id), account_id=None)
outcome = {"admitted": 0, "refused": 0}
with app.app_context():
    with app.extensions["sqlalchemy"].engine.connect():
        pass
    open(os.path.join(barrier, str(os.getpid())), "w").close()
    deadline = time.time() + 60
    while len(os.listdir(barrier)) < int(parties) and time.time() < deadline:
        time.sleep(0.005)
    for _ in range(int(attempts)):
        try:
            limits.admit(caller)
            outcome["admitted"] += 1
        except APIError as error:
            assert error.code == "daily_limit_reached", error.code
            outcome["refused"] += 1
print(json.dumps(outcome))
"""
PROCESSES = 4


def test_daily_limit_holds_under_four_racing_processes(app, tmp_path):
    """4 processes x 20 admissions against a limit of 25: exactly 25 get in, on either database."""
    box = app.extensions["grokproxy.secrets"]
    with app.app_context():
        user = User(user_name="racer", api_key_encrypted=box.encrypt("k"), api_key_digest="d")
        db.session.add(user)
        db.session.commit()
        user_id = user.id
        db.engine.dispose()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    args = [app.config["DATABASE_URL"], app.config["SECRET_KEY"], "20", str(barrier)]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *args, str(PROCESSES), str(user_id)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err[-2000:]
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(o["admitted"] for o in outcomes) == 25
    assert sum(o["refused"] for o in outcomes) == PROCESSES * 20 - 25
    with app.app_context():
        assert db.session.scalar(db.select(UsageCounter.count)) == 25


@pytest.mark.parametrize("name", ["Mars/Olympus", "not a zone"])
def test_unknown_limit_timezone_is_a_configuration_error(name):
    from grokproxy.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="LIMIT_TIMEZONE"):
        load_config({"LIMIT_TIMEZONE": name})
