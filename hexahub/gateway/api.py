"""The model APIs: OpenAI-compatible /v1/chat/completions, /v1/completions,
/v1/embeddings, /v1/models, and Anthropic-compatible /v1/messages (+ count_tokens).

Callers authenticate with a HexaHub API key (`Authorization: Bearer` or `x-api-key`) that
has the `gateway` scope, or an access token. The workspace a request counts against is the
key's workspace, else the one named by the `X-HexaHub-Workspace` header (id or slug), else
the caller's first workspace where they are at least a member.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from hexahub.core.errors import Forbidden
from hexahub.core.openapi import SSE_EVENT, json_body
from hexahub.gateway import callers, validate
from hexahub.gateway.callers import Caller
from hexahub.gateway.engine import CallContext, Gateway, StreamResult, StreamTally
from hexahub.gateway.errors import AnthropicRoute, OpenAIRoute, anthropic_error, openai_error
from hexahub.gateway.providers.base import JSON, UpstreamError
from hexahub.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    CountTokensRequest,
    EmbeddingsRequest,
    MessagesRequest,
)
from hexahub.gateway.tokens import estimate_tokens
from hexahub.gateway.translate import anthropic as translate
from hexahub.identity import keys
from hexahub.identity.authz import (
    admit,
    bearer_credential,
    client_ip,
    credentials,
    require_user,
)

log = logging.getLogger("hexahub.gateway.api")

# What any /v1 route may answer besides its result, in each API's own error shape
# (hexahub.gateway.errors); model calls may answer MODEL_CALL_ERRORS too, among them a
# provider's own refusal, passed on with its status.
CALLER_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API key or access token, or one that is not valid"},
    403: {"description": "The caller may not use the gateway, or no workspace to count in"},
    404: {"description": "No workspace as named in X-HexaHub-Workspace"},
    429: {"description": "A rate limit or budget was reached; see Retry-After"},
}
MODEL_CALL_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "The request is not valid (`param` names the field), or the "
        "provider refused it"
    },
    403: {"description": "The caller may not use this model (e.g. a local-only workspace)"},
    404: {"description": "No such model (the message lists those there are)"},
    413: {"description": "The request body is larger than the configured limit"},
    502: {"description": "The provider failed or answered something unusable"},
    503: {"description": "No deployment of the model can take the request now"},
    504: {"description": "The provider did not answer in time"},
}
STREAMED: dict[int | str, dict[str, Any]] = {
    **MODEL_CALL_ERRORS,
    200: {
        "description": "The result (JSON), or its events (`stream: true`)",
        "content": {"application/json": {}, "text/event-stream": {"schema": SSE_EVENT}},
    },
}

openai_router = APIRouter(
    prefix="/v1",
    tags=["gateway (OpenAI-compatible)"],
    route_class=OpenAIRoute,
    responses=CALLER_ERRORS,
)
anthropic_router = APIRouter(
    prefix="/v1",
    tags=["gateway (Anthropic-compatible)"],
    route_class=AnthropicRoute,
    responses=CALLER_ERRORS,
)
require_gateway_caller = require_user("gateway")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def read_json(request: Request, style: validate.Style = "openai") -> dict[str, Any]:
    """The request's JSON object; fields named in `style`'s way when it is refused."""
    return validate.parse_body(await request.body(), style=style)


async def caller_of(request: Request, gateway: Gateway) -> Caller:
    """Who sent this request, under which rules. API keys are remembered for a second
    (hexahub.gateway.callers); access tokens and browser sessions are read each time."""
    credential = bearer_credential(request)
    wanted = request.headers.get("x-hexahub-workspace") or None
    if credential is not None and keys.looks_like_key(credential):
        ip = client_ip(request)
        caller = await gateway.callers.for_key(credential, wanted, ip=ip)
        principal = replace(caller.principal, ip=ip)
        await admit(request, principal)
        return replace(caller, principal=principal)
    # A session of its own, closed before the request goes upstream: a connection held
    # for a whole (maybe streamed, maybe minutes-long) model call starves the pool.
    async with gateway.runtime.db.sessions() as db:
        principal = await require_gateway_caller(request, db)
        return await callers.resolve(db, principal, wanted)


async def call_context(request: Request, _: None = Depends(credentials)) -> CallContext:
    gateway = gateway_of(request)
    caller = await caller_of(request, gateway)
    limits = caller.limits
    wanted_cache = request.headers.get("x-hexahub-cache", "").lower()
    cache = wanted_cache in ("on", "true", "1") or (
        bool(limits and limits.cache) and wanted_cache not in ("off", "false", "0")
    )
    ctx = CallContext.for_caller(caller, cache=cache)
    await gateway.check_limits(ctx)
    return ctx


Context = Depends(call_context)


def _headers(
    gateway: Gateway, ctx: CallContext, deployment: str | None, cached: bool = False
) -> dict[str, str]:
    headers = {
        "X-HexaHub-Overhead-Ms": f"{gateway.overhead_ms(ctx):.2f}",
        "X-HexaHub-Cache": "hit" if cached else ("miss" if ctx.cache else "off"),
    }
    if deployment:
        headers["X-HexaHub-Deployment"] = deployment
    return headers


# --- OpenAI-compatible -----------------------------------------------------------------


@openai_router.post(
    "/chat/completions",
    summary="Create a chat completion (OpenAI format)",
    openapi_extra=json_body(ChatCompletionRequest),
    responses=STREAMED,
)
async def chat_completions(request: Request, ctx: CallContext = Context) -> Response:
    body = await read_json(request)
    gateway = gateway_of(request)
    asked = gateway.enrichments(request.headers, body)
    validate.chat_request(body)
    model = body["model"]
    cited = await gateway.enrich(ctx, model, asked, body)
    if body.get("stream"):
        result = await gateway.stream(ctx, "chat", model, body)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _openai_sse(gateway, ctx, "chat", model, body, result, include_usage),
            media_type="text/event-stream",
            headers={
                **SSE_HEADERS,
                **_headers(gateway, ctx, result.outcome.deployment.id),
                **cited,
            },
        )
    response, outcome, cached = await gateway.complete(ctx, "chat", model, body)
    headers = _headers(gateway, ctx, outcome.deployment.id if outcome else None, cached)
    return JSONResponse(response, headers={**headers, **cited})


@openai_router.post(
    "/completions",
    summary="Create a text completion (OpenAI format)",
    openapi_extra=json_body(CompletionRequest),
    responses=STREAMED,
)
async def completions(request: Request, ctx: CallContext = Context) -> Response:
    body = await read_json(request)
    validate.completion_request(body)
    gateway = gateway_of(request)
    model = body["model"]
    if body.get("stream"):
        result = await gateway.stream(ctx, "completions", model, body)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _openai_sse(gateway, ctx, "completions", model, body, result, include_usage),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **_headers(gateway, ctx, result.outcome.deployment.id)},
        )
    response, outcome, cached = await gateway.complete(ctx, "completions", model, body)
    return JSONResponse(
        response, headers=_headers(gateway, ctx, outcome.deployment.id if outcome else None, cached)
    )


@openai_router.post(
    "/embeddings",
    summary="Create embeddings (OpenAI format)",
    openapi_extra=json_body(EmbeddingsRequest),
    responses=MODEL_CALL_ERRORS,
)
async def embeddings(request: Request, ctx: CallContext = Context) -> Response:
    body = await read_json(request)
    validate.embeddings_request(body)
    gateway = gateway_of(request)
    response, outcome, cached = await gateway.complete(ctx, "embeddings", body["model"], body)
    return JSONResponse(
        response, headers=_headers(gateway, ctx, outcome.deployment.id if outcome else None, cached)
    )


@openai_router.get("/models", summary="List the models this caller may use")
async def list_models(request: Request, ctx: CallContext = Context) -> Response:
    gateway = gateway_of(request)
    names = []
    for name in sorted(gateway.router.snapshot.routes):
        try:
            if gateway.router.plan(name, local_only=ctx.local_only):
                names.append(name)
        except Forbidden:
            continue
    if "anthropic-version" in request.headers:
        data = [
            {"type": "model", "id": n, "display_name": n, "created_at": "2024-01-01T00:00:00Z"}
            for n in names
        ]
        return JSONResponse(
            {
                "data": data,
                "has_more": False,
                "first_id": names[0] if names else None,
                "last_id": names[-1] if names else None,
            }
        )
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "hexahub"} for n in names
            ],
        }
    )


def _sse(data: JSON) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


async def _openai_sse(
    gateway: Gateway,
    ctx: CallContext,
    endpoint: str,
    model: str,
    body: JSON,
    result: StreamResult,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """Relay chunks; account for the stream once, however it ends."""
    tally = StreamTally.start(ctx)

    def relay(chunk: JSON) -> bytes | None:
        chunk["model"] = model
        tally.take(chunk)
        found = chunk.get("usage")
        if found and not chunk.get("choices") and not include_usage:
            return None  # we asked upstream for usage; the client did not
        if found and not include_usage:
            chunk.pop("usage", None)
        return _sse(chunk)

    try:
        first = relay(result.first)
        if first:
            yield first
        async for chunk in result.rest:
            data = relay(chunk)
            if data:
                yield data
        yield b"data: [DONE]\n\n"
    except UpstreamError as exc:
        tally.status, tally.error = exc.status, exc.message
        yield _sse(translate.openai_error(exc.status, exc.message, code=exc.error_type))
    except BaseException:
        tally.status, tally.error = 499, "client closed the connection"
        raise
    finally:
        await gateway.finish_stream(ctx, endpoint, model, result, tally, body=body)


# --- Anthropic-compatible --------------------------------------------------------------


@anthropic_router.post(
    "/messages",
    summary="Create a message (Anthropic format)",
    openapi_extra=json_body(MessagesRequest),
    responses=STREAMED,
)
async def messages(request: Request, ctx: CallContext = Context) -> Response:
    body = await read_json(request, "anthropic")
    gateway = gateway_of(request)
    asked = gateway.enrichments(request.headers, body)
    validate.anthropic_request(body)
    model = body["model"]
    try:
        canonical = translate.anthropic_request_to_openai(body)
    except translate.TranslationError as exc:
        raise validate.InvalidRequest(str(exc), param=exc.param) from exc
    cited = await gateway.enrich(ctx, model, asked, canonical)
    if body.get("stream"):
        result = await gateway.stream(ctx, "chat", model, canonical)
        return StreamingResponse(
            _anthropic_sse(gateway, ctx, model, canonical, result),
            media_type="text/event-stream",
            headers={
                **SSE_HEADERS,
                **_headers(gateway, ctx, result.outcome.deployment.id),
                **cited,
            },
        )
    response, outcome, cached = await gateway.complete(ctx, "chat", model, canonical)
    headers = _headers(gateway, ctx, outcome.deployment.id if outcome else None, cached)
    return JSONResponse(
        translate.openai_response_to_anthropic(response), headers={**headers, **cited}
    )


async def _anthropic_sse(
    gateway: Gateway, ctx: CallContext, model: str, canonical: JSON, result: StreamResult
) -> AsyncIterator[bytes]:
    tally = StreamTally.start(ctx)
    converter = translate.OpenAIToAnthropicStream(model)

    def convert(chunk: JSON) -> bytes:
        tally.take(chunk)
        return b"".join(
            translate.sse_anthropic(event, data) for event, data in converter.feed(chunk)
        )

    try:
        yield convert(result.first)
        async for chunk in result.rest:
            out = convert(chunk)
            if out:
                yield out
        tail = converter.finish()
        if tail:
            yield b"".join(translate.sse_anthropic(event, data) for event, data in tail)
    except (UpstreamError, translate.StreamError) as exc:
        tally.status = int(getattr(exc, "status", 502))
        tally.error = str(getattr(exc, "message", exc))
        yield translate.sse_anthropic("error", translate.anthropic_error(tally.status, tally.error))
    except BaseException:
        tally.status, tally.error = 499, "client closed the connection"
        raise
    finally:
        await gateway.finish_stream(ctx, "chat", model, result, tally, body=canonical)


@anthropic_router.post(
    "/messages/count_tokens",
    summary="Count the input tokens of a message (Anthropic format)",
    openapi_extra=json_body(CountTokensRequest),
    responses=MODEL_CALL_ERRORS,
)
async def count_tokens(request: Request, ctx: CallContext = Context) -> Response:
    body = await read_json(request, "anthropic")
    validate.count_tokens_request(body)
    try:  # what /v1/messages would refuse is refused here too
        translate.anthropic_request_to_openai(body)
    except translate.TranslationError as exc:
        raise validate.InvalidRequest(str(exc), param=exc.param) from exc
    gateway_of(request).router.route(body["model"])
    return JSONResponse({"input_tokens": estimate_tokens(body)})


__all__ = ["anthropic_error", "anthropic_router", "openai_error", "openai_router"]
