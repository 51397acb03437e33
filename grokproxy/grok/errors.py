"""What can go wrong when talking to grok.com, sorted by whose fault it is.

The pool acts on the class: `RateLimited` cools the account, `InvalidCredentials` marks it invalid,
`Blocked` (Cloudflare, anti-bot) changes no account, `UpstreamBroken` is grok.com misbehaving.
Messages are written for an operator and never contain a token or cookie.
"""

from __future__ import annotations


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


class UpstreamBroken(GrokError):
    """Network failure, timeout, 5xx, an unexpected 4xx or a stream that makes no sense."""

    kind = "broken"
