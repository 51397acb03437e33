"""The operator console in a real browser (headless Chromium through Playwright, as in
test_web_browser): sign in, add a mixed batch of 20 tokens and read each result, disable an
account and see it never picked, rotate a user's key and see the old key refused, and take
screenshots of every page at desktop and phone widths (into SCREENSHOT_DIR when set)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
from test_web_browser import browser, new_page  # noqa: F401  (the Chromium fixture)

from grokproxy import pool
from grokproxy.extensions import db
from grokproxy.models import Account

from conftest import ADMIN_PASSWORD, CHAT, POOL_KEY, md5_of

pytestmark = pytest.mark.browser

KNOWN = ["emu-console-known-0001", "emu-console-known-0002"]
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


def batch_of_twenty() -> tuple[list[str], dict[str, int]]:
    """14 new tokens (some as sso= forms), the 2 known ones, 2 grok.com rejects, 1 blocked
    check, 1 line that is no token at all; and how many of each outcome that should give."""
    new = [f"emu-console-batch-{i:04d}" for i in range(14)]
    lines = [f"sso={t}" if i % 3 == 0 else t for i, t in enumerate(new)]
    lines[4:4] = KNOWN
    lines += ["emu-invalid-console-0001", "emu-invalid-console-0002", "emu-blocked-console-01"]
    lines.insert(9, "this is not a token")
    assert len(lines) == 20
    return lines, {"added": 14, "unchanged": 2, "failed": 4}


@pytest.fixture
def console_site(emu_app, add_accounts, serve, admin_headers):
    app = emu_app()
    add_accounts(app, KNOWN)
    login = app.test_client().post(
        "/api/login",
        json={"user_name": "dana", "email_md5": md5_of(KNOWN[1])},
        headers=admin_headers,
    )
    assert login.status_code == 200
    return app, serve(app), login.get_json()["api_key"]


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def chat(url: str, key: str) -> requests.Response:
    return requests.post(
        url + "/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_operator_signs_in_adds_tokens_disables_and_rotates_in_the_browser(
    browser,  # noqa: F811  (the fixture imported above)
    console_site,
    shots,
):
    app, url, old_key = console_site
    problems: list[str] = []
    page = new_page(browser, problems)
    page.set_viewport_size(DESKTOP)
    page.on("dialog", lambda dialog: dialog.accept())

    # Sign in: /admin asks for the password once.
    page.goto(url + "/admin")
    assert page.url == url + "/admin/"
    page.screenshot(path=shots / "signin-desktop.png", full_page=True)
    page.fill("#password", ADMIN_PASSWORD)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("text=Chat requests per hour")
    cookie = next(c for c in page.context.cookies() if c["name"] == "grokproxy_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # A mixed batch of 20 tokens: each line gets its own result as its chunk is answered.
    page.click("nav >> text=Accounts")
    page.wait_for_selector("#accounts")
    lines, expected = batch_of_twenty()
    page.locator("#add-panel summary").click()
    page.fill("#token-input", "\n".join(lines))
    page.click("#add-tokens")
    page.wait_for_function(
        "() => document.querySelectorAll('#add-results li:not(.pending)').length === 20"
    )
    items = page.locator("#add-results li")
    outcomes = [items.nth(i).get_attribute("class") for i in range(20)]
    assert {k: outcomes.count(k) for k in expected} == expected
    texts = [items.nth(i).locator(".outcome").text_content() for i in range(20)]
    assert texts[4].startswith("unchanged: ") and texts[9].startswith("failed (malformed)")
    assert texts[-3].startswith("failed (invalid_token)") and "blocked" in texts[-1]
    assert all(
        t.startswith("added: ") for t, c in zip(texts, outcomes, strict=True) if c == "added"
    )
    assert "20 of 20 checked" in page.text_content("#add-progress")
    page.screenshot(path=shots / "accounts-added-desktop.png", full_page=True)

    # Disable one account: it stays in the table, marked disabled, and is never picked.
    page.goto(url + "/admin/accounts")
    assert page.locator("#accounts tbody tr").count() == 16
    target = md5_of(KNOWN[0])
    page.check(f'tr[data-md5="{target}"] input.select')
    page.click('#bulk button[data-action="disable"]')
    page.wait_for_selector(f'tr[data-md5="{target}"] .badge.status-disabled')
    with app.app_context():
        before = db.session.scalar(db.select(Account.use_count).where(Account.email_md5 == target))
    for _ in range(20):
        assert chat(url, POOL_KEY).status_code == 200
    with app.app_context():
        db.session.expire_all()
        after = db.session.scalar(db.select(Account.use_count).where(Account.email_md5 == target))
        picked = {pool.pick_account().email_md5 for _ in range(40)}
    assert after == before and target not in picked and len(picked) == 15
    page.goto(url + "/admin/accounts?status=disabled")
    assert page.locator("#accounts tbody tr").count() == 1
    page.goto(url + "/admin/accounts")
    page.screenshot(path=shots / "accounts-desktop.png", full_page=True)

    # Rotate dana's key: the new key is shown once; the old one is refused at once.
    assert chat(url, old_key).status_code == 200
    page.click("nav >> text=Users")
    page.click('tr[data-user="dana"] button[data-user-action="rotate"]')
    page.wait_for_selector("#reveal:not([hidden])")
    new_key = page.text_content("#reveal-value")
    assert new_key.startswith("sk-") and new_key != old_key
    assert chat(url, old_key).status_code == 401
    assert chat(url, new_key).status_code == 200
    page.screenshot(path=shots / "users-desktop.png", full_page=True)

    page.click("nav >> text=Overview")
    page.wait_for_selector("svg.chart")
    page.screenshot(path=shots / "overview-desktop.png", full_page=True)

    # Phone width: every page stays usable (tables turn into labelled cards).
    page.set_viewport_size(PHONE)
    for name, path in (
        ("overview", "/admin/"),
        ("accounts", "/admin/accounts"),
        ("users", "/admin/users"),
    ):
        page.goto(url + path)
        page.screenshot(path=shots / f"{name}-phone.png", full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 1, f"{name} scrolls sideways at phone width ({width})"

    # Signing out ends the session: the pages ask for the password again.
    page.click(".signout button")
    page.wait_for_selector("#password")
    page.screenshot(path=shots / "signin-phone.png", full_page=True)
    page.goto(url + "/admin/users")
    assert page.locator("#password").count() == 1
    assert problems == []
