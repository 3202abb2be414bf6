"""Complete (non-streamed) replies: Anthropic message <-> OpenAI chat.completion.

Also the one home of the stop-reason and usage mappings, which the stream translators
share, so a streamed and a non-streamed reply always end the same way.

Choices:
- Ids are kept as the upstream minted them (`msg_...` reaches an OpenAI client as the
  completion id), so a reply can be traced in the upstream's logs.
- Which stop sequence ended an OpenAI reply is not part of OpenAI's format. vLLM puts it in
  a `stop_reason` field beside `finish_reason`; that field is read when present, and
  written when translating the other way, so an Anthropic reply that passes through the
  canonical format keeps its `stop_sequence`.
- Tool arguments that are not a JSON object (small local models produce these) become
  `{"_raw": "<the arguments>"}` rather than failing the reply: an agent's tool runner
  then rejects the input and the model gets a chance to retry, where a 502 would end
  the conversation.
- Anthropic's input_tokens excludes cache reads and writes; OpenAI's prompt_tokens
  includes them, with cache reads repeated as prompt_tokens_details.cached_tokens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from hexahub.gateway.translate.anthropic.wire import (
    JSON,
    compact_json,
    new_id,
    object_or_empty,
    objects_in,
)

FINISH_REASON_BY_STOP_REASON: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
    "model_context_window_exceeded": "length",
}
STOP_REASON_BY_FINISH_REASON: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
RAW_ARGUMENTS_KEY = "_raw"


def openai_finish_reason(stop_reason: str | None) -> str:
    """OpenAI's finish_reason for an Anthropic stop_reason (unknown ones read as "stop")."""
    return FINISH_REASON_BY_STOP_REASON.get(stop_reason or "end_turn", "stop")


def anthropic_stop_reason(
    finish_reason: str | None, matched_stop: Any = None
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for an OpenAI finish_reason.

    `matched_stop` is vLLM's `stop_reason` field: the stop string that ended the reply.
    """
    if finish_reason == "stop" and isinstance(matched_stop, str) and matched_stop:
        return "stop_sequence", matched_stop
    return STOP_REASON_BY_FINISH_REASON.get(finish_reason or "stop", "end_turn"), None


def openai_usage(usage: Mapping[str, Any]) -> JSON:
    """OpenAI usage from Anthropic usage (cache reads and writes count as prompt tokens)."""
    cache_read = _count(usage.get("cache_read_input_tokens"))
    prompt = (
        _count(usage.get("input_tokens"))
        + _count(usage.get("cache_creation_input_tokens"))
        + cache_read
    )
    completion = _count(usage.get("output_tokens"))
    out: JSON = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cache_read:
        out["prompt_tokens_details"] = {"cached_tokens": cache_read}
    return out


def anthropic_usage(usage: Mapping[str, Any]) -> JSON:
    """Anthropic usage from OpenAI usage (cached prompt tokens become cache reads)."""
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, Mapping) else 0
    prompt = _count(usage.get("prompt_tokens"))
    out: JSON = {
        "input_tokens": max(prompt - cached, 0),
        "output_tokens": _count(usage.get("completion_tokens")),
    }
    if cached:
        out["cache_read_input_tokens"] = cached
    return out


def anthropic_response_to_openai(message: JSON, *, model: str, created: int | None = None) -> JSON:
    """An Anthropic message object as a chat.completion object for `model`."""
    texts: list[str] = []
    tool_calls: list[JSON] = []
    for block in objects_in(message.get("content")):
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            tool_input = block.get("input")
            tool_calls.append(
                {
                    "id": str(block.get("id") or new_id("toolu_")),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name") or ""),
                        "arguments": compact_json(tool_input if tool_input is not None else {}),
                    },
                }
            )
        # thinking and server-tool blocks have no Chat Completions counterpart
    reply: JSON = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        reply["tool_calls"] = tool_calls
    stop_reason = message.get("stop_reason")
    stop_reason = stop_reason if isinstance(stop_reason, str) else None
    choice: JSON = {
        "index": 0,
        "message": reply,
        "finish_reason": openai_finish_reason(stop_reason),
        "logprobs": None,
    }
    stop_sequence = message.get("stop_sequence")
    if stop_reason == "stop_sequence" and isinstance(stop_sequence, str):
        choice["stop_reason"] = stop_sequence
    usage = message.get("usage")
    return {
        "id": str(message.get("id") or new_id("chatcmpl-")),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": openai_usage(usage if isinstance(usage, Mapping) else {}),
    }


def openai_response_to_anthropic(completion: JSON) -> JSON:
    """A chat.completion object as an Anthropic message object (its first choice)."""
    choices = objects_in(completion.get("choices"))
    choice = choices[0] if choices else {}
    reply = object_or_empty(choice.get("message"))

    content: list[JSON] = []
    text = _reply_text(reply.get("content"))
    refusal = reply.get("refusal")
    if not text and isinstance(refusal, str):
        text = refusal
    if text:
        content.append({"type": "text", "text": text})
    for call in objects_in(reply.get("tool_calls")):
        function = object_or_empty(call.get("function"))
        content.append(
            {
                "type": "tool_use",
                "id": str(call.get("id") or new_id("toolu_")),
                "name": str(function.get("name") or ""),
                "input": tool_input_from_arguments(function.get("arguments")),
            }
        )

    finish_reason = choice.get("finish_reason")
    stop_reason, stop_sequence = anthropic_stop_reason(
        finish_reason if isinstance(finish_reason, str) else None, choice.get("stop_reason")
    )
    usage = completion.get("usage")
    return {
        "id": str(completion.get("id") or new_id("msg_")),
        "type": "message",
        "role": "assistant",
        "model": str(completion.get("model") or ""),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": anthropic_usage(usage if isinstance(usage, Mapping) else {}),
    }


def tool_input_from_arguments(arguments: Any) -> JSON:
    """Anthropic tool input for OpenAI's arguments string (see the module notes on `_raw`)."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else None
    except (json.JSONDecodeError, RecursionError):
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    return {RAW_ARGUMENTS_KEY: arguments if isinstance(arguments, str) else str(arguments)}


def _reply_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    # Some OpenAI-compatible servers answer with a list of text parts.
    return "".join(
        part["text"] for part in objects_in(content) if isinstance(part.get("text"), str)
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
