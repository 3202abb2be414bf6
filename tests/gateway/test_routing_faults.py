"""Faults upstream: the client still gets an answer where one can be had, and every
request is accounted for exactly once. Also budgets, local-only policy and the cache."""

from __future__ import annotations

import openai
import pytest

from tests.gateway.conftest import Hub
from tests.gateway.standins.server import StandinServer
from tests.gateway.standins.state import Fault

ASK = [{"role": "user", "content": "are you there"}]


def client(hub: Hub, **kwargs: object) -> openai.AsyncOpenAI:
    made = openai.AsyncOpenAI(base_url=hub.v1, api_key=hub.key, max_retries=0, **kwargs)  # type: ignore[arg-type]
    hub.clients.append(made)
    return made


def records_for(hub: Hub, model: str) -> list[dict]:
    return [r for r in hub.usage_records() if r["model"] == model]


async def test_retry_on_5xx_then_success_records_once(
    sdk: Hub, openai_upstream: StandinServer
) -> None:
    openai_upstream.state.inject(
        Fault(kind="status", status=503, times=1, path="/v1/chat/completions")
    )
    reply = await client(sdk).chat.completions.create(model="gpt-test", messages=ASK)
    assert reply.choices[0].message.content
    assert len(openai_upstream.state.requests_to("/v1/chat/completions")) == 2
    [record] = records_for(sdk, "gpt-test")
    assert record["status"] == 200 and record["attempts"] == 2


async def test_failing_deployment_falls_back_to_another_model(
    sdk: Hub, openai_upstream: StandinServer, ollama_upstream: StandinServer
) -> None:
    openai_upstream.state.inject(
        Fault(kind="status", status=500, times=10, path="/v1/chat/completions")
    )
    reply = await client(sdk).chat.completions.create(model="with-fallback", messages=ASK)
    assert reply.model == "with-fallback"
    assert "are you there" in (reply.choices[0].message.content or "")
    assert ollama_upstream.state.requests_to("/api/chat")
    [record] = records_for(sdk, "with-fallback")
    assert record["provider"] == "ollama" and record["status"] == 200
    assert record["attempts"] == 4  # three tries on the failing deployment, one fallback


async def test_timeout_falls_back(sdk: Hub, openai_upstream: StandinServer) -> None:
    openai_upstream.state.inject(
        Fault(kind="delay", seconds=5, times=3, path="/v1/chat/completions")
    )
    reply = await client(sdk).chat.completions.create(model="with-fallback", messages=ASK)
    assert reply.choices[0].message.content
    [record] = records_for(sdk, "with-fallback")
    assert record["provider"] == "ollama"


async def test_stream_cut_before_first_byte_falls_back(
    sdk: Hub, openai_upstream: StandinServer
) -> None:
    openai_upstream.state.inject(
        Fault(kind="cut", after_events=0, times=3, path="/v1/chat/completions")
    )
    stream = await client(sdk).chat.completions.create(
        model="with-fallback", messages=ASK, stream=True, stream_options={"include_usage": True}
    )
    text = []
    async for chunk in stream:
        text.extend(c.delta.content or "" for c in chunk.choices)
    assert "are you there" in "".join(text)
    [record] = records_for(sdk, "with-fallback")
    assert record["provider"] == "ollama" and record["stream"] is True
    assert record["completion_tokens"] > 0


async def test_stream_cut_after_first_byte_reaches_client_and_is_recorded_once(
    sdk: Hub, openai_upstream: StandinServer
) -> None:
    openai_upstream.state.inject(
        Fault(kind="cut", after_events=2, times=1, path="/v1/chat/completions")
    )
    stream = await client(sdk).chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "one two three four five"}],
        stream=True,
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    [record] = records_for(sdk, "gpt-test")
    assert record["status"] == 502 and record["stream"] is True


async def test_client_error_is_not_retried(sdk: Hub, openai_upstream: StandinServer) -> None:
    openai_upstream.state.inject(
        Fault(kind="status", status=400, times=5, message="bad thing", path="/v1/chat/completions")
    )
    with pytest.raises(openai.BadRequestError) as raised:
        await client(sdk).chat.completions.create(model="with-fallback", messages=ASK)
    assert "bad thing" in str(raised.value)
    assert len(openai_upstream.state.requests_to("/v1/chat/completions")) == 1
    [record] = records_for(sdk, "with-fallback")
    assert record["status"] == 400


async def test_breaker_opens_and_keeps_a_failing_deployment_out(
    sdk: Hub, openai_upstream: StandinServer
) -> None:
    openai_upstream.state.inject(
        Fault(kind="status", status=503, times=100, path="/v1/chat/completions")
    )
    for _ in range(2):
        reply = await client(sdk).chat.completions.create(model="with-fallback", messages=ASK)
        assert reply.choices[0].message.content
    # The first request opened the breaker after three failures; the second skipped it.
    assert len(openai_upstream.state.requests_to("/v1/chat/completions")) == 3
    status = sdk.api("GET", "/api/gateway/status").json()
    failing = [row for row in status if row["model"] == "with-fallback"]
    assert failing[0]["breaker"] == "open"


async def test_budget_exhausted_key_is_refused_before_upstream(
    sdk: Hub, openai_upstream: StandinServer
) -> None:
    limits = sdk.api(
        "PUT",
        f"/api/workspaces/{sdk.workspace_id}/keys/{sdk.key_id}/limits",
        json={"daily_budget_usd": 0.0},
    )
    assert limits.status_code == 200, limits.text
    with pytest.raises(openai.RateLimitError) as raised:
        await client(sdk).chat.completions.create(model="gpt-test", messages=ASK)
    assert raised.value.body["type"] == "insufficient_quota"  # type: ignore[index]
    assert openai_upstream.state.requests == []


async def test_rpm_limit(sdk: Hub) -> None:
    sdk.api("PUT", f"/api/workspaces/{sdk.workspace_id}/keys/{sdk.key_id}/limits", json={"rpm": 2})
    for _ in range(2):
        await client(sdk).chat.completions.create(model="gpt-test", messages=ASK)
    with pytest.raises(openai.RateLimitError):
        await client(sdk).chat.completions.create(model="gpt-test", messages=ASK)


async def test_local_only_policy(sdk: Hub, openai_upstream: StandinServer) -> None:
    policy = sdk.api(
        "PUT", f"/api/workspaces/{sdk.workspace_id}/gateway-policy", json={"local_only": True}
    )
    assert policy.json() == {"local_only": True, "trace_bodies": False}
    with pytest.raises(openai.PermissionDeniedError):
        await client(sdk).chat.completions.create(model="gpt-test", messages=ASK)
    assert openai_upstream.state.requests == []
    reply = await client(sdk).chat.completions.create(model="llama-test", messages=ASK)
    assert reply.choices[0].message.content
    # A model with a local fallback uses only the local part.
    reply = await client(sdk).chat.completions.create(model="with-fallback", messages=ASK)
    assert [r["provider"] for r in records_for(sdk, "with-fallback")] == ["ollama"]
    names = [m.id async for m in client(sdk).models.list()]
    assert "gpt-test" not in names and "llama-test" in names


async def test_cache_serves_identical_requests_once(
    sdk: Hub, openai_upstream: StandinServer
) -> None:
    cached = client(sdk, default_headers={"X-HexaHub-Cache": "on"})
    first = await cached.chat.completions.with_raw_response.create(model="gpt-test", messages=ASK)
    second = await cached.chat.completions.with_raw_response.create(model="gpt-test", messages=ASK)
    assert first.headers["x-hexahub-cache"] == "miss"
    assert second.headers["x-hexahub-cache"] == "hit"
    assert first.parse().choices[0].message.content == second.parse().choices[0].message.content
    assert len(openai_upstream.state.requests_to("/v1/chat/completions")) == 1
    records = records_for(sdk, "gpt-test")
    assert sorted(r["cached"] for r in records) == [False, True]
    assert float(second.headers["x-hexahub-overhead-ms"]) >= 0


async def test_trace_bodies_only_when_opted_in(sdk: Hub) -> None:
    sdk.api(
        "PUT", f"/api/workspaces/{sdk.workspace_id}/gateway-policy", json={"trace_bodies": True}
    )
    await client(sdk).chat.completions.create(model="gpt-test", messages=ASK)
    [record] = records_for(sdk, "gpt-test")
    assert record["request_body"]["messages"] == ASK
    assert record["response_body"]["choices"]


async def test_provider_key_never_shown(sdk: Hub, openai_upstream: StandinServer) -> None:
    listed = sdk.api("GET", "/api/gateway/providers")
    assert listed.status_code == 200
    assert openai_upstream.state.api_key not in listed.text
    assert all(p["has_api_key"] for p in listed.json() if p["kind"] == "openai")
    members = sdk.raw(
        "GET", "/api/gateway/providers", headers={"Authorization": f"Bearer {sdk.key}"}
    )
    assert members.status_code == 403
