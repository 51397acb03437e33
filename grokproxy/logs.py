"""A logging filter that scrubs anything shaped like a secret, whoever logged it."""

from __future__ import annotations

import logging
import re

# JWTs (sso cookies are HS256 JWTs), cookie pairs, bearer credentials, sk- keys, login links.
SECRET_PATTERNS = (
    re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]{4,}"),
    re.compile(r"(?i)\b(sso(?:-rw)?|cf_clearance)=[^;\s\"']+"),
    re.compile(r"(?i)\bbearer\s+[^\s\"',]+"),
    re.compile(r"\bsk-[\w-]{8,}"),
    re.compile(r"/login/[\w.-]{16,}"),
)


def redact(text: str) -> str:
    """Replace every secret-shaped run in `text` with a marker."""
    for pattern in SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


class RedactingFilter(logging.Filter):
    """Formats the record's message once and scrubs it before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = RedactingFilter()
# Loggers that see request data. A logger's own filters do not apply to its children's records,
# so the filter also goes on every handler those records reach.
WATCHED_LOGGERS = ("", "grokproxy", "gunicorn.error", "gunicorn.access", "werkzeug")


def install_redaction() -> None:
    """Attach the filter to the watched loggers and to every handler they have."""
    for name in WATCHED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
