"""`/healthz` reports the database, on SQLite and on PostgreSQL (TEST_DATABASE_URL)."""

from __future__ import annotations


def test_healthz_is_ok_with_a_reachable_database(client, app):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["database"] == {
        "ok": True,
        "dialect": app.config["DATABASE_URL"].split(":")[0].split("+")[0],
    }


def test_healthz_is_503_when_the_database_is_unreachable(make_app):
    app = make_app(DATABASE_URL="postgresql+psycopg://nobody:pw-not-shown@127.0.0.1:1/none")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["database"]["ok"] is False
    assert body["error"]["code"] == "database_unavailable"
    assert "pw-not-shown" not in response.get_data(as_text=True)
