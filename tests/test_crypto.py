"""Tokens at rest: encryption round trip, keyed digests, and no plaintext in the database."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from grokproxy.crypto import SecretBox, preview, secrets_equal
from grokproxy.extensions import db
from grokproxy.models import Account

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzZXNzaW9uX2lkIjoiYWJjIn0.c2lnbmF0dXJlLXRlc3Q"


def test_encryption_round_trips():
    box = SecretBox("one-key")
    sealed = box.encrypt(TOKEN)
    assert sealed != TOKEN and TOKEN not in sealed
    assert box.decrypt(sealed) == TOKEN


def test_decrypting_with_another_key_fails_clearly():
    sealed = SecretBox("one-key").encrypt(TOKEN)
    with pytest.raises(ValueError, match="SECRET_KEY"):
        SecretBox("other-key").decrypt(sealed)


def test_digest_is_stable_and_keyed():
    assert SecretBox("k1").digest(TOKEN) == SecretBox("k1").digest(TOKEN)
    assert SecretBox("k1").digest(TOKEN) != SecretBox("k2").digest(TOKEN)
    assert TOKEN not in SecretBox("k1").digest(TOKEN)


def test_preview_shows_only_the_ends():
    assert preview(TOKEN) == f"{TOKEN[:6]}…{TOKEN[-4:]}"
    assert preview("short") == "*****"


def test_secrets_compare_in_constant_time_and_unset_never_matches():
    assert secrets_equal("abc", "abc")
    assert not secrets_equal("abc", "abd")
    assert not secrets_equal("", "")
    assert not secrets_equal("abc", None)


def test_the_stored_token_column_never_holds_the_plaintext(app):
    box = app.extensions["grokproxy.secrets"]
    with app.app_context():
        db.session.add(Account.for_token(box, TOKEN, "a@example.com"))
        db.session.commit()
        row = db.session.execute(text("SELECT * FROM accounts")).mappings().one()
        assert all(TOKEN not in str(value) for value in row.values())
        assert box.decrypt(row["token_encrypted"]) == TOKEN
