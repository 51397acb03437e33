"""Bodies of the admin API's user routes (rotate a key, revoke, daily limit, login link)."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, validate

from .schemas_admin import WholeNumber
from .schemas_login import UserName


class UserNameSchema(Schema):
    """`{"user_name"}`: the user a route acts on."""

    class Meta:
        unknown = EXCLUDE

    user_name = UserName(required=True, error_messages={"required": "Required: the user's name."})


class DailyLimitSchema(UserNameSchema):
    """`{"user_name", "daily_limit"}`: a whole number (0 = unlimited) or null for the default."""

    daily_limit = WholeNumber(
        required=True,
        allow_none=True,
        validate=validate.Range(min=0, max=10_000_000, error="daily_limit must be 0 or more"),
        error_messages={"required": "Required: a number (0 = unlimited) or null (the default)."},
    )


class UserPageSchema(Schema):
    """`page`, `page_size` (1 to 100) and an optional name filter `q`."""

    class Meta:
        unknown = EXCLUDE

    page = WholeNumber(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    page_size = WholeNumber(load_default=50, validate=validate.Range(min=1, max=100))
