"""A stand-in for the Anthropic API: Messages (plain and streamed as named SSE events),
token counting and Models, as documented in Anthropic's API reference.

Requests need credentials and an ``anthropic-version`` header. Credentials are accepted as
``x-api-key`` (the documented header) and, unless ``accept_bearer=False``, as
``Authorization: Bearer`` too, which is what the official Python SDK 2.x sends for
``api_key=``. Errors are ``{"type": "error", "error": {"type", "message"}, "request_id"}``.
Anthropic has no embeddings endpoint.

Replies follow :mod:`tests.gateway.standins.behaviour`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.gateway.standins import behaviour
from tests.gateway.standins.behaviour import Conversation, Reply, ToolSpec
from tests.gateway.standins.state import RecordedRequest, StandinState
from tests.gateway.standins.wire import (
    JSON,
    ApiError,
    Event,
    EventStream,
    Protocol,
    endpoint,
    hide_stream_cuts_from_logs,
)

DEFAULT_API_KEY = "sk-ant-standin-0000"
DEFAULT_MODELS = ("claude-sonnet-4-6", "claude-haiku-4-5")
MODEL_CREATED_AT = "2025-09-29T00:00:00Z"

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_DEFAULT_MESSAGES = {
    400: "Invalid request.",
    401: "invalid x-api-key",
    402: "Your credit balance is too low to access the Anthropic API.",
    403: "Your API key does not have permission to use the specified resource.",
    404: "Not found.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of request tokens has exceeded your per-minute rate limit.",
    500: "Internal server error.",
    503: "Service unavailable.",
    504: "Request timed out.",
    529: "Overloaded",
}


def _error_payload(error: ApiError) -> JSON:
    status = error.status
    kind = error.type or _ERROR_TYPES.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    message = error.message or _DEFAULT_MESSAGES.get(status, f"Error {status}.")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _error_response(error: ApiError, state: StandinState) -> Response:
    request_id = f"req_{uuid.uuid4().hex}"
    body = {**_error_payload(error), "request_id": request_id}
    return JSONResponse(body, status_code=error.status, headers={"request-id": request_id})


def _error_event(error: ApiError) -> Event:
    return Event(json.dumps(_error_payload(error)), name="error")


def _encode(event: Event) -> bytes:
    return f"event: {event.name}\ndata: {event.data}\n\n".encode()


def _headers(state: StandinState) -> dict[str, str]:
    return {
        "request-id": f"req_{uuid.uuid4().hex}",
        "anthropic-organization-id": "standin-organization",
    }


def _protocol(accept_bearer: bool) -> Protocol:
    def check_auth(
        request: Request, state: StandinState, entry: RecordedRequest
    ) -> ApiError | None:
        if state.api_keys:
            key = request.headers.get("x-api-key", "").strip()
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if not key and accept_bearer and scheme.lower() == "bearer":
                key = token.strip()
            entry.authorized = key in state.api_keys
            if not key:
                return ApiError(401, "x-api-key header is required")
            if not entry.authorized:
                return ApiError(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return ApiError(400, "anthropic-version: header is required")
        return None

    return Protocol(
        error_response=_error_response,
        error_event=_error_event,
        encode_event=_encode,
        check_auth=check_auth,
        response_headers=_headers,
    )


# request parsing


def _require_object(body: Any) -> JSON:
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def _model(body: JSON, state: StandinState) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model: Field required")
    if model not in state.models:
        raise ApiError(404, f"model: {model}")
    return model


def _block_text(block: Any) -> str:
    """Text carried by a content block (tool results nest their own content)."""
    if not isinstance(block, dict):
        return ""
    if block.get("type") == "text":
        return str(block.get("text", ""))
    if block.get("type") == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            return content
        return " ".join(_block_text(inner) for inner in content or [])
    return ""


def _conversation(body: JSON) -> Conversation:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ApiError(400, "messages: Field required")
    if not messages:
        raise ApiError(400, "messages: at least one message is required")
    conversation = Conversation()
    system = body.get("system")
    if isinstance(system, str):
        conversation.texts.append(system)
    elif isinstance(system, list):
        conversation.texts += [_block_text(block) for block in system]
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise ApiError(400, f"messages.{index}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            raise ApiError(400, f"messages.{index}.content: Field required")
        blocks = [block for block in blocks if isinstance(block, dict)]
        conversation.texts += [_block_text(block) for block in blocks]
        if role == "user":
            texts = [b.get("text", "") for b in blocks if b.get("type") == "text"]
            conversation.last_user_text = " ".join(texts)
            conversation.images = sum(1 for b in blocks if b.get("type") == "image")
        results = [_block_text(b) for b in blocks if b.get("type") == "tool_result"]
        # Only a conversation that ends on tool results is answered with their content.
        conversation.tool_result = " ".join(results) if role == "user" and results else None
    return conversation


def _tools(body: JSON) -> list[ToolSpec]:
    return [
        ToolSpec(tool["name"], tool.get("input_schema") or {})
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and isinstance(tool.get("name"), str) and "input_schema" in tool
    ]


def _tool_choice(body: JSON) -> str | None:
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "tool":
        return str(choice.get("name") or "")
    if kind in ("any", "none"):
        return str(kind)
    return None


def _max_tokens(body: JSON) -> int:
    value = body.get("max_tokens")
    if value is None:
        raise ApiError(400, "max_tokens: Field required")
    if not isinstance(value, int) or value < 1:
        raise ApiError(400, "max_tokens: Input should be greater than or equal to 1")
    return value


def _stop_reason(reply: Reply) -> str:
    return {
        "stop": "end_turn",
        "length": "max_tokens",
        "stop_sequence": "stop_sequence",
        "tool_calls": "tool_use",
    }[reply.finish]


# handlers


async def messages(request: Request, body: Any) -> JSON | EventStream:
    state: StandinState = request.app.state.standin
    body = _require_object(body)
    model = _model(body, state)
    max_tokens = _max_tokens(body)
    conversation = _conversation(body)
    stop = body.get("stop_sequences") or []
    reply = behaviour.reply_to(
        conversation,
        tools=_tools(body),
        tool_choice=_tool_choice(body),
        max_tokens=max_tokens,
        stop=[s for s in stop if isinstance(s, str)],
    )
    blocks: list[JSON] = [
        {
            "type": "tool_use",
            "id": state.next_id("toolu_"),
            "name": call.name,
            "input": call.arguments,
        }
        for call in reply.tool_calls
    ] or [{"type": "text", "text": reply.text}]
    usage = {
        "input_tokens": conversation.prompt_tokens,
        "output_tokens": reply.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    }
    message = {
        "id": state.next_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": _stop_reason(reply),
        "stop_sequence": reply.stop_sequence,
        "usage": usage,
    }
    if not body.get("stream"):
        return message

    def event(data: JSON) -> Event:
        return Event(json.dumps(data), name=data["type"])

    # The documented opening: output_tokens is already 1 in message_start; the cumulative
    # count arrives in message_delta.
    events = [
        event(
            {
                "type": "message_start",
                "message": {
                    **message,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {**usage, "output_tokens": 1},
                },
            }
        )
    ]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            events.append(
                event(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    }
                )
            )
            deltas = [
                {"type": "text_delta", "text": piece}
                for piece in behaviour.stream_pieces(block["text"])
            ]
        else:
            events.append(
                event(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {**block, "input": {}},
                    }
                )
            )
            deltas = [
                {"type": "input_json_delta", "partial_json": piece}
                for piece in behaviour.json_pieces(json.dumps(block["input"]))
            ]
        if index == 0:
            events.append(event({"type": "ping"}))
        events += [
            event({"type": "content_block_delta", "index": index, "delta": delta})
            for delta in deltas
        ]
        events.append(event({"type": "content_block_stop", "index": index}))
    events.append(
        event(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": message["stop_reason"],
                    "stop_sequence": reply.stop_sequence,
                },
                "usage": {"output_tokens": reply.completion_tokens},
            }
        )
    )
    events.append(event({"type": "message_stop"}))
    return EventStream(events)


async def count_tokens(request: Request, body: Any) -> JSON:
    state: StandinState = request.app.state.standin
    body = _require_object(body)
    _model(body, state)
    return {"input_tokens": _conversation(body).prompt_tokens}


def _model_object(model: str) -> JSON:
    display_name = re.sub(r"(\d)-(\d)", r"\1.\2", model).replace("-", " ").title()
    return {
        "type": "model",
        "id": model,
        "display_name": display_name,
        "created_at": MODEL_CREATED_AT,
    }


async def list_models(request: Request, body: Any) -> JSON:
    state: StandinState = request.app.state.standin
    models = list(state.models)
    after, before = request.query_params.get("after_id"), request.query_params.get("before_id")
    if after in models:
        models = models[models.index(after) + 1 :]
    if before in models:
        models = models[: models.index(before)]
    limit = int(request.query_params.get("limit") or 20)
    page = models[:limit]
    return {
        "data": [_model_object(m) for m in page],
        "has_more": len(models) > len(page),
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }


async def retrieve_model(request: Request, body: Any) -> JSON:
    state: StandinState = request.app.state.standin
    model = request.path_params["model"]
    if model not in state.models:
        raise ApiError(404, f"model: {model}")
    return _model_object(model)


async def unknown_route(request: Request, body: Any) -> JSON:
    raise ApiError(404, "Not Found")


def create_anthropic_app(
    *,
    models: Iterable[str] = DEFAULT_MODELS,
    api_keys: Iterable[str] = (DEFAULT_API_KEY,),
    accept_bearer: bool = True,
) -> Starlette:
    """The stand-in app; its :class:`StandinState` is ``app.state.standin``.

    ``api_keys=()`` skips the credential check (``anthropic-version`` is still required).
    """
    hide_stream_cuts_from_logs()
    protocol = _protocol(accept_bearer)
    app = Starlette(
        routes=[
            Route("/v1/messages", endpoint(protocol, messages), methods=["POST"]),
            Route("/v1/messages/count_tokens", endpoint(protocol, count_tokens), methods=["POST"]),
            Route("/v1/models", endpoint(protocol, list_models), methods=["GET"]),
            Route("/v1/models/{model:path}", endpoint(protocol, retrieve_model), methods=["GET"]),
            Route(
                "/{path:path}",
                endpoint(protocol, unknown_route),
                methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            ),
        ]
    )
    app.state.standin = StandinState(models=models, api_keys=api_keys)
    return app
