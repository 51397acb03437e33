"""The process's grok.com client and model catalog, made once per app from its settings."""

from __future__ import annotations

from flask import Flask, current_app

from .grok.catalog import Catalog, load_catalog
from .grok.client import GrokClient
from .grok.settings import GrokSettings


def init_upstream(app: Flask) -> None:
    """Load the catalog (a bad GROK_MODELS_FILE stops the start) and build the grok client."""
    settings = GrokSettings.from_mapping(app.config)
    app.extensions["grokproxy.catalog"] = load_catalog(settings.models_file)
    app.extensions["grokproxy.grok"] = GrokClient(settings)


def grok_client() -> GrokClient:
    """The grok.com client of the current app."""
    return current_app.extensions["grokproxy.grok"]


def model_catalog() -> Catalog:
    """The public model catalog of the current app."""
    return current_app.extensions["grokproxy.catalog"]
