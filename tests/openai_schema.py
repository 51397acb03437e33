"""OpenAI's published response schemas (vendored in tests/fixtures/openai/) as validators."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).resolve().parent / "fixtures" / "openai" / "chat_completion_schemas.json"


@cache
def _validator(name: str) -> Draft202012Validator:
    document = json.loads(SCHEMAS.read_text(encoding="utf-8"))
    schema = {"$defs": document["$defs"], "$ref": f"#/$defs/{name}"}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(obj: dict[str, Any], stream: bool) -> list[str]:
    """Why `obj` is not a CreateChatCompletion(Stream)Response; empty when it is one."""
    name = "CreateChatCompletionStreamResponse" if stream else "CreateChatCompletionResponse"
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(name).iter_errors(obj)
    ]


def assert_valid(obj: dict[str, Any], stream: bool) -> None:
    """Fail with every schema error of `obj`."""
    errors = schema_errors(obj, stream)
    assert not errors, errors


def assert_valid_as(obj: dict[str, Any], name: str) -> None:
    """Fail with every error of `obj` against the vendored schema `name` (e.g. `Response`)."""
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(name).iter_errors(obj)
    ]
    assert not errors, errors
