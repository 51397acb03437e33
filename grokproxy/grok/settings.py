"""Settings of the grok adapter, read from a plain mapping (the Flask config or os.environ)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# `gateway` is the WebSocket chat of 2026-08 on (E4); the others are the HTTP NDJSON chat bodies of
# E3 (`modes`), E2 (`model-mode`) and E1 (`legacy`), kept for older or self-hosted upstreams.
DIALECTS = ("gateway", "modes", "model-mode", "legacy")
HTTP_DIALECTS = DIALECTS[1:]

# A current desktop Chrome on Windows; it matches curl_cffi's `chrome136` profile, so the TLS
# fingerprint and the User-Agent tell the same story to Cloudflare.
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/136.0.0.0 Safari/537.36"
)

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _float(value: Any, default: float, name: str) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    number = float(value)
    if number <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return number


def _non_negative(value: Any, default: float, name: str) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    number = float(value)
    if number < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return number


def _list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(s for s in (str(i).strip() for i in items) if s)


@dataclass(frozen=True, slots=True)
class GrokSettings:
    """Everything the grok adapter needs to know, as plain values."""

    base_url: str = "https://grok.com"
    assets_url: str = "https://assets.grok.com"
    dialect: str = "gateway"
    models_file: str | None = None
    impersonate: str | None = None
    user_agent: str = DEFAULT_USER_AGENT
    cf_clearance: str | None = None
    statsig_id: str | None = None
    proxy_urls: tuple[str, ...] = ()
    temporary: bool = True
    connect_timeout: float = 10.0
    # Silence allowed once a reply flows (the idle timeout; UPSTREAM_READ_TIMEOUT).
    read_timeout: float = 120.0
    # From sending a request to the first byte of grok.com's answer (its headers, then the first
    # event of a chat reply).
    first_byte_timeout: float = 15.0
    # Catch weak turns before the first byte (a degraded gateway turn raises DegradedTurn).
    quality_guard: bool = True
    # How long a gateway socket whose turn finished waits for the account's next turn (0: one
    # socket per turn; GROK_GATEWAY_IDLE_SECONDS).
    gateway_idle_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.dialect not in DIALECTS:
            raise ValueError(f"GROK_DIALECT must be one of {', '.join(DIALECTS)}")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> GrokSettings:
        """Build settings from a mapping keyed by the environment variable names."""
        temporary = m.get("API_TEMPORARY")
        if temporary is None:
            temporary = m.get("API_HATD")  # the original project's name for the same switch
        return cls(
            base_url=(_text(m.get("GROK_BASE_URL")) or "https://grok.com").rstrip("/"),
            assets_url=(_text(m.get("GROK_ASSETS_URL")) or "https://assets.grok.com").rstrip("/"),
            dialect=(_text(m.get("GROK_DIALECT")) or "gateway").lower(),
            models_file=_text(m.get("GROK_MODELS_FILE")),
            impersonate=_text(m.get("GROK_IMPERSONATE")),
            user_agent=_text(m.get("GROK_USER_AGENT")) or DEFAULT_USER_AGENT,
            cf_clearance=_text(m.get("GROK_CF_CLEARANCE")),
            statsig_id=_text(m.get("GROK_STATSIG_ID")),
            proxy_urls=_list(m.get("PROXY_URL_POOL")),
            temporary=_bool(temporary, True),
            connect_timeout=_float(m.get("UPSTREAM_CONNECT_TIMEOUT"), 10.0, "connect timeout"),
            read_timeout=_float(m.get("UPSTREAM_READ_TIMEOUT"), 120.0, "read timeout"),
            first_byte_timeout=_float(
                m.get("UPSTREAM_FIRST_BYTE_TIMEOUT"), 15.0, "first-byte timeout"
            ),
            quality_guard=_bool(m.get("QUALITY_GUARD"), True),
            gateway_idle_seconds=_non_negative(
                m.get("GROK_GATEWAY_IDLE_SECONDS"), 60.0, "gateway idle seconds"
            ),
        )
