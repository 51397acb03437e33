"""The chat request body grok.com expects, per dialect (docs/upstream.md §3)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from .catalog import ModelSpec
from .settings import HTTP_DIALECTS

# A plausible desktop browser window; the 2026 browser captures always carry this block.
_DEVICE_ENV = {
    "darkModeEnabled": False,
    "devicePixelRatio": 1,
    "screenWidth": 1920,
    "screenHeight": 1080,
    "viewportWidth": 1920,
    "viewportHeight": 947,
}


def build_chat_body(
    spec: ModelSpec,
    dialect: str,
    message: str,
    *,
    temporary: bool,
    file_ids: Sequence[str] = (),
    parent_response_id: str | None = None,
) -> dict[str, Any]:
    """The JSON body of conversations/new or /responses for `spec` in `dialect`."""
    if dialect not in HTTP_DIALECTS:
        raise ValueError(f"not an HTTP dialect: {dialect!r}; expected one of {HTTP_DIALECTS}")
    body: dict[str, Any] = {
        "temporary": bool(temporary),
        "message": message,
        "fileAttachments": list(file_ids),
        "imageAttachments": [],
        "disableSearch": False,
        "enableImageGeneration": True,
        "returnImageBytes": False,
        "returnRawGrokInXaiRequest": False,
        "enableImageStreaming": True,
        "imageGenerationCount": 2,
        "forceConcise": False,
        "toolOverrides": {},
        "enableSideBySide": True,
        "sendFinalMetadata": True,
        "disableTextFollowUps": True,  # follow-up suggestions are noise for an API client
        "responseMetadata": {},
        "disableMemory": bool(temporary),
        "forceSideBySide": False,
        "isAsyncChat": False,
        "disableSelfHarmShortCircuit": False,
        "deviceEnvInfo": dict(_DEVICE_ENV),
    }
    fields = spec.fields_for(dialect)
    if dialect == "modes":
        # E3: the mode alone picks the model; modelName/modelMode must be absent.
        fields.pop("modelName", None)
        fields.pop("modelMode", None)
    elif dialect == "model-mode":
        body["isReasoning"] = False  # E2 ignores it, but the browser still sends it
    else:
        fields.setdefault("isReasoning", spec.thinking)
        fields.setdefault("deepsearchPreset", spec.deepsearch)
    if spec.deepsearch and dialect != "legacy" and "workspaceIds" not in fields:
        # After E1 DeepSearch is selected by a workspace id (docs/upstream.md §3.2); a fresh id per
        # request is what proxies without the account's feature flags send.
        fields["workspaceIds"] = [str(uuid.uuid4())]
    body.update(fields)
    if parent_response_id:
        body["parentResponseId"] = parent_response_id
    return body
