"""OpenAI and every server that speaks its API (vLLM, llama.cpp server, LM Studio, ...)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from hexahub.gateway.providers.base import JSON, ProviderConfig, UpstreamError
from hexahub.gateway.providers.http import HttpProvider


class OpenAIProvider(HttpProvider):
    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        organization = self.config.settings.get("organization")
        if organization:
            headers["openai-organization"] = str(organization)
        return headers

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    async def chat(self, body: JSON, upstream_model: str) -> JSON:
        payload = {**body, "model": upstream_model, "stream": False}
        payload.pop("stream_options", None)
        return await self._post_json(self._url("/chat/completions"), payload)

    async def completions(self, body: JSON, upstream_model: str) -> JSON:
        payload = {**body, "model": upstream_model, "stream": False}
        payload.pop("stream_options", None)
        return await self._post_json(self._url("/completions"), payload)

    async def embeddings(self, body: JSON, upstream_model: str) -> JSON:
        return await self._post_json(self._url("/embeddings"), {**body, "model": upstream_model})

    async def chat_stream(self, body: JSON, upstream_model: str) -> AsyncIterator[JSON]:
        payload: JSON = {**body, "model": upstream_model, "stream": True}
        if self.config.settings.get("stream_usage", True):
            payload["stream_options"] = {
                **(body.get("stream_options") or {}),
                "include_usage": True,
            }
        async for chunk in self._sse(self._url("/chat/completions"), payload):
            yield chunk

    async def completions_stream(self, body: JSON, upstream_model: str) -> AsyncIterator[JSON]:
        payload: JSON = {**body, "model": upstream_model, "stream": True}
        if self.config.settings.get("stream_usage", True):
            payload["stream_options"] = {"include_usage": True}
        async for chunk in self._sse(self._url("/completions"), payload):
            yield chunk

    async def _sse(self, url: str, payload: JSON) -> AsyncIterator[JSON]:
        async with self._stream("POST", url, payload) as response:
            done = False
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except (json.JSONDecodeError, RecursionError) as exc:
                    raise UpstreamError(
                        502, f"{self.config.name} sent a malformed stream event", retryable=True
                    ) from exc
                if not isinstance(chunk, dict):
                    raise UpstreamError(
                        502,
                        f"{self.config.name} sent a stream event that is not an object",
                        retryable=True,
                    )
                if "error" in chunk:
                    error = chunk["error"] if isinstance(chunk["error"], dict) else {}
                    raise UpstreamError(
                        502, str(error.get("message", "upstream stream error")), retryable=True
                    )
                yield chunk
            if not done:
                raise UpstreamError(
                    502, f"{self.config.name} ended the stream early", retryable=True
                )

    async def list_models(self) -> list[str]:
        data = await self._get_json(self._url("/models"))
        return [str(item.get("id")) for item in data.get("data", []) if isinstance(item, dict)]

    def error_message(self, response: httpx.Response) -> tuple[str, str]:
        try:
            body: Any = response.json()
        except (ValueError, RecursionError):
            return response.text[:300] or response.reason_phrase, "api_error"
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            return str(error.get("message", "")), str(error.get("type") or "api_error")
        if isinstance(error, str):
            return error, "api_error"
        return response.text[:300], "api_error"


def make(config: ProviderConfig) -> OpenAIProvider:
    return OpenAIProvider(config)
