"""The one protocol every model provider implements.

Requests and responses are OpenAI Chat Completions / Embeddings shaped dicts, the
gateway's canonical form. A provider turns them into its own wire format and back, and
reports failures as UpstreamError so the router can decide whether to retry or fall back.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

JSON = dict[str, Any]

# Who the current call is for (an API key id, else a user id), set by the gateway for each
# request. Providers that share capacity between callers (the local provider's queues)
# schedule by it; others ignore it.
caller_var: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="anonymous")


class UpstreamError(Exception):
    """A provider failed. `retryable` errors may succeed on another try or deployment."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        retryable: bool,
        error_type: str = "api_error",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retryable = retryable
        self.error_type = error_type
        self.retry_after = retry_after


def retryable_status(status: int) -> bool:
    return status in (408, 409, 425, 429, 500, 502, 503, 504, 529)


@dataclass
class ProviderConfig:
    name: str
    kind: str
    base_url: str
    api_key: str | None = None
    timeout_seconds: float = 120.0
    is_local: bool = False
    settings: JSON = field(default_factory=dict)
    # max_tokens for providers that require one, when the client sent none
    # (HEXAHUB_GATEWAY_DEFAULT_MAX_TOKENS; a provider's `default_max_tokens` setting wins).
    default_max_tokens: int | None = None


class ModelProvider(Protocol):
    config: ProviderConfig

    async def chat(self, body: JSON, upstream_model: str) -> JSON:
        """A chat.completion object for `body` (stream is false)."""
        ...

    def chat_stream(self, body: JSON, upstream_model: str) -> AsyncIterator[JSON]:
        """chat.completion.chunk objects; the last carries usage when the provider has it."""
        ...

    async def embeddings(self, body: JSON, upstream_model: str) -> JSON: ...

    async def list_models(self) -> list[str]: ...

    async def close(self) -> None: ...
