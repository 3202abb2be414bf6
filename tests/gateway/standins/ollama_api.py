"""A stand-in for Ollama's native API: /api/chat, /api/generate, /api/embed (and the older
/api/embeddings), /api/tags, /api/show, /api/ps, /api/version, as documented in Ollama's
docs/api.md. Streams are NDJSON (``application/x-ndjson``) and on by default; errors are
``{"error": "..."}``. No credentials unless ``api_keys`` is given (then ``Bearer``).

Replies follow :mod:`tests.gateway.standins.behaviour`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
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

DEFAULT_MODELS = ("llama3.2:latest", "nomic-embed-text:latest")
VERSION = "0.12.0"
MODIFIED_AT = "2025-01-01T00:00:00Z"
NDJSON = "application/x-ndjson"

_DEFAULT_MESSAGES = {
    400: "invalid request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    429: "too many requests",
    500: "internal server error",
    503: "server busy, please try again.  maximum pending requests exceeded",
}


def _message(error: ApiError) -> str:
    return error.message or _DEFAULT_MESSAGES.get(error.status, f"error {error.status}")


def _error_response(error: ApiError, state: StandinState) -> Response:
    return JSONResponse({"error": _message(error)}, status_code=error.status)


def _error_event(error: ApiError) -> Event:
    return Event(json.dumps({"error": _message(error)}))


def _encode(event: Event) -> bytes:
    return f"{event.data}\n".encode()


def _check_auth(request: Request, state: StandinState, entry: RecordedRequest) -> ApiError | None:
    if not state.api_keys:
        return None
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    entry.authorized = scheme.lower() == "bearer" and key.strip() in state.api_keys
    return None if entry.authorized else ApiError(401, "unauthorized")


PROTOCOL = Protocol(
    error_response=_error_response,
    error_event=_error_event,
    encode_event=_encode,
    check_auth=_check_auth,
)


# request parsing


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _require_object(body: Any) -> JSON:
    if not isinstance(body, dict):
        raise ApiError(400, "invalid request body")
    return body


def _model(body: JSON, state: StandinState) -> str:
    """The model name as requested (Ollama echoes it); ``name`` means ``name:latest``."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required")
    if model not in state.models and f"{model}:latest" not in state.models:
        raise ApiError(404, f'model "{model}" not found, try pulling it first')
    return model


def _options(body: JSON) -> tuple[int | None, list[str]]:
    options = body.get("options") or {}
    limit = options.get("num_predict")
    stop = options.get("stop") or []
    max_tokens = limit if isinstance(limit, int) and limit >= 0 else None
    return max_tokens, [s for s in stop if isinstance(s, str)]


def _format(body: JSON) -> tuple[dict[str, Any] | None, bool]:
    form = body.get("format")
    if isinstance(form, dict):
        return form, False
    return None, form == "json"


def _stats(prompt: int, completion: int) -> JSON:
    # Durations in nanoseconds, fixed so that replies are reproducible.
    load, prompt_ns, eval_ns = 1_000_000, prompt * 1_000_000, completion * 1_000_000
    return {
        "total_duration": load + prompt_ns + eval_ns,
        "load_duration": load,
        "prompt_eval_count": prompt,
        "prompt_eval_duration": prompt_ns,
        "eval_count": completion,
        "eval_duration": eval_ns,
    }


def _done_reason(reply: Reply) -> str:
    return "length" if reply.finish == "length" else "stop"


def _conversation(messages: Any) -> Conversation:
    if not isinstance(messages, list):
        raise ApiError(400, "messages is required")
    conversation = Conversation()
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiError(400, "invalid message format")
        text = message.get("content") or ""
        if not isinstance(text, str):
            raise ApiError(400, "invalid message content: expected a string")
        conversation.texts.append(text)
        if message["role"] == "user":
            conversation.last_user_text = text
            conversation.images = len(message.get("images") or [])
    if messages and messages[-1]["role"] == "tool":
        conversation.tool_result = messages[-1].get("content") or ""
    return conversation


def _tools(body: JSON) -> list[ToolSpec]:
    tools = []
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            tools.append(ToolSpec(function["name"], function.get("parameters") or {}))
    return tools


# handlers


async def chat(request: Request, body: Any) -> JSON | EventStream:
    state: StandinState = request.app.state.standin
    body = _require_object(body)
    model = _model(body, state)
    messages = body.get("messages")
    if messages == [] or messages is None:
        # Documented: an empty conversation only loads the model.
        return {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": ""},
            "done_reason": "load",
            "done": True,
        }
    conversation = _conversation(messages)
    max_tokens, stop = _options(body)
    json_schema, json_mode = _format(body)
    reply = behaviour.reply_to(
        conversation,
        tools=_tools(body),
        max_tokens=max_tokens,
        stop=stop,
        json_schema=json_schema,
        json_mode=json_mode,
    )
    calls = [
        {"function": {"name": call.name, "arguments": call.arguments}} for call in reply.tool_calls
    ]
    stats = _stats(conversation.prompt_tokens, reply.completion_tokens)
    message: JSON = {"role": "assistant", "content": reply.text}
    if calls:
        message["tool_calls"] = calls
    if not body.get("stream", True):
        return {
            "model": model,
            "created_at": _now(),
            "message": message,
            "done_reason": _done_reason(reply),
            "done": True,
            **stats,
        }

    def chunk(data: JSON) -> Event:
        return Event(json.dumps({"model": model, "created_at": _now(), **data}))

    if calls:
        events = [
            chunk(
                {
                    "message": {"role": "assistant", "content": "", "tool_calls": calls},
                    "done": False,
                }
            )
        ]
    else:
        events = [
            chunk({"message": {"role": "assistant", "content": piece}, "done": False})
            for piece in behaviour.stream_pieces(reply.text)
        ]
    events.append(
        chunk(
            {
                "message": {"role": "assistant", "content": ""},
                "done_reason": _done_reason(reply),
                "done": True,
                **stats,
            }
        )
    )
    return EventStream(events, media_type=NDJSON)


async def generate(request: Request, body: Any) -> JSON | EventStream:
    state: StandinState = request.app.state.standin
    body = _require_object(body)
    model = _model(body, state)
    prompt = body.get("prompt") or ""
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be a string")
    if not prompt:
        return {
            "model": model,
            "created_at": _now(),
            "response": "",
            "done": True,
            "done_reason": "load",
        }
    system = body.get("system") if isinstance(body.get("system"), str) else ""
    conversation = Conversation(
        last_user_text=prompt, images=len(body.get("images") or []), texts=[system, prompt]
    )
    max_tokens, stop = _options(body)
    json_schema, json_mode = _format(body)
    reply = behaviour.reply_to(
        conversation, max_tokens=max_tokens, stop=stop, json_schema=json_schema, json_mode=json_mode
    )
    stats = _stats(conversation.prompt_tokens, reply.completion_tokens)
    context = list(range(1, conversation.prompt_tokens + reply.completion_tokens + 1))
    final = {"done": True, "done_reason": _done_reason(reply), "context": context, **stats}
    if not body.get("stream", True):
        return {"model": model, "created_at": _now(), "response": reply.text, **final}
    events = [
        Event(json.dumps({"model": model, "created_at": _now(), "response": piece, "done": False}))
        for piece in behaviour.stream_pieces(reply.text)
    ]
    events.append(
        Event(json.dumps({"model": model, "created_at": _now(), "response": "", **final}))
    )
    return EventStream(events, media_type=NDJSON)


async def embed(request: Request, body: Any) -> JSON:
    state: StandinState = request.app.state.standin
    body = _require_object(body)
    model = _model(body, state)
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not all(isinstance(text, str) for text in inputs):
        raise ApiError(400, "invalid input type")
    dim = body.get("dimensions") or state.embedding_dim
    if not isinstance(dim, int) or dim < 1:
        raise ApiError(400, "dimensions must be a positive integer")
    tokens = sum(behaviour.count_tokens(text) for text in inputs)
    stats = _stats(tokens, 0)
    return {
        "model": model,
        "embeddings": [behaviour.embedding(text, dim) for text in inputs],
        "total_duration": stats["total_duration"],
        "load_duration": stats["load_duration"],
        "prompt_eval_count": tokens,
    }


async def embeddings_legacy(request: Request, body: Any) -> JSON:
    state: StandinState = request.app.state.standin
    body = _require_object(body)
    _model(body, state)
    prompt = body.get("prompt") or ""
    return {"embedding": behaviour.embedding(prompt, state.embedding_dim) if prompt else []}


def _details() -> JSON:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": "standin",
        "families": ["standin"],
        "parameter_size": "1B",
        "quantization_level": "Q4_K_M",
    }


async def tags(request: Request, body: Any) -> JSON:
    state: StandinState = request.app.state.standin
    return {
        "models": [
            {
                "name": name,
                "model": name,
                "modified_at": MODIFIED_AT,
                "size": 1_000_000,
                "digest": hashlib.sha256(name.encode()).hexdigest(),
                "details": _details(),
            }
            for name in state.models
        ]
    }


async def show(request: Request, body: Any) -> JSON:
    state: StandinState = request.app.state.standin
    body = _require_object(body)
    if "model" not in body and "name" in body:
        body = {**body, "model": body["name"]}
    _model(body, state)
    return {
        "modelfile": "",
        "parameters": "",
        "template": "{{ .Prompt }}",
        "details": _details(),
        "model_info": {
            "general.architecture": "standin",
            "standin.context_length": 8192,
            "standin.embedding_length": state.embedding_dim,
        },
        "capabilities": ["completion", "tools"],
        "modified_at": MODIFIED_AT,
    }


async def ps(request: Request, body: Any) -> JSON:
    return {"models": []}


async def version(request: Request, body: Any) -> JSON:
    return {"version": VERSION}


async def root(request: Request, body: Any) -> Response:
    return PlainTextResponse("Ollama is running")


async def unknown_route(request: Request, body: Any) -> Response:
    # Ollama's Go router answers unknown paths in plain text.
    return PlainTextResponse("404 page not found", status_code=404)


def create_ollama_app(
    *,
    models: Iterable[str] = DEFAULT_MODELS,
    api_keys: Iterable[str] = (),
    embedding_dim: int = 16,
) -> Starlette:
    """The stand-in app; its :class:`StandinState` is ``app.state.standin``."""
    hide_stream_cuts_from_logs()
    app = Starlette(
        routes=[
            Route("/", endpoint(PROTOCOL, root), methods=["GET", "HEAD"]),
            Route("/api/chat", endpoint(PROTOCOL, chat), methods=["POST"]),
            Route("/api/generate", endpoint(PROTOCOL, generate), methods=["POST"]),
            Route("/api/embed", endpoint(PROTOCOL, embed), methods=["POST"]),
            Route("/api/embeddings", endpoint(PROTOCOL, embeddings_legacy), methods=["POST"]),
            Route("/api/tags", endpoint(PROTOCOL, tags), methods=["GET"]),
            Route("/api/show", endpoint(PROTOCOL, show), methods=["POST"]),
            Route("/api/ps", endpoint(PROTOCOL, ps), methods=["GET"]),
            Route("/api/version", endpoint(PROTOCOL, version), methods=["GET"]),
            Route(
                "/{path:path}",
                endpoint(PROTOCOL, unknown_route),
                methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"],
            ),
        ]
    )
    app.state.standin = StandinState(models=models, api_keys=api_keys, embedding_dim=embedding_dim)
    return app
