"""The gateway at run time: the router and its providers, the usage recorder, limits,
the response cache and the background work (snapshot reloads, health checks).

The API layer (api.py) parses and answers HTTP; everything between "an authorised caller
asks model M for this body" and "here is the answer and it is accounted for" is here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core.errors import RateLimited
from hexahub.core.logging import request_id_var
from hexahub.core.runtime import Runtime
from hexahub.gateway import service, usage
from hexahub.gateway.callers import Caller, CallerCache
from hexahub.gateway.models import KeyLimits
from hexahub.gateway.providers.base import (
    JSON,
    ModelProvider,
    ProviderConfig,
    UpstreamError,
    caller_var,
)
from hexahub.gateway.router import Outcome, Router
from hexahub.gateway.service import DeploymentView
from hexahub.identity.authz import Principal
from hexahub.localmodels import builtin

log = logging.getLogger("hexahub.gateway")
SNAPSHOT_VERSION_KEY = "gw:snapshot-version"


def make_provider(config: ProviderConfig) -> ModelProvider:
    """The provider implementation for a config; one module per kind."""
    if config.kind in ("openai", "openai_compatible"):
        from hexahub.gateway.providers import openai

        return openai.make(config)
    if config.kind == "anthropic":
        from hexahub.gateway.providers import anthropic

        return anthropic.make(config)
    if config.kind == "ollama":
        from hexahub.gateway.providers import ollama

        return ollama.make(config)
    if config.kind == "local":
        from hexahub.gateway.providers import local

        return local.make(config)
    raise ValueError(f"unknown provider kind {config.kind!r}")


@dataclass
class CallContext:
    """Who is calling and under which rules; built once per request."""

    workspace_id: str | None
    user_id: str | None
    key_id: str | None
    local_only: bool = False
    trace_bodies: bool = False
    limits: KeyLimits | None = None
    cache: bool = False
    started: float = field(default_factory=time.perf_counter)
    upstream_seconds: float = 0.0

    @classmethod
    def for_caller(cls, caller: Caller, *, cache: bool = False) -> CallContext:
        """The context of a call made for a resolved caller (hexahub.gateway.callers)."""
        principal = caller.principal
        return cls(
            workspace_id=caller.workspace_id,
            user_id=principal.user.id,
            key_id=principal.api_key.id if principal.api_key else None,
            local_only=caller.local_only,
            trace_bodies=caller.trace_bodies,
            limits=caller.limits,
            cache=cache,
        )


@dataclass(frozen=True)
class TextStreamEnd:
    """How a `Gateway.stream_text` call ended."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    ttft_ms: float
    model: str
    deployment: str
    error: str | None = None  # set when the upstream failed after the first piece


@dataclass
class StreamResult:
    first: JSON
    rest: AsyncIterator[JSON]
    outcome: Outcome


def usage_of(response: JSON) -> tuple[int, int]:
    found = response.get("usage") or {}
    return int(found.get("prompt_tokens") or 0), int(found.get("completion_tokens") or 0)


def delta_text(chunk: JSON) -> str:
    """The text a streamed chunk adds (chat deltas, or completions' text)."""
    pieces = []
    for choice in chunk.get("choices") or []:
        piece = (choice.get("delta") or {}).get("content") or choice.get("text")
        if piece:
            pieces.append(piece)
    return "".join(pieces)


def estimate_text_tokens(characters: int) -> int:
    """A provider-neutral estimate: about four characters of text per token."""
    return max(1, characters // 4)


def estimate_tokens(body: JSON) -> int:
    """The estimated prompt tokens of a request's system, messages and tools."""
    parts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for key, item in value.items():
                if key not in ("type", "source", "cache_control"):
                    walk(item)

    walk(body.get("system"))
    walk(body.get("messages"))
    walk(body.get("tools"))
    return estimate_text_tokens(sum(len(p) for p in parts))


@dataclass
class StreamTally:
    """What a relayed stream carried so far (usage, the reply's text) and how it ended;
    `Gateway.finish_stream` accounts for it once."""

    ttft_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: int = 200
    error: str | None = None
    pieces: list[str] = field(default_factory=list)
    usage_seen: bool = False  # the upstream reported usage (it comes last, if at all)

    @classmethod
    def start(cls, ctx: CallContext) -> StreamTally:
        """A tally for a stream whose first chunk has just come."""
        return cls(ttft_ms=round((time.perf_counter() - ctx.started) * 1000, 2))

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def take(self, chunk: JSON) -> str:
        """Count a chunk's usage and keep its text; returns the text it adds."""
        found = chunk.get("usage")
        if found:
            self.usage_seen = True
            self.prompt_tokens = int(found.get("prompt_tokens") or self.prompt_tokens)
            self.completion_tokens = int(found.get("completion_tokens") or self.completion_tokens)
        piece = delta_text(chunk)
        if piece:
            self.pieces.append(piece)
        return piece

    def settle(self, body: JSON) -> None:
        """A stream cut short (stopped, or failed midway) never saw its usage, yet the
        model did the work: count an estimate rather than nothing."""
        if self.usage_seen or not self.pieces:
            return
        self.prompt_tokens = estimate_tokens(body)
        self.completion_tokens = estimate_text_tokens(len(self.text))


def cache_key(endpoint: str, body: JSON) -> str:
    relevant = {k: v for k, v in body.items() if k not in ("stream", "stream_options", "user")}
    canonical = json.dumps([endpoint, relevant], sort_keys=True, separators=(",", ":"))
    return "gw:cache:" + hashlib.sha256(canonical.encode()).hexdigest()


class Gateway:
    def __init__(self, runtime: Runtime, router: Router, recorder: usage.UsageRecorder) -> None:
        self.runtime = runtime
        self.router = router
        self.usage = recorder
        self._tasks: list[asyncio.Task[None]] = []
        self._version: int = 0
        self.callers = CallerCache(runtime.db.sessions)

    # --- lifecycle ----------------------------------------------------------------------
    @classmethod
    async def start(
        cls,
        runtime: Runtime,
        provider_factory: Callable[[ProviderConfig], ModelProvider] = make_provider,
    ) -> Gateway:
        settings = runtime.settings
        secret = settings.resolved_secret_key()
        async with runtime.db.sessions() as db:
            # The models file plus the built-in local models (hexahub.localmodels.builtin).
            await service.sync_models_file(db, builtin.configured_models(settings), secret)
            snapshot = await service.load_snapshot(db, settings)
        router = Router(
            snapshot,
            provider_factory,
            retries=settings.gateway_retries,
            retry_base=settings.gateway_retry_base_seconds,
            breaker_failures=settings.gateway_breaker_failures,
            breaker_cooldown=settings.gateway_breaker_cooldown_seconds,
        )
        recorder = usage.UsageRecorder(
            runtime.db.sessions, runtime.shared, flush_interval=settings.gateway_usage_flush_seconds
        )
        gateway = cls(runtime, router, recorder)
        recorder.start()
        gateway._tasks.append(asyncio.create_task(gateway._watch_snapshot()))
        if settings.gateway_health_interval_seconds > 0:
            gateway._tasks.append(asyncio.create_task(gateway._health_loop()))
        return gateway

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.usage.stop()
        await self.router.close()

    async def reload(self, *, announce: bool = True) -> None:
        """Serve the database's current providers and models (after an API change)."""
        async with self.runtime.db.sessions() as db:
            snapshot = await service.load_snapshot(db, self.runtime.settings)
        for stale in self.router.replace(snapshot):
            await stale.close()
        if announce:
            # Other replicas see the new version and reload too.
            self._version = await self.runtime.shared.incr(SNAPSHOT_VERSION_KEY)

    async def _watch_snapshot(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            try:
                raw = await self.runtime.shared.get(SNAPSHOT_VERSION_KEY)
                version = int(raw or 0)
                if version != self._version:
                    self._version = version
                    await self.reload(announce=False)
            except Exception as exc:
                log.warning("could not check for model changes: %s", exc)

    async def _health_loop(self) -> None:
        while True:
            try:
                await self.router.check_health()
            except Exception as exc:
                log.warning("health check failed: %s", exc)
            await asyncio.sleep(self.runtime.settings.gateway_health_interval_seconds)

    # --- limits -------------------------------------------------------------------------
    def forget_callers(self) -> None:
        """A workspace policy or key limit changed: read callers afresh from now on."""
        self.callers.forget()

    async def check_limits(self, ctx: CallContext) -> None:
        """Refuse before anything goes upstream when a key is over its rates or budgets."""
        limits, key_id, shared = ctx.limits, ctx.key_id, self.runtime.shared
        if limits is None or key_id is None:
            return
        if limits.rpm:
            minute = time.strftime("%Y%m%d%H%M", time.gmtime())
            count = await shared.incr(f"gw:rpm:{key_id}:{minute}", ttl_seconds=120)
            if count > limits.rpm:
                raise RateLimited(
                    f"this key's limit of {limits.rpm} requests per minute is reached",
                    headers={"Retry-After": str(60 - time.gmtime().tm_sec)},
                )
        if limits.tpm and await usage.tokens_this_minute(shared, key_id) >= limits.tpm:
            raise RateLimited(
                f"this key's limit of {limits.tpm} tokens per minute is reached",
                headers={"Retry-After": str(60 - time.gmtime().tm_sec)},
            )
        if limits.daily_budget_usd is not None or limits.monthly_budget_usd is not None:
            today, month = await usage.spend(shared, key_id)
            if limits.daily_budget_usd is not None and today >= limits.daily_budget_usd:
                raise BudgetExceeded(
                    f"this key has spent its daily budget of ${limits.daily_budget_usd:g}"
                )
            if limits.monthly_budget_usd is not None and month >= limits.monthly_budget_usd:
                raise BudgetExceeded(
                    f"this key has spent its monthly budget of ${limits.monthly_budget_usd:g}"
                )

    # --- calls --------------------------------------------------------------------------
    async def complete(
        self, ctx: CallContext, endpoint: str, model: str, body: JSON
    ) -> tuple[JSON, Outcome | None, bool]:
        """A non-streamed call: (response, what served it, whether it came from cache)."""
        caller_var.set(ctx.key_id or ctx.user_id or "anonymous")  # for fair local queues
        key = cache_key(endpoint, body) if ctx.cache else None
        if key is not None:
            hit = await self.runtime.shared.get(key)
            if hit is not None:
                response = json.loads(hit)
                await self._record(
                    ctx,
                    endpoint,
                    model,
                    None,
                    response,
                    status=200,
                    cached=True,
                    attempts=0,
                    body=body,
                )
                return response, None, True

        async def run(provider: ModelProvider, deployment: DeploymentView) -> JSON:
            started = time.perf_counter()
            try:
                if endpoint == "chat":
                    return await provider.chat(body, deployment.upstream_model)
                if endpoint == "embeddings":
                    return await provider.embeddings(body, deployment.upstream_model)
                return await self._completions(provider, body, deployment.upstream_model)
            finally:
                ctx.upstream_seconds += time.perf_counter() - started

        try:
            response, outcome = await self.router.call(model, run, local_only=ctx.local_only)
        except Exception as exc:
            await self._record_failure(ctx, endpoint, model, exc, body=body)
            raise
        response["model"] = model
        await self._record(
            ctx,
            endpoint,
            model,
            outcome,
            response,
            status=200,
            cached=False,
            attempts=outcome.attempts,
            body=body,
        )
        if key is not None:
            await self.runtime.shared.set(
                key,
                json.dumps(response).encode(),
                ttl_seconds=self.runtime.settings.gateway_cache_ttl_seconds,
            )
        return response, outcome, False

    async def _completions(self, provider: ModelProvider, body: JSON, upstream: str) -> JSON:
        native = getattr(provider, "completions", None)
        if native is not None:
            result: JSON = await native(body, upstream)
            return result
        chat = await provider.chat(completion_as_chat(body), upstream)
        return chat_as_completion(chat)

    async def stream(self, ctx: CallContext, endpoint: str, model: str, body: JSON) -> StreamResult:
        caller_var.set(ctx.key_id or ctx.user_id or "anonymous")  # for fair local queues

        def open_stream(provider: ModelProvider, deployment: DeploymentView) -> AsyncIterator[JSON]:
            if endpoint == "chat":
                return provider.chat_stream(body, deployment.upstream_model)
            native = getattr(provider, "completions_stream", None)
            if native is not None:
                stream: AsyncIterator[JSON] = native(body, deployment.upstream_model)
                return stream
            return chat_chunks_as_completion(
                provider.chat_stream(completion_as_chat(body), deployment.upstream_model)
            )

        started = time.perf_counter()
        try:
            first, rest, outcome = await self.router.stream(
                model, open_stream, local_only=ctx.local_only
            )
        except Exception as exc:
            await self._record_failure(ctx, endpoint, model, exc, body=body, stream=True)
            raise
        ttft = time.perf_counter() - ctx.started
        ctx.upstream_seconds += time.perf_counter() - started
        usage.TTFT.labels(model, outcome.deployment.provider).observe(ttft)
        return StreamResult(first, rest, outcome)

    async def finish_stream(
        self,
        ctx: CallContext,
        endpoint: str,
        model: str,
        result: StreamResult,
        tally: StreamTally,
        *,
        body: JSON,
    ) -> None:
        """Account for a relayed stream once, with what its tally saw."""
        tally.settle(body)
        await self._record(
            ctx,
            endpoint,
            model,
            result.outcome,
            {
                "usage": {
                    "prompt_tokens": tally.prompt_tokens,
                    "completion_tokens": tally.completion_tokens,
                }
            },
            status=tally.status,
            cached=False,
            attempts=result.outcome.attempts,
            error=tally.error,
            ttft_ms=tally.ttft_ms,
            stream=True,
            body=body,
            reply={"content": tally.text} if ctx.trace_bodies else None,
        )

    async def stream_text(
        self,
        ctx: CallContext,
        model: str,
        body: JSON,
        *,
        on_end: Callable[[TextStreamEnd], None] | None = None,
    ) -> AsyncIterator[str | TextStreamEnd]:
        """A streamed chat call for HexaHub's own features (chat, ask): yields the answer's
        text pieces as they come, then one `TextStreamEnd` with usage and cost. Failures
        before the first piece raise (with fallbacks tried); a failure later ends the
        stream with `error` set, keeping what came. Accounted once, however it ends (a
        consumer that stops early counts as a closed connection, and `on_end` still gets
        the usage of what was written)."""
        body = {**body, "model": model, "stream": True, "stream_options": {"include_usage": True}}
        result = await self.stream(ctx, "chat", model, body)
        tally = StreamTally.start(ctx)
        try:
            piece = tally.take(result.first)
            if piece:
                yield piece
            async for chunk in result.rest:
                piece = tally.take(chunk)
                if piece:
                    yield piece
        except UpstreamError as exc:
            tally.status, tally.error = exc.status, exc.message
        except BaseException:
            tally.status, tally.error = 499, "the reader stopped"
            raise
        finally:
            await self.finish_stream(ctx, "chat", model, result, tally, body=body)
            deployment = result.outcome.deployment
            end = TextStreamEnd(
                text=tally.text,
                prompt_tokens=tally.prompt_tokens,
                completion_tokens=tally.completion_tokens,
                cost_usd=usage.cost_usd(
                    tally.prompt_tokens,
                    tally.completion_tokens,
                    deployment.input_price,
                    deployment.output_price,
                ),
                ttft_ms=tally.ttft_ms,
                model=model,
                deployment=deployment.id,
                error=tally.error,
            )
            if on_end is not None:
                on_end(end)
        yield end

    # --- accounting ---------------------------------------------------------------------
    async def _record(
        self,
        ctx: CallContext,
        endpoint: str,
        model: str,
        outcome: Outcome | None,
        response: JSON,
        *,
        status: int,
        cached: bool,
        attempts: int,
        body: JSON,
        error: str | None = None,
        ttft_ms: float | None = None,
        stream: bool = False,
        reply: JSON | None = None,
    ) -> None:
        prompt, completion = usage_of(response)
        deployment = outcome.deployment if outcome else None
        cost = 0.0
        if deployment is not None and not cached:
            cost = usage.cost_usd(
                prompt, completion, deployment.input_price, deployment.output_price
            )
        latency = time.perf_counter() - ctx.started
        provider = deployment.provider if deployment else ("cache" if cached else "")
        usage.LATENCY.labels(model, provider).observe(latency)
        usage.OVERHEAD.observe(max(0.0, latency - ctx.upstream_seconds))
        await self.usage.record(
            request_id=request_id_var.get(),
            workspace_id=ctx.workspace_id,
            user_id=ctx.user_id,
            key_id=ctx.key_id,
            endpoint=endpoint,
            model=model,
            provider=provider,
            deployment_id=deployment.id if deployment else None,
            upstream_model=deployment.upstream_model if deployment else "",
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
            latency_ms=round(latency * 1000, 2),
            ttft_ms=ttft_ms,
            status=status,
            error=error,
            stream=stream,
            cached=cached,
            attempts=attempts,
            request_body=body if ctx.trace_bodies else None,
            response_body=(reply or response) if ctx.trace_bodies else None,
        )

    async def _record_failure(
        self,
        ctx: CallContext,
        endpoint: str,
        model: str,
        exc: Exception,
        *,
        body: JSON,
        stream: bool = False,
    ) -> None:
        status = int(getattr(exc, "status", getattr(exc, "status_code", 500)))
        message = str(getattr(exc, "message", exc))[:500]
        await self._record(
            ctx,
            endpoint,
            model,
            None,
            {},
            status=status,
            cached=False,
            attempts=0,
            body=body,
            error=message,
            stream=stream,
        )

    def overhead_ms(self, ctx: CallContext) -> float:
        return max(0.0, (time.perf_counter() - ctx.started - ctx.upstream_seconds) * 1000)


async def call_context_for(
    gateway: Gateway, db: AsyncSession, principal: Principal, workspace_id: str
) -> CallContext:
    """The rules for a model call HexaHub makes on someone's behalf (chat, ask), after the
    route has checked their access to `workspace_id`: the workspace's policy, the key's
    limits, checked now."""
    from hexahub.gateway import callers

    caller = await callers.resolve_in(db, principal, workspace_id)
    ctx = CallContext(
        workspace_id=workspace_id,
        user_id=principal.user.id,
        key_id=principal.api_key.id if principal.api_key else None,
        local_only=caller.local_only,
        trace_bodies=caller.trace_bodies,
        limits=caller.limits,
    )
    await gateway.check_limits(ctx)
    return ctx


class BudgetExceeded(RateLimited):
    code = "budget_exceeded"


# --- completions through chat, for providers without a native completions API ----------


def completion_as_chat(body: JSON) -> JSON:
    prompt = body.get("prompt")
    text = prompt[0] if isinstance(prompt, list) else prompt
    chat = {
        k: v
        for k, v in body.items()
        if k not in ("prompt", "echo", "suffix", "best_of", "logprobs")
    }
    chat["messages"] = [{"role": "user", "content": text}]
    return chat


def chat_as_completion(chat: JSON) -> JSON:
    choice = (chat.get("choices") or [{}])[0]
    return {
        "id": str(chat.get("id", "")).replace("chatcmpl", "cmpl"),
        "object": "text_completion",
        "created": chat.get("created", int(time.time())),
        "model": chat.get("model", ""),
        "choices": [
            {
                "index": 0,
                "text": (choice.get("message") or {}).get("content") or "",
                "logprobs": None,
                "finish_reason": choice.get("finish_reason"),
            }
        ],
        "usage": chat.get("usage"),
    }


async def chat_chunks_as_completion(chunks: AsyncIterator[JSON]) -> AsyncIterator[JSON]:
    async for chunk in chunks:
        choices = chunk.get("choices") or []
        converted: JSON = {
            "id": chunk.get("id"),
            "object": "text_completion",
            "created": chunk.get("created"),
            "model": chunk.get("model"),
            "choices": [],
        }
        for choice in choices:
            converted["choices"].append(
                {
                    "index": 0,
                    "text": (choice.get("delta") or {}).get("content") or "",
                    "logprobs": None,
                    "finish_reason": choice.get("finish_reason"),
                }
            )
        if chunk.get("usage"):
            converted["usage"] = chunk["usage"]
        yield converted
