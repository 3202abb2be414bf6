"""A provider's connections are spread over several small httpx pools (httpcore's pool
costs grow with the square of its size); each request takes the least busy pool."""

from __future__ import annotations

import asyncio

import httpx

from hexahub.gateway.providers.base import ProviderConfig
from hexahub.gateway.providers.http import MAX_CONNECTIONS, POOLS, Pools
from hexahub.gateway.providers.openai import OpenAIProvider


async def test_each_request_takes_the_least_busy_pool() -> None:
    clients = [httpx.AsyncClient() for _ in range(3)]
    pools = Pools(clients)
    try:
        with pools.lease() as first, pools.lease() as second:
            assert first is clients[0] and second is clients[1]
            with pools.lease() as third:
                assert third is clients[2]
            assert pools.busy == [1, 1, 0]
        assert pools.busy == [0, 0, 0]
    finally:
        await pools.close()


async def test_a_stream_holds_its_pool_until_closed() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'data: {"choices": []}\n\ndata: [DONE]\n\n')

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    provider = OpenAIProvider(
        ProviderConfig(name="o", kind="openai", base_url="http://upstream.test/v1"),
        client=client,
    )
    try:
        stream = provider.chat_stream({"messages": []}, "m")
        assert await stream.__anext__() == {"choices": []}
        assert provider.pools.busy == [1]
        await stream.aclose()
        for _ in range(10):  # the inner generator is closed by the loop's finaliser, soon
            if provider.pools.busy == [0]:
                break
            await asyncio.sleep(0)
        assert provider.pools.busy == [0]
    finally:
        await provider.close()


async def test_a_provider_has_its_pools() -> None:
    provider = OpenAIProvider(
        ProviderConfig(name="o", kind="openai", base_url="http://upstream.test/v1")
    )
    try:
        assert len(provider.pools.clients) == POOLS
        assert POOLS * (MAX_CONNECTIONS // POOLS) == MAX_CONNECTIONS
    finally:
        await provider.close()
