"""What a call carried, for accounting: usage in a response, the text and usage of a
relayed stream (`StreamTally`), and how a `Gateway.stream_text` call ended."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hexahub.gateway.providers.base import JSON
from hexahub.gateway.tokens import estimate_text_tokens, estimate_tokens

if TYPE_CHECKING:
    from hexahub.gateway.engine import CallContext


@dataclass(frozen=True)
class TextStreamEnd:
    """How a `Gateway.stream_text` call ended."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    ttft_ms: float
    model: str
    deployment: str
    error: str | None = None  # set when the upstream failed after the first piece


def usage_of(response: JSON) -> tuple[int, int]:
    found = response.get("usage") or {}
    return int(found.get("prompt_tokens") or 0), int(found.get("completion_tokens") or 0)


def delta_text(chunk: JSON) -> str:
    """The text a streamed chunk adds (chat deltas, or completions' text)."""
    pieces = []
    for choice in chunk.get("choices") or []:
        piece = (choice.get("delta") or {}).get("content") or choice.get("text")
        if piece:
            pieces.append(piece)
    return "".join(pieces)


@dataclass
class StreamTally:
    """What a relayed stream carried so far (usage, the reply's text) and how it ended;
    `Gateway.finish_stream` accounts for it once."""

    ttft_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: int = 200
    error: str | None = None
    pieces: list[str] = field(default_factory=list)
    usage_seen: bool = False  # the upstream reported usage (it comes last, if at all)

    @classmethod
    def start(cls, ctx: CallContext) -> StreamTally:
        """A tally for a stream whose first chunk has just come."""
        return cls(ttft_ms=round((time.perf_counter() - ctx.started) * 1000, 2))

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def take(self, chunk: JSON) -> str:
        """Count a chunk's usage and keep its text; returns the text it adds."""
        found = chunk.get("usage")
        if found:
            self.usage_seen = True
            self.prompt_tokens = int(found.get("prompt_tokens") or self.prompt_tokens)
            self.completion_tokens = int(found.get("completion_tokens") or self.completion_tokens)
        piece = delta_text(chunk)
        if piece:
            self.pieces.append(piece)
        return piece

    def settle(self, body: JSON) -> None:
        """A stream cut short (stopped, or failed midway) never saw its usage, yet the
        model did the work: count an estimate rather than nothing."""
        if self.usage_seen or not self.pieces:
            return
        self.prompt_tokens = estimate_tokens(body)
        self.completion_tokens = estimate_text_tokens(len(self.text))
