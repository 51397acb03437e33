"""`GET /images/<signed>`: generated images, fetched from grok.com with the owning account."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from itsdangerous import BadSignature

from ..errors import NotFound, UpstreamFailed
from ..extensions import db
from ..grok import errors as grok_errors
from ..models import Account
from ..upstream import grok_client
from .chat import image_signer

bp = Blueprint("images", __name__)


@bp.get("/images/<signed>")
def image(signed: str):
    """Stream one generated image; the link itself is the permission (signed by SECRET_KEY)."""
    try:
        claims = image_signer().loads(signed)
    except BadSignature:
        raise NotFound("no such image") from None
    box = current_app.extensions["grokproxy.secrets"]
    if "a" in claims:
        account = db.session.get(Account, claims["a"])
        if account is None:
            raise NotFound("the account that generated this image was removed")
        token = box.decrypt(account.token_encrypted)
    else:
        token = box.decrypt(claims["t"])
    db.session.remove()  # nothing more to read: release the connection before streaming
    try:
        asset = grok_client().fetch_asset(token, claims["p"])
    except ValueError:
        raise NotFound("no such image") from None
    except grok_errors.GrokError as exc:
        raise UpstreamFailed(f"grok.com did not deliver the image: {exc.kind}") from None
    if asset.status == 404:
        asset.close()
        raise NotFound("grok.com no longer has this image")
    if asset.status >= 400:
        asset.close()
        raise UpstreamFailed(f"grok.com answered {asset.status} for the image")

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
