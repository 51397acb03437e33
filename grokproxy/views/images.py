"""`GET /images/<signed>`: generated images, fetched from grok.com with the owning account."""

from __future__ import annotations

from flask import Blueprint, Response

from ..images import open_image

bp = Blueprint("images", __name__)


@bp.get("/images/<signed>")
def image(signed: str):
    """Stream one generated image; the link itself is the permission (signed by SECRET_KEY)."""
    asset = open_image(signed)

    def body():
        try:
            yield from asset.chunks
        finally:
            asset.close()

    response = Response(body(), mimetype=asset.content_type or "image/png")
    if asset.content_length is not None:
        response.headers["Content-Length"] = str(asset.content_length)
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response
