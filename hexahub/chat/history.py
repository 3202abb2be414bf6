"""What of a conversation is sent to the model: as much as fits its context window.

A model reads the system prompt, the turns of the conversation and any repository passages
within one context window, and writes its answer into what is left of it. So a long
conversation is sized in tokens for the model that answers (hexahub.gateway.service's
`context_window`): the system prompt and the newest message always go, then the passages
(at most half of the room left), then the earlier turns, newest first, as long as they fit;
a quarter of the window (at most MAX_ANSWER_TOKENS) stays free for the answer. The turns
that did not fit are the oldest ones; the answer records how many (`left_out`), so the
reader knows the model did not see them.

Tokens are counted with the gateway's estimate (hexahub.gateway.engine), which needs no
tokenizer; the room kept for the answer absorbs an estimate that runs a little short.

    Turn(id, role, content)
    turns_of(messages) -> list[Turn]          # what may be sent: no failed or empty answers
    Budget.for_window(window, system_prompt, question)
    budget.passages_limit(per_passage, most, *, overhead=0) -> int  # passages that may go
    budget.take(tokens)                       # passages, once known
    fit(budget, system_prompt, turns) -> Fitted(messages, left_out)
"""

from __future__ import annotations

from dataclasses import dataclass

from hexahub.chat.models import Message, MessageRole, MessageStatus
from hexahub.gateway.providers.base import JSON
from hexahub.gateway.tokens import estimate_text_tokens

# The share of the window kept free for the answer, and its most.
ANSWER_SHARE = 4
MAX_ANSWER_TOKENS = 4096
# What a chat template adds around each message (role markers, separators) and around
# the whole prompt (a default system prompt of the model's own, the answer's opening).
MESSAGE_TOKENS = 8
PROMPT_TOKENS = 32
# Repository passages take at most this share of the room the question leaves.
PASSAGES_SHARE = 2


@dataclass(frozen=True)
class Turn:
    id: str
    role: str
    content: str


def turns_of(messages: list[Message]) -> list[Turn]:
    """The messages a model may be sent, oldest first: failed and empty answers are never
    sent (they are no part of the conversation the model should continue)."""
    return [
        Turn(m.id, m.role, m.content)
        for m in messages
        if m.role != MessageRole.assistant
        or (m.status in (MessageStatus.complete, MessageStatus.stopped) and m.content)
    ]


def message_tokens(content: str) -> int:
    return estimate_text_tokens(len(content)) + MESSAGE_TOKENS


def answer_room(window: int) -> int:
    return min(MAX_ANSWER_TOKENS, window // ANSWER_SHARE)


@dataclass
class Budget:
    """The tokens left for what is optional (passages, earlier turns) once the window's
    fixed parts are counted: the answer's room, the system prompt and the question."""

    window: int
    left: int

    @classmethod
    def for_window(cls, window: int, system_prompt: str, question: str) -> Budget:
        fixed = answer_room(window) + PROMPT_TOKENS + message_tokens(question)
        if system_prompt:
            fixed += message_tokens(system_prompt)
        return cls(window, max(0, window - fixed))

    def passages_limit(self, per_passage: int, most: int, *, overhead: int = 0) -> int:
        """How many passages of about `per_passage` tokens may go (at most `most`), with
        `overhead` tokens around them (their instructions)."""
        room = self.left // PASSAGES_SHARE - overhead
        return max(0, min(most, room // max(1, per_passage)))

    def take(self, tokens: int) -> None:
        self.left = max(0, self.left - tokens)


@dataclass
class Fitted:
    messages: list[JSON]
    # The earlier turns that were not sent, oldest first.
    left_out: list[Turn]


def fit(budget: Budget, system_prompt: str, turns: list[Turn]) -> Fitted:
    """The system prompt, then the newest turns that fit in `budget` (the last one always:
    it is the question). The turns left out are the oldest, so what the model reads is
    the conversation's recent past without gaps."""
    if not turns:
        raise ValueError("a conversation to answer has at least the question")
    *earlier, question = turns
    kept: list[Turn] = []
    left = budget.left
    for turn in reversed(earlier):
        cost = message_tokens(turn.content)
        if cost > left:
            break
        left -= cost
        kept.append(turn)
    kept.reverse()
    head: list[JSON] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    sent = [{"role": t.role, "content": t.content} for t in (*kept, question)]
    return Fitted(head + sent, earlier[: len(earlier) - len(kept)])
