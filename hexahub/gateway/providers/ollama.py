"""Ollama's native API (/api/chat, /api/generate, /api/embed, /api/tags)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from hexahub.gateway.providers.base import JSON, ProviderConfig, UpstreamError
from hexahub.gateway.providers.http import HttpProvider

_OPTION_NAMES = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}


def _text_and_images(content: Any) -> tuple[str, list[str]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            if not url.startswith("data:") or ";base64," not in url:
                raise UpstreamError(
                    400,
                    "Ollama takes images only as base64 data URLs",
                    retryable=False,
                    error_type="invalid_request_error",
                )
            images.append(url.split(";base64,", 1)[1])
    return "\n".join(texts), images


def to_ollama_messages(messages: list[JSON]) -> list[JSON]:
    converted: list[JSON] = []
    for message in messages:
        role = message.get("role")
        text, images = _text_and_images(message.get("content"))
        item: JSON = {"role": "system" if role == "developer" else role, "content": text}
        if images:
            item["images"] = images
        if message.get("tool_calls"):
            item["tool_calls"] = [
                {
                    "function": {
                        "name": call["function"]["name"],
                        "arguments": _arguments(call["function"].get("arguments")),
                    }
                }
                for call in message["tool_calls"]
            ]
        if role == "tool" and message.get("name"):
            item["tool_name"] = message["name"]
        converted.append(item)
    return converted


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw.strip() else {}
        except (json.JSONDecodeError, RecursionError) as exc:
            raise UpstreamError(
                400,
                "tool call arguments are not valid JSON",
                retryable=False,
                error_type="invalid_request_error",
            ) from exc
    return raw or {}


def _options(body: JSON) -> JSON:
    options: JSON = {
        ours: body[theirs] for theirs, ours in _OPTION_NAMES.items() if body.get(theirs) is not None
    }
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    stop = body.get("stop")
    if stop:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    return options


def _finish_reason(data: JSON, tool_calls: list[JSON]) -> str:
    if tool_calls:
        return "tool_calls"
    return "length" if data.get("done_reason") == "length" else "stop"


def _tool_calls(message: JSON, offset: int = 0) -> list[JSON]:
    calls = []
    for i, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        calls.append(
            {
                "index": offset + i,
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": function.get("name", ""),
                    "arguments": json.dumps(function.get("arguments") or {}, separators=(",", ":")),
                },
            }
        )
    return calls


def _usage(data: JSON) -> JSON:
    prompt = int(data.get("prompt_eval_count") or 0)
    completion = int(data.get("eval_count") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class OllamaProvider(HttpProvider):
    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def _chat_payload(self, body: JSON, upstream_model: str, stream: bool) -> JSON:
        payload: JSON = {
            "model": upstream_model,
            "messages": to_ollama_messages(body.get("messages") or []),
            "stream": stream,
            "options": _options(body),
        }
        if body.get("tools"):
            payload["tools"] = body["tools"]
        fmt = (body.get("response_format") or {}).get("type")
        if fmt == "json_object":
            payload["format"] = "json"
        elif fmt == "json_schema":
            payload["format"] = (body["response_format"].get("json_schema") or {}).get("schema")
        return payload

    async def chat(self, body: JSON, upstream_model: str) -> JSON:
        data = await self._post_json(
            self._url("/api/chat"), self._chat_payload(body, upstream_model, False)
        )
        message = data.get("message") or {}
        calls = _tool_calls(message)
        for call in calls:
            call.pop("index")
        reply: JSON = {"role": "assistant", "content": message.get("content") or None}
        if calls:
            reply["tool_calls"] = calls
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": upstream_model,
            "choices": [
                {"index": 0, "message": reply, "finish_reason": _finish_reason(data, calls)}
            ],
            "usage": _usage(data),
        }

    async def chat_stream(self, body: JSON, upstream_model: str) -> AsyncIterator[JSON]:
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def chunk(delta: JSON, finish: str | None = None) -> JSON:
            return {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": upstream_model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        yield chunk({"role": "assistant", "content": ""})
        tools_seen = 0
        payload = self._chat_payload(body, upstream_model, True)
        async for data in self._ndjson(self._url("/api/chat"), payload):
            message = data.get("message") or {}
            calls = _tool_calls(message, tools_seen)
            tools_seen += len(calls)
            if message.get("content"):
                yield chunk({"content": message["content"]})
            if calls:
                yield chunk({"tool_calls": calls})
            if data.get("done"):
                reason = "tool_calls" if tools_seen else _finish_reason(data, [])
                yield chunk({}, reason)
                yield {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": upstream_model,
                    "choices": [],
                    "usage": _usage(data),
                }
                return
        raise UpstreamError(502, f"{self.config.name} ended the stream early", retryable=True)

    async def _ndjson(self, url: str, payload: JSON) -> AsyncIterator[JSON]:
        async with self._stream("POST", url, payload) as response:
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except (json.JSONDecodeError, RecursionError) as exc:
                    raise UpstreamError(
                        502, f"{self.config.name} sent a malformed stream line", retryable=True
                    ) from exc
                if "error" in data:
                    raise UpstreamError(502, f"{self.config.name}: {data['error']}", retryable=True)
                yield data

    async def embeddings(self, body: JSON, upstream_model: str) -> JSON:
        inputs = body.get("input")
        data = await self._post_json(
            self._url("/api/embed"), {"model": upstream_model, "input": inputs}
        )
        vectors = data.get("embeddings") or []
        prompt = int(data.get("prompt_eval_count") or 0)
        return {
            "object": "list",
            "model": upstream_model,
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }

    async def list_models(self) -> list[str]:
        data = await self._get_json(self._url("/api/tags"))
        return [str(m.get("name")) for m in data.get("models", []) if isinstance(m, dict)]

    def error_message(self, response: httpx.Response) -> tuple[str, str]:
        try:
            body: Any = response.json()
        except (ValueError, RecursionError):
            return response.text[:300] or response.reason_phrase, "api_error"
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            kind = "not_found_error" if response.status_code == 404 else "api_error"
            return body["error"], kind
        return response.text[:300], "api_error"


def make(config: ProviderConfig) -> OllamaProvider:
    return OllamaProvider(config)
