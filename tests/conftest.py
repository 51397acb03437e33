"""Shared fixtures: an app on a freshly migrated database per test (SQLite, or PostgreSQL when
TEST_DATABASE_URL is set), its test client and CLI runner, and a live server in a thread."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from grokproxy import create_app
from grokproxy.dbupgrade import upgrade_database
from grokproxy.emulator.accounts import email_for, sso_cookie, user_id_for
from grokproxy.extensions import db
from grokproxy.grok import gateway as grok_gateway

from emulator_fixtures import emu, emulator  # noqa: F401  (the fake grok.com)

TEST_SECRET_KEY = "test-secret-key-for-grokproxy-tests-only"
ADMIN_PASSWORD = "admin-password-for-tests"
POOL_KEY = "sk-pool-key-for-tests"
CHAT = {"model": "grok-3", "messages": [{"role": "user", "content": "hello"}]}

# Copies of public grok.com samples (each file's first line names its source), kept in the
# repository so the suite runs on any machine.
UPSTREAM_SAMPLES = Path(__file__).resolve().parent / "fixtures" / "upstream"

# Settings every test app starts from; a test passes overrides for what it exercises.
BASE_SETTINGS: dict[str, Any] = {
    "SECRET_KEY": TEST_SECRET_KEY,
    "ADMIN_PASSWORD": ADMIN_PASSWORD,
    "AUTHORIZATION": (POOL_KEY,),
    # Nothing listens on port 9 (discard): a test that forgets the emulator fails fast, and no
    # test can ever reach the real grok.com.
    "GROK_BASE_URL": "http://127.0.0.1:9",
    "GROK_ASSETS_URL": "http://127.0.0.1:9",
    "UPSTREAM_CONNECT_TIMEOUT": 2.0,
    "UPSTREAM_READ_TIMEOUT": 10.0,
}


def sample_bytes(name: str) -> bytes:
    """An upstream sample's bytes without its provenance line."""
    return (UPSTREAM_SAMPLES / name).read_bytes().split(b"\n", 1)[1]


def sample_text(name: str) -> str:
    """An upstream sample's text without its provenance line."""
    return sample_bytes(name).decode("utf-8")


def md5_of(token: str) -> str:
    """The `email_md5` key of the account the emulator reports for `token`."""
    return hashlib.md5(email_for(token).encode(), usedforsecurity=False).hexdigest()


def error_of(response: Any, status: int) -> dict[str, Any]:
    """The `error` object of a JSON error answer, after checking its status and type."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()["error"]


def sso_jwt(label: str) -> str:
    """A raw SSO bearer shaped like grok.com's cookie (HS256 JWT); `label` is its session_id.

    grokproxy accepts only that shape as a raw SSO bearer. The emulator reads its fault prefixes
    from the session_id, so `sso_jwt("emu-invalid-x")` is a token grok.com rejects.
    """
    return sso_cookie(label)


def postgres_url() -> str | None:
    """The PostgreSQL server tests may use, if any."""
    return os.environ.get("TEST_DATABASE_URL") or None


@pytest.fixture(scope="session")
def database_template(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A migrated database made once per session: a SQLite file to copy, or a private PG db."""
    base = tmp_path_factory.mktemp("dbtemplate")
    os.environ["GROKPROXY_INSTANCE_PATH"] = str(base / "instance")
    pg = postgres_url()
    if pg is None:
        path = base / "template.sqlite"
        template_app = create_app({**BASE_SETTINGS, "DATABASE_URL": f"sqlite:///{path}"})
        upgrade_database(template_app)
        with template_app.app_context():
            # Fold the WAL into the main file: the copy each test gets is that file alone.
            with db.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            db.engine.dispose()
        yield {"kind": "sqlite", "path": str(path)}
        return
    # A database of our own, so concurrent test runs on one server never see each other's rows.
    url = make_url(pg)
    name = f"{url.database}_gp_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    test_url = url.set(database=name).render_as_string(hide_password=False)
    upgrade_database(create_app({**BASE_SETTINGS, "DATABASE_URL": test_url}))
    yield {"kind": "postgresql", "url": test_url}
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(autouse=True)
def no_idle_gateway_sockets() -> Iterator[None]:
    """Each test starts without idle gateway sockets: one left by an earlier test would carry
    its turns on a connection the emulator (reset since) recorded for that test."""
    yield
    grok_gateway.close_idle_sockets()


@pytest.fixture
def make_app(database_template, tmp_path) -> Iterator[Callable[..., Any]]:
    """Factory: `make_app(**settings)` builds an app on a clean, migrated database."""
    apps = []
    if database_template["kind"] == "sqlite":
        path = tmp_path / "test.sqlite"
        shutil.copyfile(database_template["path"], path)
        url = f"sqlite:///{path}"
    else:
        url = database_template["url"]
        engine = create_engine(url)
        with engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        engine.dispose()

    def factory(**settings: Any):
        app = create_app({**BASE_SETTINGS, "DATABASE_URL": url, **settings})
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    """The app with default test settings."""
    return make_app()


@pytest.fixture
def client(app):
    """Flask test client."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """Flask CLI runner."""
    return app.test_cli_runner()


@pytest.fixture
def admin_headers() -> dict[str, str]:
    """Authorization header of the admin API."""
    return {"Authorization": f"Bearer {ADMIN_PASSWORD}"}


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """Factory: `serve(app)` runs the app on a real threaded HTTP server and returns its URL."""
    servers = []

    def start(app) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def repo_root() -> Path:
    """The checkout's top folder."""
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def add_accounts():
    """Factory: `add_accounts(app, tokens)` stores pool accounts directly, as batch-add does
    (e-mail and grok user id as the emulator derives them); returns their ids."""
    from grokproxy.models import Account

    def add(app, tokens: list[str]) -> list[int]:
        box = app.extensions["grokproxy.secrets"]
        ids = []
        with app.app_context():
            for token in tokens:
                account = Account.for_token(box, token, email_for(token), user_id_for(token))
                db.session.add(account)
                db.session.commit()
                ids.append(account.id)
        return ids

    return add


@pytest.fixture
def emu_app(make_app, emu, request):  # noqa: F811  (the fixture imported above)
    """Factory: an app whose upstream is the emulator (`emu_app(**settings)`); in a test that
    uses `transport`, the app speaks that transport unless GROK_DIALECT is given."""
    dialect = request.getfixturevalue("transport") if "transport" in request.fixturenames else None

    def build(**settings: Any):
        if dialect is not None:
            settings.setdefault("GROK_DIALECT", dialect)
        return make_app(GROK_BASE_URL=emu.base_url, GROK_ASSETS_URL=emu.assets_url, **settings)

    return build


@pytest.fixture(params=["gateway", "modes"])
def transport(request, emu) -> str:  # noqa: F811
    """The upstream transport of an end-to-end test, each test running over both: grok.com's
    WebSocket gateway (the emulator then refuses HTTP text chat, as grok.com does since
    2026-08, so nothing may fall back to it) or the HTTP chat of the `modes` dialect."""
    emu.configure(dialect=request.param)
    return request.param


@pytest.fixture
def live(transport, emu_app, add_accounts, serve):
    """Factory: `live(tokens, **settings)` serves an emulator-backed app; returns (app, url).
    Every test that uses it runs over both upstream transports (see `transport`)."""

    def start(tokens: Sequence[str], **settings: Any) -> tuple[Any, str]:
        app = emu_app(**settings)
        add_accounts(app, list(tokens))
        return app, serve(app)

    return start


class Gateway:
    """One app driven through its HTTP API; keeps every answer for the token-leak check."""

    def __init__(self, app: Any, ids: list[int], tokens: list[str], admin: dict[str, str]):
        self.app = app
        self.ids = ids
        self.tokens = tokens
        self.client = app.test_client()
        self.answers: list[str] = []
        self._admin = admin

    def _keep(self, response: Any) -> Any:
        self.answers.append(response.get_data(as_text=True))
        return response

    def add(self, *tokens: str) -> dict[str, Any]:
        """Add or refresh pool tokens through the admin API; its JSON answer."""
        self.tokens += tokens
        response = self._keep(
            self.client.post(
                "/api/batch-add-grok-token",
                json={"sso_token_list": list(tokens)},
                headers=self._admin,
            )
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def accounts(self) -> list[dict[str, Any]]:
        """The admin listing of the pool, oldest account first."""
        response = self._keep(
            self.client.get("/api/get-grok-list?page_size=100", headers=self._admin)
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["data"]

    def login(self, name: str, token: str | None = None) -> str:
        """Bind `name` to the account of `token` (the first pool token by default); its API key."""
        md5 = md5_of(token if token is not None else self.tokens[0])
        response = self._keep(
            self.client.post(
                "/api/login", json={"user_name": name, "email_md5": md5}, headers=self._admin
            )
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["api_key"]

    def chat(self, key: str = POOL_KEY, body: dict[str, Any] = CHAT, status: int = 200) -> Any:
        """POST a chat completion with `key`, checking the answer's status."""
        headers = {"Authorization": f"Bearer {key}"}
        response = self._keep(self.client.post("/v1/chat/completions", json=body, headers=headers))
        assert response.status_code == status, response.get_data(as_text=True)
        return response


@pytest.fixture
def make_gateway(emu_app, add_accounts, admin_headers, caplog) -> Iterator[Callable[..., Gateway]]:
    """Factory: `make_gateway(tokens, **settings)`; on teardown no answer or log holds a token."""
    caplog.set_level(logging.DEBUG)
    gateways: list[Gateway] = []

    def build(tokens: Sequence[str] = (), **settings: Any) -> Gateway:
        app = emu_app(**settings)
        gateway = Gateway(app, add_accounts(app, list(tokens)), list(tokens), admin_headers)
        gateways.append(gateway)
        return gateway

    yield build
    logged = [record.getMessage() for record in caplog.records]
    for gateway in gateways:
        for said in gateway.answers + logged:
            assert not any(token in said for token in gateway.tokens)


def reply_events(reply, heartbeat: float | None = None) -> Iterator[Any]:
    """Every event of an upstream reply (`Reply.batches` flattened; Heartbeats when asked)."""
    for batch in reply.batches(heartbeat=heartbeat):
        yield from (batch if isinstance(batch, list) else [batch])
