"""LOG_FORMAT=json: one JSON object per line, the chat summary's fields as keys; text by default."""

from __future__ import annotations

import json
import logging

import requests
from test_metrics import gunicorn

from grokproxy.logs import JsonFormatter, RedactingFilter, make_formatter

from conftest import CHAT, sso_jwt


def test_a_record_becomes_one_json_object_with_the_request_id_and_scrubbed_message():
    record = logging.LogRecord(
        "grokproxy.relay", logging.WARNING, __file__, 1, "refused %s", ("sso=abcdef123456",), None
    )
    record.request_id = "req-1"
    RedactingFilter().filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "grokproxy.relay"
    assert entry["request_id"] == "req-1"
    assert entry["message"] == "refused [redacted]"
    assert "T" in entry["time"]


def test_text_is_the_default_format(make_app):
    app = make_app()
    assert app.config["LOG_FORMAT"] == "text"
    assert not isinstance(make_formatter("text"), JsonFormatter)


def test_under_gunicorn_every_line_is_json_and_the_chat_line_carries_its_fields(tmp_path, emu):
    token = sso_jwt("emu-json-logs-account")
    with gunicorn(tmp_path, GROK_BASE_URL=emu.base_url, LOG_FORMAT="json") as (url, log):
        answer = requests.post(
            f"{url}/v1/chat/completions",
            json=CHAT,
            headers={"Authorization": f"Bearer {token}", "X-Request-Id": "json-log-req-1"},
            timeout=30,
        )
        assert answer.status_code == 200
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # each line parses on its own
    assert all({"time", "level", "logger", "request_id", "message"} <= set(e) for e in entries)
    [chat] = [e for e in entries if e["logger"] == "grokproxy.request"]
    assert chat["request_id"] == "json-log-req-1"
    assert chat["path"] == "/v1/chat/completions"
    assert chat["model"] == "grok-3"
    assert chat["status"] == "200"
    assert isinstance(chat["total_ms"], int) and isinstance(chat["ttfb_ms"], int)
    # gunicorn's own lines (start-up, access) are JSON too, and no line holds the token.
    assert any(e["logger"] == "gunicorn.access" for e in entries)
    assert token not in log.read_text()
