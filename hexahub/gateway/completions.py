"""Completions through chat, for providers without a native completions API: the
request and response (and stream chunks) of /v1/completions as chat ones and back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from hexahub.gateway.providers.base import JSON, ModelProvider


async def complete_text(provider: ModelProvider, body: JSON, upstream: str) -> JSON:
    """A completions call on `provider`: its own completions API, else through chat."""
    native = getattr(provider, "completions", None)
    if native is not None:
        result: JSON = await native(body, upstream)
        return result
    chat = await provider.chat(completion_as_chat(body), upstream)
    return chat_as_completion(chat)


def stream_text_completion(
    provider: ModelProvider, body: JSON, upstream: str
) -> AsyncIterator[JSON]:
    """A streamed completions call: the provider's own, else chat chunks converted."""
    native = getattr(provider, "completions_stream", None)
    if native is not None:
        stream: AsyncIterator[JSON] = native(body, upstream)
        return stream
    return chat_chunks_as_completion(provider.chat_stream(completion_as_chat(body), upstream))


def completion_as_chat(body: JSON) -> JSON:
    prompt = body.get("prompt")
    text = prompt[0] if isinstance(prompt, list) else prompt
    chat = {
        k: v
        for k, v in body.items()
        if k not in ("prompt", "echo", "suffix", "best_of", "logprobs")
    }
    chat["messages"] = [{"role": "user", "content": text}]
    return chat


def chat_as_completion(chat: JSON) -> JSON:
    choice = (chat.get("choices") or [{}])[0]
    return {
        "id": str(chat.get("id", "")).replace("chatcmpl", "cmpl"),
        "object": "text_completion",
        "created": chat.get("created", int(time.time())),
        "model": chat.get("model", ""),
        "choices": [
            {
                "index": 0,
                "text": (choice.get("message") or {}).get("content") or "",
                "logprobs": None,
                "finish_reason": choice.get("finish_reason"),
            }
        ],
        "usage": chat.get("usage"),
    }


async def chat_chunks_as_completion(chunks: AsyncIterator[JSON]) -> AsyncIterator[JSON]:
    async for chunk in chunks:
        choices = chunk.get("choices") or []
        converted: JSON = {
            "id": chunk.get("id"),
            "object": "text_completion",
            "created": chunk.get("created"),
            "model": chunk.get("model"),
            "choices": [],
        }
        for choice in choices:
            converted["choices"].append(
                {
                    "index": 0,
                    "text": (choice.get("delta") or {}).get("content") or "",
                    "logprobs": None,
                    "finish_reason": choice.get("finish_reason"),
                }
            )
        if chunk.get("usage"):
            converted["usage"] = chunk["usage"]
        yield converted
