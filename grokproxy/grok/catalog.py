"""The public model catalog: public model name -> what to send grok.com in each dialect."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .settings import DIALECTS

QUOTA_MODES = ("auto", "fast", "expert", "heavy")
DEEPSEARCH_PRESETS = ("", "default", "deeper")

# E2 (modelName + modelMode) pairs per quota mode, used when a file adds a model without saying.
_MODEL_MODE_FOR = {
    "auto": ("grok-3", "MODEL_MODE_AUTO"),
    "fast": ("grok-3", "MODEL_MODE_FAST"),
    "expert": ("grok-4", "MODEL_MODE_EXPERT"),
    "heavy": ("grok-4-heavy", "MODEL_MODE_HEAVY"),
}
_LEGACY_NAME_FOR = {"auto": "grok-3", "fast": "grok-3", "expert": "grok-4", "heavy": "grok-4"}


class CatalogError(ValueError):
    """GROK_MODELS_FILE could not be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One public model: its quota mode, behaviour and the upstream fields of each dialect."""

    name: str
    mode: str
    thinking: bool = False
    deepsearch: str = ""  # "" (none), "default" or "deeper"
    created: int = 1_740_000_000
    owned_by: str = "xai"
    upstream: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)

    def fields_for(self, dialect: str) -> dict[str, Any]:
        """The upstream body fields this model sets in `dialect` (a fresh, mutable copy)."""
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}")
        return json.loads(json.dumps(dict(self.upstream.get(dialect) or {})))


def _spec(
    name: str,
    mode: str,
    *,
    modes: dict[str, Any],
    model_mode: tuple[str, str],
    legacy: tuple[str, bool],
    thinking: bool = False,
    deepsearch: str = "",
    created: int,
) -> ModelSpec:
    upstream = {
        "gateway": {"model": mode},
        "modes": modes,
        "model-mode": {"modelName": model_mode[0], "modelMode": model_mode[1]},
        "legacy": {
            "modelName": legacy[0],
            "isReasoning": legacy[1],
            "deepsearchPreset": deepsearch,
        },
    }
    return ModelSpec(name, mode, thinking, deepsearch, created, "xai", _freeze(upstream))


def _freeze(upstream: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in upstream.items()})


# Release dates (unix seconds) of the families, shown as `created` in /v1/models.
_GROK2, _GROK3, _GROK4, _MODES = 1_723_075_200, 1_739_836_800, 1_752_192_000, 1_775_001_600

# Mappings follow docs/upstream.md §3.2: the gateway (E4) and E3 send only the mode (`model` of
# session.create, `modeId`; DeepSearch = expert + a workspace id), E2 sends modelName +
# modelMode, E1 sends modelName + isReasoning + deepsearchPreset.
DEFAULT_MODELS: tuple[ModelSpec, ...] = (
    _spec("grok-2", "fast", modes={"modeId": "fast"}, model_mode=("grok-3", "MODEL_MODE_FAST"),
          legacy=("grok-latest", False), created=_GROK2),
    _spec("grok-3", "fast", modes={"modeId": "fast"}, model_mode=("grok-3", "MODEL_MODE_FAST"),
          legacy=("grok-3", False), created=_GROK3),
    _spec("grok-3-thinking", "expert", modes={"modeId": "expert"},
          model_mode=("grok-3", "MODEL_MODE_GROK_3_THINKING"), legacy=("grok-3", True),
          thinking=True, created=_GROK3),
    _spec("grok-3-deepsearch", "expert", modes={"modeId": "expert"},
          model_mode=("grok-4", "MODEL_MODE_EXPERT"), legacy=("grok-3", False),
          thinking=True, deepsearch="default", created=_GROK3),
    _spec("grok-3-deepersearch", "expert", modes={"modeId": "expert"},
          model_mode=("grok-4", "MODEL_MODE_EXPERT"), legacy=("grok-3", False),
          thinking=True, deepsearch="deeper", created=_GROK3),
    _spec("grok-4", "expert", modes={"modeId": "expert"},
          model_mode=("grok-4", "MODEL_MODE_EXPERT"), legacy=("grok-4", False),
          thinking=True, created=_GROK4),
    _spec("grok-4-thinking", "expert", modes={"modeId": "expert"},
          model_mode=("grok-4", "MODEL_MODE_GROK_4_THINKING"), legacy=("grok-4", True),
          thinking=True, created=_GROK4),
    _spec("grok-auto", "auto", modes={"modeId": "auto"},
          model_mode=("grok-3", "MODEL_MODE_AUTO"), legacy=("grok-3", False), created=_MODES),
    _spec("grok-fast", "fast", modes={"modeId": "fast"},
          model_mode=("grok-3", "MODEL_MODE_FAST"), legacy=("grok-3", False), created=_MODES),
    _spec("grok-expert", "expert", modes={"modeId": "expert"},
          model_mode=("grok-4", "MODEL_MODE_EXPERT"), legacy=("grok-4", False),
          thinking=True, created=_MODES),
    _spec("grok-heavy", "heavy", modes={"modeId": "heavy"},
          model_mode=("grok-4-heavy", "MODEL_MODE_HEAVY"), legacy=("grok-4", False),
          thinking=True, created=_MODES),
)  # fmt: skip


class Catalog:
    """An ordered, read-only set of ModelSpecs keyed by public name."""

    def __init__(self, specs: Mapping[str, ModelSpec] | tuple[ModelSpec, ...]):
        items = specs.values() if isinstance(specs, Mapping) else specs
        self._specs: dict[str, ModelSpec] = {s.name: s for s in items}

    def get(self, name: str) -> ModelSpec | None:
        """The spec of a public model name, or None when unknown."""
        return self._specs.get(name)

    def names(self) -> list[str]:
        """Public model names in catalog order."""
        return list(self._specs)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs


_ENTRY_KEYS = {"mode", "thinking", "deepsearch", "created", "owned_by", "disabled", *DIALECTS}


def _entry_error(path: str, name: str, problem: str) -> CatalogError:
    return CatalogError(f"GROK_MODELS_FILE {path}: model {name!r}: {problem}")


def _apply_entry(path: str, name: str, entry: Any, base: ModelSpec | None) -> ModelSpec | None:
    """Merge one file entry over the default spec (or build a new one)."""
    if not isinstance(entry, Mapping):
        raise _entry_error(path, name, "must be a table/object")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        allowed = sorted(_ENTRY_KEYS)
        raise _entry_error(path, name, f"unknown keys {sorted(unknown)}; allowed {allowed}")
    if entry.get("disabled") is True:
        return None
    mode = entry.get("mode", base.mode if base else None)
    if mode not in QUOTA_MODES:
        raise _entry_error(path, name, f"mode must be one of {list(QUOTA_MODES)}, got {mode!r}")
    thinking = entry.get("thinking", base.thinking if base else mode in ("expert", "heavy"))
    if not isinstance(thinking, bool):
        raise _entry_error(path, name, "thinking must be true or false")
    deepsearch = entry.get("deepsearch", base.deepsearch if base else "")
    if deepsearch is True:
        deepsearch = "default"
    elif deepsearch is False or deepsearch is None:
        deepsearch = ""
    if deepsearch not in DEEPSEARCH_PRESETS:
        raise _entry_error(path, name, f"deepsearch must be one of {list(DEEPSEARCH_PRESETS)}")
    created = entry.get("created", base.created if base else _MODES)
    if not isinstance(created, int) or isinstance(created, bool):
        raise _entry_error(path, name, "created must be an integer (unix seconds)")
    owned_by = entry.get("owned_by", base.owned_by if base else "xai")
    if not isinstance(owned_by, str) or not owned_by:
        raise _entry_error(path, name, "owned_by must be a non-empty string")

    upstream: dict[str, dict[str, Any]] = {}
    for dialect in DIALECTS:
        fields = entry.get(dialect)
        if fields is not None and not isinstance(fields, Mapping):
            raise _entry_error(path, name, f"{dialect} must be a table/object of upstream fields")
        if fields is not None:
            upstream[dialect] = dict(fields)  # an explicit table replaces the default mapping
        elif base is not None and (mode == base.mode or dialect not in ("modes", "gateway")):
            upstream[dialect] = dict(base.upstream.get(dialect) or {})
        else:
            upstream[dialect] = _derived_fields(dialect, mode, thinking, deepsearch)
    if "model" not in upstream["gateway"]:
        raise _entry_error(path, name, "gateway needs a model (the session.create model)")
    if "modeId" not in upstream["modes"]:
        raise _entry_error(path, name, "modes needs a modeId")
    if "modelName" not in upstream["model-mode"] or "modelName" not in upstream["legacy"]:
        raise _entry_error(path, name, "model-mode and legacy need a modelName")
    return ModelSpec(name, mode, thinking, deepsearch, created, owned_by, _freeze(upstream))


def _derived_fields(dialect: str, mode: str, thinking: bool, deepsearch: str) -> dict[str, Any]:
    if dialect == "gateway":
        return {"model": mode}
    if dialect == "modes":
        return {"modeId": mode}
    if dialect == "model-mode":
        model_name, model_mode = _MODEL_MODE_FOR[mode]
        return {"modelName": model_name, "modelMode": model_mode}
    return {
        "modelName": _LEGACY_NAME_FOR[mode],
        "isReasoning": thinking and mode != "heavy",
        "deepsearchPreset": deepsearch,
    }


def _read_models_file(path: str) -> Mapping[str, Any]:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise CatalogError(f"GROK_MODELS_FILE {path}: cannot read: {exc.strerror}") from exc
    try:
        if p.suffix.lower() == ".toml":
            data: Any = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if p.suffix.lower() == ".toml" else "JSON"
        raise CatalogError(f"GROK_MODELS_FILE {path}: invalid {kind}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise CatalogError(f"GROK_MODELS_FILE {path}: top level must be an object/table")
    # Both {"models": {...}} and a bare {"name": {...}} map are accepted.
    models = data.get("models", data)
    if not isinstance(models, Mapping):
        raise CatalogError(f"GROK_MODELS_FILE {path}: 'models' must be an object/table")
    return models


def load_catalog(path: str | None) -> Catalog:
    """The default catalog, with GROK_MODELS_FILE (JSON or TOML) entries merged over it."""
    specs = {s.name: s for s in DEFAULT_MODELS}
    if not path:
        return Catalog(specs)
    for name, entry in _read_models_file(path).items():
        if not isinstance(name, str) or not name.strip():
            raise CatalogError(f"GROK_MODELS_FILE {path}: model names must be non-empty strings")
        spec = _apply_entry(path, name, entry, specs.get(name))
        if spec is None:
            specs.pop(name, None)
        else:
            specs[name] = spec
    return Catalog(specs)
