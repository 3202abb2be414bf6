"""Provider-neutral token estimates, for what must be known before (or without) the
provider's own count: `/v1/messages/count_tokens`, streams cut short, and the reservation a
request makes against its key's limits before it is sent (hexahub.gateway.limits)."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


def estimate_text_tokens(characters: int) -> int:
    """A provider-neutral estimate: about four characters of text per token."""
    return max(1, characters // 4)


def _text_length(value: Any) -> int:
    """The characters of every string in `value`, leaving out fields that carry no text
    the model reads as tokens (part types, image sources, cache hints). Iterative, so a
    deeply nested body cannot exhaust the stack."""
    total, pending = 0, [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(
                v for k, v in item.items() if k not in ("type", "source", "cache_control")
            )
    return total


def estimate_tokens(body: JSON) -> int:
    """The estimated prompt tokens of a chat request's system, messages and tools."""
    return estimate_text_tokens(
        sum(_text_length(body.get(name)) for name in ("system", "messages", "tools"))
    )


def estimate_prompt_tokens(endpoint: str, body: JSON) -> int:
    """The estimated prompt tokens of a chat, completions or embeddings request."""
    if endpoint == "chat":
        return estimate_tokens(body)
    field = "input" if endpoint == "embeddings" else "prompt"
    value = body.get(field)
    # Token arrays (embeddings, completions) are counted as they are: one number, one token.
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return len(value)
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return sum(len(v) for v in value)
    return estimate_text_tokens(_text_length(value))


def requested_completion_tokens(endpoint: str, body: JSON, default: int) -> int:
    """The most completion tokens a request may produce: its max_tokens (or
    max_completion_tokens), else `default` (HEXAHUB_GATEWAY_DEFAULT_MAX_TOKENS);
    embeddings produce none."""
    if endpoint == "embeddings":
        return 0
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default
