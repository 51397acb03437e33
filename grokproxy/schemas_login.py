"""Marshmallow schemas of the login routes: `POST /api/login` and `POST /api/login-v2`."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

USER_NAME_MAX = 64
SSO_TOKEN_MAX = 8192


class UserName(fields.String):
    """1 to 64 printable characters once surrounding blanks are trimmed."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise ValidationError("Must not be empty.")
        if len(text) > USER_NAME_MAX:
            raise ValidationError(f"Must be at most {USER_NAME_MAX} characters (got {len(text)}).")
        if not text.isprintable():
            raise ValidationError(
                "Must contain only printable characters (no control characters, tabs or "
                "line breaks)."
            )
        return text


class LoginSchema(Schema):
    """`{"user_name", "email_md5"}`: bind a user to a pool account known by its e-mail md5."""

    class Meta:
        unknown = EXCLUDE

    user_name = UserName(required=True, error_messages={"required": "Required: the user's name."})
    email_md5 = fields.String(
        required=True,
        error_messages={"required": "Required: the md5 of the account's e-mail."},
        validate=validate.Regexp(
            r"^\s*[0-9a-fA-F]{32}\s*$",
            error="Must be 32 hexadecimal digits: the md5 of the account's e-mail.",
        ),
    )

    @post_load
    def _normalise(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["email_md5"] = data["email_md5"].strip().lower()
        return data


class LoginV2Schema(Schema):
    """`{"user_name", "sso_token"}`: add or refresh the token, then bind the user to it."""

    class Meta:
        unknown = EXCLUDE

    user_name = UserName(required=True, error_messages={"required": "Required: the user's name."})
    sso_token = fields.String(
        required=True,
        error_messages={"required": "Required: the grok.com sso cookie value."},
        validate=validate.Length(
            min=1, max=SSO_TOKEN_MAX, error="Must be a grok.com sso cookie value."
        ),
    )

    @post_load
    def _check_token(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if not data["sso_token"].strip():
            raise ValidationError({"sso_token": ["Must not be blank."]})
        return data
