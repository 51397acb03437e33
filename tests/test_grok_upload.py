"""Uploads through GrokClient against the grok.com emulator (multipart v2 route)."""

from __future__ import annotations

import uuid

import pytest

from grokproxy.grok.client import GrokClient
from grokproxy.grok.errors import InvalidCredentials
from grokproxy.grok.settings import GrokSettings
from grokproxy.grok.transport import Transport

from emulator_fixtures import emu, emulator  # noqa: F401  (pytest fixtures)

TRANSPORTS = {"requests": None, "curl_cffi": "chrome136"}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def make_client(emu, transport: str) -> GrokClient:  # noqa: F811
    settings = GrokSettings(
        base_url=emu.base_url,
        assets_url=emu.assets_url,
        impersonate=TRANSPORTS[transport],
        connect_timeout=3.0,
        read_timeout=20.0,
    )
    return GrokClient(settings, Transport(settings))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_upload_goes_to_the_v2_route_and_the_file_arrives_intact(emu, transport):  # noqa: F811
    client = make_client(emu, transport)
    token = f"tok-{uuid.uuid4().hex}"
    file_id = client.upload_file(token, "cat.png", "image/png", PNG)
    assert [r["path"] for r in emu.requests("/http/upload-file-v2/direct")]
    assert not emu.requests("/rest/app-chat/upload-file")
    asset = client.fetch_asset(token, f"users/{emu.user_id(token)}/{file_id}/content")
    try:
        assert asset.status == 200 and asset.content_type == "image/png"
        assert b"".join(asset.chunks) == PNG
    finally:
        asset.close()


def test_upload_with_a_dead_token_marks_the_credential_invalid(emu):  # noqa: F811
    token = f"emu-invalid-{uuid.uuid4().hex}"
    with pytest.raises(InvalidCredentials) as caught:
        make_client(emu, "requests").upload_file(token, "a.txt", "text/plain", b"x")
    assert token not in str(caught.value)
