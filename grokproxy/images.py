"""Generated images: the signed links grokproxy hands out, and fetching them from grok.com.

A link names the image's path on grok.com's assets host and who may fetch it (the pool account
by id, or a raw-SSO caller's token, encrypted); SECRET_KEY signs it, so the link itself is the
permission and grokproxy serves only links it made.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

from .errors import NotFound, UpstreamFailed
from .extensions import db
from .grok import errors as grok_errors
from .grok.client import Asset
from .models import Account
from .upstream import grok_client


def image_signer() -> URLSafeSerializer:
    """Signs image links so only links grokproxy made are served."""
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="grokproxy-image")


def image_url_maker(prefix: str, account_id: int | None, token: str) -> Callable[[str], str]:
    """`path -> prefix + signed link` for the images of one reply (made in the request)."""
    signer = image_signer()
    box = current_app.extensions["grokproxy.secrets"]
    owner: dict = {}

    def image_url(path: str) -> str:
        if not owner:
            # The account fetches its own image; a raw-SSO caller's token travels encrypted in
            # the link. Made on first use: most replies have no image.
            owner.update({"a": account_id} if account_id is not None else {"t": box.encrypt(token)})
        return prefix + signer.dumps({**owner, "p": path})

    return image_url


def open_image(signed: str) -> Asset:
    """The image a signed link names, streaming from grok.com; NotFound / UpstreamFailed else."""
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
    return asset
