"""Every grokproxy setting, read once from the environment (and a `.env` file when present).

Each variable is declared once in `VARIABLES` with its default, its parser and what it means; the
README's configuration table documents the same list (a test keeps the two in step). The result is
a plain dict whose keys are the variable names, loaded into `app.config` by the factory.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y", "t"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "n", "f", ""})


class ConfigError(ValueError):
    """A configuration variable has a value grokproxy cannot use; the message names it."""


CONFIG_ERROR_PREFIX = "grokproxy: configuration error: "


def config_error_line(error: Exception) -> str:
    """The one line an entry point prints before it stops on a configuration error."""
    return CONFIG_ERROR_PREFIX + " ".join(str(error).split())


def parse_bool(value: str) -> bool:
    """Read a yes/no word."""
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def parse_list(value: str) -> tuple[str, ...]:
    """Read a comma-separated list, dropping blanks."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _whole_number(value: str, least: int, what: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        number = least - 1
    if number < least:
        raise ValueError(f"must be {what}, got {value!r}")
    return number


def parse_positive_int(value: str) -> int:
    """Read an integer >= 1."""
    return _whole_number(value, 1, "a positive integer")


def parse_non_negative_int(value: str) -> int:
    """Read an integer >= 0."""
    return _whole_number(value, 0, "an integer of at least 0")


def parse_positive_float(value: str) -> float:
    """Read a number > 0."""
    try:
        number = float(value.strip())
    except ValueError:
        number = 0.0
    if not number > 0 or number == float("inf"):
        raise ValueError(f"must be a number above 0, got {value!r}")
    return number


def parse_timezone(value: str) -> str:
    """Read an IANA time zone name (`UTC`, `Asia/Shanghai`)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = value.strip() or "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"must be a time zone name such as UTC or Asia/Shanghai, got {value!r}"
        ) from None
    return name


def parse_text(value: str) -> str | None:
    """Read a string; blank means unset."""
    value = value.strip()
    return value or None


def parse_choice(*choices: str) -> Callable[[str], str]:
    """Build a parser accepting one of `choices`."""

    def parse(value: str) -> str:
        word = value.strip().lower()
        if word not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return word

    return parse


_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


def parse_path_prefix(value: str) -> str | None:
    """Read a URL path prefix (`k3y`, `/k3y/`, `/a/b`) as `/k3y`; blank means none."""
    segments = [part for part in value.strip().split("/") if part]
    if not segments:
        return None
    if not all(_PREFIX_SEGMENT.fullmatch(part) and part not in (".", "..") for part in segments):
        raise ValueError("must be a URL path of letters, digits and . _ ~ - (e.g. /k3y)")
    return "/" + "/".join(segments)


def parse_aliases(value: str) -> dict[str, str]:
    """Read `name=target` pairs, comma-separated (`gpt-5=grok-4,claude-sonnet-4-5=grok-4`)."""
    aliases: dict[str, str] = {}
    for item in parse_list(value):
        name, sep, target = (part.strip() for part in item.partition("="))
        if not sep or not name or not target:
            raise ValueError(f"must be comma-separated name=model pairs, got {item!r}")
        aliases[name] = target
    return aliases


@dataclass(frozen=True)
class Variable:
    """One environment variable: name, default, parser, meaning, accepted aliases."""

    name: str
    default: Any
    parse: Callable[[str], Any]
    doc: str
    aliases: tuple[str, ...] = field(default=())
    secret: bool = False


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "DATABASE_URL",
        None,
        parse_text,
        "SQLAlchemy URL; default is a SQLite file in the instance folder. "
        "Use `postgresql+psycopg://user:pass@host/db` in production.",
    ),
    Variable(
        "DATABASE_POOL_SIZE",
        5,
        parse_positive_int,
        "Database connections each worker process keeps open (a request holds one only for "
        "its short transactions, never while grok.com answers).",
    ),
    Variable(
        "DATABASE_MAX_OVERFLOW",
        15,
        parse_non_negative_int,
        "Extra connections a worker may open in a burst beyond DATABASE_POOL_SIZE (PostgreSQL; "
        "on SQLite the pool grows as needed).",
    ),
    Variable(
        "SECRET_KEY",
        None,
        parse_text,
        "Key material for encrypting stored tokens and signing login links. Generated once "
        "into `instance/secret_key` when unset; must be set, and equal, on every host that "
        "shares a database.",
        secret=True,
    ),
    Variable(
        "ADMIN_PASSWORD",
        None,
        parse_text,
        "Bearer secret of the admin API (`/api/*`); the admin API answers 403 while unset.",
        secret=True,
    ),
    Variable(
        "AUTHORIZATION",
        (),
        parse_list,
        "Comma-separated pool API keys: a Bearer equal to one of them rotates over the pool.",
        secret=True,
    ),
    Variable(
        "ALLOW_SSO_BEARER",
        True,
        parse_bool,
        "Accept a raw SSO token as Bearer on `/v1/*` (used alone, never stored).",
    ),
    Variable(
        "GROK_BASE_URL",
        "https://grok.com",
        parse_text,
        "Upstream origin (tests and demos point it at the emulator).",
    ),
    Variable(
        "GROK_ASSETS_URL", "https://assets.grok.com", parse_text, "Origin of generated images."
    ),
    Variable(
        "GROK_DIALECT",
        "gateway",
        parse_choice("gateway", "modes", "model-mode", "legacy"),
        "How chat reaches grok.com: `gateway` (the WebSocket chat gateway grok.com uses since "
        "2026-08), or an HTTP chat body: `modes` (modeId), `model-mode` (modelName + "
        "modelMode) or `legacy` (modelName + isReasoning + deepsearchPreset).",
    ),
    Variable(
        "GROK_GATEWAY_IDLE_SECONDS",
        60,
        parse_non_negative_int,
        "Seconds a chat gateway socket whose turn finished stays open (pinged every 25 s) for "
        "the same account's next turn, which then skips the handshake; 0: one socket per turn.",
    ),
    Variable(
        "GROK_MODELS_FILE",
        None,
        parse_text,
        "JSON or TOML file overriding the public model catalog.",
    ),
    Variable(
        "GROK_MODEL_ALIASES",
        {},
        parse_aliases,
        "Comma-separated `name=model` pairs mapping the model names clients insist on to "
        "catalog entries, on all three APIs (e.g. `gpt-5=grok-4,claude-sonnet-4-5=grok-4`).",
    ),
    Variable(
        "GROK_IMPERSONATE",
        None,
        parse_text,
        "curl_cffi browser profile (e.g. `chrome136`): use curl_cffi with that TLS "
        "fingerprint instead of plain requests.",
    ),
    Variable(
        "GROK_USER_AGENT",
        None,
        parse_text,
        "Browser user agent sent upstream (a current desktop Chrome when unset); keep it equal "
        "to the browser that earned `GROK_CF_CLEARANCE`.",
    ),
    Variable(
        "GROK_CF_CLEARANCE",
        None,
        parse_text,
        "Cloudflare `cf_clearance` cookie sent upstream.",
        secret=True,
    ),
    Variable(
        "GROK_STATSIG_ID",
        None,
        parse_text,
        "`x-statsig-id` header value; a fallback value is generated when unset.",
    ),
    Variable(
        "PROXY_URL_POOL",
        (),
        parse_list,
        "Comma-separated outbound proxies (`http://`, `socks5://`, "
        "`socks5h://user:pass@host:port`), used in turn.",
        secret=True,
    ),
    Variable(
        "PUBLIC_URL",
        None,
        parse_text,
        "Public base URL of this gateway (absolute login and image links).",
        aliases=("HOST",),
    ),
    Variable(
        "TRUSTED_PROXY_COUNT",
        0,
        parse_non_negative_int,
        "Reverse proxies in front of grokproxy whose `X-Forwarded-For/Proto/Host/Port` headers "
        "are trusted (werkzeug's ProxyFix) for absolute links when `PUBLIC_URL` is unset; 0 "
        "trusts no header.",
    ),
    Variable(
        "API_TEMPORARY",
        True,
        parse_bool,
        "Upstream chats are temporary (kept out of the grok.com history).",
        aliases=("API_HATD",),
    ),
    Variable(
        "THINKING_FORMAT",
        "reasoning_content",
        parse_choice("reasoning_content", "think_tags", "hidden"),
        "Where reasoning goes: `reasoning_content`, `think_tags` (`<think>` in content) or "
        "`hidden`.",
    ),
    Variable(
        "MAX_ATTEMPTS",
        3,
        parse_positive_int,
        "Accounts tried for one request before giving up (failover only before the first "
        "byte reaches the client).",
    ),
    Variable(
        "MAX_CONCURRENT_CHATS",
        0,
        parse_non_negative_int,
        "Chats one worker process runs at once; over it a chat is answered 503 `server_busy` "
        "with Retry-After at once, so health checks and the admin API always get in. 0: what "
        "the worker serves at once minus a few: gevent, its connections "
        "(GUNICORN_WORKER_CONNECTIONS) less a sixteenth, at most 64 (1216 of 1280); gthread, "
        "its threads (GUNICORN_THREADS) minus a few (120 of 128).",
    ),
    Variable(
        "MAX_CONCURRENT_PER_KEY",
        64,
        parse_non_negative_int,
        "Chats one caller (API key, user key or SSO token) runs at once across every worker of "
        "the host; over it a 429 `too_many_concurrent_requests`. 0: no limit.",
    ),
    Variable(
        "COOLDOWN_SECONDS",
        900,
        parse_positive_int,
        "Cooling time after a rate limit when upstream gives no wait time.",
    ),
    Variable(
        "STREAM_FAILURES_TO_COOL",
        3,
        parse_positive_int,
        "Replies in a row that break off mid-stream on one account before it cools for "
        "STREAM_FAILURE_COOL_SECONDS.",
    ),
    Variable(
        "STREAM_FAILURE_COOL_SECONDS",
        120,
        parse_positive_int,
        "Cooling time of an account whose replies keep breaking off mid-stream.",
    ),
    Variable(
        "QUALITY_GUARD",
        True,
        parse_bool,
        "Retry on another account, before the first byte, a thinking model's reply with no "
        "reasoning and a degraded deep-search turn (counted against the account).",
    ),
    Variable(
        "QUOTA_REFRESH_SECONDS",
        600,
        parse_positive_int,
        "Age of a quota snapshot after which `flask tokens refresh-quotas --loop` reads it again.",
    ),
    Variable(
        "MAX_PROMPT_CHARS",
        40000,
        parse_positive_int,
        "A flattened history longer than this goes upstream as an attached text file.",
    ),
    Variable(
        "MODELS_LIST_ALL",
        False,
        parse_bool,
        "List every catalog model on /v1/models, not only those some usable account can serve.",
    ),
    Variable(
        "SSE_KEEPALIVE_SECONDS",
        15.0,
        parse_positive_float,
        "Interval of `: keep-alive` comment lines while upstream is silent.",
    ),
    Variable(
        "CORS_ORIGINS",
        ("*",),
        parse_list,
        "Origins allowed on `/v1/*` (comma-separated, `*` for any).",
    ),
    Variable(
        "MAX_REQUEST_BYTES",
        20 * 1024 * 1024,
        parse_positive_int,
        "Largest request body accepted (base64 images make chat bodies big); larger is a JSON 413.",
    ),
    Variable(
        "UPSTREAM_CONNECT_TIMEOUT", 10.0, parse_positive_float, "Seconds to connect to grok.com."
    ),
    Variable(
        "UPSTREAM_FIRST_BYTE_TIMEOUT",
        15.0,
        parse_positive_float,
        "Seconds from sending a chat turn (or any request) to grok.com's first byte of answer; "
        "past it the attempt fails and the next account is tried while the budget lasts.",
    ),
    Variable(
        "UPSTREAM_READ_TIMEOUT",
        120.0,
        parse_positive_float,
        "Seconds grok.com may stay silent once its answer flows (the idle timeout; keep-alives "
        "reach a streaming client meanwhile).",
    ),
    Variable(
        "UPSTREAM_TOTAL_TIMEOUT",
        40.0,
        parse_positive_float,
        "Seconds one chat request may spend on every attempt together until grok.com's answer "
        "starts; past it the answer is 504 `upstream_timeout`.",
    ),
    Variable(
        "TOKEN_CHECK_CONCURRENCY",
        8,
        parse_positive_int,
        "How many tokens batch-add checks upstream at the same time.",
    ),
    Variable(
        "LOGIN_LINK_TTL_SECONDS", 86400, parse_positive_int, "How long a login link stays valid."
    ),
    Variable(
        "SESSION_LIFETIME_SECONDS",
        7 * 86400,
        parse_positive_int,
        "How long a web sign-in lasts, counted from the sign-in (signing out, or signing in "
        "again elsewhere, ends it sooner).",
    ),
    Variable(
        "ADMIN_SESSION_SECONDS",
        12 * 3600,
        parse_positive_int,
        "How long an operator console sign-in (`/admin`) lasts; signing out ends it sooner.",
    ),
    Variable(
        "USER_DAILY_LIMIT",
        200,
        parse_non_negative_int,
        "Chat requests a user's API key may make a day (a per-user override is set in the "
        "console, the CLI or the admin API); 0 is unlimited.",
    ),
    Variable(
        "POOL_KEY_DAILY_LIMIT",
        0,
        parse_non_negative_int,
        "Chat requests each pool API key (`AUTHORIZATION`) may make a day; 0 is unlimited.",
    ),
    Variable(
        "LIMIT_TIMEZONE",
        "UTC",
        parse_timezone,
        "Time zone whose midnight starts a new day for the daily limits (e.g. `Asia/Shanghai`).",
    ),
    Variable(
        "ENABLE_MIRROR_API",
        True,
        parse_bool,
        "Serve the OpenAI-compatible API (`/v1/*`, `/chat/completions`, `/models`) to API "
        "clients; false answers them 404 and leaves the chat page (its calls carry the "
        "signed-in session) and the admin API.",
    ),
    Variable(
        "MIRROR_API_PREFIX",
        None,
        parse_path_prefix,
        "Secret path prefix of the OpenAI-compatible API (e.g. `/k3y` serves "
        "`/k3y/v1/chat/completions`); the bare paths then answer 404, so scanners cannot find "
        "the API. The signed-in chat page is told it; nothing public reveals it.",
        secret=True,
    ),
    Variable(
        "METRICS_TOKEN",
        None,
        parse_text,
        "Bearer token `/metrics` requires; while unset `/metrics` is open (keep it off the "
        "public proxy).",
        secret=True,
    ),
    Variable(
        "LOG_FORMAT",
        "text",
        parse_choice("text", "json"),
        "`text` (gunicorn's line layout) or `json` (one object per line: time, level, logger, "
        "request_id, message and the chat summary's fields).",
    ),
    Variable(
        "LOG_LEVEL",
        "INFO",
        parse_choice("debug", "info", "warning", "error"),
        "Log level of grokproxy's own loggers.",
    ),
)


def load_dotenv_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a `.env` file into a dict (python-dotenv), without touching os.environ."""
    from dotenv import dotenv_values

    if not Path(path).is_file():
        return {}
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def load_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """Parse every variable of `VARIABLES` from `environ`: its name, else an alias, else default."""
    config: dict[str, Any] = {}
    for var in VARIABLES:
        raw = None
        for name in (var.name, *var.aliases):
            if name in environ:
                raw = environ[name]
                break
        if raw is None:
            config[var.name] = var.default
            continue
        try:
            config[var.name] = var.parse(raw)
        except ValueError as exc:
            # Secrets never appear in the message, only the variable's name.
            if var.secret:
                raise ConfigError(
                    f"{var.name} has an invalid value (not shown: a secret)"
                ) from None
            raise ConfigError(f"{var.name} {exc}") from None
    if config["LOG_LEVEL"]:
        config["LOG_LEVEL"] = config["LOG_LEVEL"].upper()
    return config


def instance_secret_key(instance_path: str | os.PathLike[str]) -> str:
    """Return the instance folder's generated secret key, creating it (mode 0600) the first time."""
    folder = Path(instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "secret_key"
    try:
        # O_EXCL: when several workers start at once exactly one writes the key, the others read it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if key:
            return key
        raise ConfigError(f"{path} is empty: delete it or set SECRET_KEY") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def default_database_url(instance_path: str | os.PathLike[str]) -> str:
    """The embedded default: a SQLite file in the instance folder."""
    Path(instance_path).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(instance_path).resolve() / 'grokproxy.sqlite'}"
