"""Settings parsing, token normalisation and the headers/cookies sent to grok.com."""

from __future__ import annotations

import base64

import pytest

from grokproxy.grok.headers import (
    build_cookie,
    build_headers,
    client_hints,
    fallback_statsig_id,
    normalize_token,
)
from grokproxy.grok.settings import DEFAULT_USER_AGENT, GrokSettings

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzZXNzaW9uX2lkIjoiYWJjIn0.c2ln"


def test_settings_defaults_from_an_empty_mapping():
    s = GrokSettings.from_mapping({})
    assert s.base_url == "https://grok.com"
    assert s.assets_url == "https://assets.grok.com"
    assert s.dialect == "gateway"
    assert s.user_agent == DEFAULT_USER_AGENT and "Chrome/" in s.user_agent
    assert s.proxy_urls == () and s.impersonate is None
    assert s.temporary is True
    assert (s.connect_timeout, s.read_timeout) == (10.0, 120.0)


def test_settings_from_flask_style_config():
    s = GrokSettings.from_mapping(
        {
            "GROK_BASE_URL": "http://127.0.0.1:5000/",
            "GROK_DIALECT": "legacy",
            "GROK_IMPERSONATE": "chrome136",
            "GROK_USER_AGENT": None,  # the Flask config stores unset values as None
            "PROXY_URL_POOL": "http://a:1, socks5h://b:2 ,",
            "API_TEMPORARY": "false",
            "UPSTREAM_CONNECT_TIMEOUT": "2.5",
            "UPSTREAM_READ_TIMEOUT": 30,
        }
    )
    assert s.base_url == "http://127.0.0.1:5000"
    assert s.dialect == "legacy" and s.impersonate == "chrome136"
    assert s.user_agent == DEFAULT_USER_AGENT
    assert s.proxy_urls == ("http://a:1", "socks5h://b:2")
    assert s.temporary is False
    assert (s.connect_timeout, s.read_timeout) == (2.5, 30.0)
    assert GrokSettings.from_mapping({"PROXY_URL_POOL": ["http://x:1"]}).proxy_urls == (
        "http://x:1",
    )


def test_settings_reject_unknown_dialect():
    with pytest.raises(ValueError, match="GROK_DIALECT"):
        GrokSettings.from_mapping({"GROK_DIALECT": "grpc"})


@pytest.mark.parametrize(
    "raw",
    [TOKEN, f"sso={TOKEN}", f" sso={TOKEN}; ", f"sso={TOKEN}; sso-rw={TOKEN}",
     f"sso-rw={TOKEN}; sso={TOKEN};", f"{TOKEN};\n", f"Bearer {TOKEN}"],
)  # fmt: skip
def test_normalize_token_accepts_pasted_forms(raw):
    assert normalize_token(raw) == TOKEN


@pytest.mark.parametrize("raw", ["", "   ", "sso=", "abc\r\nX-Evil: 1", "a b"])
def test_normalize_token_rejects_unusable_input_without_echoing_it(raw):
    with pytest.raises(ValueError) as info:
        normalize_token(raw)
    assert "Evil" not in str(info.value)


def test_cookie_sets_sso_and_sso_rw_equal_plus_clearance():
    assert build_cookie("t1") == "sso=t1; sso-rw=t1"
    assert build_cookie("t1", "abc") == "sso=t1; sso-rw=t1; cf_clearance=abc"
    assert build_cookie("t1", "cf_clearance=abc; __cf_bm=x;") == (
        "sso=t1; sso-rw=t1; cf_clearance=abc; __cf_bm=x"
    )


def test_headers_look_like_the_web_app():
    settings = GrokSettings(cf_clearance="clear", statsig_id="c3RhdHNpZw==")
    h = build_headers(settings, TOKEN)
    cookies = dict(p.split("=", 1) for p in h["Cookie"].split("; "))
    assert cookies["sso"] == cookies["sso-rw"] == TOKEN
    assert cookies["cf_clearance"] == "clear"
    assert h["x-statsig-id"] == "c3RhdHNpZw=="
    assert h["Origin"] == "https://grok.com" and h["Referer"] == "https://grok.com/"
    assert h["Content-Type"] == "application/json" and h["Accept"] == "*/*"
    assert h["Sec-Fetch-Mode"] == "cors" and h["Sec-Fetch-Site"] == "same-origin"
    assert h["User-Agent"] == DEFAULT_USER_AGENT
    assert h["sec-ch-ua-platform"] == '"Windows"' and '"Google Chrome";v="136"' in h["sec-ch-ua"]


def test_request_id_is_a_fresh_uuid4_every_time():
    settings = GrokSettings()
    ids = {build_headers(settings, TOKEN)["x-xai-request-id"] for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 36 and i[14] == "4" for i in ids)


def test_fallback_statsig_id_is_base64_of_an_x1_error():
    decoded = base64.b64decode(fallback_statsig_id()).decode()
    assert decoded.startswith("x1:TypeError: Cannot read properties of")
    assert "x-statsig-id" in build_headers(GrokSettings(), TOKEN)


def test_client_hints_follow_the_user_agent():
    mac_edge = (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36 Edg/138.0.0.0"
    )
    hints = client_hints(mac_edge)
    assert hints["sec-ch-ua-platform"] == '"macOS"'
    assert '"Microsoft Edge";v="138"' in hints["sec-ch-ua"]
    firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
    assert client_hints(firefox) == {}
    assert "sec-ch-ua" not in build_headers(GrokSettings(user_agent=firefox), TOKEN)
