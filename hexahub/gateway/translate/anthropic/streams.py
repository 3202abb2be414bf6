"""Streams: one state machine per streamed reply, each way, and the SSE framing.

Anthropic streams typed events around numbered content blocks (message_start,
content_block_start/delta/stop, message_delta, message_stop); OpenAI streams
chat.completion.chunk objects whose deltas carry text and tool calls numbered among tool
calls only. Both machines are fed one upstream item at a time and answer with the items
to send on, and `finish()` at the end of the upstream either flushes what is still owed
or raises StreamError when the upstream broke off, so a cut reply never looks complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hexahub.gateway.translate.anthropic.errors import StreamError
from hexahub.gateway.translate.anthropic.responses import (
    anthropic_stop_reason,
    anthropic_usage,
    openai_finish_reason,
    openai_usage,
)
from hexahub.gateway.translate.anthropic.wire import (
    JSON,
    compact_json,
    new_id,
    object_or_empty,
    objects_in,
)

SSE_OPENAI_DONE = b"data: [DONE]\n\n"
_CONTENT_EVENTS = frozenset(
    {"content_block_start", "content_block_delta", "message_delta", "message_stop"}
)


def sse_openai(chunk: JSON) -> bytes:
    """One chat.completion.chunk as an SSE message."""
    return f"data: {compact_json(chunk)}\n\n".encode()


def sse_anthropic(event: str, data: JSON) -> bytes:
    """One Anthropic stream event as an SSE message."""
    return f"event: {event}\ndata: {compact_json(data)}\n\n".encode()


class AnthropicToOpenAIStream:
    """Anthropic stream events in, chat.completion.chunk objects out.

    The role arrives first; text and tool-call deltas follow; message_delta's stop reason
    becomes the finish chunk; with `include_usage`, one usage chunk (empty choices) ends
    the stream, adding message_start's input counts to message_delta's output count.
    """

    def __init__(self, model: str, *, include_usage: bool, created: int | None = None) -> None:
        self.model = model
        self.include_usage = include_usage
        self._created = created if created is not None else int(time.time())
        self._id = ""
        self._usage: JSON = {}
        self._tool_index_by_block: dict[int, int] = {}
        self._finish_sent = False
        self._stopped = False

    def feed(self, event: str, data: JSON) -> list[JSON]:
        """The chunks to send for one upstream event (`event` falls back to data's type)."""
        if self._stopped:
            return []
        name = event or str(data.get("type") or "")
        if name == "error":
            error = object_or_empty(data.get("error"))
            raise StreamError(
                str(error.get("type") or "api_error"),
                str(error.get("message") or "the upstream reported an error"),
            )
        if name == "message_start":
            return self._message_start(data)
        if name not in _CONTENT_EVENTS:
            return []  # ping, content_block_stop and event types added later
        # Lenient about a missing message_start: the role chunk still comes first.
        chunks = [] if self._id else self._role_chunk()
        if name == "content_block_start":
            chunks += self._block_start(data)
        elif name == "content_block_delta":
            chunks += self._block_delta(data)
        elif name == "message_delta":
            chunks += self._message_delta(data)
        else:
            chunks += self._message_stop()
        return chunks

    def finish(self) -> list[JSON]:
        """Call when the upstream stream has ended; raises StreamError if it was cut."""
        if not self._stopped:
            raise StreamError(
                "api_error",
                "the upstream stream ended before message_stop; the reply is incomplete",
            )
        return []

    def _chunk(self, delta: JSON, finish_reason: str | None = None) -> JSON:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def _role_chunk(self, message_id: str | None = None) -> list[JSON]:
        self._id = message_id or new_id("chatcmpl-")
        return [self._chunk({"role": "assistant", "content": ""})]

    def _message_start(self, data: JSON) -> list[JSON]:
        message = object_or_empty(data.get("message"))
        self._update_usage(message.get("usage"))
        if self._id:
            return []
        message_id = message.get("id")
        return self._role_chunk(message_id if isinstance(message_id, str) else None)

    def _block_start(self, data: JSON) -> list[JSON]:
        block = object_or_empty(data.get("content_block"))
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str) and block["text"]:
            return [self._chunk({"content": block["text"]})]
        if kind != "tool_use":
            return []
        tool_index = len(self._tool_index_by_block)
        self._tool_index_by_block[_index(data)] = tool_index
        # Anthropic opens a tool block with input {} and streams the JSON afterwards; a
        # server that sends the whole input up front gets it forwarded as the arguments.
        tool_input = block.get("input")
        arguments = compact_json(tool_input) if isinstance(tool_input, dict) and tool_input else ""
        return [
            self._chunk(
                {
                    "tool_calls": [
                        {
                            "index": tool_index,
                            "id": str(block.get("id") or new_id("toolu_")),
                            "type": "function",
                            "function": {
                                "name": str(block.get("name") or ""),
                                "arguments": arguments,
                            },
                        }
                    ]
                }
            )
        ]

    def _block_delta(self, data: JSON) -> list[JSON]:
        delta = object_or_empty(data.get("delta"))
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [self._chunk({"content": text})] if isinstance(text, str) and text else []
        if kind == "input_json_delta":
            block_index = _index(data)
            if block_index not in self._tool_index_by_block:
                raise StreamError(
                    "api_error",
                    f"tool input arrived for content block {block_index}, "
                    "which is not a tool_use block",
                )
            fragment = delta.get("partial_json")
            if not isinstance(fragment, str) or not fragment:
                return []
            return [
                self._chunk(
                    {
                        "tool_calls": [
                            {
                                "index": self._tool_index_by_block[block_index],
                                "function": {"arguments": fragment},
                            }
                        ]
                    }
                )
            ]
        return []  # thinking, signature and citation deltas have no OpenAI counterpart

    def _message_delta(self, data: JSON) -> list[JSON]:
        self._update_usage(data.get("usage"))
        delta = object_or_empty(data.get("delta"))
        stop_reason = delta.get("stop_reason")
        if not isinstance(stop_reason, str) or self._finish_sent:
            return []
        stop_sequence = delta.get("stop_sequence")
        return [self._finish_chunk(stop_reason, stop_sequence)]

    def _message_stop(self) -> list[JSON]:
        self._stopped = True
        chunks = [] if self._finish_sent else [self._finish_chunk("end_turn", None)]
        if self.include_usage:
            usage_chunk = self._chunk({})
            usage_chunk["choices"] = []
            usage_chunk["usage"] = openai_usage(self._usage)
            chunks.append(usage_chunk)
        return chunks

    def _finish_chunk(self, stop_reason: str, stop_sequence: Any) -> JSON:
        self._finish_sent = True
        chunk = self._chunk({}, openai_finish_reason(stop_reason))
        if stop_reason == "stop_sequence" and isinstance(stop_sequence, str):
            chunk["choices"][0]["stop_reason"] = stop_sequence  # as vLLM reports it
        return chunk

    def _update_usage(self, usage: Any) -> None:
        # message_start carries the input counts; message_delta's counts are cumulative
        # and win, except that it may leave the input fields out or null.
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})


@dataclass
class _OpenBlock:
    index: int
    tool_index: int | None = None  # the OpenAI tool-call index of a tool_use block
    tool_id: str | None = None


class OpenAIToAnthropicStream:
    """chat.completion.chunk objects in, Anthropic (event, data) pairs out.

    The usage chunk of an OpenAI stream may come after the finish chunk, while Anthropic
    puts the usage in message_delta beside the stop reason; so message_delta and
    message_stop wait until both the finish reason and the usage are known. When the
    upstream never sends usage, `finish()` reports output_tokens 0: an honest "unknown",
    where a count estimated from the text would look exact and be wrong.
    """

    def __init__(self, model: str, *, message_id: str | None = None) -> None:
        self.model = model
        self._message_id = message_id
        self._started = False
        self._next_block = 0
        self._open: _OpenBlock | None = None
        self._block_by_tool_index: dict[int, int] = {}
        self._stop: tuple[str, str | None] | None = None
        self._usage: JSON | None = None
        self._done = False

    def feed(self, chunk: JSON) -> list[tuple[str, JSON]]:
        """The events to send for one upstream chunk."""
        if self._done:
            return []
        events: list[tuple[str, JSON]] = []
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        if not self._started:
            events.append(self._message_start(chunk))
        for choice in objects_in(chunk.get("choices")):
            if choice.get("index", 0) != 0 or self._stop is not None:
                continue
            delta = object_or_empty(choice.get("delta"))
            for key in ("content", "refusal"):
                text = delta.get(key)
                if isinstance(text, str) and text:
                    events += self._text(text)
            for call in objects_in(delta.get("tool_calls")):
                events += self._tool_call(call)
            finish_reason = choice.get("finish_reason")
            if isinstance(finish_reason, str) and finish_reason:
                events += self._close_open()
                self._stop = anthropic_stop_reason(finish_reason, choice.get("stop_reason"))
        if self._stop is not None and self._usage is not None:
            events += self._end(self._stop, self._usage)
        return events

    def finish(self) -> list[tuple[str, JSON]]:
        """Call when the upstream stream has ended; raises StreamError if it was cut."""
        if self._done:
            return []
        if self._stop is None:
            raise StreamError(
                "api_error",
                "the upstream stream ended before a finish_reason; the reply is incomplete",
            )
        return self._end(self._stop, self._usage or {})

    def _message_start(self, chunk: JSON) -> tuple[str, JSON]:
        self._started = True
        upstream_id = chunk.get("id")
        message_id = self._message_id or (
            upstream_id if isinstance(upstream_id, str) and upstream_id else new_id("msg_")
        )
        input_tokens = anthropic_usage(self._usage)["input_tokens"] if self._usage else 0
        return "message_start", {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 0},
            },
        }

    def _start_block(self, content_block: JSON, **open_fields: Any) -> list[tuple[str, JSON]]:
        events = self._close_open()
        self._open = _OpenBlock(index=self._next_block, **open_fields)
        self._next_block += 1
        start = {
            "type": "content_block_start",
            "index": self._open.index,
            "content_block": content_block,
        }
        return [*events, ("content_block_start", start)]

    def _close_open(self) -> list[tuple[str, JSON]]:
        if self._open is None:
            return []
        index, self._open = self._open.index, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _delta(self, delta: JSON) -> tuple[str, JSON]:
        assert self._open is not None
        return "content_block_delta", {
            "type": "content_block_delta",
            "index": self._open.index,
            "delta": delta,
        }

    def _text(self, text: str) -> list[tuple[str, JSON]]:
        events: list[tuple[str, JSON]] = []
        if self._open is None or self._open.tool_index is not None:
            events += self._start_block({"type": "text", "text": ""})
        events.append(self._delta({"type": "text_delta", "text": text}))
        return events

    def _tool_call(self, call: JSON) -> list[tuple[str, JSON]]:
        tool_index = self._tool_index_of(call)
        function = object_or_empty(call.get("function"))
        events: list[tuple[str, JSON]] = []
        if tool_index not in self._block_by_tool_index:
            tool_id = call.get("id")
            tool_id = tool_id if isinstance(tool_id, str) and tool_id else new_id("toolu_")
            events += self._start_block(
                {
                    "type": "tool_use",
                    "id": tool_id,
                    "name": str(function.get("name") or ""),
                    "input": {},
                },
                tool_index=tool_index,
                tool_id=tool_id,
            )
            self._block_by_tool_index[tool_index] = self._next_block - 1
        elif self._open is None or self._open.tool_index != tool_index:
            # An Anthropic block cannot be reopened once closed, and splicing the fragment
            # into another tool's input would corrupt both, so the stream fails instead.
            raise StreamError(
                "api_error",
                f"arguments for tool call {tool_index} arrived after a later "
                "content block had started",
            )
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return events

    def _tool_index_of(self, call: JSON) -> int:
        index = call.get("index")
        if isinstance(index, int) and not isinstance(index, bool):
            return index
        # Some OpenAI-compatible servers leave the index out: a new id means a new call.
        open_tool = self._open if self._open and self._open.tool_index is not None else None
        call_id = call.get("id")
        if open_tool is not None and (not call_id or call_id == open_tool.tool_id):
            assert open_tool.tool_index is not None
            return open_tool.tool_index
        return max(self._block_by_tool_index, default=-1) + 1

    def _end(self, stop: tuple[str, str | None], usage: JSON) -> list[tuple[str, JSON]]:
        self._done = True
        stop_reason, stop_sequence = stop
        counts = anthropic_usage(usage)
        delta_usage: JSON = {"output_tokens": counts["output_tokens"]}
        if usage:
            delta_usage["input_tokens"] = counts["input_tokens"]
            if "cache_read_input_tokens" in counts:
                delta_usage["cache_read_input_tokens"] = counts["cache_read_input_tokens"]
        return [
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                    "usage": delta_usage,
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]


def _index(data: JSON) -> int:
    index = data.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise StreamError("api_error", "a content block event came without an index")
    return index
