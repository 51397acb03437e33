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


def install_redaction() -> None:
    """Attach the filter to the root handlers and to the loggers that see request data."""
    for name in ("", "grokproxy", "gunicorn.error", "gunicorn.access", "werkzeug"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
