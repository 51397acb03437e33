"""Secrets never reach a log line, whoever logs them."""

from __future__ import annotations

import logging

import pytest

from grokproxy.logs import redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzZXNzaW9uX2lkIjoiYWJjIn0.c2lnbmF0dXJlLXRlc3Q"


@pytest.mark.parametrize(
    "secret",
    [
        JWT,
        "sso=abc123def456",
        "sso-rw=abc123def456",
        "cf_clearance=zzzzyyyyxxxx",
        "Bearer sk-user-0123456789abcdef",
        "sk-0123456789abcdefghij",
        "/login/Ijk4NzY1NDMyMSI.aBcDeFgHiJkLmNoP",
    ],
)
def test_secret_shapes_are_redacted(secret):
    assert secret not in redact(f"something happened with {secret} here")
    assert "[redacted]" in redact(f"something happened with {secret} here")


def test_plain_text_is_left_alone():
    line = "account 7 cooling for 900 s: rate_limited: Too many requests"
    assert redact(line) == line


def test_records_of_child_loggers_are_scrubbed(app, caplog):
    caplog.set_level(logging.INFO)
    logging.getLogger("grokproxy.relay").warning("upstream said %s", f"sso={JWT}")
    assert "upstream said" in caplog.text
    assert JWT not in caplog.text
