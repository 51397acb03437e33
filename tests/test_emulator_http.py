"""The emulator over HTTP: streams, continuation, dialects, quotas, faults, cookies, recording."""

# The fixtures are imported by name until tests/conftest.py imports them; test parameters then
# "redefine" them, which is how pytest fixtures work.
# ruff: noqa: F811

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
import requests

from grokproxy.emulator.testing import EmulatorHandle

from emulator_fixtures import emu, emulator  # noqa: F401 (pytest fixtures)

NEW = "/rest/app-chat/conversations/new"
TOKEN = "healthy-token-1"


def post(emu: EmulatorHandle, path: str, body: Any, token: str | None = TOKEN, **kw: Any):
    cookies = emu.cookies(token) if token else None
    return requests.post(emu.base_url + path, json=body, cookies=cookies, timeout=15, **kw)


def frames_of(resp: requests.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


def inner(frame: dict[str, Any]) -> dict[str, Any]:
    """The response-level object of a frame, whichever wrapping it uses."""
    result = frame["result"]
    return result.get("response", result)


def kinds(frames: list[dict[str, Any]]) -> list[str]:
    """A compact name per frame: its first key, with runs of tokens collapsed."""
    out: list[str] = []
    for f in frames:
        first = next(iter(inner(f))) if "result" in f else "error"
        if first == "token":
            tag = inner(f).get("messageTag", "softstop" if inner(f)["isSoftStop"] else "")
            first = f"token:{tag}"
        if not out or out[-1] != first:
            out.append(first)
    return out


def start(emu: EmulatorHandle, message: str = "hello there", token: str = TOKEN, **extra: Any):
    resp = post(emu, NEW, {"message": message, "modeId": "auto", **extra}, token)
    assert resp.status_code == 200, resp.text
    return frames_of(resp)


def test_new_conversation_streams_frames_in_upstream_order(emu: EmulatorHandle) -> None:
    resp = post(emu, NEW, {"message": "hello there", "modeId": "auto"})
    assert resp.headers["Content-Type"].startswith("application/json")
    frames = frames_of(resp)
    assert kinds(frames) == [
        "conversation", "userResponse", "uiLayout", "llmInfo", "uiLayout",
        "token:final", "token:softstop", "modelResponse", "title",
    ]  # fmt: skip
    assert sum(1 for f in frames if inner(f).get("messageTag") == "final") == 8  # fixture: 8
    model = inner(frames[-2])["modelResponse"]
    assert model["parentResponseId"] == inner(frames[1])["userResponse"]["responseId"]
    assert model["message"].startswith("Echo: hello there")


def test_continuation_is_flattened_and_conversation_grows(emu: EmulatorHandle) -> None:
    frames = start(emu)
    conv_id = frames[0]["result"]["conversation"]["conversationId"]
    parent = inner(frames[-2])["modelResponse"]["responseId"]
    path = f"/rest/app-chat/conversations/{conv_id}/responses"
    resp = post(emu, path, {"message": "and more", "modeId": "auto", "parentResponseId": parent})
    assert resp.status_code == 200, resp.text
    follow = frames_of(resp)
    assert all("response" not in f["result"] for f in follow)
    assert kinds(follow)[0] == "userResponse" and kinds(follow)[-1] == "modelResponse"
    assert not any("conversation" in f["result"] or "title" in f["result"] for f in follow)
    turns = emu.conversation(conv_id)
    assert turns["owner"] == emu.email(TOKEN)
    assert [r["sender"] for r in turns["responses"]] == ["human", "assistant"] * 2
    ids = [r["responseId"] for r in turns["responses"]]
    assert [r["parentResponseId"] for r in turns["responses"]] == [None, ids[0], ids[1], ids[2]]
    assert follow[-1]["result"]["modelResponse"]["responseId"] == ids[3]


def test_continuation_of_another_accounts_conversation_is_404(emu: EmulatorHandle) -> None:
    frames = start(emu)
    conv_id = frames[0]["result"]["conversation"]["conversationId"]
    parent = inner(frames[-2])["modelResponse"]["responseId"]
    body = {"message": "x", "modeId": "auto", "parentResponseId": parent}
    other = post(emu, f"/rest/app-chat/conversations/{conv_id}/responses", body, "other-token")
    assert other.status_code == 404
    assert other.json()["error"]["code"] == 5
    unknown = post(emu, "/rest/app-chat/conversations/nope/responses", body)
    assert unknown.status_code == 404


def test_continuation_needs_a_known_parent(emu: EmulatorHandle) -> None:
    frames = start(emu)
    path = f"/rest/app-chat/conversations/{frames[0]['result']['conversation']['conversationId']}"
    missing = post(emu, f"{path}/responses", {"message": "x", "modeId": "auto"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == 3
    wrong = post(
        emu, f"{path}/responses", {"message": "x", "modeId": "auto", "parentResponseId": "z"}
    )
    assert wrong.status_code == 400


def test_reasoning_mode_thinks_before_answering(emu: EmulatorHandle) -> None:
    frames = [inner(f) for f in start(emu, modeId="expert")]
    tagged = [f for f in frames if "messageTag" in f]
    assert tagged[0] == tagged[0] | {"messageTag": "header", "isThinking": True}
    assert tagged[0]["token"] == "Thinking about your request"
    first_final = next(i for i, f in enumerate(tagged) if f["messageTag"] == "final")
    assert first_final > 1 and all(f["isThinking"] for f in tagged[:first_final])
    assert not any(f["isThinking"] for f in tagged[first_final:])


def test_deepsearch_emits_tool_cards_results_and_citations(emu: EmulatorHandle) -> None:
    frames = [inner(f) for f in start(emu, "latest AI news", modeId="fast", workspaceIds=["w"])]
    assert any("<xai:tool_usage_card>" in f.get("token", "") and f["isThinking"] for f in frames)
    assert any(f.get("messageTag") == "tool_usage_card" and "toolUsageCard" in f for f in frames)
    results = next(f["webSearchResults"]["results"] for f in frames if "webSearchResults" in f)
    assert results[0]["url"].startswith("https://")
    assert any("cardAttachment" in f for f in frames)
    final = "".join(f["token"] for f in frames if f.get("messageTag") == "final")
    assert 'card_type="citation_card" type="render_inline_citation"' in final
    model = frames[-2]["modelResponse"]
    assert model["webSearchResults"] and model["cardAttachmentsJson"]


def test_legacy_deepsearch_preset_also_searches(emu: EmulatorHandle) -> None:
    emu.configure(dialect="legacy")
    resp = post(emu, NEW, {"message": "q", "modelName": "grok-3", "deepsearchPreset": "deeper"})
    assert any("toolUsageCard" in inner(f) for f in frames_of(resp))


def test_image_prompt_streams_progress_and_serves_png_to_owner_only(emu: EmulatorHandle) -> None:
    frames = [inner(f) for f in start(emu, "draw a red fox", enableImageGeneration=True)]
    progress = [
        f["streamingImageGenerationResponse"]
        for f in frames
        if "streamingImageGenerationResponse" in f
    ]
    assert [p["progress"] for p in progress[:4]] == [25, 50, 75, 100]
    assert all("-part-" in p["imageUrl"] for p in progress if p["progress"] < 100)
    urls = frames[-2]["modelResponse"]["generatedImageUrls"]
    assert len(urls) == 2  # imageGenerationCount defaults to 2
    assert urls[0].startswith(f"users/{emu.user_id(TOKEN)}/generated/")
    got = requests.get(f"{emu.assets_url}/{urls[0]}", cookies=emu.cookies(TOKEN), timeout=5)
    assert got.status_code == 200 and got.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert got.headers["Content-Type"] == "image/png"
    partial = requests.get(
        f"{emu.assets_url}/{progress[0]['imageUrl']}", cookies=emu.cookies(TOKEN), timeout=5
    )
    assert partial.status_code == 200
    stranger = requests.get(f"{emu.assets_url}/{urls[0]}", cookies=emu.cookies("x"), timeout=5)
    assert stranger.status_code == 403
    assert requests.get(f"{emu.assets_url}/{urls[0]}", timeout=5).status_code == 403


def test_no_image_without_enable_flag(emu: EmulatorHandle) -> None:
    frames = [inner(f) for f in start(emu, "draw a red fox")]
    assert not any("streamingImageGenerationResponse" in f for f in frames)


@pytest.mark.parametrize(
    ("dialect", "body"),
    [
        ("modes", {"message": "m", "modelName": "grok-4", "modeId": "auto"}),
        ("modes", {"message": "m", "modelMode": "MODEL_MODE_AUTO", "modeId": "auto"}),
        ("modes", {"message": "m"}),
        ("modes", {"message": "m", "modeId": "turbo"}),
        ("modes", {"message": "", "modeId": "auto"}),
        ("modes", {"message": 5, "modeId": "auto"}),
        ("modes", {"message": "m", "modeId": "auto", "fileAttachments": "f"}),
        ("model-mode", {"message": "m", "modeId": "auto"}),
        ("model-mode", {"message": "m", "modelName": "grok-4"}),
        ("model-mode", {"message": "m", "modelName": "grok-4", "modelMode": "MODEL_MODE_TURBO"}),
        ("model-mode", {"message": "m", "modelName": "gpt-4", "modelMode": "MODEL_MODE_AUTO"}),
        ("legacy", {"message": "m", "modelName": "grok-3", "modelMode": "MODEL_MODE_AUTO"}),
        ("legacy", {"message": "m", "modelName": "grok-5"}),
        ("legacy", {"message": "m", "modelName": "grok-3", "deepsearchPreset": "deepest"}),
        ("legacy", {"message": "m", "modeId": "auto"}),
    ],
)
def test_dialect_rejects_bad_bodies(emu: EmulatorHandle, dialect: str, body: dict) -> None:
    emu.configure(dialect=dialect)
    resp = post(emu, NEW, body)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == 3 and error["message"] and error["details"] == []


@pytest.mark.parametrize(
    ("dialect", "body", "thinks"),
    [
        ("modes", {"modeId": "heavy"}, True),
        ("modes", {"modeId": "grok-420-computer-use-sa"}, False),
        ("model-mode", {"modelMode": "MODEL_MODE_AUTO"}, False),  # the 2026-03 browser body
        ("model-mode", {"modelName": "grok-4", "modelMode": "MODEL_MODE_GROK_4_THINKING"}, True),
        ("model-mode", {"modelName": "grok-3", "modelMode": "MODEL_MODE_FAST"}, False),
        ("legacy", {"modelName": "grok-3", "isReasoning": True}, True),
        ("legacy", {"modelName": "grok-latest"}, False),
    ],
)
def test_dialect_accepts_its_bodies(
    emu: EmulatorHandle, dialect: str, body: dict, thinks: bool
) -> None:
    emu.configure(dialect=dialect)
    resp = post(emu, NEW, {"message": "m", **body})
    assert resp.status_code == 200, resp.text
    assert any(inner(f).get("isThinking") for f in frames_of(resp)) is thinks


def test_file_attachments_must_be_the_accounts_uploads(emu: EmulatorHandle) -> None:
    upload = post(emu, "/rest/app-chat/upload-file", {
        "fileName": "a.png", "fileMimeType": "image/png",
        "content": base64.b64encode(b"\x89PNG fake").decode(),
    })  # fmt: skip
    assert upload.status_code == 200
    meta = upload.json()
    assert list(meta) == ["fileMetadataId", "fileUri"]
    assert meta["fileUri"] == f"users/{emu.user_id(TOKEN)}/{meta['fileMetadataId']}/content"
    ok = post(
        emu, NEW, {"message": "see", "modeId": "auto", "fileAttachments": [meta["fileMetadataId"]]}
    )
    assert ok.status_code == 200
    assert inner(frames_of(ok)[1])["userResponse"]["fileAttachments"] == [meta["fileMetadataId"]]
    stolen = post(
        emu,
        NEW,
        {"message": "see", "modeId": "auto", "fileAttachments": [meta["fileMetadataId"]]},
        "thief",
    )
    assert stolen.status_code == 400
    served = requests.get(
        f"{emu.assets_url}/{meta['fileUri']}", cookies=emu.cookies(TOKEN), timeout=5
    )
    assert served.content == b"\x89PNG fake"


def test_upload_rejects_bad_base64(emu: EmulatorHandle) -> None:
    resp = post(
        emu,
        "/rest/app-chat/upload-file",
        {"fileName": "a", "fileMimeType": "text/plain", "content": "!!notb64"},
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == 3


def test_multipart_upload_v2(emu: EmulatorHandle) -> None:
    resp = requests.post(
        emu.base_url + "/http/upload-file-v2/direct",
        files={"file": ("a.txt", b"hi", "text/plain")},
        cookies=emu.cookies(TOKEN),
        timeout=5,
    )
    assert resp.status_code == 200
    assert set(resp.json()) == {"uploadId", "fileMetadata"}


def rate(emu: EmulatorHandle, body: dict, token: str = TOKEN) -> dict:
    resp = post(emu, "/rest/rate-limits", body, token)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_rate_limits_default_super_quotas_and_decrement(emu: EmulatorHandle) -> None:
    assert rate(emu, {"modelName": "auto"}) == {
        "windowSizeSeconds": 7200, "remainingQueries": 50, "totalQueries": 50,
        "lowEffortRateLimits": None, "highEffortRateLimits": None,
    }  # fmt: skip
    assert [rate(emu, {"modelName": m})["totalQueries"] for m in ("fast", "expert", "heavy")] == [
        140,
        50,
        20,
    ]
    start(emu)
    start(emu)
    assert rate(emu, {"modelName": "auto"})["remainingQueries"] == 48
    assert rate(emu, {"modelName": "fast"})["remainingQueries"] == 140


def test_late_2025_rate_limit_form_has_wait_time(emu: EmulatorHandle) -> None:
    body = rate(emu, {"requestKind": "DEFAULT", "modelName": "grok-4-auto"})
    assert body["waitTimeSeconds"] == 0 and body["remainingQueries"] == 50
    assert body["highEffortRateLimits"]["cost"] == 4
    assert "waitTimeSeconds" not in rate(emu, {"modelName": "auto"})
    assert post(emu, "/rest/rate-limits", {"modelName": "gpt-5"}).status_code == 400


def test_exhausted_quota_answers_429_and_window_resets(emu: EmulatorHandle) -> None:
    emu.set_quota("auto", token=TOKEN, remaining=1, total=3, window_seconds=1)
    start(emu)
    resp = post(emu, NEW, {"message": "m", "modeId": "auto"})
    assert resp.status_code == 429
    assert resp.json() == {"error": {"code": 8, "message": "Too many requests", "details": []}}
    late = rate(emu, {"requestKind": "DEFAULT", "modelName": "auto"})
    assert late["remainingQueries"] == 0 and late["waitTimeSeconds"] >= 1
    assert post(emu, NEW, {"message": "m", "modeId": "fast"}).status_code == 200  # other modes
    time.sleep(1.1)
    assert rate(emu, {"modelName": "auto"})["remainingQueries"] == 3
    assert post(emu, NEW, {"message": "m", "modeId": "auto"}).status_code == 200


def test_quota_set_by_email_of_seen_account(emu: EmulatorHandle) -> None:
    start(emu)
    emu.set_quota("heavy", email=emu.email(TOKEN), remaining=0)
    assert post(emu, NEW, {"message": "m", "modeId": "heavy"}).status_code == 429
    with pytest.raises(requests.HTTPError):
        emu.set_quota("heavy", email="unseen@emulator.grok.test", remaining=0)


# --- faults -------------------------------------------------------------------------------


def test_ratelimited_token(emu: EmulatorHandle) -> None:
    token = "emu-ratelimited-1"
    resp = post(emu, NEW, {"message": "m", "modeId": "auto"}, token)
    assert resp.status_code == 429 and resp.json()["error"]["code"] == 8
    assert rate(emu, {"modelName": "auto"}, token)["remainingQueries"] == 0


def session(emu: EmulatorHandle, token: str | None) -> dict:
    cookies = emu.cookies(token) if token else None
    return requests.get(emu.base_url + "/api/auth/session", cookies=cookies, timeout=5).json()


def test_invalid_token(emu: EmulatorHandle) -> None:
    resp = post(emu, NEW, {"message": "m", "modeId": "auto"}, "emu-invalid-1")
    assert resp.status_code == 403
    assert resp.json() == {
        "error": {
            "code": 16,
            "message": "Failed to look up session ID. [WKE=unauthenticated:invalid-credentials]",
            "details": [],
        }
    }
    assert session(emu, "emu-invalid-1") == {"status": "unauthenticated"}


def test_blocked_token(emu: EmulatorHandle) -> None:
    resp = post(emu, NEW, {"message": "m", "modeId": "auto"}, "emu-blocked-1")
    assert resp.status_code == 403
    error = resp.json()["error"]
    assert error["code"] == 16 and "blocked-user" in error["message"]
    assert session(emu, "emu-blocked-1") == {"status": "blocked"}


def test_cloudflare_token_gets_challenge_on_every_route(emu: EmulatorHandle) -> None:
    token = "emu-cloudflare-1"
    answers = [
        post(emu, NEW, {"message": "m", "modeId": "auto"}, token),
        post(emu, "/rest/rate-limits", {"modelName": "auto"}, token),
        requests.get(emu.base_url + "/api/auth/session", cookies=emu.cookies(token), timeout=5),
    ]
    for resp in answers:
        assert resp.status_code == 403
        assert resp.headers["server"] == "cloudflare"
        assert resp.headers["Content-Type"].startswith("text/html")
        assert "<title>Just a moment...</title>" in resp.text and "challenge-platform" in resp.text


def test_antibot_token(emu: EmulatorHandle) -> None:
    resp = post(emu, NEW, {"message": "m", "modeId": "auto"}, "emu-antibot-1")
    assert resp.status_code == 403
    assert resp.json()["error"] == {
        "code": 7,
        "message": "Request rejected by anti-bot rules.",
        "details": [],
    }


def test_inband_token_errors_with_http_200(emu: EmulatorHandle) -> None:
    resp = post(emu, NEW, {"message": "m", "modeId": "auto"}, "emu-inband-1")
    assert resp.status_code == 200
    assert frames_of(resp)[0] == {
        "error": {"code": 8, "message": "Too many requests", "details": []}
    }


def test_usagelimit_token_streams_nested_error(emu: EmulatorHandle) -> None:
    resp = post(emu, NEW, {"message": "m", "modeId": "auto"}, "emu-usagelimit-1")
    assert resp.status_code == 200
    frames = frames_of(resp)
    assert "conversation" in frames[0]["result"]
    assert "usage limit" in frames[-1]["result"]["response"]["error"]["message"]


def test_dies_token_drops_the_stream_midway(emu: EmulatorHandle) -> None:
    resp = requests.post(
        emu.base_url + NEW, json={"message": "m", "modeId": "auto"},
        cookies=emu.cookies("emu-dies-1"), stream=True, timeout=5,
    )  # fmt: skip
    assert resp.status_code == 200
    lines = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for line in resp.iter_lines():
            if line:
                lines.append(json.loads(line))
    tokens = [inner(f) for f in lines if inner(f).get("messageTag") == "final"]
    assert 0 < len(tokens) < 8
    assert not any(inner(f).get("isSoftStop") or "modelResponse" in inner(f) for f in lines)
    assert emu.streams()[-1]["outcome"] == "dropped"


def test_slow_token_delays_first_byte(emu: EmulatorHandle) -> None:
    emu.configure(slow_delay=0.6)
    began = time.monotonic()
    resp = post(emu, NEW, {"message": "m", "modeId": "auto"}, "emu-slow-1")
    assert resp.status_code == 200 and time.monotonic() - began >= 0.6
    assert "modelResponse" in inner(frames_of(resp)[-2])


def test_default_slow_delay_is_two_seconds(emu: EmulatorHandle) -> None:
    assert (
        requests.get(emu.base_url + "/_emulator/health", timeout=5).json()["config"]["slow_delay"]
        == 2.0
    )


def test_fault_set_by_control_api_fires_n_times(emu: EmulatorHandle) -> None:
    emu.set_fault("antibot", token=TOKEN, times=2)
    codes = [post(emu, NEW, {"message": "m", "modeId": "auto"}).status_code for _ in range(3)]
    assert codes == [403, 403, 200]


def test_fault_by_email_and_clear(emu: EmulatorHandle) -> None:
    start(emu)
    emu.set_fault("cloudflare", email=emu.email(TOKEN))
    assert post(emu, NEW, {"message": "m", "modeId": "auto"}).headers.get("server") == "cloudflare"
    emu.set_fault(None, token=TOKEN)
    assert post(emu, NEW, {"message": "m", "modeId": "auto"}).status_code == 200
    emu.set_fault("none", token="emu-invalid-2")  # heals a prefix fault
    assert post(emu, NEW, {"message": "m", "modeId": "auto"}, "emu-invalid-2").status_code == 200


# --- cookies, identity, recording ---------------------------------------------------------


def test_missing_cookie_is_no_credentials(emu: EmulatorHandle) -> None:
    resp = post(emu, NEW, {"message": "m", "modeId": "auto"}, token=None)
    assert resp.status_code == 403
    assert resp.json()["error"] == {
        "code": 16,
        "message": "No credentials presented",
        "details": [],
    }


def test_sso_rw_must_equal_sso(emu: EmulatorHandle) -> None:
    for cookies in ({"sso": TOKEN}, {"sso": TOKEN, "sso-rw": "other"}):
        resp = requests.post(
            emu.base_url + NEW, json={"message": "m", "modeId": "auto"}, cookies=cookies, timeout=5
        )
        assert resp.status_code == 403
        assert "invalid-credentials" in resp.json()["error"]["message"]
    assert session(emu, None) == {"status": "unauthenticated"}


def test_session_reports_derived_identity(emu: EmulatorHandle) -> None:
    body = session(emu, TOKEN)
    assert body["status"] == "authenticated"
    assert body["session"]["email"] == emu.email(TOKEN)
    assert body["session"]["email"].endswith("@emulator.grok.test")
    assert body["session"]["userId"] == emu.user_id(TOKEN)
    assert list(body["session"]) == ["userId", "email", "organizationId"]
    assert session(emu, "another")["session"]["email"] != body["session"]["email"]


def test_requests_are_recorded_without_cookie_values(emu: EmulatorHandle) -> None:
    headers = {
        "x-xai-request-id": "11111111-2222-4333-8444-555555555555",
        "x-statsig-id": "c3RhdHNpZw",
        "User-Agent": "Mozilla/5.0 test",
        "Origin": "https://grok.com",
        "Referer": "https://grok.com/",
    }
    post(emu, NEW, {"message": "recorded", "modeId": "auto"}, headers=headers)
    session(emu, TOKEN)
    chats = emu.requests(path=NEW)
    assert len(chats) == 1
    rec = chats[0]
    assert rec["method"] == "POST" and rec["path"] == NEW
    for key, value in headers.items():
        assert rec["headers"][key.lower()] == value
    assert rec["cookies"] == ["sso", "sso-rw"] and rec["sso_rw_matches"] is True
    assert rec["body"] == {"message": "recorded", "modeId": "auto"}
    assert rec["email"] == emu.email(TOKEN)
    assert TOKEN not in json.dumps(emu.requests())
    assert len(emu.requests()) == 2


def test_reset_forgets_everything(emu: EmulatorHandle) -> None:
    frames = start(emu)
    emu.configure(tokens=3)
    emu.reset()
    assert emu.requests() == [] and emu.streams() == []
    with pytest.raises(requests.HTTPError):
        emu.conversation(frames[0]["result"]["conversation"]["conversationId"])
    finals = [f for f in start(emu) if inner(f).get("messageTag") == "final"]
    assert len(finals) == 8


def test_reply_size_from_config_and_header(emu: EmulatorHandle) -> None:
    emu.configure(tokens=30)
    assert sum(inner(f).get("messageTag") == "final" for f in start(emu)) == 30
    resp = post(emu, NEW, {"message": "m", "modeId": "auto"}, headers={"x-emulator-tokens": "3"})
    assert sum(inner(f).get("messageTag") == "final" for f in frames_of(resp)) == 3


def test_tokens_per_second_paces_the_stream(emu: EmulatorHandle) -> None:
    emu.configure(tokens=10, tokens_per_second=20)
    began = time.monotonic()
    start(emu)
    assert time.monotonic() - began >= 0.45


def test_client_disconnect_closes_the_stream_within_a_second(emu: EmulatorHandle) -> None:
    emu.configure(tokens=1000, tokens_per_second=10)
    resp = requests.post(
        emu.base_url + NEW, json={"message": "m", "modeId": "auto"},
        cookies=emu.cookies(TOKEN), stream=True, timeout=5,
    )  # fmt: skip
    lines = resp.iter_lines()
    assert "conversation" in json.loads(next(lines))["result"]
    assert emu.streams()[-1]["outcome"] == "streaming"
    resp.close()
    closed = time.time()
    deadline = time.monotonic() + 1.0
    while emu.streams()[-1]["outcome"] == "streaming" and time.monotonic() < deadline:
        time.sleep(0.05)
    stream = emu.streams()[-1]
    assert stream["outcome"] == "client_disconnected"
    assert stream["ended"] - closed < 1.0


def test_completed_streams_are_reported(emu: EmulatorHandle) -> None:
    start(emu)
    (stream,) = emu.streams()
    assert stream["outcome"] == "completed" and stream["path"] == NEW
    assert stream["ended"] >= stream["started"]


def test_response_nodes_and_soft_delete(emu: EmulatorHandle) -> None:
    conv_id = start(emu)[0]["result"]["conversation"]["conversationId"]
    base = f"{emu.base_url}/rest/app-chat/conversations"
    nodes = requests.get(
        f"{base}/{conv_id}/response-node", cookies=emu.cookies(TOKEN), timeout=5
    ).json()
    assert [n["sender"] for n in nodes["responseNodes"]] == ["human", "assistant"]
    assert (
        requests.delete(f"{base}/soft/{conv_id}", cookies=emu.cookies(TOKEN), timeout=5).status_code
        == 200
    )
    gone = requests.get(f"{base}/{conv_id}/response-node", cookies=emu.cookies(TOKEN), timeout=5)
    assert gone.status_code == 404
