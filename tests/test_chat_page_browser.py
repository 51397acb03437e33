"""The chat page as a chat app, in headless Chromium: markdown, reasoning, history, safety.

Screenshots at desktop and phone width, light and dark, go to SCREENSHOT_DIR when set (else the
test's tmp dir).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_web_browser import TIMEOUT_MS, browser, send, site  # noqa: F401  (fixtures)

from grokproxy.emulator import content

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
CODE = 'def greet(name):\n    return f"Hello, {name}!"\n'


def open_page(browser, problems: list[str], **options):  # noqa: F811
    """A page in a fresh context with clipboard access (the copy buttons are checked)."""
    context = browser.new_context(**options)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    return page


def sidebar_titles(page) -> list[str]:
    page.locator("#conversations[data-loaded=true]").wait_for(state="attached")
    return [t.strip() for t in page.locator("#conversations li .open").all_text_contents()]


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_chat_app_streams_markdown_keeps_history_and_runs_no_hostile_markup(
    browser,  # noqa: F811
    site,  # noqa: F811
    emu,
    tmp_path,
):
    url, login = site
    answer = login()
    problems: list[str] = []
    page = open_page(browser, problems, viewport=DESKTOP)
    page.goto(url + answer["login_url"])
    assert page.url == url + "/chat"

    # The picker starts on the catalog's first current model and describes each one.
    page.locator("#model[data-loaded=true]").wait_for(state="attached")
    assert page.input_value("#model") == "grok-auto"
    assert page.text_content("#model-description") == "Auto mode"
    page.select_option("#model", "grok-4")
    assert page.text_content("#model-description") == "Thinks first, expert mode"

    # A message with an image attached (picked); the reasoning streams, then folds away.
    page.set_input_files(
        "#file-input",
        files=[{"name": "dot.png", "mimeType": "image/png", "buffer": content.png_image("dot")}],
    )
    page.locator("#attachments img").wait_for()
    # Slow enough that the reasoning outlasts the gateway pre-read (2 s) and is seen streaming.
    emu.configure(tokens_per_second=3)
    page.fill("#prompt", "look at this photo and write code for it")
    page.press("#prompt", "Enter")
    page.wait_for_function(
        "() => { const d = document.querySelector("
        "'li.message.assistant[data-state=streaming] details.reasoning');"
        " return d && d.open && !d.hidden && d.textContent.includes('The user asks'); }"
    )
    first = page.locator("li.message.assistant").first
    first.and_(page.locator("[data-state=done]")).wait_for()
    emu.configure(tokens_per_second=0)
    reasoning = first.locator("details.reasoning")
    assert reasoning.is_visible() and reasoning.get_attribute("open") is None
    assert first.locator("summary").text_content().startswith("Thought for")
    # No stray blank lines: the rendered reasoning has no empty paragraphs or text-only gaps.
    assert first.locator(".reasoning-text p:empty").count() == 0
    assert "\n\n\n" not in reasoning.inner_text()
    assert page.locator("li.message.user .sent-images img").count() == 1
    assert page.locator("#attachments li").count() == 0
    (asked,) = emu.chat_turns()
    assert asked["message"] == "look at this photo and write code for it"
    assert len(asked["file_ids"]) == 1
    conversation_id = page.get_attribute("#conversation-label", "data-conversation-id")
    assert conversation_id

    # The code block is highlighted and its copy button copies exactly the code.
    code = first.locator(".code-block pre code")
    assert "hljs" in code.get_attribute("class")
    assert code.locator("span.hljs-keyword").first.text_content() == "def"
    first.locator(".code-block button.copy-code").click()
    first.locator(".code-block button.copy-code", has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == CODE

    # A generated image is shown as an image, loaded from grokproxy.
    drawn = send(page, "draw a cat")
    image = drawn.locator(".text img").first
    image.wait_for()
    assert image.get_attribute("src").startswith(url + "/")
    loaded = "(img) => img.complete && img.naturalWidth > 0"
    page.wait_for_function(loaded, arg=image.element_handle())
    assert "![image]" not in drawn.locator(".text").text_content()

    # Deep search: the steps and their sources as a list, citations as small numbered links.
    page.select_option("#model", "grok-3-deepsearch")
    searched = send(page, "search the latest news about llamas")
    sources = searched.locator(".reasoning-text li a")
    assert sources.count() >= 3
    assert sources.first.get_attribute("href").startswith("https://example1.test/")
    citation = searched.locator(".text a.citation").first
    assert citation.text_content() == "1"
    assert citation.get_attribute("href").startswith("https://")
    assert citation.get_attribute("target") == "_blank"
    assert "noopener" in citation.get_attribute("rel")
    assert "[[1]]" not in searched.locator(".text").text_content()
    # grokproxy sends each gateway citation twice in a row; the page shows it once.
    assert searched.locator(".text a.citation").all_text_contents() == ["1", "2"]

    # After a reload the conversation is in the sidebar, titled by its first words; the model
    # chosen last is remembered.
    page.reload()
    title = "look at this photo and write…"
    assert sidebar_titles(page) == [title]
    assert page.input_value("#model") == "grok-3-deepsearch"
    assert page.locator("li.message").count() == 0
    page.click("#conversations li .open")
    page.locator("li.message.assistant").nth(2).wait_for()
    assert page.text_content("#conversation-title") == title
    assert page.locator("li.message.user").count() == 3
    reopened = page.locator("li.message.assistant")
    assert reopened.nth(0).locator(".code-block code span.hljs-keyword").count() >= 1
    assert reopened.nth(0).locator("details.reasoning").get_attribute("open") is None
    assert reopened.nth(1).locator(".text img").count() >= 1
    assert reopened.nth(2).locator("a.citation").count() >= 1
    assert "1 image attached" in page.locator("li.message.user").first.text_content()

    # It continues the same upstream conversation.
    page.select_option("#model", "grok-4")
    fourth = send(page, "and one more thing")
    assert "and one more thing" in fourth.locator(".text").text_content()
    continued = emu.chat_turns()[-1]
    assert continued["conversation_id"] == conversation_id
    assert continued["message"] == "and one more thing"

    # Renamed: the new title shows now and after a reload.
    item = page.locator("#conversations li").first
    item.hover()
    item.locator("button.rename").click()
    page.fill("#conversations .rename-input", "Llamas, cats and code")
    page.press("#conversations .rename-input", "Enter")
    page.locator("#conversations li .open", has_text="Llamas, cats and code").wait_for()
    assert page.text_content("#conversation-title") == "Llamas, cats and code"
    page.reload()
    assert sidebar_titles(page) == ["Llamas, cats and code"]

    take_screenshots(browser, page, url, screenshot_dir(tmp_path), problems)

    # Deleted: gone from the sidebar, here and upstream (grok.com's soft delete).
    page.click("#conversations li .open")
    page.locator("li.message.assistant").nth(3).wait_for()
    item = page.locator("#conversations li").first
    item.hover()
    item.locator("button.delete").click()
    page.click("#conversations button.confirm-delete")
    page.locator("#conversations-empty").wait_for()
    assert page.locator("#conversations li").count() == 0
    assert page.locator("li.message").count() == 0
    assert emu.conversation(conversation_id)["deleted"] is True
    page.reload()
    assert sidebar_titles(page) == []

    # A hostile reply runs nothing: its markup is shown as text, no element of it exists, and
    # the markdown link keeps its words but not its javascript: target.
    hostile = send(page, "give me a hostile reply")
    text = hostile.locator(".text")
    shown = text.text_content()
    assert "<script>" in shown and "onerror=" in shown and "hover me" in shown
    assert text.locator("script, iframe, b, [onerror], [onmouseover], [onclick]").count() == 0
    assert text.locator("a", has_text="markdown link").count() == 1
    for link in text.locator("a").all():
        assert not (link.get_attribute("href") or "").lower().startswith("javascript:")
    for image in text.locator("img").all():  # the markdown image, left without its source
        assert not (image.get_attribute("src") or "").lower().startswith("javascript:")
    text.hover()
    for link in text.locator("a").all():
        link.click(modifiers=["Alt"])  # a click that opens nothing if the link is harmless
    assert page.evaluate("window.__hostile") is None
    assert page.evaluate("document.querySelectorAll('li.message script').length") == 0
    assert problems == [], problems


def take_screenshots(browser, page, url: str, folder: Path, problems: list[str]) -> None:  # noqa: F811
    """The open conversation at desktop and phone width, light and dark (same session)."""
    cookies = page.context.cookies()
    for width_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        for scheme in ("light", "dark"):
            shot = open_page(
                browser, problems, viewport=viewport, color_scheme=scheme, device_scale_factor=1
            )
            shot.context.add_cookies(cookies)
            shot.goto(url + "/chat")
            shot.locator("#conversations[data-loaded=true]").wait_for(state="attached")
            shot.evaluate("document.querySelector('#conversations li .open').click()")
            shot.locator("li.message.assistant").nth(3).wait_for()
            shot.wait_for_function(
                "() => [...document.querySelectorAll('li.message img')]"
                ".every((img) => img.complete && img.naturalWidth > 0)"
            )
            # Scrolled to the code block and the first image: the parts worth looking at.
            shot.evaluate("document.getElementById('scroller').scrollTop = 0")
            shot.screenshot(path=str(folder / f"chat-{width_name}-{scheme}.png"))
            if width_name == "phone" and scheme == "light":
                shot.click("#toggle-sidebar")
                shot.locator(".app[data-sidebar=open]").wait_for()
                shot.wait_for_timeout(300)  # the slide-in transition
                shot.screenshot(path=str(folder / "chat-phone-light-sidebar.png"))
            shot.context.close()
    assert len(list(folder.glob("chat-*.png"))) == 5


def test_regenerate_edit_retry_after_a_lost_connection_and_errors_in_words(
    browser,  # noqa: F811
    site,  # noqa: F811
    emu,
):
    url, login = site
    problems: list[str] = []
    page = open_page(browser, problems, viewport=DESKTOP)
    page.goto(url + login()["login_url"])
    page.locator("#model[data-loaded=true]").wait_for(state="attached")
    first = send(page, "hello there")
    second = send(page, "tell me more")
    conversation_id = page.get_attribute("#conversation-label", "data-conversation-id")
    first_id = emu.conversation(conversation_id)["responses"][1]["responseId"]

    # Regenerate: the same question again, hanging from the answer before it.
    assert first.locator("button.regenerate").count() == 0  # only the last answer has one
    second.locator("button.regenerate").click()
    page.locator("li.message.assistant").nth(1).and_(page.locator("[data-state=done]")).wait_for()
    redone = emu.chat_turns()[-1]
    assert redone["message"] == "tell me more" and redone["conversation_id"] == conversation_id
    assert redone["parent_response_id"] == first_id
    assert page.locator("li.message").count() == 4

    # Edit and resend the last question: it replaces the last exchange.
    page.locator("li.message.user").last.locator("button.edit").click()
    page.fill("li.message.user textarea.edit-box", "tell me less")
    page.press("li.message.user textarea.edit-box", "Enter")
    page.locator("li.message.assistant").nth(1).and_(page.locator("[data-state=done]")).wait_for()
    assert emu.chat_turns()[-1]["message"] == "tell me less"
    assert emu.chat_turns()[-1]["parent_response_id"] == first_id
    assert page.locator("li.message.user").all_inner_texts()[-1].startswith("tell me less")
    page.reload()
    page.click("#conversations li .open")
    page.locator("li.message.assistant").nth(1).wait_for()
    users = [t.split("\n")[0] for t in page.locator("li.message.user .text").all_inner_texts()]
    assert users == ["hello there", "tell me less"]

    # The connection drops mid-answer (the body ends without [DONE]): what arrived stays, with
    # a retry that completes it.
    partial = {"conversation_id": conversation_id, "choices": [{"delta": {"content": "Half an"}}]}
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream", "X-Conversation-Id": conversation_id},
            body=f"data: {json.dumps(partial)}\n\n",
        ),
    )
    cut = send(page, "a cut answer")
    page.unroute("**/v1/chat/completions")
    assert "connection was lost" in cut.locator(".error").text_content()
    assert "what arrived is kept" in cut.locator(".error").text_content()
    assert cut.locator(".text").inner_text().strip() == "Half an"
    cut.locator("button.regenerate", has_text="Retry").click()
    retried = page.locator("li.message.assistant").nth(2)
    retried.and_(page.locator("[data-state=done]")).wait_for()
    assert retried.locator(".error").count() == 0
    assert "a cut answer" in retried.locator(".text").text_content()
    assert emu.chat_turns()[-1]["message"] == "a cut answer"

    # Stop ends a streaming answer and keeps what arrived.
    emu.configure(tokens_per_second=3)
    page.fill("#prompt", "a long answer to stop")
    page.press("#prompt", "Enter")
    page.locator("#stop").wait_for()
    page.locator("li.message.assistant[data-state=streaming] .text", has_text="Echo").wait_for()
    page.click("#stop")
    stopped = page.locator("li.message.assistant").last
    stopped.and_(page.locator("[data-state=done]")).wait_for()
    emu.configure(tokens_per_second=0)
    assert page.text_content("#status") == "Stopped."
    assert stopped.locator(".text").inner_text().startswith("Echo")
    assert page.locator("#send").is_visible() and not page.locator("#stop").is_visible()

    # Refusals read as sentences: the daily limit (with its reset time), a removed account.
    limit = {"message": "daily limit", "type": "rate_limit_error", "code": "daily_limit_reached"}
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(
            status=429,
            headers={"Retry-After": "3600", "Content-Type": "application/json"},
            body=json.dumps({"error": {**limit, "param": None}}),
        ),
    )
    refused = send(page, "one more")
    assert "today's message limit" in refused.locator(".error").text_content()
    assert "resets at" in refused.locator(".error").text_content()
    page.unroute("**/v1/chat/completions")
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(
            status=503,
            headers={"Content-Type": "application/json"},
            body=json.dumps(
                {
                    "error": {
                        "message": "your grok account was removed from the gateway; ask the "
                        "operator to log you in again",
                        "type": "server_error",
                        "code": "no_available_account",
                        "param": None,
                    }
                }
            ),
        ),
    )
    removed = send(page, "and again")
    assert "was removed from this gateway" in removed.locator(".error").text_content()
    expected = ("429", "503")
    assert [p for p in problems if not any(code in p for code in expected)] == []
