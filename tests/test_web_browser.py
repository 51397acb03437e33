"""The login link and the chat page in a real browser: headless Chromium driven by Playwright.

Debian's `chromium` is used (never a downloaded browser). Without it these tests skip, unless
REQUIRE_BROWSER=1 (CI) makes a missing browser a failure.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from grokproxy.emulator.accounts import email_for

from conftest import md5_of

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TOKEN = "emu-browser-account-0001"
TIMEOUT_MS = 15_000


def _unavailable(reason: str):
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser():
    """A headless Chromium (Debian's), closed after the test."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (requirements-dev.txt)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def site(emu_app, add_accounts, serve, admin_headers):
    """A live grokproxy over the emulator with one account; returns (url, login())."""
    app = emu_app()
    add_accounts(app, [TOKEN])
    url = serve(app)
    client = app.test_client()

    def login(name: str = "browser-user") -> dict:
        body = {"user_name": name, "email_md5": md5_of(TOKEN)}
        response = client.post("/api/login", json=body, headers=admin_headers)
        assert response.status_code == 200
        return response.get_json()

    return url, login


def new_page(browser, problems: list[str]):
    """A page in a fresh context (its own cookies) that reports script errors into `problems`."""
    page = browser.new_context().new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    return page


def send(page, text: str):
    """Type a message, send it, wait for its answer to finish; returns the answer's element."""
    before = page.locator("li.message.assistant").count()
    page.fill("#prompt", text)
    page.click("#send")
    answer = page.locator("li.message.assistant").nth(before)
    answer.and_(page.locator("[data-state=done]")).wait_for()
    return answer


def test_login_link_opens_the_chat_page_once_and_the_chat_streams(browser, site, emu, caplog):
    caplog.set_level(logging.INFO)
    url, login = site
    answer = login()
    problems: list[str] = []
    page = new_page(browser, problems)

    # The link signs in and lands on the chat page.
    page.goto(url + answer["login_url"])
    assert page.url == url + "/chat"
    assert page.text_content("#user-name") == "browser-user"
    cookie = next(c for c in page.context.cookies() if c["name"] == "grokproxy_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    # The models come from /v1/models; pick a thinking model.
    page.locator("#model[data-loaded=true]").wait_for(state="attached")
    assert page.locator("#model option").count() >= 5
    page.select_option("#model", "grok-3-thinking")

    # Slow the reply down so the answer is seen arriving piece by piece.
    emu.configure(tokens_per_second=12)
    page.fill("#prompt", "hello from the browser")
    page.click("#send")
    streaming = page.locator("li.message.assistant[data-state=streaming] .text")
    page.wait_for_function(
        "() => { const t = document.querySelector("
        "'li.message.assistant[data-state=streaming] .text'); return t && t.textContent.length; }"
    )
    partial = streaming.text_content()
    first = page.locator("li.message.assistant").first
    first.and_(page.locator("[data-state=done]")).wait_for()
    emu.configure(tokens_per_second=0)
    text = first.locator(".text").text_content()
    assert "hello from the browser" in text and len(text) > len(partial)
    reasoning = first.locator(".reasoning")
    assert reasoning.is_visible()
    # The emulator's reasoning restates the prompt, over either transport.
    assert "The user asks: hello from the browser" in reasoning.text_content()
    assert "The user asks" not in text
    assert len([t for t in emu.chat_turns() if t["conversation_id"] is None]) == 1
    conversation_id = page.get_attribute("#conversation-label", "data-conversation-id")
    assert conversation_id and emu.conversation(conversation_id)["owner"] == email_for(TOKEN)

    # Continuing sends only the new message to the same conversation.
    second = send(page, "and a follow-up")
    assert "and a follow-up" in second.locator(".text").text_content()
    (followed,) = [t for t in emu.chat_turns() if t["conversation_id"] == conversation_id]
    assert followed["message"] == "and a follow-up"
    assert page.get_attribute("#conversation-label", "data-conversation-id") == conversation_id

    # A new conversation starts afresh.
    page.click("#new-chat")
    assert page.locator("li.message").count() == 0
    send(page, "something else")
    assert len([t for t in emu.chat_turns() if t["conversation_id"] is None]) == 2
    assert page.get_attribute("#conversation-label", "data-conversation-id") != conversation_id

    # The settings panel: API base URL and the key, masked until shown.
    assert page.text_content("#api-base") == url + "/v1"
    assert page.text_content("#api-key") != answer["api_key"]
    page.click("#settings summary")
    page.click("#toggle-key")
    assert page.text_content("#api-key") == answer["api_key"]

    # The same link again, in another browser: refused politely.
    other = new_page(browser, problems)
    response = other.goto(url + answer["login_url"])
    assert response.status == 410
    assert "already used" in other.text_content("h1")
    other.goto(url + "/chat")
    assert other.url == url + "/login"
    assert "Open your login link" in other.text_content("h1")

    # Signing out ends the session.
    page.click("text=Sign out")
    page.wait_for_url(url + "/login?signed_out=1")
    page.goto(url + "/chat")
    assert page.url == url + "/login"

    # The only failed load is the refused link's own 410 page.
    assert [p for p in problems if "status of 410" not in p] == []
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    assert "/login/" in logged or caplog.records  # the access log ran
    for secret in (answer["api_key"], answer["login_url"].removeprefix("/login/"), TOKEN):
        assert secret not in logged


def test_a_tampered_link_does_not_sign_in(browser, site):
    url, login = site
    token = login()["login_url"].removeprefix("/login/")
    problems: list[str] = []
    page = new_page(browser, problems)
    tampered = token[:-3] + ("xyz" if not token.endswith("xyz") else "abc")
    response = page.goto(f"{url}/login/{tampered}")
    assert response.status == 400
    assert "not valid" in page.text_content("h1")
    assert [c for c in page.context.cookies() if c["name"] == "grokproxy_session"] == []
    page.goto(url + "/chat")
    assert page.url == url + "/login"
    # The genuine link is untouched by the attempt.
    page.goto(f"{url}/login/{token}")
    assert page.url == url + "/chat"
    assert [p for p in problems if "status of 400" not in p] == []


def test_chat_page_shows_the_error_when_the_account_cannot_answer(browser, site, emu):
    url, login = site
    answer = login()
    problems: list[str] = []
    page = new_page(browser, problems)
    page.goto(url + answer["login_url"])
    page.locator("#model[data-loaded=true]").wait_for(state="attached")
    emu.set_fault("ratelimited", token=TOKEN)
    reply = send(page, "are you there")
    # Said in words, with the time the account is back (Retry-After), and a retry offered.
    error = reply.locator(".error").text_content()
    assert "cooling down" in error and "back at" in error
    assert reply.locator("button.regenerate").text_content() == "Retry"
    assert [p for p in problems if "429" not in p] == []
