"""HTTP error classification of grok.com answers, and messages that never leak a token."""

from __future__ import annotations

import json

import pytest

from grokproxy.grok.errors import (
    AntiBotRejected,
    Blocked,
    CloudflareChallenge,
    ConversationNotFound,
    InvalidCredentials,
    RateLimited,
    UpstreamBroken,
    classify_error_object,
    classify_http_error,
    scrub,
)

from conftest import sample_text

JSON = "application/json"
CLOUDFLARE_PAGE = """<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="refresh" content="360"></head><body>
<script src="/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1"></script></body></html>"""


@pytest.mark.parametrize(
    ("status", "name", "cls", "code"),
    [
        (403, "error-anti-bot-code7.json", AntiBotRejected, 7),
        (200, "error-anti-bot-code7.json", AntiBotRejected, 7),
        (403, "error-invalid-sso-code16.json", InvalidCredentials, 16),
        (429, "error-too-many-requests-code8.json", RateLimited, 8),
        (200, "error-too-many-requests-code8.json", RateLimited, 8),
    ],
)
def test_sample_error_bodies_are_classified(status, name, cls, code):
    error = classify_http_error(status, JSON, sample_text(name))
    assert type(error) is cls
    assert error.status == status
    assert error.code == code
    assert str(status) in error.message


def test_cloudflare_challenge_page_is_not_the_accounts_fault():
    error = classify_http_error(403, "text/html; charset=UTF-8", CLOUDFLARE_PAGE)
    assert isinstance(error, CloudflareChallenge)
    assert isinstance(error, Blocked)
    assert "<html" not in error.message


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (401, "", InvalidCredentials),
        (401, '{"error":"unauthorized"}', InvalidCredentials),
        (403, '{"error":{"code":3,"message":"No credentials presented"}}', InvalidCredentials),
        (
            403,
            '{"error":{"code":3,"message":"user is blocked [blocked-user]"}}',
            InvalidCredentials,
        ),
        (429, "slow down", RateLimited),
        (404, '{"error":{"code":5,"message":"conversation not found"}}', ConversationNotFound),
        (500, "oops", UpstreamBroken),
        (502, "<html><body>Bad gateway</body></html>", UpstreamBroken),
        (400, '{"error":{"code":3,"message":"invalid field modeId"}}', UpstreamBroken),
        (403, "<html><body>Sorry, forbidden</body></html>", Blocked),
    ],
)
def test_statuses_and_markers_map_to_classes(status, body, cls):
    assert (
        type(classify_http_error(status, JSON if body.startswith("{") else "text/html", body))
        is cls
    )


def test_error_messages_never_contain_a_token_or_cookie():
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzZXNzaW9uX2lkIjoiYWJjIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
    message = f"bad session sso={jwt}; sso-rw={jwt} token {jwt}"
    body = json.dumps({"error": {"code": 16, "message": message}})
    error = classify_http_error(403, JSON, body)
    assert isinstance(error, InvalidCredentials)
    assert jwt not in error.message
    assert "eyJ" not in str(error)
    assert "sso=[redacted]" in error.message


def test_scrub_removes_proxy_credentials_and_shortens():
    assert "secret" not in scrub("via socks5h://user:secret@10.0.0.1:1080 failed")
    assert len(scrub("x" * 1000)) <= 300


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (
            402,
            '{"error":{"code":9,"message":"Request blocked '
            '[WKE=personal-team-blocked:spending-limit]"}}',
            RateLimited,
        ),
        (402, '{"error":"personal-team-blocked:spending-limit"}', RateLimited),
        (
            403,
            '{"error":{"code":3,"message":"Sign-up rejected [WKE=account:email-domain-rejected]"}}',
            InvalidCredentials,
        ),
        (403, '{"error":{"code":3,"message":"bad-credentials"}}', InvalidCredentials),
        (400, '{"error":{"code":3,"message":"[WKE=unauthenticated:bad-credentials]"}}',
         InvalidCredentials),
    ],
)  # fmt: skip
def test_late_failure_bodies_cool_or_invalidate_the_account(status, body, cls):
    error = classify_http_error(status, JSON, body)
    assert type(error) is cls
    assert error.status == status


def test_spending_limit_is_a_quota_not_a_dead_credential():
    body = '{"error":{"code":9,"message":"personal-team-blocked:spending-limit"}}'
    error = classify_http_error(402, JSON, body)
    assert isinstance(error, RateLimited)
    assert not isinstance(error, InvalidCredentials)
    assert "spending-limit" in error.message


@pytest.mark.parametrize(
    ("error", "cls", "code"),
    [
        ({"code": "rate_limit_exceeded", "message": "slow down"}, RateLimited, None),
        ({"code": 8, "message": "Too many requests"}, RateLimited, 8),
        ({"code": "8", "message": "busy"}, RateLimited, 8),
        ({"code": "RESOURCE_EXHAUSTED", "message": "quota"}, RateLimited, 8),
        ({"kind": "spending_limit"}, RateLimited, None),
        ({"code": 16, "message": "session gone"}, InvalidCredentials, 16),
        ({"code": "UNAUTHENTICATED"}, InvalidCredentials, 16),
        ({"message": "[WKE=account:email-domain-rejected]", "code": 3}, InvalidCredentials, 3),
        ({"code": "conversation_not_found", "message": "no such conversation"},
         ConversationNotFound, None),
        ({"code": 7, "message": "Request rejected by anti-bot rules."}, AntiBotRejected, 7),
        ({"code": "internal", "message": "something broke"}, UpstreamBroken, None),
        ("plain text failure", UpstreamBroken, None),
    ],
)  # fmt: skip
def test_error_objects_of_any_shape_are_classified(error, cls, code):
    result = classify_error_object(error, where="grok.com gateway")
    assert type(result) is cls
    assert result.code == code
    assert result.message.startswith("grok.com gateway")


def test_error_object_messages_never_contain_a_token():
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzZXNzaW9uX2lkIjoiYWJjIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
    result = classify_error_object({"code": "internal", "message": f"token {jwt} failed"})
    assert jwt not in result.message and "eyJ" not in str(result)
