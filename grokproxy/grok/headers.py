"""Headers and cookies that make a request look like grok.com's web app (docs/upstream.md §2)."""

from __future__ import annotations

import base64
import random
import re
import uuid
from urllib.parse import urlsplit

from .settings import GrokSettings

_TOKEN_OK = re.compile(r"^[A-Za-z0-9._~+/=-]+$")

# Property names the web app's failing DOM probe reports; the fallback statsig id embeds one.
_STATSIG_PROPS = ("childNodes", "children", "firstChild", "parentNode", "nodeType", "textContent")

SENTRY_BAGGAGE = "sentry-environment=production,sentry-public_key=b311e0f2690c81f25e2c4cf6d4f7ce1c"


def normalize_token(raw: str) -> str:
    """The bare SSO token from user input (`sso=` prefix, cookie strings, `;`, spaces removed)."""
    text = (raw or "").strip()
    if text.lower().startswith("bearer "):
        text = text[7:].strip()
    if ";" in text or text.startswith("sso"):
        # A pasted cookie string: keep the sso value (sso-rw carries the same token).
        for part in (p.strip() for p in text.split(";")):
            name, sep, value = part.partition("=")
            if sep and name.strip().lower() == "sso":
                text = value.strip()
                break
        else:
            text = text.strip().rstrip(";").strip()
            if text.lower().startswith("sso-rw="):
                text = text[7:].strip()
    text = text.strip().strip('"').strip()
    if not text:
        raise ValueError("empty SSO token")
    if not _TOKEN_OK.match(text):
        raise ValueError("SSO token contains characters that cannot go into a cookie")
    return text


def build_cookie(token: str, cf_clearance: str | None = None) -> str:
    """`sso=<t>; sso-rw=<t>` plus cf_clearance when configured."""
    cookie = f"sso={token}; sso-rw={token}"
    if cf_clearance:
        clearance = cf_clearance.strip().rstrip(";")
        # Operators may paste the whole Cloudflare cookie string or only the value.
        cookie += f"; {clearance}" if "=" in clearance else f"; cf_clearance={clearance}"
    return cookie


def fallback_statsig_id() -> str:
    """A statsig id like the web app's catch path sends: base64 of `x1:` + a JS error string."""
    prop = random.choice(_STATSIG_PROPS)  # noqa: S311 (not security relevant)
    error = f"TypeError: Cannot read properties of undefined (reading '{prop}')"
    return base64.b64encode(f"x1:{error}".encode()).decode()


def client_hints(user_agent: str) -> dict[str, str]:
    """Chromium client hints matching the User-Agent (none for non-Chromium browsers)."""
    match = re.search(r"Chrome/(\d+)", user_agent)
    if not match or "Firefox/" in user_agent:
        return {}
    major = match.group(1)
    if "Edg/" in user_agent:
        brand = "Microsoft Edge"
        major = (re.search(r"Edg/(\d+)", user_agent) or match).group(1)
    else:
        brand = "Google Chrome"
    if "Windows" in user_agent:
        platform = "Windows"
    elif "Android" in user_agent:
        platform = "Android"
    elif "Macintosh" in user_agent or "Mac OS X" in user_agent:
        platform = "macOS"
    elif "CrOS" in user_agent:
        platform = "Chrome OS"
    else:
        platform = "Linux"
    mobile = "?1" if "Mobile" in user_agent else "?0"
    return {
        "sec-ch-ua": f'"Chromium";v="{major}", "{brand}";v="{major}", "Not.A/Brand";v="99"',
        "sec-ch-ua-mobile": mobile,
        "sec-ch-ua-platform": f'"{platform}"',
    }


def build_headers(
    settings: GrokSettings,
    token: str,
    *,
    referer_path: str = "/",
    accept: str = "*/*",
    json_body: bool = True,
    same_origin: bool = True,
) -> dict[str, str]:
    """Full header set for one grok.com request; a fresh x-xai-request-id every call."""
    origin = _origin(settings.base_url)
    headers = {
        "User-Agent": settings.user_agent,
        "Accept": accept,
        "Accept-Language": "en-US,en;q=0.9",
        "Origin": origin,
        "Referer": origin + referer_path,
        "Sec-Fetch-Dest": "empty",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Site": "same-origin" if same_origin else "same-site",
        "Priority": "u=1, i",
        "Baggage": SENTRY_BAGGAGE,
        "x-xai-request-id": str(uuid.uuid4()),
        "x-statsig-id": settings.statsig_id or fallback_statsig_id(),
        "Cookie": build_cookie(token, settings.cf_clearance),
    }
    headers.update(client_hints(settings.user_agent))
    if json_body:
        headers["Content-Type"] = "application/json"
    return headers


def _origin(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else base_url
