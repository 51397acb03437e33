"""`flask --app wsgi demo`: grokproxy over the grok.com emulator in one command, nothing to set up.

Starts the emulator (a subprocess, in the app's GROK_DIALECT) and a gateway on a throw-away SQLite
file, adds a few emulator accounts through the token service (as batch-add does), makes a demo
user and prints what a newcomer needs: base URL, pool key, admin password, a login link to the
chat page and a ready curl line. Ctrl-C (or SIGTERM) stops both and removes the temp folder.
"""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import requests
from flask import current_app
from werkzeug.serving import make_server

from .emulator.testing import stop_process

DEMO_TOKENS = ("demo-account-one-0001", "demo-account-two-0002", "demo-account-three-0003")
DEMO_USER = "demo-user"
REPO_ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_emulator(port: int, dialect: str, log_path: Path) -> subprocess.Popen:
    """Run `python -m grokproxy.emulator` and wait until it answers its health route."""
    args = [sys.executable, "-m", "grokproxy.emulator", "--port", str(port), "--dialect", dialect]
    log = open(log_path, "wb")  # noqa: SIM115  (the child keeps it; closed when we stop)
    process = subprocess.Popen(args, cwd=REPO_ROOT, stdout=log, stderr=log)  # noqa: S603
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            raise click.ClickException(
                f"the emulator stopped at start-up (is aiohttp installed? "
                f"pip install -r requirements-emulator.txt); its log: {log_path}"
            )
        try:
            if requests.get(f"http://127.0.0.1:{port}/_emulator/health", timeout=1).ok:
                return process
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise click.ClickException("the emulator did not answer within 20 s")
        time.sleep(0.1)


def _prepare(app: Any) -> tuple[str, str]:
    """Migrate, add the demo accounts, make the demo user: (login link path, its API key)."""
    from .dbupgrade import upgrade_database
    from .tokens import add_tokens
    from .users import login

    upgrade_database(app)
    with app.app_context():
        result = add_tokens(list(DEMO_TOKENS))
        if not result.email_list:
            raise click.ClickException(f"no demo account could be added: {result.failed}")
        user = login(DEMO_USER, result.email_list[0]["email_md5"])
        return f"/login/{user.link_token}", user.api_key


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Gateway port (0 picks a free one).",
)
def demo(host: str, port: int) -> None:
    """Run grokproxy over the grok.com emulator on a temporary database; Ctrl-C stops it."""
    from . import create_app

    config = current_app.config
    admin_password = config.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    pool_key = (config.get("AUTHORIZATION") or (f"sk-demo-{secrets.token_urlsafe(16)}",))[0]
    dialect = config["GROK_DIALECT"]
    folder = Path(tempfile.mkdtemp(prefix="grokproxy-demo-"))
    emulator_port = _free_port()
    emulator = _start_emulator(emulator_port, dialect, folder / "emulator.log")
    server = None
    try:
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        app = create_app(
            {
                "DATABASE_URL": f"sqlite:///{folder / 'demo.sqlite'}",
                "SECRET_KEY": secrets.token_urlsafe(32),
                "ADMIN_PASSWORD": admin_password,
                "AUTHORIZATION": (pool_key,),
                "GROK_BASE_URL": emulator_url,
                "GROK_ASSETS_URL": f"{emulator_url}/assets",
                "GROK_DIALECT": dialect,
                "GROK_IMPERSONATE": None,
                "PROXY_URL_POOL": (),
                "PUBLIC_URL": None,
            }
        )
        link, _ = _prepare(app)
        server = make_server(host, port, app, threaded=True)
        base = f"http://{host}:{server.server_port}"
        body = {"model": "grok-3", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        curl = shlex.join(
            [
                "curl", "-sN", f"{base}/v1/chat/completions",
                "-H", f"Authorization: Bearer {pool_key}",
                "-H", "Content-Type: application/json",
                "-d", json.dumps(body),
            ]
        )  # fmt: skip
        click.echo(
            "grokproxy demo over the grok.com emulator (Ctrl-C stops both)\n"
            f"  base URL:       {base}/v1\n"
            f"  pool key:       {pool_key}\n"
            f"  admin password: {admin_password}\n"
            f"  chat page:      {base}{link}\n"
            f"  try:            {curl}\n"
            f"  emulator:       {emulator_url} (pid {emulator.pid})"
        )
        sys.stdout.flush()
        # SIGINT and SIGTERM end the demo through the finally below; SIGINT explicitly, since a
        # shell starting us in the background (`&`) leaves it ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            click.echo("stopping the demo")
    finally:
        if server is not None:
            server.server_close()
        stop_process(emulator)
        shutil.rmtree(folder, ignore_errors=True)
