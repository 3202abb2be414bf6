"""Budgets and token rates hold under concurrency: a burst of requests spends at most the
limit plus one request's estimate, because each request reserves its estimate before it
is sent upstream (hexahub.gateway.limits). On the in-process shared state and on Redis,
through the official SDK (plain and streamed), through HexaHub's own streamed calls, and
across two replicas sharing Redis. Refused requests get 429 and never reach upstream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi import FastAPI

from hexahub.app import create_app
from hexahub.core.errors import RateLimited
from hexahub.gateway.engine import CallContext, Gateway, TextStreamEnd
from hexahub.gateway.limits import BudgetExceeded, spend
from hexahub.gateway.models import KeyLimits
from hexahub.gateway.tokens import estimate_prompt_tokens, requested_completion_tokens
from hexahub.gateway.usage import cost_usd
from hexahub.settings import Settings
from tests.conftest import REDIS_SKIP, REDIS_URL
from tests.gateway.conftest import Hub, hub_settings, models_file, running_hub, seed_owner
from tests.gateway.standins.server import StandinServer

BURST = 60
MODEL = "priced-test"
PRICE = 10_000.0  # dollars per million tokens: a cent a token
# Nine words the stand-in counts as nine prompt tokens; its reply ("echo: " and them) is
# ten more: 19 tokens, $0.19 a request.
MESSAGES = [{"role": "user", "content": "alpha bravo charlie delta echo foxtrot golf hotel india"}]
MAX_TOKENS = 10
BUDGET = 1.0
TPM = 100


def priced_models(openai_upstream: StandinServer, *others: StandinServer) -> dict[str, Any]:
    models = models_file(openai_upstream, *others)
    deployment = {"provider": "openai", "model": "gpt-4o-mini"}
    deployment.update(input_price=PRICE, output_price=PRICE)  # type: ignore[arg-type]
    models["models"].append({"name": MODEL, "deployments": [deployment]})
    return models


@dataclass(frozen=True)
class Estimate:
    tokens: int
    cost_usd: float


def estimate(settings: Settings) -> Estimate:
    """What one request of the burst reserves, as the gateway estimates it."""
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    prompt = estimate_prompt_tokens("chat", body)
    completion = requested_completion_tokens("chat", body, settings.gateway_default_max_tokens)
    return Estimate(prompt + completion, cost_usd(prompt, completion, PRICE, PRICE))


def windows(started: float, ended: float, seconds: int) -> int:
    """How many limit windows (minutes, days) a burst touched: each has its own limit."""
    return int(ended // seconds) - int(started // seconds) + 1


@pytest.fixture(params=["inprocess", "redis"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """The shared state: in-process ("") or Redis."""
    if request.param == "inprocess":
        return ""
    if not REDIS_URL:
        pytest.skip(REDIS_SKIP)
    return REDIS_URL


async def forget_counters(redis_url: str, key_id: str) -> None:
    """Remove a test key's counters from Redis (they would otherwise wait out their day)."""
    if not redis_url:
        return
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        found = [key async for key in client.scan_iter(match=f"*gw:*{key_id}*")]
        if found:
            await client.delete(*found)
    finally:
        await client.aclose()


@pytest.fixture
def running_priced_hub(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    openai_upstream: StandinServer,
    anthropic_upstream: StandinServer,
    ollama_upstream: StandinServer,
) -> Iterator[Hub]:
    models = priced_models(openai_upstream, anthropic_upstream, ollama_upstream)
    settings = hub_settings(tmp_path, database_url, models, redis_url=redis_url)
    with running_hub(settings) as hub:
        yield hub
    asyncio.run(forget_counters(redis_url, hub.key_id))


@pytest.fixture
async def priced_hub(running_priced_hub: Hub) -> AsyncIterator[Hub]:
    """The hub, whose SDK clients are closed on the test's own event loop afterwards."""
    yield running_priced_hub
    await running_priced_hub.close_clients()


def set_limits(hub: Hub, **limits: Any) -> None:
    response = hub.api(
        "PUT", f"/api/workspaces/{hub.workspace_id}/keys/{hub.key_id}/limits", json=limits
    )
    assert response.status_code == 200, response.text


async def burst(hub: Hub, *, stream: bool) -> tuple[int, list[openai.RateLimitError]]:
    """BURST requests at once through the openai SDK: (answered, refusals)."""
    client = openai.AsyncOpenAI(base_url=hub.v1, api_key=hub.key, max_retries=0)
    hub.clients.append(client)

    async def one() -> None:
        if not stream:
            reply = await client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                max_tokens=MAX_TOKENS,  # type: ignore[arg-type]
            )
            assert reply.choices[0].message.content
            return
        chunks = await client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=MAX_TOKENS,
            stream=True,
            stream_options={"include_usage": True},
        )
        text = [c.delta.content or "" async for chunk in chunks for c in chunk.choices]
        assert "".join(text)

    outcomes = await asyncio.gather(*(one() for _ in range(BURST)), return_exceptions=True)
    refusals = [o for o in outcomes if isinstance(o, openai.RateLimitError)]
    others = [o for o in outcomes if isinstance(o, BaseException) and o not in refusals]
    assert others == [], others[:3]
    return BURST - len(refusals), refusals


def answered_records(hub: Hub) -> list[dict[str, Any]]:
    records = [r for r in hub.usage_records() if r["model"] == MODEL]
    assert all(r["status"] == 200 and r["key_id"] == hub.key_id for r in records), records
    return records


@pytest.mark.parametrize("stream", [False, True])
async def test_a_burst_spends_at_most_the_budget_and_one_estimate(
    priced_hub: Hub, openai_upstream: StandinServer, stream: bool
) -> None:
    hub = priced_hub
    one = estimate(hub.settings)
    set_limits(hub, daily_budget_usd=BUDGET)

    started = time.time()
    answered, refusals = await burst(hub, stream=stream)
    days = windows(started, time.time(), 86400)

    records = answered_records(hub)
    assert len(records) == answered
    assert len(openai_upstream.state.requests_to("/v1/chat/completions")) == answered
    # Each request's estimate covers what it really cost, so the bound below is the
    # gateway's promise and not luck.
    assert max(r["cost_usd"] for r in records) <= one.cost_usd
    spent = sum(r["cost_usd"] for r in records)
    assert spent <= days * (BUDGET + one.cost_usd) + 1e-9, (spent, answered)
    assert 0 < answered < BURST
    for refusal in refusals:
        assert refusal.status_code == 429
        assert refusal.code == "budget_exceeded"
        assert refusal.type == "insufficient_quota"


async def test_a_burst_uses_at_most_the_token_rate_and_one_estimate(
    priced_hub: Hub, openai_upstream: StandinServer
) -> None:
    hub = priced_hub
    one = estimate(hub.settings)
    set_limits(hub, tpm=TPM)

    started = time.time()
    answered, refusals = await burst(hub, stream=False)
    minutes = windows(started, time.time(), 60)

    records = answered_records(hub)
    assert len(records) == answered
    assert len(openai_upstream.state.requests_to("/v1/chat/completions")) == answered
    used = [r["prompt_tokens"] + r["completion_tokens"] for r in records]
    assert max(used) <= one.tokens
    assert sum(used) <= minutes * (TPM + one.tokens), (sum(used), answered)
    assert 0 < answered < BURST
    for refusal in refusals:
        assert refusal.status_code == 429 and refusal.code == "rate_limited"
        assert "tokens per minute" in refusal.message


# --- HexaHub's own calls, and replicas ------------------------------------------------


@dataclass
class Replica:
    app: FastAPI

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway


@dataclass
class Running:
    replicas: list[Replica]
    key_id: str
    workspace_id: str
    settings: Settings


@pytest.fixture
async def replicas(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    openai_upstream: StandinServer,
    anthropic_upstream: StandinServer,
    ollama_upstream: StandinServer,
) -> AsyncIterator[Callable[[int], Any]]:
    """Starts `n` HexaHub apps in this process on one database and shared state (each
    its own in-process state when there is no Redis)."""
    models = priced_models(openai_upstream, anthropic_upstream, ollama_upstream)
    settings = hub_settings(tmp_path, database_url, models, redis_url=redis_url)
    _, key_id, workspace_id = await seed_owner(settings)
    stack: list[Any] = []

    async def start(n: int) -> Running:
        started = []
        for _ in range(n):
            app = create_app(settings)
            lifespan = app.router.lifespan_context(app)
            await lifespan.__aenter__()
            stack.append(lifespan)
            started.append(Replica(app))
        return Running(started, key_id, workspace_id, settings)

    yield start
    for lifespan in reversed(stack):
        await lifespan.__aexit__(None, None, None)
    await forget_counters(redis_url, key_id)


async def own_call(
    gateway: Gateway, running: Running, limits: KeyLimits
) -> TextStreamEnd | RateLimited:
    """One of HexaHub's own streamed calls (as chat and ask make them) for the key."""
    ctx = CallContext(
        workspace_id=running.workspace_id, user_id=None, key_id=running.key_id, limits=limits
    )
    body = {"messages": MESSAGES, "max_tokens": MAX_TOKENS}
    try:
        async for item in gateway.stream_text(ctx, MODEL, body):
            if isinstance(item, TextStreamEnd):
                return item
    except RateLimited as refused:
        return refused
    raise AssertionError("stream_text ended without its TextStreamEnd")


async def test_own_streamed_calls_reserve_too(
    replicas: Callable[[int], Any], openai_upstream: StandinServer
) -> None:
    running: Running = await replicas(1)
    gateway = running.replicas[0].gateway
    limits = KeyLimits(key_id=running.key_id, daily_budget_usd=BUDGET)
    one = estimate(running.settings)

    started = time.time()
    ends = await asyncio.gather(*(own_call(gateway, running, limits) for _ in range(BURST)))
    days = windows(started, time.time(), 86400)

    answered = [e for e in ends if isinstance(e, TextStreamEnd)]
    refused = [e for e in ends if isinstance(e, BudgetExceeded)]
    assert len(answered) + len(refused) == BURST
    assert all(e.error is None and e.text for e in answered)
    assert 0 < len(answered) < BURST
    assert len(openai_upstream.state.requests_to("/v1/chat/completions")) == len(answered)
    spent = sum(e.cost_usd for e in answered)
    assert spent <= days * (BUDGET + one.cost_usd) + 1e-9
    # The key's counter holds exactly what was spent once every call has settled.
    today, _ = await spend(gateway.runtime.shared, running.key_id)
    assert today == pytest.approx(spent)


# In-process state is per process by design: replicas share limits through Redis only.
@pytest.mark.parametrize("redis_url", ["redis"], indirect=True)
async def test_replicas_sharing_redis_hold_one_budget(
    replicas: Callable[[int], Any], openai_upstream: StandinServer
) -> None:
    running: Running = await replicas(2)
    limits = KeyLimits(key_id=running.key_id, daily_budget_usd=BUDGET)
    one = estimate(running.settings)

    started = time.time()
    calls = [own_call(running.replicas[i % 2].gateway, running, limits) for i in range(BURST)]
    ends = await asyncio.gather(*calls)
    days = windows(started, time.time(), 86400)

    answered = [e for e in ends if isinstance(e, TextStreamEnd)]
    assert 0 < len(answered) < BURST
    assert len(openai_upstream.state.requests_to("/v1/chat/completions")) == len(answered)
    assert sum(e.cost_usd for e in answered) <= days * (BUDGET + one.cost_usd) + 1e-9
