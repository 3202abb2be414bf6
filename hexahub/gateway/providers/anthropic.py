"""Anthropic's Messages API, reached through the OpenAI <-> Anthropic translation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from hexahub.gateway.providers.base import (
    JSON,
    ProviderConfig,
    UpstreamError,
    retryable_status,
)
from hexahub.gateway.providers.http import HttpProvider
from hexahub.gateway.translate import anthropic as translate

API_VERSION = "2023-06-01"


class AnthropicProvider(HttpProvider):
    def _headers(self) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "anthropic-version": str(self.config.settings.get("version", API_VERSION)),
        }
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        return headers

    def _url(self, path: str) -> str:
        base = self.config.base_url.rstrip("/") or "https://api.anthropic.com"
        return base + path

    def _default_max_tokens(self) -> int:
        """Anthropic requires max_tokens: the provider's own setting, else
        HEXAHUB_GATEWAY_DEFAULT_MAX_TOKENS, else the translation's default."""
        configured = self.config.settings.get("default_max_tokens")
        if configured is None:
            configured = self.config.default_max_tokens
        return int(configured) if configured is not None else translate.DEFAULT_MAX_TOKENS

    def _request(self, body: JSON, upstream_model: str, stream: bool) -> JSON:
        try:
            request = translate.openai_request_to_anthropic(
                body, default_max_tokens=self._default_max_tokens()
            )
        except translate.TranslationError as exc:
            raise UpstreamError(
                400, str(exc), retryable=False, error_type="invalid_request_error"
            ) from exc
        request["model"] = upstream_model
        request["stream"] = stream
        return request

    async def chat(self, body: JSON, upstream_model: str) -> JSON:
        message = await self._post_json(
            self._url("/v1/messages"), self._request(body, upstream_model, False)
        )
        return translate.anthropic_response_to_openai(message, model=upstream_model)

    async def chat_stream(self, body: JSON, upstream_model: str) -> AsyncIterator[JSON]:
        converter = translate.AnthropicToOpenAIStream(upstream_model, include_usage=True)
        payload = self._request(body, upstream_model, True)
        async with self._stream("POST", self._url("/v1/messages"), payload) as response:
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                    continue
                if not line.startswith("data:"):
                    continue
                try:
                    data = json.loads(line[5:].strip())
                except (json.JSONDecodeError, RecursionError) as exc:
                    raise UpstreamError(
                        502, f"{self.config.name} sent a malformed stream event", retryable=True
                    ) from exc
                try:
                    chunks = converter.feed(event or str(data.get("type", "")), data)
                except translate.StreamError as exc:
                    raise UpstreamError(
                        exc.status,
                        f"{self.config.name}: {exc.message}",
                        retryable=retryable_status(exc.status),
                        error_type=exc.error_type,
                    ) from exc
                for chunk in chunks:
                    yield chunk
        try:
            for chunk in converter.finish():
                yield chunk
        except translate.StreamError as exc:
            raise UpstreamError(
                502, f"{self.config.name} ended the stream early", retryable=True
            ) from exc

    async def embeddings(self, body: JSON, upstream_model: str) -> JSON:
        raise UpstreamError(
            400,
            "Anthropic offers no embeddings; route this model to an embedding provider",
            retryable=False,
            error_type="invalid_request_error",
        )

    async def list_models(self) -> list[str]:
        data = await self._get_json(self._url("/v1/models"))
        return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]

    def error_message(self, response: httpx.Response) -> tuple[str, str]:
        try:
            body: Any = response.json()
        except (ValueError, RecursionError):
            return response.text[:300] or response.reason_phrase, "api_error"
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            return str(error.get("message", "")), str(error.get("type") or "api_error")
        return response.text[:300], "api_error"


def make(config: ProviderConfig) -> AnthropicProvider:
    return AnthropicProvider(config)
