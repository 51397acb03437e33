"""Chat-body validation for the three payload dialects grok.com accepted over time.

`modes` (E3, 2026-03 →): `modeId` in auto/fast/expert/heavy/grok-420-computer-use-sa; a body
that still carries `modelName` or `modelMode` is rejected. `model-mode` (E2): a known `modelMode`
(and, when present, a known `modelName`; the 2026-02/03 browser captures send `modelMode`
without `modelName`, so a missing `modelName` is accepted); `modeId` is rejected. `legacy` (E1):
`modelName` in grok-latest/grok-3/grok-4 with optional `isReasoning` and `deepsearchPreset`;
`modelMode`/`modeId` are rejected. `gateway` (E4, 2026-08 →): chat moved to the `/ws/mgw/`
WebSocket; HTTP chat bodies are read as in `modes` but refused unless they generate an image.

What grok.com answers to a malformed body is not captured anywhere; the emulator answers what
a gRPC-transcoded API plausibly does: HTTP 400 with `{"error":{"code":3,"message":...,
"details":[]}}` (code 3 = INVALID_ARGUMENT), one message naming the offending field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DIALECTS = ("modes", "model-mode", "legacy", "gateway")

# The modes the E4 gateway accepts in `session.create` (`session.model`).
GATEWAY_MODELS = ("auto", "fast", "expert", "heavy")

MODE_IDS = ("auto", "fast", "expert", "heavy", "grok-420-computer-use-sa")

# modelMode → the quota mode it is counted against.
MODEL_MODES: dict[str, str] = {
    "MODEL_MODE_AUTO": "auto",
    "MODEL_MODE_FAST": "fast",
    "MODEL_MODE_EXPERT": "expert",
    "MODEL_MODE_HEAVY": "heavy",
    "MODEL_MODE_GROK_4_MINI_THINKING": "fast",
    "MODEL_MODE_GROK_4_1_MINI_THINKING": "fast",
    "MODEL_MODE_GROK_4_1_THINKING": "expert",
    "MODEL_MODE_GROK_420": "expert",
    "MODEL_MODE_GROK_3": "fast",
    "MODEL_MODE_GROK_3_MINI_THINKING": "fast",
    "MODEL_MODE_GROK_3_THINKING": "expert",
    "MODEL_MODE_GROK_4": "auto",
    "MODEL_MODE_GROK_4_THINKING": "expert",
}

# modelName (chat body or rate-limits body) → quota mode; mode names map to themselves.
MODEL_NAMES: dict[str, str] = {
    "grok-latest": "fast",
    "grok-3": "fast",
    "grok-4": "expert",
    "grok-4-auto": "auto",
    "grok-4-heavy": "heavy",
    "grok-4-mini-thinking-tahoe": "fast",
    "grok-4-1-thinking-1129": "expert",
    "grok-4-1-non-thinking-w-tool": "fast",
    "grok-420": "expert",
    **{m: m for m in MODE_IDS},
}

LEGACY_MODEL_NAMES = ("grok-latest", "grok-3", "grok-4")
DEEPSEARCH_PRESETS = ("", "default", "deeper")

# quota mode → (model reported to the client, requestMetadata.mode, metadata mode label, effort)
MODE_PROFILE: dict[str, tuple[str, str, str, str]] = {
    "auto": ("grok-4-auto", "MODEL_MODE_AUTO", "auto", "LOW"),
    "fast": ("grok-4-1-non-thinking-w-tool", "MODEL_MODE_FAST", "fast", "LOW"),
    "expert": ("grok-4", "MODEL_MODE_EXPERT", "expert", "HIGH"),
    "heavy": ("grok-4-heavy", "MODEL_MODE_HEAVY", "heavy", "HIGH"),
    "grok-420-computer-use-sa": (
        "grok-420-computer-use-sa",
        "MODEL_MODE_GROK_420",
        "grok-420-computer-use-sa",
        "HIGH",
    ),
}

_IMAGE_PROMPT = re.compile(r"\bdraw\b|image of|picture of|generate an image|画", re.IGNORECASE)


def wants_image(message: str) -> bool:
    """Whether a prompt asks for an image (the rule of both the HTTP chat and the gateway)."""
    return bool(_IMAGE_PROMPT.search(message))


def image_count_for(count: Any) -> int:
    """Images per reply: the asked count clamped to 1..4, 2 when absent or invalid."""
    return min(max(count if isinstance(count, int) and count > 0 else 2, 1), 4)


class InvalidBody(ValueError):
    """The chat body is not acceptable in the active dialect."""


@dataclass
class ChatRequest:
    """What the emulator needs to know about a validated chat body."""

    message: str
    quota_mode: str
    request_model: str
    request_mode: str
    mode_label: str
    effort: str
    thinking: bool
    deepsearch: bool
    deepsearch_preset: str
    image_count: int
    temporary: bool
    file_attachments: list[str] = field(default_factory=list)
    parent_response_id: str | None = None


def _require_type(body: dict[str, Any], key: str, kind: type, label: str) -> None:
    if key in body and body[key] is not None and not isinstance(body[key], kind):
        raise InvalidBody(f"invalid value for field '{key}': expected {label}")


def validate_chat(body: Any, dialect: str, *, continuation: bool = False) -> ChatRequest:
    """Check a chat body against a dialect and extract what the reply depends on."""
    if not isinstance(body, dict):
        raise InvalidBody("request body must be a JSON object")
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        raise InvalidBody("field 'message' must be a non-empty string")
    for key in ("temporary", "isReasoning", "enableImageGeneration", "disableSearch"):
        _require_type(body, key, bool, "a boolean")
    for key in ("fileAttachments", "imageAttachments", "workspaceIds"):
        _require_type(body, key, list, "a list")
    _require_type(body, "toolOverrides", dict, "an object")
    attachments = body.get("fileAttachments") or []
    if not all(isinstance(a, str) and a for a in attachments):
        raise InvalidBody("field 'fileAttachments' must list fileMetadataId strings")
    preset = body.get("deepsearchPreset", "")
    if preset is None:
        preset = ""
    if preset not in DEEPSEARCH_PRESETS:
        raise InvalidBody(f"unknown deepsearchPreset '{preset}'")

    model_name, model_mode, mode_id = (
        body.get("modelName"),
        body.get("modelMode"),
        body.get("modeId"),
    )
    thinking = False
    if dialect in ("modes", "gateway"):
        if model_name is not None or model_mode is not None:
            raise InvalidBody("modelName and modelMode are no longer supported; use modeId")
        if mode_id not in MODE_IDS:
            raise InvalidBody(f"unknown or missing modeId '{mode_id}'")
        quota_mode = mode_id
        model, req_mode, label, effort = MODE_PROFILE[quota_mode]
        thinking = mode_id in ("expert", "heavy")
    elif dialect == "model-mode":
        if mode_id is not None:
            raise InvalidBody("unknown field 'modeId'")
        if model_mode not in MODEL_MODES:
            raise InvalidBody(f"unknown or missing modelMode '{model_mode}'")
        if model_name is not None and model_name not in MODEL_NAMES:
            raise InvalidBody(f"unknown modelName '{model_name}'")
        quota_mode = MODEL_MODES[model_mode]
        model, _, label, effort = MODE_PROFILE[quota_mode]
        req_mode = model_mode
        model = model_name or model
        thinking = model_mode in ("MODEL_MODE_EXPERT", "MODEL_MODE_HEAVY") or model_mode.endswith(
            "_THINKING"
        )
    elif dialect == "legacy":
        if model_mode is not None or mode_id is not None:
            raise InvalidBody("unknown field 'modelMode'/'modeId'")
        if model_name not in LEGACY_MODEL_NAMES:
            raise InvalidBody(f"unknown or missing modelName '{model_name}'")
        thinking = bool(body.get("isReasoning"))
        quota_mode = "expert" if thinking or preset else MODEL_NAMES[model_name]
        model, req_mode, label, effort = model_name, "", model_name, "HIGH" if thinking else "LOW"
    else:
        raise ValueError(f"unknown dialect {dialect!r}")

    deepsearch = bool(body.get("workspaceIds")) or preset in ("default", "deeper")
    image_count = 0
    if body.get("enableImageGeneration") and wants_image(message):
        image_count = image_count_for(body.get("imageGenerationCount"))

    parent = None
    if continuation:
        parent = body.get("parentResponseId")
        if not isinstance(parent, str) or not parent:
            raise InvalidBody("field 'parentResponseId' is required to continue a conversation")
    return ChatRequest(
        message=message,
        quota_mode=quota_mode,
        request_model=model,
        request_mode=req_mode,
        mode_label=label,
        effort="HIGH" if thinking or deepsearch else effort,
        thinking=thinking or deepsearch,  # DeepSearch is an agentic mode: it always thinks first
        deepsearch=deepsearch,
        deepsearch_preset=preset or ("default" if deepsearch else ""),
        image_count=image_count,
        temporary=bool(body.get("temporary", False)),
        file_attachments=list(attachments),
        parent_response_id=parent,
    )


def quota_mode_for_rate_limits(body: Any) -> tuple[str, bool]:
    """Quota mode asked for by a `/rest/rate-limits` body, and whether it is the late-2025 form."""
    if not isinstance(body, dict) or not isinstance(body.get("modelName"), str):
        raise InvalidBody("field 'modelName' is required")
    name = body["modelName"]
    if name not in MODEL_NAMES:
        raise InvalidBody(f"unknown modelName '{name}'")
    kind = body.get("requestKind")
    late = kind is not None
    if late and kind not in ("DEFAULT", "REASONING", "DEEPSEARCH", "DEEPERSEARCH"):
        raise InvalidBody(f"unknown requestKind '{kind}'")
    if kind in ("REASONING", "DEEPSEARCH", "DEEPERSEARCH"):
        return "expert", late
    return MODEL_NAMES[name], late
