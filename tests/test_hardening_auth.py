"""Raw SSO bearers: only grok.com's cookie shape (an HS256 JWT) is tried, and never a body first."""

from __future__ import annotations

import base64
import io
import json

import pytest

from conftest import sso_jwt

GOOD = {"model": "grok-3", "messages": [{"role": "user", "content": "hi"}]}


def b64url(value) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


SIG = b64url(b"s" * 32)


class CountingStream(io.RawIOBase):
    """A request body that remembers how much of it was read."""

    def __init__(self, size: int):
        self.size, self.read_bytes = size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.read_bytes)
        buffer[:n] = b"x" * n
        self.read_bytes += n
        return n


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()["error"]


@pytest.mark.parametrize(
    "bearer",
    [
        "abcdefghijklmnopqrstuvwxyz",  # 16+ characters used to pass as a raw SSO token
        "abcdefghijklmnop!!",  # made normalize_token raise: a 500
        "sso=abcdefghijklmnop;;;",
        "a.b.c",
        f"{b64url({'alg': 'none'})}.{b64url({'session_id': 's'})}.{SIG}",
        f"{b64url({'alg': 'HS256'})}.{b64url({'user': 's'})}.{SIG}",
        f"{b64url({'alg': 'HS256'})}.{b64url({'session_id': 's'})}.{b64url(b'short')}",
        f"{b64url(b'[' * 3000)}.{b64url({'session_id': 's'})}.{SIG}",
        "é" * 20,
    ],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models"])
def test_a_bearer_not_shaped_like_an_sso_cookie_is_a_401(app, bearer, path):
    client = app.test_client()
    headers = {"Authorization": f"Bearer {bearer}"}
    response = client.post(path, json=GOOD, headers=headers) if "chat" in path else None
    response = response or client.get(path, headers=headers)
    error = error_of(response, 401)
    assert error["type"] == "authentication_error"
    assert bearer not in response.get_data(as_text=True)


def test_a_refused_bearer_is_answered_before_any_body_byte_is_read(app):
    body = CountingStream(19 * 1024 * 1024)
    response = app.test_client().post(
        "/v1/chat/completions",
        environ_overrides={"wsgi.input": body, "CONTENT_LENGTH": str(body.size)},
        content_type="application/json",
        headers={"Authorization": "Bearer abcdefghijklmnopqrstuvwxyz"},
    )
    error_of(response, 401)
    assert body.read_bytes == 0


@pytest.mark.parametrize("form", ["{t}", "sso={t}", "sso={t}; sso-rw={t}"])
def test_a_jwt_shaped_sso_cookie_is_accepted_as_bearer(emu_app, form):
    client = emu_app().test_client()
    token = sso_jwt("emu-good-own-token-0001")
    response = client.post(
        "/v1/chat/completions",
        json=GOOD,
        headers={"Authorization": "Bearer " + form.format(t=token)},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["choices"][0]["message"]["content"]


def test_emulator_faults_still_select_on_a_jwt_shaped_token(emu_app):
    client = emu_app().test_client()
    token = sso_jwt("emu-invalid-own-token-0001")
    response = client.post(
        "/v1/chat/completions", json=GOOD, headers={"Authorization": f"Bearer {token}"}
    )
    assert error_of(response, 403)["code"] == "invalid_sso_token"
