"""A database outage is a 503 `database_unavailable` with Retry-After on every route, never a 500,
and the next request works again once the database is back."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import create_engine, text

from grokproxy.extensions import db
from grokproxy.models import User

from conftest import ADMIN_PASSWORD, POOL_KEY, postgres_url

ADMIN = {"Authorization": f"Bearer {ADMIN_PASSWORD}"}
POOL = {"Authorization": f"Bearer {POOL_KEY}"}
CHAT = {"model": "grok-3", "messages": [{"role": "user", "content": "hi"}]}
MD5 = "0" * 32


def database_requests(client) -> dict[str, object]:
    """One request per database-touching route; /chat with a session cookie of user 1."""
    with client.session_transaction() as session:
        session.update(user_id=1, session_epoch=0)
    return {
        "chat": lambda: client.post("/v1/chat/completions", json=CHAT, headers=POOL),
        "user key": lambda: client.get("/v1/models", headers={"Authorization": "Bearer sk-x"}),
        "list": lambda: client.get("/api/get-grok-list", headers=ADMIN),
        "login": lambda: client.post(
            "/api/login", json={"user_name": "ann", "email_md5": MD5}, headers=ADMIN
        ),
        "delete": lambda: client.post(
            "/api/delete-grok-token", json={"email_md5_list": [MD5]}, headers=ADMIN
        ),
        "chat page": lambda: client.get("/chat"),
        "batch-add": lambda: client.post(
            "/api/batch-add-grok-token",
            json={"sso_token_list": ["emu-good-outage-token-0001"]},
            headers=ADMIN,
        ),
    }


def assert_database_unavailable(response, name: str) -> None:
    assert response.status_code == 503, (name, response.get_data(as_text=True))
    assert response.mimetype == "application/json", name
    error = response.get_json()["error"]
    assert error["code"] == "database_unavailable" and error["type"] == "service_unavailable"
    assert response.headers["Retry-After"] == "5", name


def test_an_unreachable_sqlite_file_is_a_503_on_every_route_and_recovers(
    make_app, database_template, tmp_path, emu
):
    if database_template["kind"] != "sqlite":
        pytest.skip("the SQLite drill needs the SQLite template")
    folder = tmp_path / "gone"
    app = make_app(DATABASE_URL=f"sqlite:///{folder}/grokproxy.sqlite", GROK_BASE_URL=emu.base_url)
    client = app.test_client()
    for name, send in database_requests(client).items():
        assert_database_unavailable(send(), name)
    assert client.get("/healthz").status_code == 503

    # The database comes back: the very next requests work, no restart needed.
    folder.mkdir()
    shutil.copyfile(database_template["path"], folder / "grokproxy.sqlite")
    assert client.get("/healthz").status_code == 200
    listed = client.get("/api/get-grok-list", headers=ADMIN)
    assert listed.status_code == 200 and listed.get_json()["total"] == 0
    assert client.get("/chat").status_code == 303  # user 1 does not exist: back to sign-in


def test_a_postgresql_server_that_refuses_connections_is_a_503_on_every_route(make_app, emu):
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    app = make_app(
        DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/grokproxy",
        GROK_BASE_URL=emu.base_url,
    )
    client = app.test_client()
    for name, send in database_requests(client).items():
        assert_database_unavailable(send(), name)
    assert client.get("/healthz").status_code == 503


def test_a_query_error_that_is_not_an_outage_stays_a_500(app, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def broken(*args, **kwargs):
        raise OperationalError("SELECT", {}, Exception("no such table: accounts"))

    monkeypatch.setattr("grokproxy.tokens.list_accounts", broken)
    response = app.test_client().get("/api/get-grok-list", headers=ADMIN)
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"


@pytest.mark.postgres
@pytest.mark.skipif(postgres_url() is None, reason="needs TEST_DATABASE_URL (PostgreSQL)")
def test_connections_terminated_by_the_server_never_make_a_500(make_app, emu, add_accounts):
    app = make_app(GROK_BASE_URL=emu.base_url, GROK_ASSETS_URL=emu.assets_url)
    add_accounts(app, ["emu-good-drill-account-0001"])
    client = app.test_client()
    with app.app_context():
        box = app.extensions["grokproxy.secrets"]
        key = "sk-drill-user-key"
        db.session.add(
            User(
                user_name="ann", api_key_encrypted=box.encrypt(key), api_key_digest=box.digest(key)
            )
        )
        db.session.commit()
        database = db.engine.url.database
    admin = create_engine(postgres_url(), isolation_level="AUTOCOMMIT")
    statuses = []
    try:
        for _ in range(3):
            # Warm the pool, then have the server kill every connection the app holds.
            sends = database_requests(client)
            for send in sends.values():
                send()
            with admin.connect() as conn:
                killed = conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": database},
                ).scalar()
            assert killed >= 1
            for name, send in sends.items():
                response = send()
                statuses.append((name, response.status_code))
                assert response.status_code < 500 or response.status_code == 503, (
                    name,
                    response.get_data(as_text=True),
                )
                if response.status_code == 503:
                    assert_database_unavailable(response, name)
    finally:
        admin.dispose()
    # pool_pre_ping replaces the dead connections: the chat itself goes through.
    assert ("chat", 200) in statuses
