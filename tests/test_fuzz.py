"""A bounded, seeded slice of bench/fuzz.py: no fuzzed request gets a 5xx that is grokproxy's own
(runs on the suite's database, SQLite or PostgreSQL)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("fuzz", ROOT / "bench" / "fuzz.py")
fuzz = importlib.util.module_from_spec(spec)
sys.modules["fuzz"] = fuzz  # dataclasses look their module up while the class is made
spec.loader.exec_module(fuzz)


def error_body(kind: str, code: str = "x") -> bytes:
    return json.dumps(
        {"error": {"message": "m", "type": kind, "code": code, "param": None}}
    ).encode()


@pytest.mark.parametrize(
    ("status", "body", "own"),
    [
        (500, error_body("server_error", "internal_error"), True),
        (500, b"<html>Internal Server Error</html>", True),
        (502, error_body("upstream_error"), False),
        (503, error_body("service_unavailable", "database_unavailable"), False),
        (503, error_body("no_available_account"), False),
        (503, b"<html>Service Unavailable</html>", True),
        (502, error_body("server_error"), True),
        (501, error_body("upstream_error"), True),
        (400, b"not json at all", False),
        (None, b"", False),
    ],
)
def test_only_documented_5xx_answers_are_allowed(status, body, own):
    assert fuzz.is_own_5xx(status, body) is own


def test_a_seeded_slice_of_the_fuzz_battery_finds_no_5xx_of_grokproxy(emu_app, serve):
    app = emu_app(MAX_REQUEST_BYTES=fuzz.BODY_LIMIT, LOG_LEVEL="ERROR")
    # Bounded by its request count (and pytest-timeout), never by a timed assertion.
    report = fuzz.fuzz_app(app, serve(app), requests=1500, seed=20261201)
    assert not report.failures, report.summary()
    # The slice reached every kind of mutation, and real answers came back.
    assert set(report.kinds) == {"body", "whole", "headers", "query", "framing"}
    assert report.statuses[200] > 100 and report.statuses[400] > 100
    assert report.statuses[413] > 0 and report.statuses[401] > 0


def test_the_battery_catches_a_500(emu_app, serve, monkeypatch):
    # The oracle is live: a route that breaks is reported, not averaged away.
    app = emu_app(MAX_REQUEST_BYTES=fuzz.BODY_LIMIT)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("grokproxy.tokens.list_accounts", broken)
    report = fuzz.fuzz_app(app, None, requests=200, seed=7)
    assert report.failures
    assert all("/api/get-grok-list" in case.path for case, _ in report.failures)
