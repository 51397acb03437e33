"""The migrations build the schema the models describe, once, even with concurrent starters."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from grokproxy.extensions import db

from conftest import postgres_url

STARTER = (
    "import sys; from grokproxy import create_app; from grokproxy.dbupgrade import "
    "upgrade_database; upgrade_database(create_app({'DATABASE_URL': sys.argv[1], "
    "'SECRET_KEY': 'k' * 32}))"
)


def test_models_and_migrations_agree(runner):
    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output


def test_migrated_schema_has_every_model_table(app):
    with app.app_context():
        tables = set(inspect(db.engine).get_table_names())
    assert {t.name for t in db.metadata.sorted_tables} <= tables
    assert "alembic_version" in tables


def fresh_database_url(tmp_path) -> tuple[str, object]:
    """An empty database (a new SQLite file, or a new PostgreSQL database) and its cleanup."""
    pg = postgres_url()
    if pg is None:
        return f"sqlite:///{tmp_path}/fresh.sqlite", lambda: None
    url = make_url(pg)
    name = f"{url.database}_fresh_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


def test_two_starters_at_once_migrate_once_without_error(tmp_path):
    url, drop = fresh_database_url(tmp_path)
    env = {**os.environ, "GROKPROXY_INSTANCE_PATH": str(tmp_path / "instance")}
    try:
        starters = [
            subprocess.Popen(
                [sys.executable, "-c", STARTER, url],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=60)[0].decode() for p in starters]
        assert [p.returncode for p in starters] == [0, 0, 0], outputs
        engine = create_engine(url)
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            assert len(versions) == 1
            assert {t.name for t in db.metadata.sorted_tables} <= set(
                inspect(conn).get_table_names()
            )
        engine.dispose()
        # Exactly one starter applied the migrations; the others found nothing to do.
        assert sum("Running upgrade  ->" in out for out in outputs) == 1
    finally:
        drop()


def test_a_test_app_reaches_no_upstream_but_a_local_one(app):
    # Safety net for the whole suite: whatever a test forgets, grok.com is never called.
    settings = app.extensions["grokproxy.grok"].settings
    assert urlsplit(settings.base_url).hostname == "127.0.0.1"
    assert urlsplit(settings.assets_url).hostname == "127.0.0.1"
