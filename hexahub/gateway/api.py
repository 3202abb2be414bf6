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

from hexahub.context import inject
from hexahub.core.errors import Forbidden
from hexahub.gateway import callers, validate
from hexahub.gateway.callers import Caller
from hexahub.gateway.engine import (
    CallContext,
    Gateway,
    StreamResult,
    StreamTally,
    estimate_tokens,
)
from hexahub.gateway.errors import AnthropicRoute, OpenAIRoute, anthropic_error, openai_error
from hexahub.gateway.providers.base import JSON, UpstreamError
from hexahub.gateway.translate import anthropic as translate
from hexahub.identity import keys
from hexahub.identity.authz import admit, bearer_credential, client_ip, require_user

log = logging.getLogger("hexahub.gateway.api")

openai_router = APIRouter(
    prefix="/v1", tags=["gateway (OpenAI-compatible)"], route_class=OpenAIRoute
)
anthropic_router = APIRouter(
    prefix="/v1", tags=["gateway (Anthropic-compatible)"], route_class=AnthropicRoute
)
require_gateway_caller = require_user("gateway")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        raise validate.InvalidRequest("the request body is empty; send a JSON object")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise validate.InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
    return validate.require_object(body)


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


async def call_context(request: Request) -> CallContext:
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


@openai_router.post("/chat/completions", summary="Create a chat completion (OpenAI format)")
async def chat_completions(request: Request, ctx: CallContext = Context) -> Response:
    body = await read_json(request)
    gateway = gateway_of(request)
    repos = inject.wanted(request.headers.get(inject.HEADER), body)
    validate.chat_request(body)
    cited = await _add_context(gateway, ctx, repos, body)
    model = body["model"]
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


async def _add_context(
    gateway: Gateway, ctx: CallContext, repos: list[str] | None, canonical: JSON
) -> dict[str, str]:
    """Workspace code context, when the request asked for it (docs/code-context.md):
    passages added to the (OpenAI-format) messages; the citations as a response header."""
    if repos is None:
        return {}
    retrieved = await inject.add_to_openai(gateway.runtime, ctx.workspace_id, repos, canonical)
    return inject.citations_header(retrieved)


@openai_router.post("/completions", summary="Create a text completion (OpenAI format)")
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


@openai_router.post("/embeddings", summary="Create embeddings (OpenAI format)")
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


@anthropic_router.post("/messages", summary="Create a message (Anthropic format)")
async def messages(request: Request, ctx: CallContext = Context) -> Response:
    body = await read_json(request)
    gateway = gateway_of(request)
    repos = inject.wanted(request.headers.get(inject.HEADER), body)
    validate.anthropic_request(body)
    model = body["model"]
    try:
        canonical = translate.anthropic_request_to_openai(body)
    except translate.TranslationError as exc:
        raise validate.InvalidRequest(str(exc), param=exc.param) from exc
    cited = await _add_context(gateway, ctx, repos, canonical)
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
    "/messages/count_tokens", summary="Count the input tokens of a message (Anthropic format)"
)
async def count_tokens(request: Request, ctx: CallContext = Context) -> Response:
    body = await read_json(request)
    validate.model_name(body)
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise validate.InvalidRequest("messages: must be a non-empty list", param="messages")
    gateway_of(request).router.route(body["model"])
    return JSONResponse({"input_tokens": estimate_tokens(body)})


__all__ = ["anthropic_error", "anthropic_router", "openai_error", "openai_router"]
