"""Marshmallow schemas of the admin API's request bodies (batch-add, list, delete)."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from .tokens import MAX_BATCH

MD5_HEX = r"^[0-9a-fA-F]{32}$"
# Keeps (page - 1) * page_size inside a 64-bit OFFSET on every database.
MAX_PAGE = 1_000_000_000


class WholeNumber(fields.Integer):
    """An integer given as a JSON number or a decimal string ("2"); no bools, no fractions."""

    def _deserialize(self, value: Any, attr, data, **kwargs) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid")
        if isinstance(value, str):
            value = value.strip()
            if not value.lstrip("+-").isdigit():
                raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class BatchAddSchema(Schema):
    """`{"sso_token_list": [...]}`: entries are checked one by one, any JSON value passes here."""

    class Meta:
        unknown = EXCLUDE

    sso_token_list = fields.List(
        fields.Raw(allow_none=True),
        required=True,
        validate=validate.Length(
            min=1,
            max=MAX_BATCH,
            error=f"give between 1 and {MAX_BATCH} tokens per call (split longer lists)",
        ),
    )


class PageSchema(Schema):
    """`page` (from 1) and `page_size` (1 to 100) as numbers or strings."""

    class Meta:
        unknown = EXCLUDE

    page = WholeNumber(
        load_default=1,
        validate=validate.Range(
            min=1, max=MAX_PAGE, error=f"page must be between 1 and {MAX_PAGE}"
        ),
    )
    page_size = WholeNumber(
        load_default=20,
        validate=validate.Range(min=1, max=100, error="page_size must be between 1 and 100"),
    )


class DeleteSchema(Schema):
    """`{"email_md5_list": [...]}` of 32-hex-digit keys."""

    class Meta:
        unknown = EXCLUDE

    email_md5_list = fields.List(
        fields.String(validate=validate.Regexp(MD5_HEX, error="not an email_md5 (32 hex digits)")),
        required=True,
        validate=validate.Length(min=1, max=1000, error="give between 1 and 1000 email_md5"),
    )


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """Validate a body; anything but an object is a 400 that says so."""
    if not isinstance(data, dict):
        raise ValidationError(
            {"_schema": [f"the body must be a JSON object, not {type(data).__name__}"]}
        )
    return schema.load(data)
