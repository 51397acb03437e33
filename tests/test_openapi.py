"""The OpenAPI document: in step with the routes, built from the validating schemas, served
at /openapi.json and readable at /docs with a vendored Redoc (no CDN)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_web_browser import browser as browser  # the fixture

from grokproxy.openapi import (
    OPERATIONS,
    UNDOCUMENTED_ENDPOINTS,
    documented_rules,
    openapi_path,
    undocumented,
)

REPO = Path(__file__).resolve().parent.parent
VENDOR = REPO / "grokproxy" / "static" / "vendor" / "redoc"


@pytest.fixture
def document(app):
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def operations_of(document) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }


def test_every_route_is_documented_and_every_documented_route_exists(app, document):
    routes = {
        (openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if not undocumented(rule.endpoint)
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routes == operations_of(document)
    # The exemptions are real routes of the browser apps, not a way to hide an API route.
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints >= UNDOCUMENTED_ENDPOINTS
    assert all(e == "static" or e.startswith("web.") for e in UNDOCUMENTED_ENDPOINTS)
    hidden = [rule.rule for rule in app.url_map.iter_rules() if undocumented(rule.endpoint)]
    assert hidden and not [r for r in hidden if r.startswith(("/api/", "/v1/"))]
    assert {endpoint for _, _, endpoint in documented_rules(app)} == set(OPERATIONS)


def test_a_route_added_without_documentation_fails_the_build(make_app):
    from grokproxy.openapi import build_spec

    app = make_app()
    app.add_url_rule("/api/new-thing", "tokens.new_thing", lambda: "", methods=["POST"])
    with pytest.raises(LookupError, match="/api/new-thing"):
        build_spec(app)


def test_the_document_is_openapi_3_1_with_the_api_the_readme_promises(document):
    assert document["openapi"] == "3.1.0"
    paths = document["paths"]
    for path in (
        "/v1/chat/completions",
        "/v1/models",
        "/v1/models/{model_id}",
        "/api/batch-add-grok-token",
        "/api/get-grok-list",
        "/api/delete-grok-token",
        "/api/login",
        "/api/login-v2",
        "/healthz",
        "/metrics",
    ):
        assert path in paths, path
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_request_bodies_come_from_the_marshmallow_schemas_the_routes_validate_with(document):
    schemas = document["components"]["schemas"]
    chat = schemas["ChatRequest"]
    assert set(chat["required"]) == {"model", "messages"}
    assert chat["properties"]["messages"]["minItems"] == 1
    delete = schemas["Delete"]["properties"]["email_md5_list"]
    assert delete["items"]["pattern"] == "^[0-9a-fA-F]{32}$"
    assert delete["maxItems"] == 1000
    page = document["paths"]["/api/get-grok-list"]["get"]["parameters"]
    assert {p["name"] for p in page} == {"page", "page_size"}
    # Every JSON error answer has the one error shape; the Anthropic Messages routes answer
    # Anthropic's own, as Anthropic's SDKs expect on them.
    error = schemas["Error"]
    assert error["required"] == ["error"]
    assert set(schemas["ErrorDetail"]["required"]) == {"message", "type", "code", "param"}
    assert set(schemas["AnthropicError"]["required"]) == {"type", "error"}
    for path, item in document["paths"].items():
        shape = "AnthropicError" if path.startswith("/v1/messages") else "Error"
        for operation in item.values():
            default = operation["responses"]["default"]["content"]["application/json"]
            assert default["schema"] == {"$ref": f"#/components/schemas/{shape}"}


def test_authenticated_operations_name_their_bearer(document):
    paths = document["paths"]
    assert paths["/v1/chat/completions"]["post"]["security"] == [{"api": []}]
    assert paths["/api/login"]["post"]["security"] == [{"admin": []}]
    assert "security" not in paths["/healthz"]["get"]


def test_the_document_never_reveals_the_secret_api_prefix(make_app):
    app = make_app(MIRROR_API_PREFIX="/s3cret-prefix")
    text = app.test_client().get("/openapi.json").get_data(as_text=True)
    assert "s3cret" not in text
    assert '"/v1/chat/completions"' in text


def test_docs_page_loads_the_vendored_redoc_and_nothing_from_another_origin(app):
    client = app.test_client()
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert scripts == ["/static/vendor/redoc/redoc.standalone.js"]
    assert 'spec-url="/openapi.json"' in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "http" not in policy
    bundle = client.get(scripts[0])
    assert bundle.status_code == 200
    assert len(bundle.get_data()) > 1_000_000
    bundle.close()


def test_the_vendored_redoc_carries_its_licence_and_pinned_version():
    assert "MIT License" in (VENDOR / "LICENSE").read_text()
    script = (REPO / "scripts" / "vendor-redoc.sh").read_text()
    [version] = re.findall(r"^VERSION=(\S+)$", script, re.M)
    assert f"redoc {version} " in (VENDOR / "VERSION").read_text()
    import hashlib

    [sha] = re.findall(r"^SHA256=(\S+)$", script, re.M)
    assert hashlib.sha256((VENDOR / "redoc.standalone.js").read_bytes()).hexdigest() == sha


@pytest.mark.browser
def test_docs_page_renders_the_operations_in_a_browser_without_leaving_the_origin(
    app, serve, browser
):
    url = serve(app)
    page = browser.new_page()
    elsewhere: list[str] = []
    refused: list[str] = []
    page.on(
        "request",
        lambda req: (
            None
            if req.url.startswith(url) or req.url.startswith(("data:", "blob:"))
            else elsewhere.append(req.url)
        ),
    )
    page.on(
        "console",
        lambda msg: refused.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith(url) else route.abort(),
    )
    page.goto(f"{url}/docs")
    page.get_by_text("/api/batch-add-grok-token").first.wait_for(timeout=30_000)
    text = page.inner_text("body")
    assert "/v1/chat/completions" in text and "/healthz" in text
    page.get_by_text("openai").first.click()
    page.get_by_text("Chat completion, streamed as server-sent events").first.wait_for(
        timeout=15_000
    )
    # Redoc's "API docs by Redocly" logo is an <img> on its CDN, hard-coded: the policy refuses
    # it (and hides it). Nothing else goes elsewhere: no fonts, no telemetry (turned off).
    logo = "https://cdn.redoc.ly/redoc/logo-mini"
    assert all(seen.startswith(logo) for seen in elsewhere), elsewhere
    assert all(logo in message for message in refused), refused
