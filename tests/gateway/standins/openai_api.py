"""A stand-in for the OpenAI API: Chat Completions, Completions, Embeddings and Models, as
documented in OpenAI's API reference (JSON bodies, SSE streams ending in ``data: [DONE]``,
``{"error": {"message", "type", "param", "code"}}`` errors, ``Authorization: Bearer``).

Replies follow :mod:`tests.gateway.standins.behaviour`.
"""

from __future__ import annotations

import base64
import json
import time
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

DEFAULT_API_KEY = "sk-standin-openai-0000"
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
MODEL_CREATED = 1_700_000_000

_DEFAULT_MESSAGES = {
    400: "Invalid request.",
    401: "Incorrect API key provided.",
    403: "You are not allowed to access this resource.",
    404: "The requested resource was not found.",
    409: "The request conflicts with the current state of the resource.",
    422: "The request could not be processed.",
    429: "Rate limit reached for requests. Please try again in 1s.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
    504: "The server did not respond in time.",
}


def _error_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status == 403:
        return "permission_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _error_code(status: int) -> str | None:
    return {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(status)


def _error_body(error: ApiError) -> JSON:
    status = error.status
    return {
        "error": {
            "message": error.message or _DEFAULT_MESSAGES.get(status, f"Error {status}."),
            "type": error.type or _error_type(status),
            "param": error.param,
            # Provider-worded errors carry their own code (often null); bare ones get the usual.
            "code": error.code if error.code is not None or error.message else _error_code(status),
        }
    }


def _error_response(error: ApiError, state: StandinState) -> Response:
    return JSONResponse(_error_body(error), status_code=error.status)


def _error_event(error: ApiError) -> Event:
    return Event(json.dumps(_error_body(error)))


def _encode(event: Event) -> bytes:
    return f"data: {event.data}\n\n".encode()


def _check_auth(request: Request, state: StandinState, entry: RecordedRequest) -> ApiError | None:
    if not state.api_keys:
        return None
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    entry.authorized = scheme.lower() == "bearer" and key.strip() in state.api_keys
    if entry.authorized:
        return None
    if not key.strip():
        return ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    shown = f"{key[:3]}{'*' * max(len(key) - 7, 0)}{key[-4:]}" if len(key) > 7 else "***"
    return ApiError(
        401,
        f"Incorrect API key provided: {shown}. "
        "You can find your API key at https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


def _headers(state: StandinState) -> dict[str, str]:
    return {"x-request-id": f"req_{uuid.uuid4().hex}", "openai-processing-ms": "1"}


PROTOCOL = Protocol(
    error_response=_error_response,
    error_event=_error_event,
    encode_event=_encode,
    check_auth=_check_auth,
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
        raise ApiError(400, "you must provide a model parameter", param="model")
    if model not in state.models:
        raise ApiError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    return model


def _text_of(content: Any) -> tuple[str, int]:
    """Text and image count of a message's content (a string or a list of parts)."""
    if isinstance(content, str):
        return content, 0
    texts, images = [], 0
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") in ("text", "input_text", "refusal"):
            texts.append(str(part.get("text") or part.get("refusal") or ""))
        elif part.get("type") in ("image_url", "input_image"):
            images += 1
    return " ".join(texts), images


def _conversation(messages: Any) -> Conversation:
    if not isinstance(messages, list):
        raise ApiError(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not messages:
        raise ApiError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum "
            "length 1, but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    conversation = Conversation()
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiError(
                400,
                f"Invalid value for 'messages[{index}]': expected an object with a 'role'.",
                param=f"messages[{index}]",
            )
        text, images = _text_of(message.get("content"))
        conversation.texts.append(text)
        if message["role"] == "user":
            conversation.last_user_text, conversation.images = text, images
    last = messages[-1]
    if last["role"] in ("tool", "function"):
        conversation.tool_result = _text_of(last.get("content"))[0]
    return conversation


def _tools(body: JSON) -> list[ToolSpec]:
    tools = []
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            tools.append(ToolSpec(function["name"], function.get("parameters") or {}))
    return tools


def _tool_choice(body: JSON) -> str | None:
    choice = body.get("tool_choice")
    if choice == "required":
        return "any"
    if choice == "none":
        return "none"
    if isinstance(choice, dict):
        function = choice.get("function") or {}
        return str(function.get("name") or choice.get("name") or "")
    return None


def _stop(body: JSON) -> list[str]:
    stop = body.get("stop")
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop or [] if isinstance(s, str)]


def _max_tokens(body: JSON) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return None
    if not isinstance(value, int) or value < 1:
        raise ApiError(
            400,
            f"Invalid 'max_tokens': integer below minimum value. Expected a "
            f"value >= 1, but got {value} instead.",
            param="max_tokens",
            code="integer_below_min_value",
        )
    return value


def _finish(reply: Reply) -> str:
    return {"stop_sequence": "stop", "tool_calls": "tool_calls"}.get(reply.finish, reply.finish)


def _usage(prompt: int, completion: int) -> JSON:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _include_usage(body: JSON) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


# handlers


async def chat_completions(request: Request, body: Any) -> JSON | EventStream:
    state: StandinState = request.app.state.standin
    body = _require_object(body)
    model = _model(body, state)
    conversation = _conversation(body.get("messages"))
    response_format = body.get("response_format") or {}
    json_schema = None
    if response_format.get("type") == "json_schema":
        json_schema = (response_format.get("json_schema") or {}).get("schema") or {}
    reply = behaviour.reply_to(
        conversation,
        tools=_tools(body),
        tool_choice=_tool_choice(body),
        max_tokens=_max_tokens(body),
        stop=_stop(body),
        json_schema=json_schema,
        json_mode=response_format.get("type") == "json_object",
    )
    completion_id = state.next_id("chatcmpl-")
    call_ids = [state.next_id("call_") for _ in reply.tool_calls]
    calls: list[JSON] = [
        {
            "id": call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments_json},
        }
        for call_id, call in zip(call_ids, reply.tool_calls, strict=True)
    ]
    usage = _usage(conversation.prompt_tokens, reply.completion_tokens)
    head = {
        "id": completion_id,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_standin",
    }
    if not body.get("stream"):
        message: JSON = {
            "role": "assistant",
            "content": None if calls else reply.text,
            "refusal": None,
            "annotations": [],
        }
        if calls:
            message["tool_calls"] = calls
        return {
            **head,
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(reply)}
            ],
            "usage": usage,
        }
    with_usage = _include_usage(body)

    def chunk(delta: JSON, finish: str | None = None) -> Event:
        data: JSON = {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if with_usage:
            data["usage"] = None
        return Event(json.dumps(data))

    events = [chunk({"role": "assistant", "content": None if calls else "", "refusal": None})]
    if calls:
        for index, (call_id, call) in enumerate(zip(call_ids, reply.tool_calls, strict=True)):
            function = {"name": call.name, "arguments": ""}
            opening = {"index": index, "id": call_id, "type": "function", "function": function}
            events.append(chunk({"tool_calls": [opening]}))
            events += [
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                for piece in behaviour.json_pieces(call.arguments_json)
            ]
    else:
        events += [chunk({"content": piece}) for piece in behaviour.stream_pieces(reply.text)]
    events.append(chunk({}, _finish(reply)))
    if with_usage:
        events.append(
            Event(
                json.dumps(
                    {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                )
            )
        )
    events.append(Event("[DONE]"))
    return EventStream(events)


def _prompts(prompt: Any) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
        return [" ".join(str(token) for token in prompt)]
    if isinstance(prompt, list) and prompt:
        return [p if isinstance(p, str) else " ".join(map(str, p)) for p in prompt]
    raise ApiError(
        400,
        "Missing required parameter: 'prompt'.",
        param="prompt",
        code="missing_required_parameter",
    )


async def completions(request: Request, body: Any) -> JSON | EventStream:
    state: StandinState = request.app.state.standin
    body = _require_object(body)
    model = _model(body, state)
    prompts = _prompts(body.get("prompt"))
    max_tokens = body.get("max_tokens")
    if max_tokens is None:  # absent or null: the documented default of this legacy API
        max_tokens = 16
    if not isinstance(max_tokens, int) or max_tokens < 0:
        raise ApiError(
            400, "Invalid 'max_tokens': expected a non-negative integer.", param="max_tokens"
        )
    replies = [
        behaviour.reply_to(
            Conversation(last_user_text=p, texts=[p]), max_tokens=max_tokens, stop=_stop(body)
        )
        for p in prompts
    ]
    usage = _usage(
        sum(behaviour.count_tokens(p) for p in prompts), sum(r.completion_tokens for r in replies)
    )
    head = {
        "id": state.next_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_standin",
    }
    if not body.get("stream"):
        return {
            **head,
            "usage": usage,
            "choices": [
                {"text": r.text, "index": i, "logprobs": None, "finish_reason": _finish(r)}
                for i, r in enumerate(replies)
            ],
        }
    with_usage = _include_usage(body)

    def chunk(index: int, text: str, finish: str | None = None) -> Event:
        data: JSON = {
            **head,
            "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": finish}],
        }
        if with_usage:
            data["usage"] = None
        return Event(json.dumps(data))

    events = []
    for index, reply in enumerate(replies):
        events += [chunk(index, piece) for piece in behaviour.stream_pieces(reply.text)]
        events.append(chunk(index, "", _finish(reply)))
    if with_usage:
        events.append(Event(json.dumps({**head, "choices": [], "usage": usage})))
    events.append(Event("[DONE]"))
    return EventStream(events)


def _embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """(text to hash, token count) per input."""
    if isinstance(value, str) and value:
        return [(value, behaviour.count_tokens(value))]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [(" ".join(map(str, value)), len(value))]
    if isinstance(value, list) and value:
        inputs = []
        for item in value:
            if isinstance(item, str) and item:
                inputs.append((item, behaviour.count_tokens(item)))
            elif isinstance(item, list) and item and all(isinstance(v, int) for v in item):
                inputs.append((" ".join(map(str, item)), len(item)))
            else:
                break
        else:
            return inputs
    raise ApiError(
        400,
        "'$.input' is invalid. Please check the API reference: "
        "https://platform.openai.com/docs/api-reference.",
        param="input",
    )


async def embeddings(request: Request, body: Any) -> JSON:
    state: StandinState = request.app.state.standin
    body = _require_object(body)
    model = _model(body, state)
    inputs = _embedding_inputs(body.get("input"))
    dim = body.get("dimensions") or state.embedding_dim
    if not isinstance(dim, int) or dim < 1:
        raise ApiError(
            400, "Invalid 'dimensions': expected a positive integer.", param="dimensions"
        )
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise ApiError(
            400,
            f"Invalid value for 'encoding_format': '{encoding}'. Supported "
            "values are: 'float' and 'base64'.",
            param="encoding_format",
        )
    data = []
    for index, (text, _) in enumerate(inputs):
        vector = behaviour.embedding(text, dim)
        encoded: Any = vector
        if encoding == "base64":
            encoded = base64.b64encode(behaviour.float32_bytes(vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(count for _, count in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _model_object(model: str) -> JSON:
    return {"id": model, "object": "model", "created": MODEL_CREATED, "owned_by": "standin"}


async def list_models(request: Request, body: Any) -> JSON:
    state: StandinState = request.app.state.standin
    return {"object": "list", "data": [_model_object(m) for m in state.models]}


async def retrieve_model(request: Request, body: Any) -> JSON:
    state: StandinState = request.app.state.standin
    model = request.path_params["model"]
    if model not in state.models:
        raise ApiError(
            404, f"The model '{model}' does not exist", param="model", code="model_not_found"
        )
    return _model_object(model)


async def unknown_route(request: Request, body: Any) -> JSON:
    raise ApiError(404, f"Invalid URL ({request.method} {request.url.path})")


def create_openai_app(
    *,
    models: Iterable[str] = DEFAULT_MODELS,
    api_keys: Iterable[str] = (DEFAULT_API_KEY,),
    embedding_dim: int = 16,
) -> Starlette:
    """The stand-in app; its :class:`StandinState` is ``app.state.standin``.

    ``api_keys=()`` accepts requests without checking credentials.
    """
    hide_stream_cuts_from_logs()
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", endpoint(PROTOCOL, chat_completions), methods=["POST"]),
            Route("/v1/completions", endpoint(PROTOCOL, completions), methods=["POST"]),
            Route("/v1/embeddings", endpoint(PROTOCOL, embeddings), methods=["POST"]),
            Route("/v1/models", endpoint(PROTOCOL, list_models), methods=["GET"]),
            Route("/v1/models/{model:path}", endpoint(PROTOCOL, retrieve_model), methods=["GET"]),
            Route(
                "/{path:path}",
                endpoint(PROTOCOL, unknown_route),
                methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            ),
        ]
    )
    app.state.standin = StandinState(models=models, api_keys=api_keys, embedding_dim=embedding_dim)
    return app
