"""The gateway at run time: the router and its providers, the usage recorder, limits,
the response cache and the background work (snapshot reloads, health checks).

The API layer (api.py) parses and answers HTTP; everything between "an authorised caller
asks model M for this body" and "here is the answer and it is accounted for" is here:
each call reserves its estimate against the key's limits before it is routed
(hexahub.gateway.limits) and is accounted once when it ends, with one usage record that
also carries the calls made on its behalf (hexahub.gateway.enrich).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core.logging import request_id_var
from hexahub.core.runtime import Runtime
from hexahub.gateway import limits, service, usage
from hexahub.gateway.callers import Caller, CallerCache
from hexahub.gateway.completions import complete_text, stream_text_completion
from hexahub.gateway.enrich import Enrichment, RequestEnricher, Spent, part_of
from hexahub.gateway.models import KeyLimits
from hexahub.gateway.providers.base import (
    JSON,
    ModelProvider,
    ProviderConfig,
    UpstreamError,
    caller_var,
)
from hexahub.gateway.router import Outcome, Router, Tries
from hexahub.gateway.service import DeploymentView
from hexahub.gateway.tally import StreamTally, TextStreamEnd, usage_of
from hexahub.gateway.tokens import estimate_prompt_tokens, requested_completion_tokens
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
    # Model calls made on this request's behalf (hexahub.gateway.enrich), added to its record.
    on_behalf: Spent = field(default_factory=Spent)

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


@dataclass
class StreamResult:
    first: JSON
    rest: AsyncIterator[JSON]
    outcome: Outcome
    hold: limits.Hold  # settled by Gateway.finish_stream


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
        self._enrichers: list[RequestEnricher] = []

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
            runtime.db.sessions, flush_interval=settings.gateway_usage_flush_seconds
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
        """As a request arrives: count it against its key's requests per minute and refuse
        a key already at a limit (hexahub.gateway.limits)."""
        await limits.check(self.runtime.shared, ctx.key_id, ctx.limits)

    async def _reserve(
        self, ctx: CallContext, endpoint: str, model: str, body: JSON
    ) -> limits.Hold:
        """Reserve the call's estimate against its key's token rate and budgets (429 when
        a limit is reached) before anything is sent upstream: the prompt's estimated
        tokens plus the completion it may ask for, at the dearest deployment's prices."""
        prompt = estimate_prompt_tokens(endpoint, body)
        completion = requested_completion_tokens(
            endpoint, body, self.runtime.settings.gateway_default_max_tokens
        )
        input_price, output_price = self.router.price_ceiling(model)
        return await limits.reserve(
            self.runtime.shared,
            ctx.key_id,
            ctx.limits,
            tokens=prompt + completion,
            cost_usd=usage.cost_usd(prompt, completion, input_price, output_price),
        )

    # --- enrichers (hexahub.gateway.enrich) ---------------------------------------------
    def add_enricher(self, enricher: RequestEnricher) -> None:
        """Called by a higher layer at start (context adds workspace code context)."""
        self._enrichers.append(enricher)

    def enrichments(self, headers: Mapping[str, str], body: JSON) -> list[Enrichment]:
        """What a chat request asks of the registered enrichers (before it is checked)."""
        asked = (enricher.asked(headers, body) for enricher in self._enrichers)
        return [found for found in asked if found is not None]

    async def enrich(
        self, ctx: CallContext, model: str, asked: list[Enrichment], body: JSON
    ) -> dict[str, str]:
        """Run what a chat request asked for on its OpenAI-format body; returns headers
        for the response. Model calls made meanwhile count as part of this request. A
        failure here is the request's failure, accounted as such."""
        if not asked:
            return {}
        try:
            return await self._run_enrichments(ctx, asked, body)
        except Exception as exc:
            await self._record_failure(ctx, "chat", model, exc, body=body)
            raise

    async def _run_enrichments(
        self, ctx: CallContext, asked: list[Enrichment], body: JSON
    ) -> dict[str, str]:
        headers: dict[str, str] = {}
        token = part_of.set(ctx.on_behalf)
        try:
            for enrichment in asked:
                headers.update(await enrichment(ctx, body))
        finally:
            ctx.on_behalf.open = False
            part_of.reset(token)
        return headers

    # --- calls --------------------------------------------------------------------------
    async def complete(
        self, ctx: CallContext, endpoint: str, model: str, body: JSON
    ) -> tuple[JSON, Outcome | None, bool]:
        """A non-streamed call: (response, what served it, whether it came from cache)."""
        caller_var.set(ctx.key_id or ctx.user_id or "anonymous")  # for fair local queues
        hold = await self._reserve(ctx, endpoint, model, body)
        try:
            return await self._complete(ctx, endpoint, model, body, hold)
        except BaseException:
            await hold.settle(0, 0.0)  # cancelled: release what nothing accounted for
            raise

    async def _complete(
        self, ctx: CallContext, endpoint: str, model: str, body: JSON, hold: limits.Hold
    ) -> tuple[JSON, Outcome | None, bool]:
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
                    hold=hold,
                )
                return response, None, True

        async def run(provider: ModelProvider, deployment: DeploymentView) -> JSON:
            started = time.perf_counter()
            try:
                if endpoint == "chat":
                    return await provider.chat(body, deployment.upstream_model)
                if endpoint == "embeddings":
                    return await provider.embeddings(body, deployment.upstream_model)
                return await complete_text(provider, body, deployment.upstream_model)
            finally:
                ctx.upstream_seconds += time.perf_counter() - started

        tries = Tries()
        try:
            response, outcome = await self.router.call(
                model, run, local_only=ctx.local_only, tries=tries
            )
        except Exception as exc:
            await self._record_failure(ctx, endpoint, model, exc, body=body, tries=tries, hold=hold)
            raise
        response["model"] = model
        await self._record(
            ctx,
            endpoint,
            model,
            outcome.deployment,
            response,
            status=200,
            cached=False,
            attempts=outcome.attempts,
            body=body,
            hold=hold,
        )
        if key is not None:
            await self.runtime.shared.set(
                key,
                json.dumps(response).encode(),
                ttl_seconds=self.runtime.settings.gateway_cache_ttl_seconds,
            )
        return response, outcome, False

    async def stream(self, ctx: CallContext, endpoint: str, model: str, body: JSON) -> StreamResult:
        caller_var.set(ctx.key_id or ctx.user_id or "anonymous")  # for fair local queues

        def open_stream(provider: ModelProvider, deployment: DeploymentView) -> AsyncIterator[JSON]:
            if endpoint == "chat":
                return provider.chat_stream(body, deployment.upstream_model)
            return stream_text_completion(provider, body, deployment.upstream_model)

        hold = await self._reserve(ctx, endpoint, model, body)
        tries = Tries()
        started = time.perf_counter()
        try:
            first, rest, outcome = await self.router.stream(
                model, open_stream, local_only=ctx.local_only, tries=tries
            )
        except Exception as exc:
            await self._record_failure(
                ctx, endpoint, model, exc, body=body, stream=True, tries=tries, hold=hold
            )
            raise
        except BaseException:
            await hold.settle(0, 0.0)  # cancelled: release what nothing accounted for
            raise
        ttft = time.perf_counter() - ctx.started
        ctx.upstream_seconds += time.perf_counter() - started
        usage.TTFT.labels(model, outcome.deployment.provider).observe(ttft)
        return StreamResult(first, rest, outcome, hold)

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
            result.outcome.deployment,
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
            hold=result.hold,
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
        deployment: DeploymentView | None,
        response: JSON,
        *,
        status: int,
        cached: bool,
        attempts: int,
        body: JSON,
        hold: limits.Hold | None = None,
        error: str | None = None,
        ttft_ms: float | None = None,
        stream: bool = False,
        reply: JSON | None = None,
    ) -> None:
        """Account for a call once: its usage record, and its key's counters (the
        reservation replaced by what it used)."""
        hold = hold or limits.Hold(self.runtime.shared, ctx.key_id)
        prompt, completion = usage_of(response)
        cost = 0.0
        if deployment is not None and not cached:
            cost = usage.cost_usd(
                prompt, completion, deployment.input_price, deployment.output_price
            )
        on_behalf_of = part_of.get()
        if on_behalf_of is not None and on_behalf_of.open:
            # Made for a client's request (hexahub.gateway.enrich): that request's record
            # and key carry it.
            on_behalf_of.add(prompt, completion, cost)
            await hold.settle(0, 0.0)
            return
        extra, ctx.on_behalf = ctx.on_behalf, Spent()
        prompt += extra.prompt_tokens
        completion += extra.completion_tokens
        cost += extra.cost_usd
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
        await hold.settle(prompt + completion, cost)

    async def _record_failure(
        self,
        ctx: CallContext,
        endpoint: str,
        model: str,
        exc: Exception,
        *,
        body: JSON,
        stream: bool = False,
        tries: Tries | None = None,
        hold: limits.Hold | None = None,
    ) -> None:
        """Account for a call that failed, with the attempts it made and the last
        deployment it tried."""
        status = int(getattr(exc, "status", getattr(exc, "status_code", 500)))
        message = str(getattr(exc, "message", exc))[:500]
        tries = tries or Tries()
        await self._record(
            ctx,
            endpoint,
            model,
            tries.last,
            {},
            status=status,
            cached=False,
            attempts=tries.attempts,
            body=body,
            hold=hold,
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
