"""The model catalog, GROK_MODELS_FILE overrides, and chat bodies per dialect."""

from __future__ import annotations

import json
import uuid

import pytest

from grokproxy.grok.catalog import DEFAULT_MODELS, CatalogError, load_catalog
from grokproxy.grok.payload import build_chat_body

from conftest import sample_text

EXPECTED = [
    "grok-2", "grok-3", "grok-3-thinking", "grok-3-deepsearch", "grok-3-deepersearch",
    "grok-4", "grok-4-thinking", "grok-auto", "grok-fast", "grok-expert", "grok-heavy",
]  # fmt: skip


def sample_json(name: str) -> dict:
    return json.loads(sample_text(name))


def test_default_catalog_has_every_public_model_in_order():
    catalog = load_catalog(None)
    assert catalog.names() == EXPECTED
    assert [s.name for s in catalog] == EXPECTED
    assert catalog.get("nope") is None
    for spec in catalog:
        assert spec.mode in ("auto", "fast", "expert", "heavy")
        assert spec.owned_by == "xai" and spec.created > 1_700_000_000
    assert catalog.get("grok-3-deepersearch").deepsearch == "deeper"
    assert catalog.get("grok-heavy").mode == "heavy"
    assert catalog.get("grok-3-thinking").thinking is True
    assert catalog.get("grok-fast").thinking is False


@pytest.mark.parametrize("spec", DEFAULT_MODELS, ids=lambda s: s.name)
def test_gateway_dialect_creates_the_session_with_the_mode(spec):
    assert spec.fields_for("gateway") == {"model": spec.mode}
    assert spec.mode in ("auto", "fast", "expert", "heavy")


def test_grok_4_thinking_is_an_expert_thinking_model():
    spec = load_catalog(None).get("grok-4-thinking")
    assert (spec.mode, spec.thinking, spec.deepsearch) == ("expert", True, "")
    assert spec.fields_for("model-mode")["modelMode"] == "MODEL_MODE_GROK_4_THINKING"


@pytest.mark.parametrize("spec", DEFAULT_MODELS, ids=lambda s: s.name)
def test_modes_dialect_sends_mode_id_only(spec):
    body = build_chat_body(spec, "modes", "hi", temporary=True)
    assert body["modeId"] == spec.mode
    assert "modelName" not in body and "modelMode" not in body
    assert ("workspaceIds" in body) == bool(spec.deepsearch)
    if spec.deepsearch:
        uuid.UUID(body["workspaceIds"][0])


@pytest.mark.parametrize("spec", DEFAULT_MODELS, ids=lambda s: s.name)
def test_model_mode_dialect_sends_model_name_and_mode(spec):
    body = build_chat_body(spec, "model-mode", "hi", temporary=False)
    assert body["modelName"].startswith("grok-")
    assert body["modelMode"].startswith("MODEL_MODE_")
    assert "modeId" not in body
    assert ("workspaceIds" in body) == bool(spec.deepsearch)


@pytest.mark.parametrize("spec", DEFAULT_MODELS, ids=lambda s: s.name)
def test_legacy_dialect_sends_reasoning_and_deepsearch_flags(spec):
    body = build_chat_body(spec, "legacy", "hi", temporary=False)
    assert body["modelName"] in ("grok-latest", "grok-3", "grok-4")
    assert isinstance(body["isReasoning"], bool)
    assert body["deepsearchPreset"] == spec.deepsearch
    assert "modelMode" not in body and "modeId" not in body and "workspaceIds" not in body


def test_bodies_have_the_shape_of_the_real_captures():
    catalog = load_catalog(None)
    capture = sample_json("real-capture-2026-03-08-request-body.json")
    deepsearch = sample_json("deepsearch-request-body-2026-02.json")
    body = build_chat_body(catalog.get("grok-auto"), "model-mode", "测试精简", temporary=True)
    assert body["modelMode"] == capture["modelMode"] == "MODEL_MODE_AUTO"
    assert set(capture) - {"enable420"} <= set(body)
    assert body["message"] == "测试精简" and body["temporary"] is True
    ds = build_chat_body(catalog.get("grok-3-deepsearch"), "model-mode", "q", temporary=False)
    assert set(deepsearch) <= set(ds)
    assert ds["modelMode"] == deepsearch["modelMode"] == "MODEL_MODE_EXPERT"
    assert ds["sendFinalMetadata"] is True


def test_attachments_and_continuation_parent():
    spec = load_catalog(None).get("grok-3")
    body = build_chat_body(spec, "modes", "m", temporary=True, file_ids=["f1", "f2"],
                           parent_response_id="resp-1")  # fmt: skip
    assert body["fileAttachments"] == ["f1", "f2"]
    assert body["parentResponseId"] == "resp-1"
    assert "parentResponseId" not in build_chat_body(spec, "modes", "m", temporary=True)


def test_unknown_dialect_is_refused():
    with pytest.raises(ValueError):
        build_chat_body(DEFAULT_MODELS[0], "grpc", "m", temporary=True)


def test_json_models_file_overrides_and_adds(tmp_path):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": {
        "grok-3": {"modes": {"modeId": "auto"}, "owned_by": "me"},
        "grok-4.3": {"mode": "expert", "modes": {"modeId": "grok-420-computer-use-sa"}},
        "grok-2": {"disabled": True},
    }}))  # fmt: skip
    catalog = load_catalog(str(path))
    assert "grok-2" not in catalog
    assert catalog.get("grok-3").owned_by == "me"
    assert build_chat_body(catalog.get("grok-3"), "modes", "x", temporary=True)["modeId"] == "auto"
    added = catalog.get("grok-4.3")
    assert catalog.names()[-1] == "grok-4.3"
    assert added.thinking is True
    assert build_chat_body(added, "modes", "x", temporary=True)["modeId"] == (
        "grok-420-computer-use-sa"
    )
    legacy = build_chat_body(added, "legacy", "x", temporary=True)
    assert legacy["modelName"] == "grok-4"
    mm = build_chat_body(added, "model-mode", "x", temporary=True)
    assert mm["modelMode"] == "MODEL_MODE_EXPERT"


def test_toml_models_file_is_read(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(
        '[models."grok-mini"]\nmode = "fast"\ncreated = 1800000000\n'
        '[models."grok-mini".model-mode]\nmodelName = "grok-4-mini-thinking-tahoe"\n'
        'modelMode = "MODEL_MODE_GROK_4_MINI_THINKING"\n'
    )
    spec = load_catalog(str(path)).get("grok-mini")
    assert spec.created == 1_800_000_000
    body = build_chat_body(spec, "model-mode", "x", temporary=True)
    assert body["modelName"] == "grok-4-mini-thinking-tahoe"


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("bad.json", "{not json", "invalid JSON"),
        ("bad.toml", "models = [", "invalid TOML"),
        ("list.json", "[1, 2]", "top level"),
        ("mode.json", '{"x": {"mode": "turbo"}}', "mode must be one of"),
        ("keys.json", '{"grok-3": {"modelname": "typo"}}', "unknown keys"),
        ("types.json", '{"grok-3": {"thinking": "yes"}}', "thinking"),
    ],
)
def test_bad_models_file_raises_a_clear_error(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CatalogError) as info:
        load_catalog(str(path))
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_missing_models_file_names_the_file():
    with pytest.raises(CatalogError, match=r"/nonexistent/models\.json"):
        load_catalog("/nonexistent/models.json")
