"""Pure builders for every body and NDJSON frame the emulator sends, shaped like grok.com.

Key names, nesting and key order follow the samples in `tests/fixtures/upstream/`, above all the
real 2026-03-08 capture of `conversations/new`. Nothing here does I/O: the HTTP layer (`app.py`)
decides *which* frames to send and when; this module only decides what each frame looks like.
New-conversation frames are wrapped as `{"result":{"response":{...}}}`; continuation streams use
`flatten()` to drop the `response` level, as grok.com does on `/responses`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

Frame = dict[str, Any]

# The capture reports the same modelHash for every frame of one answer; any stable base64 works.
MODEL_HASH = "f54V4nLGp4IcuJf0V+H7yBgHbw0FdgMUlmc0eOqrGR0="


def iso_time(ts: float, micro: bool = False) -> str:
    """Timestamp in grok.com's two styles: microseconds (conversation) or milliseconds (turns)."""
    dt = datetime.fromtimestamp(ts, UTC)
    if micro:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def dumps(obj: Any) -> str:
    """Compact JSON with raw UTF-8, as grok.com writes its NDJSON lines."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def ndjson_line(obj: Any) -> bytes:
    """One NDJSON line (object + newline) as bytes."""
    return (dumps(obj) + "\n").encode()


def _wrap(inner: Frame) -> Frame:
    return {"result": {"response": inner}}


def flatten(frame: Frame) -> Frame:
    """Continuation form: `{"result":{"response":X}}` becomes `{"result":X}`."""
    result = frame.get("result")
    if isinstance(result, dict) and set(result) == {"response"}:
        return {"result": result["response"]}
    return frame


def conversation_frame(conversation_id: str, created: float, temporary: bool) -> Frame:
    """First frame of `conversations/new`: the conversation record."""
    return {
        "result": {
            "conversation": {
                "conversationId": conversation_id,
                "title": "New conversation",
                "starred": False,
                "createTime": iso_time(created, micro=True),
                "modifyTime": iso_time(created + 0.0009, micro=True),
                "systemPromptName": "",
                "temporary": temporary,
                "mediaTypes": [],
                "workspaces": [],
                "taskResult": None,
            }
        }
    }


def _turn_lists_head() -> dict[str, Any]:
    return {
        "manual": False,
        "partial": False,
        "shared": False,
        "query": "",
        "queryType": "",
    }


def user_response(
    response_id: str,
    message: str,
    created: float,
    model: str,
    file_attachments: list[str] | None = None,
) -> Frame:
    """The `userResponse` record: grok.com's echo of the human turn."""
    return {
        "responseId": response_id,
        "message": message,
        "sender": "human",
        "createTime": iso_time(created),
        **_turn_lists_head(),
        "webSearchResults": [],
        "xpostIds": [],
        "xposts": [],
        "generatedImageUrls": [],
        "imageAttachments": [],
        "fileAttachments": list(file_attachments or []),
        "cardAttachmentsJson": [],
        "fileUris": [],
        "fileAttachmentsMetadata": [],
        "isControl": False,
        "steps": [],
        "imageEditUris": [],
        "mediaTypes": [],
        "webpageUrls": [],
        "metadata": {},
        "citedWebSearchResults": [],
        "toolResponses": [],
        "model": model,
        "ragResults": [],
        "citedRagResults": [],
        "searchProductResults": [],
        "connectorSearchResults": [],
        "collectionSearchResults": [],
        "highlightsStories": [],
        "streamErrors": [],
    }


def _state(response_id: str, thinking: bool = False) -> dict[str, Any]:
    # Every response-level frame ends with these three keys, in this order.
    return {"isThinking": thinking, "isSoftStop": False, "responseId": response_id}


def user_response_frame(user: Frame) -> Frame:
    """Second frame: the user turn, with isThinking/isSoftStop/responseId beside it."""
    return _wrap({"userResponse": user, **_state(user["responseId"])})


def ui_layout(effort: str, steer_model_id: str | None, layout: str) -> Frame:
    """The `uiLayout` object; the first one of a stream names the steer model, later ones don't."""
    out: Frame = {"reasoningUiLayout": layout, "willThinkLong": effort != "LOW", "effort": effort}
    if steer_model_id is not None:
        out["steerModelId"] = steer_model_id
    out["rolloutIds"] = []
    return out


def ui_layout_frame(response_id: str, layout: Frame) -> Frame:
    """A `uiLayout` frame (appears twice: SPLIT with steerModelId, then FUNCTION_CALL)."""
    return _wrap({"uiLayout": layout, **_state(response_id)})


def llm_info_frame(response_id: str, model_hash: str = MODEL_HASH) -> Frame:
    """The `llmInfo.modelHash` frame (clients use it as system_fingerprint)."""
    return _wrap({"llmInfo": {"modelHash": model_hash}, **_state(response_id)})


def token_frame(
    response_id: str,
    token: str,
    *,
    thinking: bool = False,
    tag: str = "final",
    tool_usage_card_id: str | None = None,
) -> Frame:
    """One streamed token; thinking tokens carry `isThinking:true` and a header/summary tag."""
    inner: Frame = {"token": token, "isThinking": thinking, "isSoftStop": False, "messageTag": tag}
    if tool_usage_card_id is not None:
        inner["toolUsageCardId"] = tool_usage_card_id
    inner["responseId"] = response_id
    return _wrap(inner)


def soft_stop_frame(response_id: str) -> Frame:
    """The end-of-answer marker: empty token, `isSoftStop:true`, no messageTag."""
    return _wrap({"token": "", "isThinking": False, "isSoftStop": True, "responseId": response_id})


def tool_usage_card_xml(card_id: str, tool_name: str, args: dict[str, Any]) -> str:
    """The XML form of a tool card, as it appears inside DeepSearch thinking tokens."""
    return (
        "<xai:tool_usage_card>"
        f"<xai:tool_usage_card_id>{card_id}</xai:tool_usage_card_id>"
        f"<xai:tool_name>{tool_name}</xai:tool_name>"
        f"<xai:tool_args><![CDATA[{dumps(args)}]]></xai:tool_args>"
        "</xai:tool_usage_card>"
    )


def tool_usage_card_frame(response_id: str, card_id: str, query: str) -> Frame:
    """The structured form: a `toolUsageCard` object under `messageTag:"tool_usage_card"`."""
    return _wrap(
        {
            "toolUsageCard": {"toolUsageCardId": card_id, "webSearch": {"args": {"query": query}}},
            "isThinking": True,
            "isSoftStop": False,
            "messageTag": "tool_usage_card",
            "toolUsageCardId": card_id,
            "responseId": response_id,
        }
    )


def web_search_result(url: str, title: str, preview: str, citation_id: str = "") -> Frame:
    """One `webSearchResults.results[]` item."""
    return {
        "url": url,
        "title": title,
        "preview": preview,
        "searchEngineText": "",
        "description": "",
        "siteName": "",
        "metadataTitle": "",
        "creator": "",
        "image": "",
        "favicon": "",
        "citationId": citation_id,
    }


def web_search_results_frame(response_id: str, card_id: str, results: list[Frame]) -> Frame:
    """Search results of one tool call, streamed while thinking."""
    return _wrap(
        {
            "webSearchResults": {"results": results},
            "isThinking": True,
            "isSoftStop": False,
            "messageTag": "raw_function_result",
            "toolUsageCardId": card_id,
            "responseId": response_id,
        }
    )


def citation_card_json(card_id: str, url: str, title: str) -> str:
    """The `cardAttachment.jsonData` string of a citation card (a JSON document in a string)."""
    return dumps(
        {
            "id": card_id,
            "type": "render_inline_citation",
            "cardType": "citation_card",
            "url": url,
            "title": title,
        }
    )


def card_attachment_frame(response_id: str, json_data: str) -> Frame:
    """A `cardAttachment` frame; `jsonData` is itself JSON text."""
    return _wrap({"cardAttachment": {"jsonData": json_data}, **_state(response_id)})


def inline_citation(card_id: str, citation_id: int) -> str:
    """The `grok:render` markup that places citation `citation_id` inside final text."""
    return (
        f'<grok:render card_id="{card_id}" card_type="citation_card" type="render_inline_citation">'
        f'<argument name="citation_id">{citation_id}</argument>'
        "</grok:render>"
    )


def image_chunk_json(card_id: str, image_url: str, progress: int, moderated: bool = False) -> str:
    """A `cardAttachment.jsonData` string for an image-generation card."""
    return dumps(
        {
            "id": card_id,
            "image_chunk": {"progress": progress, "imageUrl": image_url, "moderated": moderated},
        }
    )


def image_progress_frame(
    response_id: str, image_id: str, image_url: str, progress: int, index: int
) -> Frame:
    """A `streamingImageGenerationResponse` progress frame (partial `-part-N` urls below 100)."""
    return _wrap(
        {
            "streamingImageGenerationResponse": {
                "imageId": image_id,
                "imageUrl": image_url,
                "progress": progress,
                "imageIndex": index,
                "moderated": False,
                "isFinal": progress >= 100,
            },
            **_state(response_id),
        }
    )


def video_progress_frame(
    video_id: str, post_id: str, progress: int, user_id: str, resolution: str | None = None
) -> Frame:
    """A `streamingVideoGenerationResponse` frame; the first names the resolution, the last urls."""
    body: Frame = {"videoId": video_id, "progress": progress, "videoPostId": post_id}
    if resolution is not None:
        body["resolutionName"] = resolution
    if progress >= 100:
        base = f"users/{user_id}/generated/{video_id}"
        body = {
            "videoId": video_id,
            "progress": progress,
            "assetId": video_id,
            "videoPostId": post_id,
            "videoUrl": f"{base}/generated_video.mp4",
            "thumbnailImageUrl": f"{base}/preview_image.jpg",
            "moderated": False,
        }
    return _wrap({"streamingVideoGenerationResponse": body})


def model_response(
    *,
    response_id: str,
    parent_response_id: str,
    message: str,
    created: float,
    model: str,
    request_model: str,
    mode_label: str,
    request_mode: str,
    effort: str,
    trace_id: str,
    deepsearch_preset: str = "",
    generated_image_urls: list[str] | None = None,
    web_search_results: list[Frame] | None = None,
    card_attachments_json: list[str] | None = None,
    stream_errors: list[Frame] | None = None,
) -> Frame:
    """The full assistant record sent after the soft stop."""
    return {
        "responseId": response_id,
        "message": message,
        "sender": "assistant",
        "createTime": iso_time(created),
        "parentResponseId": parent_response_id,
        **_turn_lists_head(),
        "webSearchResults": list(web_search_results or []),
        "xpostIds": [],
        "xposts": [],
        "generatedImageUrls": list(generated_image_urls or []),
        "imageAttachments": [],
        "fileAttachments": [],
        "cardAttachmentsJson": list(card_attachments_json or []),
        "fileUris": [],
        "fileAttachmentsMetadata": [],
        "isControl": False,
        "steps": [],
        "imageEditUris": [],
        "mediaTypes": [],
        "webpageUrls": [],
        "metadata": {
            "deepsearchPreset": deepsearch_preset,
            "llm_info": {"modelHash": MODEL_HASH},
            "request_metadata": {
                "effort": effort.lower(),
                "mode": mode_label,
                "model": request_model,
            },
            "request_trace_id": trace_id,
            "ui_layout": {
                "effort": effort,
                "reasoningUiLayout": "FUNCTION_CALL",
                "willThinkLong": effort != "LOW",
            },
        },
        "uiLayout": ui_layout(effort, None, "FUNCTION_CALL"),
        "citedWebSearchResults": [],
        "toolResponses": [],
        "model": model,
        "requestMetadata": {"model": request_model, "mode": request_mode, "effort": effort},
        "ragResults": [],
        "citedRagResults": [],
        "searchProductResults": [],
        "connectorSearchResults": [],
        "collectionSearchResults": [],
        "highlightsStories": [],
        "streamErrors": list(stream_errors or []),
    }


def model_response_frame(record: Frame) -> Frame:
    """The `modelResponse` frame carrying the full assistant record."""
    return _wrap({"modelResponse": record, **_state(record["responseId"])})


def title_frame(new_title: str) -> Frame:
    """Last frame of `conversations/new`: the generated conversation title."""
    return {"result": {"title": {"newTitle": new_title}}}


def error_body(code: int, message: str) -> Frame:
    """The top-level error object (HTTP error body, or an in-band first line with HTTP 200)."""
    return {"error": {"code": code, "message": message, "details": []}}


USAGE_LIMIT_MESSAGE = "You've reached your usage limit. Please try again later."


def usage_limit_frame() -> Frame:
    """The nested in-stream usage-limit error (HTTP 200)."""
    return _wrap(
        {
            "error": {"message": USAGE_LIMIT_MESSAGE},
            "cardAttachment": {
                "jsonData": dumps({"image_chunk": {"progress": 100, "systemErrCode": "rate_limit"}})
            },
        }
    )


def session_body(status: str, user_id: str = "", email: str = "", org_id: str = "") -> Frame:
    """`GET /api/auth/session`: identity when authenticated, a bare status otherwise."""
    if status != "authenticated":
        return {"status": status}
    return {
        "status": status,
        "session": {"userId": user_id, "email": email, "organizationId": org_id},
    }


def rate_limits_body(window: int, remaining: int, total: int) -> Frame:
    """E3 `/rest/rate-limits` answer (body `{"modelName": <mode>}`)."""
    return {
        "windowSizeSeconds": window,
        "remainingQueries": remaining,
        "totalQueries": total,
        "lowEffortRateLimits": None,
        "highEffortRateLimits": None,
    }


def rate_limits_body_late_2025(window: int, remaining: int, total: int, wait: int) -> Frame:
    """Late-2025 answer (body with `requestKind`): tokens, effort buckets and waitTimeSeconds."""
    return {
        "remainingQueries": remaining,
        "remainingTokens": remaining,
        "totalQueries": total,
        "totalTokens": total,
        "windowSizeSeconds": window,
        "waitTimeSeconds": wait,
        "lowEffortRateLimits": {"remainingQueries": remaining, "cost": 1, "waitTimeSeconds": wait},
        "highEffortRateLimits": {
            "remainingQueries": remaining // 4,
            "cost": 4,
            "waitTimeSeconds": wait if remaining < 4 else 0,
        },
    }


def imagine_quota_body(now: float) -> Frame:
    """`GET /rest/media/imagine/quota_info`: static media quotas (2 pro images, no 720p video)."""
    return {
        "image": None,
        "imageEdit": None,
        "imagePro": {"available": True, "remainingQueries": 2, "windowSizeSeconds": 86400},
        "video": None,
        "video720p": {
            "available": True,
            "remainingQueries": 0,
            "windowSizeSeconds": 86400,
            "nextAvailableAt": iso_time(now + 86400, micro=True),
        },
    }


def upload_body(file_metadata_id: str, file_uri: str) -> Frame:
    """`POST /rest/app-chat/upload-file` answer."""
    return {"fileMetadataId": file_metadata_id, "fileUri": file_uri}


def upload_v2_body(upload_id: str, file_metadata_id: str, file_uri: str) -> Frame:
    """`POST /http/upload-file-v2/direct` answer."""
    return {
        "uploadId": upload_id,
        "fileMetadata": {"fileMetadataId": file_metadata_id, "fileUri": file_uri},
    }


def response_nodes_body(nodes: list[Frame]) -> Frame:
    """`GET /rest/app-chat/conversations/{id}/response-node` answer."""
    return {
        "responseNodes": [
            {
                "responseId": n["responseId"],
                "sender": n["sender"],
                **(
                    {"parentResponseId": n["parentResponseId"]} if n.get("parentResponseId") else {}
                ),
            }
            for n in nodes
        ]
    }


# --- E4 "mgw" WebSocket events (served by gateway.py) -----------------------------------------
# Without ids the builders give exactly the sample events; the gateway passes `response_id` and
# `event_id`, and wraps each event with its session (`mgw_envelope`).

CHANNEL_RESPONSE = "CHANNEL_ASSISTANT_RESPONSE"
CHANNEL_ANALYSIS = "CHANNEL_ANALYSIS"
CHANNEL_NOTETAKER = "CHANNEL_ASSISTANT_NOTETAKER_HEADER"


def mgw_event(event_type: str, **fields: Any) -> Frame:
    """An mgw server event `{"event":{"type":..., ...}}`."""
    return {"event": {"type": event_type, **fields}}


def mgw_envelope(session_id: str | None, frame: Frame) -> Frame:
    """A server message: the event with the session it belongs to (None when there is none)."""
    return {"session_id": session_id, **frame}


def _chunk(chunk: Frame, response_id: str | None, event_id: str | None) -> Frame:
    ids: dict[str, Any] = {}
    if event_id is not None:
        ids["event_id"] = event_id
    if response_id is not None:
        ids["response_id"] = response_id
    return mgw_event("response.chunk", **ids, chunk=chunk)


def mgw_text_chunk(
    text: str,
    channel: str = CHANNEL_RESPONSE,
    *,
    response_id: str | None = None,
    event_id: str | None = None,
) -> Frame:
    """An mgw `response.chunk` carrying text on a channel (answer, analysis, notetaker)."""
    return _chunk({"text": {"text": text, "channel": channel}}, response_id, event_id)


def mgw_phase_chunk(
    kind: str, *, response_id: str | None = None, event_id: str | None = None
) -> Frame:
    """A `phase_marker` chunk: `KIND_THINKING_START` or `KIND_RESPONSE_START`."""
    return _chunk({"phase_marker": {"kind": kind}}, response_id, event_id)


def mgw_tool_card_chunk(
    card_id: str,
    tool: str,
    query: str,
    *,
    response_id: str | None = None,
    event_id: str | None = None,
) -> Frame:
    """An mgw `tool_usage_card` chunk (`tool` is `web_search` or `x_search`)."""
    card = {"tool_usage_card_id": card_id, tool: {"args": {"query": query}}}
    return _chunk({"tool_usage_card": card}, response_id, event_id)


def mgw_web_results_chunk(
    call_id: str,
    pages: list[Frame],
    *,
    response_id: str | None = None,
    event_id: str | None = None,
) -> Frame:
    """An mgw web-search `tool_result` chunk with `{url, title, snippet}` pages."""
    result = {"tool_call_id": call_id, "web_search": {"webpages": pages}}
    return _chunk({"tool_result": result}, response_id, event_id)


def mgw_web_result_chunk(call_id: str, url: str, title: str, snippet: str) -> Frame:
    """An mgw web-search `tool_result` chunk with one page."""
    return mgw_web_results_chunk(call_id, [{"url": url, "title": title, "snippet": snippet}])


def mgw_x_result_chunk(
    call_id: str,
    handle: str,
    name: str,
    text: str,
    post_id: str,
    *,
    response_id: str | None = None,
    event_id: str | None = None,
) -> Frame:
    """An mgw X-search `tool_result` chunk."""
    post = {"userhandle": handle, "name": name, "text": text, "post_id": post_id}
    result = {"tool_call_id": call_id, "x_post": {"posts": [post]}}
    return _chunk({"tool_result": result}, response_id, event_id)


def mgw_citation_chunk(
    cid: str,
    kind: str,
    url: str,
    citation_id: int,
    *,
    response_id: str | None = None,
    event_id: str | None = None,
) -> Frame:
    """An mgw `render_citation` chunk."""
    citation = {"id": cid, "kind": kind, "url": url, "citation_id": citation_id}
    return _chunk({"render_citation": citation}, response_id, event_id)


def mgw_grok_output(response_id: str, output: Frame) -> Frame:
    """A `response.grok.output` event (`card_attachment` or `stream_error`)."""
    return mgw_event("response.grok.output", response_id=response_id, output=output)


def mgw_citation_card(response_id: str, card_id: str, url: str, title: str) -> Frame:
    """The citation card a `grok:render` tag's `card_id` points at."""
    return mgw_grok_output(
        response_id, {"card_attachment": {"id": card_id, "url": url, "title": title}}
    )


def mgw_image_card(response_id: str, card_id: str, url: str) -> Frame:
    """A generated image (url relative to assets.grok.com)."""
    card = {"id": card_id, "card_type": "generated_image_card", "url": url}
    return mgw_grok_output(response_id, {"card_attachment": card})


def mgw_stream_error(response_id: str, message: str) -> Frame:
    """The in-band failure of a reply (usage limit), followed by a failed `response.done`."""
    return mgw_grok_output(response_id, {"stream_error": {"message": message}})


def mgw_text_delta(response_id: str, delta: str) -> Frame:
    """Answer text in the Realtime form (`ws_text_format` = `delta`)."""
    return mgw_event("response.output_text.delta", response_id=response_id, delta=delta)


def mgw_text_done(response_id: str, text: str) -> Frame:
    """The Realtime end of the answer text: the whole text once more."""
    return mgw_event("response.output_text.done", response_id=response_id, text=text)


def mgw_response(event_type: str, response_id: str, status: str, **fields: Any) -> Frame:
    """`response.created` / `response.done` with `{response:{id, status}}`."""
    return mgw_event(event_type, **fields, response={"id": response_id, "status": status})


def mgw_error(code: str, message: str, client_event_id: str | None = None) -> Frame:
    """An `error` event; `client_event_id` names the client event it answers, when known."""
    fields: dict[str, Any] = {}
    if client_event_id is not None:
        fields["client_event_id"] = client_event_id
    return mgw_event("error", **fields, error={"code": code, "message": message})
