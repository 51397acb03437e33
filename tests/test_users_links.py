"""The user service under concurrency: one link, one winner; one name, one key."""

from __future__ import annotations

import threading

import pytest
import requests
from sqlalchemy import select

from grokproxy.extensions import db
from grokproxy.models import User

from conftest import ADMIN_PASSWORD, md5_of

TOKEN = "emu-links-account-0001"
ADMIN = {"Authorization": f"Bearer {ADMIN_PASSWORD}"}


def run_together(count: int, job) -> list:
    """Run `job(i)` in `count` threads released at the same moment; their results in order."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def worker(index: int) -> None:
        barrier.wait()
        results[index] = job(index)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_browsers_racing_on_one_link_let_exactly_one_in(live):
    _, url = live([TOKEN])
    body = {"user_name": "racer", "email_md5": md5_of(TOKEN)}
    link = requests.post(f"{url}/api/login", json=body, headers=ADMIN, timeout=10).json()

    def open_link(_):
        return requests.get(url + link["login_url"], allow_redirects=False, timeout=30)

    statuses = [response.status_code for response in run_together(6, open_link)]
    assert sorted(statuses) == [303] + [410] * 5


def test_concurrent_first_logins_of_one_name_make_one_user_with_one_key(live):
    app, url = live([TOKEN])
    body = {"user_name": "twin", "email_md5": md5_of(TOKEN)}
    answers = run_together(
        5, lambda _: requests.post(f"{url}/api/login", json=body, headers=ADMIN, timeout=30)
    )
    assert [answer.status_code for answer in answers] == [200] * 5
    assert len({answer.json()["api_key"] for answer in answers}) == 1
    with app.app_context():
        assert len(db.session.scalars(select(User)).all()) == 1


def test_missing_browser_fails_when_required_and_skips_otherwise(monkeypatch):
    from test_web_browser import _unavailable

    monkeypatch.setenv("REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_BROWSER=1"):
        _unavailable("no chromium")
    monkeypatch.delenv("REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception):
        _unavailable("no chromium")
