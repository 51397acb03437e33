"""Shared fixtures: an app on a freshly migrated database per test (SQLite, or PostgreSQL when
TEST_DATABASE_URL is set), its test client and CLI runner, and a live server in a thread."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from grokproxy import create_app
from grokproxy.dbupgrade import upgrade_database
from grokproxy.emulator.accounts import sso_cookie
from grokproxy.extensions import db

from emulator_fixtures import emu, emulator  # noqa: F401  (the fake grok.com)

TEST_SECRET_KEY = "test-secret-key-for-grokproxy-tests-only"
ADMIN_PASSWORD = "admin-password-for-tests"
POOL_KEY = "sk-pool-key-for-tests"

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
    """Factory: `add_accounts(app, tokens)` stores pool accounts directly, returns their ids."""
    from grokproxy.emulator.accounts import email_for
    from grokproxy.models import Account

    def add(app, tokens: list[str]) -> list[int]:
        box = app.extensions["grokproxy.secrets"]
        ids = []
        with app.app_context():
            for token in tokens:
                account = Account.for_token(box, token, email_for(token))
                db.session.add(account)
                db.session.commit()
                ids.append(account.id)
        return ids

    return add


@pytest.fixture
def emu_app(make_app, emu):  # noqa: F811  (the fixture imported above)
    """Factory: an app whose upstream is the emulator (`emu_app(**settings)`)."""

    def build(**settings: Any):
        return make_app(GROK_BASE_URL=emu.base_url, GROK_ASSETS_URL=emu.assets_url, **settings)

    return build
