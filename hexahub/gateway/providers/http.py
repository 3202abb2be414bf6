"""What every HTTP-speaking provider shares: one pooled client, timeouts, and turning
HTTP failures into UpstreamError (retryable or not) with the upstream's own message."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from hexahub.gateway.providers.base import JSON, ProviderConfig, UpstreamError, retryable_status


class HttpProvider:
    def __init__(self, config: ProviderConfig, *, client: httpx.AsyncClient | None = None):
        self.config = config
        timeout = httpx.Timeout(config.timeout_seconds, connect=min(10.0, config.timeout_seconds))
        self.client = client or httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            trust_env=False,
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
        try:
            response = await self.client.post(url, json=payload, headers=self._headers())
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        return self._json(response)

    async def _get_json(self, url: str) -> JSON:
        try:
            response = await self.client.get(url, headers=self._headers())
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        return self._json(response)

    def _json(self, response: httpx.Response) -> JSON:
        if response.status_code >= 400:
            raise self._fail(response)
        try:
            data: Any = response.json()
        except ValueError as exc:
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
        request = self.client.build_request(method, url, json=payload, headers=self._headers())
        try:
            response = await self.client.send(request, stream=True)
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
        await self.client.aclose()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
