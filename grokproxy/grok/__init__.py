"""The grok.com adapter: the one place that knows grok.com's wire format.

settings (GrokSettings) -> catalog (ModelSpec per public model) -> payload (chat body per
dialect) -> headers/transport -> client (GrokClient) -> frames (typed events, GrokErrors).
It never imports Flask.
"""

from .catalog import Catalog, ModelSpec, load_catalog
from .client import GrokClient, UpstreamReply
from .payload import build_chat_body
from .settings import GrokSettings

__all__ = [
    "Catalog",
    "GrokClient",
    "GrokSettings",
    "ModelSpec",
    "UpstreamReply",
    "build_chat_body",
    "load_catalog",
]
