"""grokproxy: an OpenAI-compatible gateway over a pool of grok.com web accounts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from .config import (
    ConfigError,
    default_database_url,
    instance_secret_key,
    load_config,
    load_dotenv_file,
)
from .crypto import SecretBox


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application: settings, extensions, blueprints, error handlers, commands.

    A setting grokproxy cannot use raises ConfigError, whose message names the variable; the
    entry points (wsgi.py, gunicorn.conf.py) print it as one line and stop.
    """
    app = Flask(__name__, instance_path=os.environ.get("GROKPROXY_INSTANCE_PATH") or None)
    register_config(app, config)
    register_logging(app)
    register_mirror_api(app)
    register_extensions(app)
    register_upstream(app)
    register_error_handlers(app)
    register_blueprints(app)
    register_commands(app)
    register_proxy_fix(app)
    return app


def register_proxy_fix(app: Flask) -> None:
    """Trust X-Forwarded-* from exactly TRUSTED_PROXY_COUNT proxies (none by default)."""
    count = app.config["TRUSTED_PROXY_COUNT"]
    if count:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=count, x_proto=count, x_host=count, x_port=count
        )


def register_config(app: Flask, overrides: Mapping[str, Any] | None) -> None:
    """Read the settings once: `.env` file, then the environment, then explicit overrides."""
    environ = {**load_dotenv_file(Path.cwd() / ".env"), **os.environ}
    settings = load_config(environ)
    if overrides:
        settings.update(overrides)
    if not settings["SECRET_KEY"]:
        settings["SECRET_KEY"] = instance_secret_key(app.instance_path)
    if not settings["DATABASE_URL"]:
        settings["DATABASE_URL"] = default_database_url(app.instance_path)
    app.config.update(settings)
    app.config["SQLALCHEMY_DATABASE_URI"] = settings["DATABASE_URL"]
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(settings)
    app.config["MAX_CONTENT_LENGTH"] = settings["MAX_REQUEST_BYTES"]
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    app.extensions["grokproxy.secrets"] = SecretBox(settings["SECRET_KEY"])


def engine_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Connection pool sizing; a liveness ping only where a server can drop connections."""
    try:
        url = make_url(settings["DATABASE_URL"])
        url.get_dialect()
    except (ArgumentError, NoSuchModuleError):
        # The URL may carry a password: name the variable, never echo the value.
        raise ConfigError(
            "DATABASE_URL is not a database URL (e.g. postgresql+psycopg://user:pass@host/db)"
        ) from None
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return {}  # one in-memory database per connection: nothing to size
    sqlite = url.get_backend_name() == "sqlite"
    return {
        "pool_size": settings["DATABASE_POOL_SIZE"],
        # A SQLite connection is a file handle with no server limit behind it: let the pool grow
        # with the threads rather than make a request wait for one.
        "max_overflow": -1 if sqlite else settings["DATABASE_MAX_OVERFLOW"],
        "pool_timeout": 30,
        "pool_pre_ping": not sqlite,
    }


def register_logging(app: Flask) -> None:
    """One log handler and format, the secret filter, request ids and chat summary lines."""
    from .logs import init_app

    init_app(app)


def register_mirror_api(app: Flask) -> None:
    """MIRROR_API_PREFIX and ENABLE_MIRROR_API: where, and for whom, the OpenAI API answers.

    After the logging middleware, so the prefix is stripped before logs and metrics see a path;
    before the blueprints, so the gate runs before the CORS preflight answers."""
    from .mirror import init_app

    init_app(app)


def register_extensions(app: Flask) -> None:
    """Bind the database and migrations."""
    from . import models  # noqa: F401  (registers the tables with the metadata)
    from .extensions import db, migrate

    db.init_app(app)
    # A request's bookkeeping writes, made together as it ends (relay.defer_write).
    from .relay import write_deferred

    app.teardown_request(write_deferred)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))


def register_upstream(app: Flask) -> None:
    """The grok.com client and the model catalog."""
    from .grok.catalog import CatalogError
    from .upstream import init_upstream

    try:
        init_upstream(app)
    except CatalogError as exc:
        raise ConfigError(str(exc)) from None


def register_error_handlers(app: Flask) -> None:
    """One JSON error shape everywhere."""
    from .errors import register_error_handlers as register

    register(app)


def register_blueprints(app: Flask) -> None:
    """Attach the HTTP routes."""
    from .views import (
        admin,
        chat,
        docs,
        health,
        images,
        login,
        messages,
        metrics,
        responses,
        tokens,
        web,
    )

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(chat.bp)
    app.register_blueprint(responses.bp)
    app.register_blueprint(messages.bp)
    app.register_blueprint(images.bp)
    app.register_blueprint(login.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(tokens.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(admin.api)


def register_commands(app: Flask) -> None:
    """Ops commands for the `flask` CLI."""
    from . import commands

    commands.register(app)
