"""Schema-driven fuzzing: schemathesis calls every operation of /openapi.json on a live grokproxy
(the emulator playing grok.com) with examples generated from the document.

Fails on any 5xx, any answer that does not match the document (status, content type, body
schema), and any error answer that is not the one JSON error shape. Examples per operation are
bounded (SCHEMATHESIS_MAX_EXAMPLES, default 12) so the run stays well inside CI's time limit.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis import checks as st_checks
from werkzeug.serving import make_server

from grokproxy import create_app
from grokproxy.dbupgrade import upgrade_database
from grokproxy.openapi import document

from conftest import ADMIN_PASSWORD, BASE_SETTINGS, POOL_KEY, postgres_url

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "12"))
POOL_TOKENS = ("emu-schemathesis-pool-0001", "emu-schemathesis-pool-0002")


@pytest.fixture(scope="module")
def live_api(emulator, tmp_path_factory) -> Iterator[str]:
    """A live grokproxy on a fresh database with two pool accounts; yields its base URL."""
    from grokproxy.extensions import db
    from grokproxy.models import Account

    from conftest import email_for, user_id_for

    emulator.reset()
    folder = tmp_path_factory.mktemp("schemathesis")
    url = postgres_url() or f"sqlite:///{folder}/api.sqlite"
    if postgres_url():
        pytest.skip("runs on SQLite only: the document and the views are database-agnostic")
    app = create_app(
        {
            **BASE_SETTINGS,
            "DATABASE_URL": url,
            "GROK_BASE_URL": emulator.base_url,
            "GROK_ASSETS_URL": emulator.assets_url,
            "GROK_DIALECT": "modes",
            "METRICS_TOKEN": "schemathesis-metrics-token",
        }
    )
    upgrade_database(app)
    box = app.extensions["grokproxy.secrets"]
    with app.app_context():
        for token in POOL_TOKENS:
            db.session.add(Account.for_token(box, token, email_for(token), user_id_for(token)))
        db.session.commit()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="module")
def api_schema(live_api, request):
    """The document as the live server serves it; reports the examples run at the end."""
    started = time.monotonic()
    yield schemathesis.openapi.from_url(f"{live_api}/openapi.json")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(
            f"\nschemathesis: {RUN['examples']} examples over {len(OPERATIONS)} operations "
            f"in {time.monotonic() - started:.1f} s (at most {MAX_EXAMPLES} per operation "
            "and mode)"
        )


def _documented_operations() -> list[tuple[str, str]]:
    """(method, path) of every operation, from the document the app factory builds offline."""
    app = create_app({**BASE_SETTINGS, "DATABASE_URL": "sqlite://"})
    paths = document(app)["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


OPERATIONS = _documented_operations()
RUN: dict[str, int] = {"examples": 0}


CREDENTIALS = {
    "api": f"Bearer {POOL_KEY}",
    "admin": f"Bearer {ADMIN_PASSWORD}",
    "metrics": "Bearer schemathesis-metrics-token",
}


def _credential(case) -> dict[str, str]:
    security = case.operation.definition.raw.get("security") or []
    for requirement in security:
        for name in requirement:
            return {"Authorization": CREDENTIALS[name]}
    return {}


@schemathesis.check
def one_error_shape(ctx, response, case) -> bool | None:
    """Every 4xx/5xx answer is JSON `{"error": {"message", "type", "code", "param"}}`; on the
    Anthropic Messages routes it is Anthropic's `{"type": "error", "error": {type, message}}`."""
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), (
        f"{response.status_code} answered as {content_type!r}, not the JSON error shape"
    )
    body: Any = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"{response.status_code} without an `error` object: {body!r}"
    assert isinstance(error.get("message"), str) and isinstance(error.get("type"), str)
    if case.operation.path.startswith("/v1/messages"):
        assert body.get("type") == "error", body
    else:
        assert {"message", "type", "code", "param"} <= set(error), error
    return None


CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
    one_error_shape,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_documented_operation_answers_as_documented(api_schema, method, path, mode):
    # Positive examples (valid by the document) and negative ones (invalid): whichever, the
    # answer is documented, never a 5xx, and every error is the one error shape.
    operation = api_schema[path][method]
    if mode is GenerationMode.NEGATIVE and not _can_be_invalid(operation):
        pytest.skip("nothing in this operation's input can be made invalid")

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        RUN["examples"] += 1
        case.call_and_validate(headers=_credential(case), checks=CHECKS, timeout=30)

    run()


def _can_be_invalid(operation) -> bool:
    # A string path parameter accepts any value: only bodies and query values can be invalid.
    raw = operation.definition.raw
    query = [p for p in raw.get("parameters", []) if p.get("in") == "query"]
    return bool(query or raw.get("requestBody"))
