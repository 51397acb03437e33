"""grokproxy behind a real nginx, configured with the README's recipe: streams pass unbuffered,
absolute links follow the forwarded host only when TRUSTED_PROXY_COUNT says so, and the chat page
works through a non-default port with no PUBLIC_URL.

Debian's nginx (`/usr/sbin/nginx`) runs as this test's own process with everything in tmp_path.
Without it the tests skip, unless REQUIRE_NGINX=1 makes a missing nginx a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from test_web_browser import browser, new_page, send  # noqa: F401  (the browser fixture)

from grokproxy.emulator.accounts import email_for
from grokproxy.emulator.testing import stop_process

from conftest import ADMIN_PASSWORD, POOL_KEY

NGINX = Path("/usr/sbin/nginx")
README = Path(__file__).resolve().parent.parent / "README.md"
TOKEN = "emu-nginx-account-0001"
FORWARDED_HOST = "gateway.test"


def md5_of(token: str) -> str:
    return hashlib.md5(email_for(token).encode(), usedforsecurity=False).hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def readme_recipe() -> str:
    """The `location` block of the README's nginx section."""
    section = README.read_text().split("## Behind nginx", 1)[1]
    block = re.search(r"```nginx\n(.*?)```", section, flags=re.DOTALL)
    assert block, "README's nginx section has no ```nginx block"
    return block.group(1)


@pytest.fixture
def nginx(tmp_path):
    """Factory: `nginx(backend_url)` runs nginx with the README recipe in front; returns its URL."""
    if not NGINX.exists():
        if os.environ.get("REQUIRE_NGINX") == "1":
            pytest.fail(f"REQUIRE_NGINX=1 but {NGINX} is missing (apt-get install nginx)")
        pytest.skip(f"{NGINX} is missing (apt-get install nginx)")
    processes: list[subprocess.Popen] = []

    def start(backend: str) -> str:
        port = free_port()
        recipe = readme_recipe()
        assert "proxy_pass http://127.0.0.1:8000;" in recipe
        location = recipe.replace("http://127.0.0.1:8000", backend)
        # Workers run as root only when we are root: they must reach the private tmp_path.
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "\n".join(
            f"    {kind}_temp_path {tmp_path}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            f"{user}worker_processes 1;\npid {tmp_path}/nginx.pid;\n"
            f"error_log {tmp_path}/error.log info;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n    access_log {tmp_path}/access.log;\n{temp}\n"
            f"    server {{\n        listen 127.0.0.1:{port};\n{location}\n    }}\n}}\n"
        )
        args = [str(NGINX), "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c"]
        process = subprocess.Popen(
            [*args, str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                pytest.fail(f"nginx did not start: {process.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("nginx did not listen within 10 s")
                time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        stop_process(process)


@pytest.fixture
def proxied(emu_app, add_accounts, serve, nginx):
    """Factory: a live grokproxy over the emulator, nginx in front; returns nginx's URL."""

    def start(**settings) -> str:
        app = emu_app(**settings)
        add_accounts(app, [TOKEN])
        return nginx(serve(app))

    return start


def as_forwarded_host(url: str) -> dict[str, str]:
    """Headers that make nginx see a browser asking for gateway.test on nginx's port."""
    return {"Host": f"{FORWARDED_HOST}:{url.rsplit(':', 1)[1]}"}


def test_a_stream_through_nginx_arrives_as_it_is_made(proxied, emu):
    url = proxied()
    emu.configure(tokens=10, tokens_per_second=5)  # about two seconds of stream
    started = time.monotonic()
    arrivals: list[float] = []
    with requests.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {POOL_KEY}"},
        json={"model": "grok-3", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        stream=True,
        timeout=30,
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        for line in answer.iter_lines(decode_unicode=True):
            if line.startswith("data: {"):
                delta = json.loads(line[6:])["choices"]
                if delta and delta[0]["delta"].get("content"):
                    arrivals.append(time.monotonic() - started)
    total = time.monotonic() - started
    assert total >= 1.5
    assert len(arrivals) >= 5
    # Unbuffered: the first words arrive long before the end, and the rest keep trickling in.
    assert arrivals[0] < total - 1.0
    assert arrivals[-1] - arrivals[0] >= 1.0


@pytest.mark.parametrize("trusted", [1, 0])
def test_absolute_links_follow_the_forwarded_host_only_when_trusted(proxied, trusted):
    url = proxied(TRUSTED_PROXY_COUNT=trusted)
    headers = as_forwarded_host(url)
    public = f"http://{headers['Host']}"
    login = requests.post(
        f"{url}/api/login",
        headers={**headers, "Authorization": f"Bearer {ADMIN_PASSWORD}"},
        json={"user_name": "proxied", "email_md5": md5_of(TOKEN)},
        timeout=30,
    ).json()
    completion = requests.post(
        f"{url}/v1/chat/completions",
        headers={**headers, "Authorization": f"Bearer {POOL_KEY}"},
        json={
            "model": "grok-3",
            "messages": [{"role": "user", "content": "draw an image of a dog"}],
        },
        timeout=30,
    ).json()
    content = completion["choices"][0]["message"]["content"]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", content)
    assert links, content
    if trusted:
        assert login["login_url_absolute"] == public + login["login_url"]
        assert all(link.startswith(f"{public}/images/") for link in links)
        image = requests.get(url + links[0][len(public) :], timeout=30)
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    else:
        assert "login_url_absolute" not in login
        assert not any(link.startswith(f"{public}/") for link in links), links


@pytest.mark.browser
def test_the_chat_page_through_nginx_on_its_own_port_loads_models_and_chats(
    browser,  # noqa: F811  (the fixture imported above)
    proxied,
):
    url = proxied()  # no PUBLIC_URL, TRUSTED_PROXY_COUNT 0: the page needs neither
    login = requests.post(
        f"{url}/api/login",
        headers={"Authorization": f"Bearer {ADMIN_PASSWORD}"},
        json={"user_name": "through-nginx", "email_md5": md5_of(TOKEN)},
        timeout=30,
    ).json()
    problems: list[str] = []
    page = new_page(browser, problems)
    page.goto(url + login["login_url"])
    assert page.url == url + "/chat"
    page.locator("#model[data-loaded=true]").wait_for(state="attached")
    assert page.locator("#model option").count() >= 5
    assert page.text_content("#api-base") == url + "/v1"
    answer = send(page, "hello through nginx")
    assert "hello through nginx" in answer.locator(".text").text_content()
    assert problems == []
