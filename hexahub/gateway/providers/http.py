"""What every HTTP-speaking provider shares: pooled clients, timeouts, and turning
HTTP failures into UpstreamError (retryable or not) with the upstream's own message.

A provider's connections are spread over `POOLS` small httpx clients, and each request
goes through the least busy one. httpcore's pool does work on every request in
proportion to the square of the connections it holds (for each idle connection it counts
all of them), which made one big pool the gateway's largest cost under load; eight small
pools serve the same `MAX_CONNECTIONS` for a fraction of it (bench/README.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from hexahub.gateway.providers.base import JSON, ProviderConfig, UpstreamError, retryable_status

MAX_CONNECTIONS = 200  # to one provider at once, over all its pools
POOLS = 8


class Pools:
    """Clients to one provider; `lease` hands out the one with the fewest requests."""

    def __init__(self, clients: list[httpx.AsyncClient]) -> None:
        self.clients = clients
        self.busy = [0] * len(clients)

    @contextlib.contextmanager
    def lease(self) -> Iterator[httpx.AsyncClient]:
        busy = self.busy
        index = busy.index(min(busy))
        busy[index] += 1
        try:
            yield self.clients[index]
        finally:
            busy[index] -= 1

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


class HttpProvider:
    def __init__(self, config: ProviderConfig, *, client: httpx.AsyncClient | None = None):
        self.config = config
        if client is not None:
            self.pools = Pools([client])
            return
        timeout = httpx.Timeout(config.timeout_seconds, connect=min(10.0, config.timeout_seconds))
        per_pool = MAX_CONNECTIONS // POOLS
        # As many kept alive as may be open: httpcore closes idle connections whenever a
        # pool holds more than its keep-alive limit in all (idle or busy), so a lower limit
        # meant a new upstream connection for every request under that load.
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        tls = httpx.create_ssl_context(trust_env=False)  # loaded once, shared by the pools
        self.pools = Pools(
            [
                httpx.AsyncClient(timeout=timeout, limits=limits, verify=tls, trust_env=False)
                for _ in range(POOLS)
            ]
        )

    # --- subclasses provide -------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"content-type": "application/json"}

    def error_message(self, response: httpx.Response) -> tuple[str, str]:
        """(message, error type) from an upstream error response."""
        return response.text[:300] or response.reason_phrase, "api_error"

    # --- shared -----------------------------------------------------------------------
    def _fail(self, response: httpx.Response) -> UpstreamError:
        message, error_type = self.error_message(response)
        retry_after = _retry_after(response.headers.get("retry-after"))
        status = response.status_code
        return UpstreamError(
            status,
            f"{self.config.name}: {message}" if message else f"{self.config.name}: HTTP {status}",
            retryable=retryable_status(status),
            error_type=error_type,
            retry_after=retry_after,
        )

    def _transport_error(self, exc: httpx.HTTPError) -> UpstreamError:
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamError(
                504,
                f"{self.config.name} did not answer in time",
                retryable=True,
                error_type="timeout",
            )
        return UpstreamError(
            502,
            f"cannot reach {self.config.name}: {type(exc).__name__}",
            retryable=True,
            error_type="api_connection_error",
        )

    async def _post_json(self, url: str, payload: JSON) -> JSON:
        with self.pools.lease() as client:
            try:
                response = await client.post(url, json=payload, headers=self._headers())
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from exc
        return self._json(response)

    async def _get_json(self, url: str) -> JSON:
        with self.pools.lease() as client:
            try:
                response = await client.get(url, headers=self._headers())
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from exc
        return self._json(response)

    def _json(self, response: httpx.Response) -> JSON:
        if response.status_code >= 400:
            raise self._fail(response)
        try:
            data: Any = response.json()
        except (ValueError, RecursionError) as exc:  # not JSON, or nested past any use
            raise UpstreamError(
                502, f"{self.config.name} sent a response that is not JSON", retryable=True
            ) from exc
        if not isinstance(data, dict):
            raise UpstreamError(
                502, f"{self.config.name} sent an unexpected response", retryable=True
            )
        return data

    @contextlib.asynccontextmanager
    async def _stream(self, method: str, url: str, payload: JSON) -> AsyncIterator[httpx.Response]:
        with self.pools.lease() as client:  # for as long as the stream is open
            async with self._open_stream(client, method, url, payload) as response:
                yield response

    @contextlib.asynccontextmanager
    async def _open_stream(
        self, client: httpx.AsyncClient, method: str, url: str, payload: JSON
    ) -> AsyncIterator[httpx.Response]:
        request = client.build_request(method, url, json=payload, headers=self._headers())
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        try:
            if response.status_code >= 400:
                await response.aread()
                raise self._fail(response)
            try:
                yield response
            except httpx.HTTPError as exc:
                raise UpstreamError(
                    502, f"{self.config.name} cut the stream: {type(exc).__name__}", retryable=True
                ) from exc
        finally:
            await response.aclose()

    async def close(self) -> None:
        await self.pools.close()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
