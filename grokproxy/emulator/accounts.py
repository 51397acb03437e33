"""Accounts of the fake grok.com: identity derived from the token, quotas, and faults.

Any SSO token is an account. Its e-mail is `<first 12 hex of sha256(token)>@emulator.grok.test`
and its userId a UUID made from the same digest, so tests can predict both without a request.

Behaviour chosen by token prefix (a fault set through `/_emulator/fault` acts the same way). A
token shaped like grok.com's real `sso` cookie (an HS256 JWT, see `sso_cookie`) carries its
prefix at the start of the payload's `session_id`:

    emu-ratelimited-…  chat 429 code 8 "Too many requests"; rate-limits shows 0 remaining
    emu-invalid-…      chat 403 code 16 invalid-credentials; session `unauthenticated`
    emu-blocked-…      chat 403 code 16 blocked-user; session `blocked`
    emu-cloudflare-…   403 HTML "Just a moment..." challenge, `server: cloudflare`, every route
    emu-antibot-…      chat 403 code 7 "Request rejected by anti-bot rules."
    emu-inband-…       chat HTTP 200 whose first line is `{"error":{"code":8,...}}`
    emu-usagelimit-…   chat HTTP 200 whose frame is the nested usage-limit error
    emu-dies-…         chat stream sends some tokens, then the connection drops
    emu-slow-…         chat first byte after a delay (2 s unless `slow_delay` is configured)
    emu-silent-…       socket turn accepted, then nothing is ever sent
    emu-spending-…     chat 402 code 8 `personal-team-blocked:spending-limit` (socket: error event)
    emu-domainrejected-…  403 code 3 `[WKE=account:email-domain-rejected]`; session unauthenticated
    emu-degraded-…     socket turn searches a placeholder query, then answers unrelated text
    emu-noreasoning-…  a thinking mode (expert, heavy) answers with no reasoning at all

A tier prefix picks the account's quotas instead (it combines with no fault):

    emu-free-…         a free ("basic") account: fast 30 and auto 20 per 86 400 s window; every
                       other mode has total 0 (rate-limits says so, chat answers 429 code 8)

The socket gateway (`/ws/mgw/`) applies the same faults to its handshake and turns.

A script (`/_emulator/script`) gives an account the answer text of its next replies, verbatim,
over either transport, so tests can play what real models answer (tool calls above all).

Everything else is a healthy account with every mode (the quotas below).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

FAULTS = (
    "ratelimited",
    "invalid",
    "blocked",
    "cloudflare",
    "antibot",
    "inband",
    "usagelimit",
    "dies",
    "slow",
    "silent",
    "spending",
    "domainrejected",
    "degraded",
    "noreasoning",
)

# "super" tier (docs/upstream.md §5.2); grok-420-computer-use-sa is grok-4.3 (50 per window).
DEFAULT_QUOTAS: dict[str, int] = {
    "auto": 50,
    "fast": 140,
    "expert": 50,
    "heavy": 20,
    "grok-420-computer-use-sa": 50,
}
DEFAULT_WINDOW_SECONDS = 7200
# A free account (token prefix `emu-free-`): the basic tier of docs/upstream.md §5.2.
FREE_QUOTAS: dict[str, int] = {"auto": 20, "fast": 30}
FREE_WINDOW_SECONDS = 86400

EMAIL_DOMAIN = "emulator.grok.test"


def token_digest(token: str) -> bytes:
    """SHA-256 of the token, the seed of every derived identity value."""
    return hashlib.sha256(token.encode()).digest()


def email_for(token: str) -> str:
    """The account e-mail the emulator reports for a token."""
    return f"{token_digest(token).hex()[:12]}@{EMAIL_DOMAIN}"


def user_id_for(token: str) -> str:
    """The account userId (a UUID) the emulator reports for a token."""
    return str(uuid.UUID(bytes=token_digest(token)[:16], version=4))


def org_id_for(token: str) -> str:
    """The organizationId reported by the session endpoint."""
    return str(uuid.UUID(bytes=token_digest(token)[16:32], version=4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sso_cookie(label: str) -> str:
    """A token shaped like grok.com's `sso` cookie: an HS256 JWT whose `session_id` is `label`."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"session_id": label}).encode())
    signature = hmac.new(b"emulator", f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def fault_label(token: str) -> str:
    """Where a fault prefix is looked for: a JWT-shaped token's `session_id`, else the token."""
    parts = token.split(".")
    if len(parts) == 3:
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            return token
        if isinstance(claims, dict) and isinstance(claims.get("session_id"), str):
            return claims["session_id"]
    return token


def is_free(token: str) -> bool:
    """Whether the token's prefix makes a free-tier account."""
    return fault_label(token).startswith("emu-free-")


def prefix_fault(token: str) -> str | None:
    """The fault a token's prefix selects, or None for a healthy account."""
    label = fault_label(token)
    for name in FAULTS:
        if label.startswith(f"emu-{name}-"):
            return name
    return None


@dataclass
class Quota:
    """One mode's request window."""

    total: int
    window_seconds: int
    remaining: int
    window_start: float = field(default_factory=time.monotonic)

    def refresh(self, now: float) -> None:
        """Start a new window when the old one has expired."""
        if now - self.window_start >= self.window_seconds:
            self.window_start = now
            self.remaining = self.total

    def wait_seconds(self, now: float) -> int:
        """Seconds until a query is possible again (0 when one is left)."""
        if self.remaining > 0:
            return 0
        return max(0, int(self.window_start + self.window_seconds - now + 0.999))


@dataclass
class Account:
    """A grok.com account as the emulator sees it."""

    token: str
    email: str
    user_id: str
    org_id: str
    quotas: dict[str, Quota] = field(default_factory=dict)
    fault: str | None = None  # set by the control API; overrides the prefix fault
    fault_times: int | None = None  # None = until cleared
    uploads: dict[str, dict] = field(default_factory=dict)
    script: deque[tuple[str, int]] = field(default_factory=deque)  # (answer text, piece size)

    def quota(self, mode: str, now: float) -> Quota:
        """The window for a quota mode, created with defaults on first use."""
        q = self.quotas.get(mode)
        if q is None:
            if is_free(self.token):
                total, window = FREE_QUOTAS.get(mode, 0), FREE_WINDOW_SECONDS
            else:
                total, window = DEFAULT_QUOTAS.get(mode, 50), DEFAULT_WINDOW_SECONDS
            remaining = 0 if prefix_fault(self.token) == "ratelimited" else total
            q = Quota(total, window, remaining, now)
            self.quotas[mode] = q
        q.refresh(now)
        return q

    def active_fault(self) -> str | None:
        """The fault in force: a control-API fault if set, else the token prefix's."""
        if self.fault is not None:
            return None if self.fault == "none" else self.fault
        return prefix_fault(self.token)

    def take_script(self) -> tuple[str, int] | None:
        """The scripted answer of this reply (text, piece size), or None to answer as usual."""
        return self.script.popleft() if self.script else None

    def consume_fault(self) -> None:
        """Count one firing of a control-API fault limited by `times`."""
        if self.fault is not None and self.fault_times is not None:
            self.fault_times -= 1
            if self.fault_times <= 0:
                self.fault = None
                self.fault_times = None


class AccountBook:
    """All accounts seen since the last reset, by token and by e-mail."""

    def __init__(self) -> None:
        self.by_token: dict[str, Account] = {}
        self.by_email: dict[str, Account] = {}

    def get(self, token: str) -> Account:
        """The account of a token, created on first sight."""
        acct = self.by_token.get(token)
        if acct is None:
            acct = Account(token, email_for(token), user_id_for(token), org_id_for(token))
            self.by_token[token] = acct
            self.by_email[acct.email] = acct
        return acct

    def find(self, token: str | None, email: str | None) -> Account | None:
        """Look up by token (creating it) or by e-mail (only accounts already seen)."""
        if token:
            return self.get(token)
        if email:
            return self.by_email.get(email)
        return None
