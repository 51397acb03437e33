"""`GET /healthz`: the process answers and the database is reachable."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    """200 with the database status, or 503 when the database does not answer."""
    dialect = db.engine.dialect.name
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        db.session.rollback()
        # The class name only: driver messages can carry host names or credentials.
        log.warning("health check: database unreachable (%s)", type(exc).__name__)
        return jsonify(
            {
                "status": "unavailable",
                "database": {"ok": False, "dialect": dialect, "error": type(exc).__name__},
                "error": {
                    "message": "database unreachable",
                    "type": "service_unavailable",
                    "code": "database_unavailable",
                    "param": None,
                },
            }
        ), 503
    return jsonify({"status": "ok", "database": {"ok": True, "dialect": dialect}})
