"""`GET /openapi.json` (grokproxy's own API) and `GET /docs` (the same, readable, via Redoc)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template

from ..openapi import document

bp = Blueprint("docs", __name__)

# Redoc styles itself inline and renders in a worker; everything else stays on this origin.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 document of grokproxy's routes."""
    return jsonify(document(current_app._get_current_object()))


@bp.get("/docs")
def docs_page():
    """The OpenAPI document rendered by the vendored Redoc (no CDN)."""
    response = Response(render_template("docs.html"), mimetype="text/html")
    response.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
