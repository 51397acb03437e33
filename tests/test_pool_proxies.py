"""Checks and quota reads that fail through a proxy are retried through the next one (bounded),
and the failing proxy is benched as for chat; tier detection from the rate-limit totals."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from grokproxy.grok.client import Quota
from grokproxy.tokens import detect_tier

TOKEN = "proxied-account-0123456789abcdef"
DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens on the discard port: connection refused


class _ForwardProxy(BaseHTTPRequestHandler):
    """A minimal plain-HTTP forward proxy that counts what went through it."""

    seen: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        type(self).seen.append(self.path)
        target = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        conn.request(self.command, target.path or "/", body=body, headers=headers)
        upstream = conn.getresponse()
        data = upstream.read()
        self.send_response(upstream.status)
        self.send_header("Content-Type", upstream.getheader("Content-Type", ""))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = _forward


@pytest.fixture
def good_proxy() -> Iterator[str]:
    _ForwardProxy.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ForwardProxy)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_check_that_fails_through_a_dead_proxy_is_retried_through_the_next(
    make_gateway, good_proxy
):
    gateway = make_gateway(PROXY_URL_POOL=f"{DEAD_PROXY},{good_proxy}")
    added = gateway.add(TOKEN)
    assert added["failed"] == [] and added["email_list"][0]["status"] == "added"
    (account,) = gateway.accounts()
    assert account["modes"]["fast"]["remaining"] == 140  # the quota reads went through too
    assert account["tier"] == "heavy"
    assert any(path.endswith("/api/auth/session") for path in _ForwardProxy.seen)
    # The dead proxy was benched after its one failure: every later read took the good one.
    rotator = gateway.app.extensions["grokproxy.grok"].transport.proxies
    assert rotator.next() == good_proxy


def test_retries_are_bounded_when_every_proxy_fails(make_gateway):
    gateway = make_gateway(PROXY_URL_POOL=f"{DEAD_PROXY},http://127.0.0.1:7")
    failed = gateway.add(TOKEN)["failed"]
    assert [entry["code"] for entry in failed] == ["upstream_error"]
    assert gateway.accounts() == []


@pytest.mark.parametrize(
    ("quotas", "tier"),
    [
        ({"fast": Quota(30, 30, 86400), "expert": Quota(0, 0, 86400)}, "free"),
        ({"auto": Quota(20, 20, 86400), "fast": Quota(12, 30, 86400)}, "free"),
        ({"fast": Quota(140, 140, 7200), "expert": Quota(50, 50, 7200)}, "paid"),
        ({"fast": Quota(400, 400, 7200), "heavy": Quota(0, 0, 7200)}, "heavy"),
        ({"fast": Quota(140, 140, 7200), "heavy": Quota(20, 20, 7200)}, "heavy"),
        ({}, None),
    ],
)
def test_the_tier_is_read_from_the_rate_limit_totals(quotas, tier):
    assert detect_tier(quotas) == tier


def test_the_refresher_takes_the_stalest_due_accounts_a_share_per_tick(
    app, add_accounts, monkeypatch
):
    from datetime import timedelta

    from grokproxy import tokens
    from grokproxy.extensions import db
    from grokproxy.models import Account, utcnow

    ids = add_accounts(app, [f"refresh-{i}-0123456789abcdef" for i in range(4)])
    asked: list[list[int]] = []
    monkeypatch.setattr(tokens, "refresh_quotas", lambda due: asked.append(list(due)) or [])
    now = utcnow()
    with app.app_context():
        ages = {ids[0]: 30, ids[1]: 5000, ids[2]: 900}  # seconds; ids[3] was never read
        for account_id, age in ages.items():
            db.session.get(Account, account_id).quota_checked_at = now - timedelta(seconds=age)
        db.session.commit()
        # 4 accounts, QUOTA_REFRESH_SECONDS=600, a 10 s tick: 1 account per tick.
        assert tokens.refresh_batch_size(4, 10.0) == 1
        assert tokens.refresh_batch_size(1000, 10.0) == 17
        tokens.refresh_due(limit=2)
        tokens.refresh_due()
    assert asked == [[ids[3], ids[1]], [ids[3], ids[1], ids[2]]]  # the fresh one is not due
