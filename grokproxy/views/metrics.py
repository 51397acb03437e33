"""`GET /metrics`: Prometheus text format, summed over the worker processes."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from .. import metrics
from ..auth import bearer_token
from ..crypto import secrets_equal
from ..errors import Unauthorized

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape():
    """Every metric; `Bearer METRICS_TOKEN` required when METRICS_TOKEN is set."""
    expected = current_app.config.get("METRICS_TOKEN")
    if expected and not secrets_equal(bearer_token(), expected):
        raise Unauthorized(
            "/metrics needs Authorization: Bearer <METRICS_TOKEN>", code="invalid_metrics_token"
        )
    body, content_type = metrics.exposition()
    response = Response(body, content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response
