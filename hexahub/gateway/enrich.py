"""The extension point for features that add to a /v1 chat request before it is routed.

The gateway sits below the features built on it (ARCHITECTURE.md, layers), so it never
imports them: a higher layer registers a `RequestEnricher` with the running gateway when
the app starts (hexahub.context.inject adds workspace code context). For each chat request
the /v1 routes ask every enricher what the request wants (`asked`, which may rewrite the
body, e.g. strip a `+context` model suffix) before the body is checked, and run what was
asked on the OpenAI-format body before it is routed (`Gateway.enrich`).

Model calls an enricher makes through the gateway (embedding a search query) are part of
the client's request: while it runs, `part_of` points at that request's `Spent`, and such
calls add their tokens and cost there instead of writing usage records of their own. The
request's one record then carries them, and they count against its key.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hexahub.gateway.engine import CallContext

JSON = dict[str, Any]

# Runs what a request asked for on its OpenAI-format body (changing it in place) and
# returns headers to add to the response.
Enrichment = Callable[["CallContext", JSON], Awaitable[dict[str, str]]]


class RequestEnricher(Protocol):
    def asked(self, headers: Mapping[str, str], body: JSON) -> Enrichment | None:
        """What this request (its headers and the body as the client sent it) asks of
        this enricher; None when nothing. May rewrite `body` (a model-name suffix)."""
        ...


@dataclass
class Spent:
    """Tokens and cost of the model calls made on behalf of one client request."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    # Closed once the enrichers are done: a task they started that calls a model later
    # (it inherited `part_of`) then records that call itself instead of adding it here.
    open: bool = True

    def add(self, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost_usd += cost_usd


part_of: contextvars.ContextVar[Spent | None] = contextvars.ContextVar(
    "gateway_part_of", default=None
)
