"""Secrets at rest: Fernet encryption and keyed digests, both derived from SECRET_KEY.

Tokens and API keys are stored encrypted (so the gateway can send them upstream) and looked up by a
keyed digest (HMAC-SHA256), so the database alone reveals neither and equal tokens are found
without decrypting every row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _derive(secret_key: str, purpose: bytes) -> bytes:
    """Derive 32 bytes for one purpose from SECRET_KEY, so each use gets an independent key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"grokproxy", info=purpose).derive(
        secret_key.encode()
    )


class SecretBox:
    """Encrypts, decrypts and digests secrets with keys derived from SECRET_KEY."""

    def __init__(self, secret_key: str):
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret_key, b"fernet-v1")))
        self._digest_key = _derive(secret_key, b"digest-v1")

    def encrypt(self, plaintext: str) -> str:
        """Encrypt to an ASCII Fernet token."""
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """Decrypt a value made by `encrypt`; raises ValueError when the key does not match."""
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode()
        except InvalidToken:
            raise ValueError(
                "stored secret cannot be decrypted: SECRET_KEY differs from the one that wrote it"
            ) from None

    def digest(self, plaintext: str) -> str:
        """Keyed digest (hex HMAC-SHA256) used to find a secret without decrypting."""
        return hmac.new(self._digest_key, plaintext.encode(), hashlib.sha256).hexdigest()


def preview(secret: str) -> str:
    """Show a secret the way logs and answers may: first 6 and last 4 characters."""
    if len(secret) <= 12:
        return "*" * len(secret)
    return f"{secret[:6]}…{secret[-4:]}"


def secrets_equal(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; an unset expected value never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
