"""What can go wrong when talking to grok.com, sorted by whose fault it is.

The pool acts on the class: `RateLimited` cools the account, `InvalidCredentials` marks it invalid,
`Blocked` (Cloudflare, anti-bot) changes no account, `UpstreamBroken` is grok.com misbehaving.
Messages are written for an operator and never contain a token or cookie.
"""

from __future__ import annotations

import json
import re


class GrokError(Exception):
    """Base class: an upstream failure with an operator-readable message."""

    kind = "upstream"

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status  # upstream HTTP status, when there was one
        self.code = code  # upstream gRPC-style error code (7, 8, 16 ...), when there was one

    def __str__(self) -> str:
        return self.message


class RateLimited(GrokError):
    """The account hit its quota (HTTP 429, code 8, "usage limit"): cool it down."""

    kind = "rate_limited"

    def __init__(self, message: str, *, wait_seconds: float | None = None, **kw):
        super().__init__(message, **kw)
        self.wait_seconds = wait_seconds


class InvalidCredentials(GrokError):
    """The SSO token is dead (401, code 16, session unauthenticated/blocked): mark it invalid."""

    kind = "invalid_credentials"


class Blocked(GrokError):
    """grok.com refused us, not the account: try another proxy, change no account."""

    kind = "blocked"


class CloudflareChallenge(Blocked):
    """A Cloudflare challenge page ("Just a moment...") instead of an API answer."""

    kind = "cloudflare"


class AntiBotRejected(Blocked):
    """grok.com's anti-bot rules rejected the request (code 7)."""

    kind = "anti_bot"


class ConversationNotFound(GrokError):
    """The conversation does not exist on this account (HTTP 404 on continuation)."""

    kind = "conversation_not_found"


class InvalidRequest(GrokError):
    """grok.com refused what the client asked for (not the account, not grok.com failing):
    the client's answer is a 400 and no account is marked."""

    kind = "invalid_request"


class ParentNotFound(InvalidRequest):
    """The reply a continuation names as its parent is not in the conversation."""

    kind = "parent_not_found"


class UpstreamBroken(GrokError):
    """Network failure, timeout, 5xx, an unexpected 4xx or a stream that makes no sense."""

    kind = "broken"


class UpstreamTimeout(UpstreamBroken):
    """grok.com did not connect, answer or go on answering within its time budget."""

    kind = "timeout"


# --- classification (added by the grok adapter; the classes above are unchanged) ---------------

# Body markers grok.com uses for a dead or refused SSO session (docs/upstream.md §5.1).
_CREDENTIAL_MARKERS = (
    "invalid-credentials",
    "bad-credentials",
    "failed to look up session id",
    "blocked-user",
    "user is blocked",
    "email-domain-rejected",
    "session not found",
    "account suspended",
    "token revoked",
    "token expired",
    "no credentials presented",
    "unauthenticated",
)
_RATE_MARKERS = (
    "too many requests",
    "rate limit",
    "usage limit",
    "usage quota",
    "rate_limit",
    # HTTP 402 `personal-team-blocked:spending-limit`: the account's spending cap is used up,
    # which cools like a quota; the credential itself is fine (docs/upstream.md §4.8).
    "spending-limit",
    "spending_limit",
    "spending limit",
)
_NOT_FOUND_MARKERS = ("conversation_not_found", "conversation not found")
# An unknown parent reply: the emulator's HTTP 400 code 3 "parent response '…' not found" and the
# gateway's `invalid_request` error at item create say it this way.
_PARENT_MARKERS = ("parent response", "parent_response", "parentresponseid", "parent message")
_MISSING_MARKERS = ("not found", "unknown", "does not exist", "no such")
_ANTI_BOT_MARKERS = ("anti-bot", "anti bot", "antibot")
_CLOUDFLARE_MARKERS = (
    "just a moment",
    "challenge-platform",
    "cf-chl",
    "cf_chl",
    "attention required! | cloudflare",
    "cf-browser-verification",
    "/cdn-cgi/challenge",
)

# Anything that looks like a JWT (the sso cookie is one) or cookie assignment is cut out of
# messages, so an operator-facing message can never leak a credential grok.com echoed back.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?")
_COOKIE = re.compile(r"(?i)\b(sso(?:-rw)?|cf_clearance)=[^;\s]+")
_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/@\s]+@")


def scrub(text: str, limit: int = 300) -> str:
    """Remove anything credential-like from an upstream message and shorten it."""
    text = _JWT.sub("[redacted]", text)
    text = _COOKIE.sub(r"\1=[redacted]", text)
    text = _USERINFO.sub(r"\1***@", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def classify_error_payload(
    code: int | None, message: str, *, status: int | None = None, where: str = "grok.com"
) -> GrokError:
    """Map an upstream `{"error": {code, message}}` (in-band or HTTP body) to a GrokError."""
    text = scrub(message or "")
    low = text.lower()
    detail = f"{text} (code {code})" if code is not None else text
    kw = {"status": status, "code": code}
    if code == 16 or status == 401 or any(m in low for m in _CREDENTIAL_MARKERS):
        return InvalidCredentials(f"{where} rejected the SSO token: {detail}", **kw)
    if code == 8 or status in (402, 429) or any(m in low for m in _RATE_MARKERS):
        return RateLimited(f"{where} rate limit: {detail}", **kw)
    if code == 7 or any(m in low for m in _ANTI_BOT_MARKERS):
        return AntiBotRejected(f"{where} anti-bot rules rejected the request: {detail}", **kw)
    if any(m in low for m in _PARENT_MARKERS) and any(m in low for m in _MISSING_MARKERS):
        return ParentNotFound(f"{where} has no such parent reply: {detail}", **kw)
    if status == 404 or any(m in low for m in _NOT_FOUND_MARKERS):
        return ConversationNotFound(f"{where} has no such conversation: {detail}", **kw)
    return UpstreamBroken(f"{where} error: {detail or 'no message'}", **kw)


# gRPC status names the gateway may send instead of numbers (google.rpc.Code).
_GRPC_CODES = {
    "permission_denied": 7,
    "resource_exhausted": 8,
    "unauthenticated": 16,
}


def classify_error_object(
    error: object, *, status: int | None = None, where: str = "grok.com"
) -> GrokError:
    """Map an error object of any shape (`{code, message, kind, type}`, a string) to a GrokError.

    The WebSocket gateway spells codes as numbers, numeric strings, gRPC names or words such as
    `rate_limit_exceeded`; words take part in the marker matching like the message does.
    """
    if not isinstance(error, dict):
        return classify_error_payload(None, str(error or ""), status=status, where=where)
    code: int | None = None
    words: list[str] = []
    for key in ("code", "kind", "type", "reason", "status"):
        value = error.get(key)
        if isinstance(value, bool) or value in (None, ""):
            continue
        if isinstance(value, int):
            if key == "code":
                code = value
            continue
        text = str(value).strip()
        if key == "code" and text.isdigit():
            code = int(text)
        elif key == "code" and text.lower() in _GRPC_CODES:
            code = _GRPC_CODES[text.lower()]
        elif text.lower() != "error":
            words.append(text)
    message = str(error.get("message") or error.get("error") or error.get("detail") or "")
    text = " ".join([*words, message]) if words else message
    return classify_error_payload(code, text, status=status, where=where)


def looks_like_cloudflare(content_type: str | None, body_text: str) -> bool:
    """True when a body is a Cloudflare challenge/block page rather than an API answer."""
    if "json" in (content_type or "").lower():
        return False
    low = body_text[:20000].lower()
    return any(m in low for m in _CLOUDFLARE_MARKERS)


def classify_http_error(status: int, content_type: str | None, body_text: str) -> GrokError:
    """Turn a non-2xx grok.com answer into the GrokError the pool should act on."""
    body_text = body_text or ""
    if looks_like_cloudflare(content_type, body_text):
        return CloudflareChallenge(
            f"grok.com answered HTTP {status} with a Cloudflare challenge page "
            "(change proxy/IP or refresh GROK_CF_CLEARANCE)",
            status=status,
        )
    code: int | None = None
    message = ""
    try:
        data = json.loads(body_text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            raw_code = err.get("code")
            code = raw_code if isinstance(raw_code, int) else None
            message = str(err.get("message") or "")
        elif isinstance(err, str):
            message = err
        elif isinstance(data.get("message"), str):
            message = data["message"]
    if not message and data is None:
        # Non-JSON bodies are shown only as a short hint: they may be whole HTML pages.
        message = body_text.strip()[:120]
    err = classify_error_payload(code, message, status=status, where=f"grok.com HTTP {status}")
    if type(err) is UpstreamBroken and status == 403 and "<html" in body_text[:2000].lower():
        # An HTML 403 without challenge markers is still an edge block, not the account.
        return Blocked(
            f"grok.com HTTP 403 HTML page (blocked at the edge): {err.message}", status=status
        )
    return err
