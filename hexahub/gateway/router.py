"""Choosing a deployment, retrying, cooling failing deployments down, falling back.

For a request to a model name the router builds an ordered plan: the model's deployments
(by weight or by fewest requests in flight), then each fallback model's deployments, minus
those whose circuit breaker is open and, under a "local models only" policy, minus those on
cloud providers. It walks the plan: a retryable failure (429, 5xx, timeout, connection
error, a stream cut before its first byte) is retried on the same deployment with
exponential backoff, then the next deployment is tried; any other failure (a bad request)
is the client's answer at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hexahub.core.errors import Forbidden, NotFound
from hexahub.gateway.providers.base import JSON, ModelProvider, ProviderConfig, UpstreamError
from hexahub.gateway.service import DeploymentView, RouteView, Snapshot

log = logging.getLogger("hexahub.gateway.router")
T = TypeVar("T")


@dataclass
class Breaker:
    """Opens after `threshold` consecutive failures. Once `cooldown` has passed it is
    half-open: requests go through again, one failure re-opens it, a success closes it."""

    threshold: int
    cooldown: float
    failures: int = 0
    opened_at: float | None = None

    def available(self, now: float) -> bool:
        return self.opened_at is None or now - self.opened_at >= self.cooldown

    def succeeded(self) -> None:
        self.failures, self.opened_at = 0, None

    def failed(self, now: float) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = now

    def state(self, now: float) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.available(now) else "open"


@dataclass
class DeploymentState:
    in_flight: int = 0
    healthy: bool = True
    last_error: str = ""
    breaker: Breaker = field(default_factory=lambda: Breaker(3, 30.0))


@dataclass
class Outcome:
    """What served a request, after how many tries."""

    deployment: DeploymentView
    attempts: int


@dataclass
class Tries:
    """How far a call got, kept up to date while it runs, so that a call that fails in
    the end is still accounted with its attempts and the last deployment tried."""

    attempts: int = 0
    last: DeploymentView | None = None


class NoDeploymentAvailable(UpstreamError):
    pass


class Router:
    def __init__(
        self,
        snapshot: Snapshot,
        make_provider: Callable[[ProviderConfig], ModelProvider],
        *,
        retries: int = 2,
        retry_base: float = 0.25,
        breaker_failures: int = 3,
        breaker_cooldown: float = 30.0,
    ) -> None:
        self.make_provider = make_provider
        self.retries = retries
        self.retry_base = retry_base
        self.breaker_failures = breaker_failures
        self.breaker_cooldown = breaker_cooldown
        self.providers: dict[str, ModelProvider] = {}
        self.states: dict[str, DeploymentState] = {}
        self.snapshot = Snapshot()
        self.replace(snapshot)

    def replace(self, snapshot: Snapshot) -> list[ModelProvider]:
        """Serve from a new snapshot; returns providers no longer used (to close)."""
        old = self.providers
        kept: dict[str, ModelProvider] = {}
        for name, config in snapshot.providers.items():
            current = old.get(name)
            kept[name] = (
                current
                if current is not None and current.config == config
                else self.make_provider(config)
            )
        self.providers = kept
        self.snapshot = snapshot
        return [p for name, p in old.items() if kept.get(name) is not p]

    def state(self, deployment_id: str) -> DeploymentState:
        state = self.states.get(deployment_id)
        if state is None:
            state = DeploymentState(breaker=Breaker(self.breaker_failures, self.breaker_cooldown))
            self.states[deployment_id] = state
        return state

    # --- planning -----------------------------------------------------------------------
    def route(self, model: str) -> RouteView:
        route = self.snapshot.routes.get(model)
        if route is None:
            known = ", ".join(sorted(self.snapshot.routes)) or "none configured"
            raise NotFound(f"the model {model!r} does not exist; available models: {known}")
        return route

    def _reachable(self, model: str) -> list[RouteView]:
        """The model's route, then its fallbacks' (breadth first, each once)."""
        routes: list[RouteView] = []
        seen: set[str] = set()
        queue = [model]
        while queue:
            name = queue.pop(0)
            if name in seen or name not in self.snapshot.routes:
                continue
            seen.add(name)
            route = self.snapshot.routes[name]
            routes.append(route)
            queue.extend(route.fallbacks)
        return routes

    def price_ceiling(self, model: str) -> tuple[float, float]:
        """The highest input and output prices (dollars per million tokens) among the
        deployments a request for `model` may end up on; (0, 0) for an unknown name."""
        deployments = [d for route in self._reachable(model) for d in route.deployments]
        return (
            max((d.input_price for d in deployments), default=0.0),
            max((d.output_price for d in deployments), default=0.0),
        )

    def plan(self, model: str, *, local_only: bool) -> list[DeploymentView]:
        self.route(model)  # an unknown name is the caller's 404
        ordered: list[DeploymentView] = []
        for route in self._reachable(model):
            ordered.extend(self._order(route))
        if local_only:
            local = [d for d in ordered if d.is_local]
            if ordered and not local:
                raise Forbidden(
                    f"this workspace uses local models only, and {model!r} runs on a cloud provider"
                )
            ordered = local
        return ordered

    def _order(self, route: RouteView) -> list[DeploymentView]:
        candidates = [d for d in route.deployments if d.weight > 0]
        if len(candidates) < 2:
            return candidates  # the common case: nothing to choose between
        if route.strategy == "least_busy":
            random.shuffle(candidates)  # ties broken at random
            return sorted(candidates, key=lambda d: self.state(d.id).in_flight)
        # Weighted random order without replacement.
        remaining, ordered = list(candidates), []
        while remaining:
            pick = random.choices(remaining, weights=[d.weight for d in remaining])[0]
            ordered.append(pick)
            remaining.remove(pick)
        return ordered

    def _usable(self, plan: list[DeploymentView]) -> list[DeploymentView]:
        now = time.monotonic()
        usable = [
            d for d in plan if self.state(d.id).healthy and self.state(d.id).breaker.available(now)
        ]
        # When everything looks down, try anyway rather than refuse outright.
        return usable or plan

    # --- running ------------------------------------------------------------------------
    async def call(
        self,
        model: str,
        run: Callable[[ModelProvider, DeploymentView], Awaitable[T]],
        *,
        local_only: bool = False,
        tries: Tries | None = None,
    ) -> tuple[T, Outcome]:
        """Run `run` on deployments in plan order until one succeeds. `tries`, when
        given, follows the attempts as they are made."""
        tries = tries if tries is not None else Tries()
        plan = self._usable(self.plan(model, local_only=local_only))
        last: UpstreamError | None = None
        for deployment in plan:
            provider = self.providers.get(deployment.provider)
            if provider is None:
                continue
            state = self.state(deployment.id)
            for retry in range(self.retries + 1):
                tries.attempts += 1
                tries.last = deployment
                state.in_flight += 1
                try:
                    result = await run(provider, deployment)
                except UpstreamError as exc:
                    last = exc
                    if not exc.retryable:
                        raise
                    state.breaker.failed(time.monotonic())
                    state.last_error = exc.message
                    log.warning(
                        "deployment %s (%s) failed: %s",
                        deployment.id,
                        deployment.provider,
                        exc.message,
                    )
                    if retry < self.retries and state.breaker.available(time.monotonic()):
                        await asyncio.sleep(self._delay(retry, exc))
                        continue
                    break
                else:
                    state.breaker.succeeded()
                    return result, Outcome(deployment, tries.attempts)
                finally:
                    state.in_flight -= 1
        if last is not None:
            raise last
        raise NoDeploymentAvailable(
            503, f"no deployment of {model!r} is available", retryable=False, error_type="api_error"
        )

    async def stream(
        self,
        model: str,
        open_stream: Callable[[ModelProvider, DeploymentView], AsyncIterator[JSON]],
        *,
        local_only: bool = False,
        tries: Tries | None = None,
    ) -> tuple[JSON, AsyncIterator[JSON], Outcome]:
        """Open a stream; failures before the first chunk fall through like `call`.

        Returns the first chunk, the rest of the stream, and what served it. Failures after
        the first chunk reach the caller, which has already started answering the client.
        """

        async def first(
            provider: ModelProvider, deployment: DeploymentView
        ) -> tuple[JSON, AsyncIterator[JSON]]:
            iterator = open_stream(provider, deployment).__aiter__()
            try:
                head = await iterator.__anext__()
            except StopAsyncIteration as exc:
                raise UpstreamError(
                    502, f"{deployment.provider} sent an empty stream", retryable=True
                ) from exc
            return head, iterator

        (head, rest), outcome = await self.call(model, first, local_only=local_only, tries=tries)
        state = self.state(outcome.deployment.id)
        state.in_flight += 1

        async def remainder() -> AsyncIterator[JSON]:
            try:
                async for chunk in rest:
                    yield chunk
            except UpstreamError as exc:
                state.breaker.failed(time.monotonic())
                state.last_error = exc.message
                raise
            finally:
                state.in_flight -= 1
                close = getattr(rest, "aclose", None)
                if close is not None:
                    await close()

        return head, remainder(), outcome

    def _delay(self, retry: int, exc: UpstreamError) -> float:
        delay = self.retry_base * 2**retry
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, 10.0))
        return delay * random.uniform(0.8, 1.0)

    # --- health -------------------------------------------------------------------------
    async def check_health(self) -> dict[str, Any]:
        results: dict[str, Any] = {}

        async def probe(name: str, provider: ModelProvider) -> None:
            started = time.perf_counter()
            try:
                await asyncio.wait_for(provider.list_models(), timeout=10)
            except Exception as exc:
                ok, detail = False, str(exc) or type(exc).__name__
            else:
                ok, detail = True, "ok"
            results[name] = {
                "ok": ok,
                "detail": detail,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            }
            for route in self.snapshot.routes.values():
                for deployment in route.deployments:
                    if deployment.provider == name:
                        state = self.state(deployment.id)
                        state.healthy = ok
                        if not ok:
                            state.last_error = detail

        await asyncio.gather(*(probe(n, p) for n, p in self.providers.items()))
        return results

    def status(self) -> list[dict[str, Any]]:
        rows = []
        for route in self.snapshot.routes.values():
            for deployment in route.deployments:
                state = self.state(deployment.id)
                rows.append(
                    {
                        "model": route.name,
                        "deployment_id": deployment.id,
                        "provider": deployment.provider,
                        "upstream_model": deployment.upstream_model,
                        "healthy": state.healthy,
                        "breaker": state.breaker.state(time.monotonic()),
                        "in_flight": state.in_flight,
                        "last_error": state.last_error,
                    }
                )
        return rows

    async def close(self) -> None:
        for provider in self.providers.values():
            await provider.close()
