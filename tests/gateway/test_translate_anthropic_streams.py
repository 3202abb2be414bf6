"""Streams both ways: recorded-style event sequences fed through the state machines, the
exact chunks/events they produce, and the official SDKs reading the produced SSE bytes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from anthropic.types import RawMessageStreamEvent
from openai.types.chat import ChatCompletionChunk
from pydantic import TypeAdapter

from hexahub.gateway.translate.anthropic import (
    SSE_OPENAI_DONE,
    AnthropicToOpenAIStream,
    OpenAIToAnthropicStream,
    StreamError,
    sse_anthropic,
    sse_openai,
)

ANTHROPIC_EVENT = TypeAdapter(RawMessageStreamEvent)
CREATED = 1_700_000_000
MSG_ID = "msg_014p7gG3wDgGV9EUtLvnow3U"

Event = tuple[str, dict[str, Any]]


# --- recorded-style Anthropic streams -------------------------------------------------


def message_start(input_tokens: int = 25, **usage: int) -> Event:
    return "message_start", {
        "type": "message_start",
        "message": {
            "id": MSG_ID,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-5-20250929",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage},
        },
    }


def block_start(index: int, block: dict[str, Any]) -> Event:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": block,
    }


def text_delta(index: int, text: str) -> Event:
    return "content_block_delta", {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "text_delta", "text": text},
    }


def json_delta(index: int, partial: str) -> Event:
    return "content_block_delta", {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "input_json_delta", "partial_json": partial},
    }


def block_stop(index: int) -> Event:
    return "content_block_stop", {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, output_tokens: int, stop_sequence: str | None = None) -> Event:
    return "message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
        "usage": {"output_tokens": output_tokens},
    }


MESSAGE_STOP: Event = ("message_stop", {"type": "message_stop"})
PING: Event = ("ping", {"type": "ping"})
TEXT_BLOCK = {"type": "text", "text": ""}


def tool_block(tool_id: str, name: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": {}}


TEXT_ONLY: list[Event] = [
    message_start(),
    block_start(0, TEXT_BLOCK),
    PING,
    text_delta(0, "Hello"),
    text_delta(0, "! How can I help?"),
    block_stop(0),
    message_delta("end_turn", 15),
    MESSAGE_STOP,
]

# As Anthropic streams it: a thinking block first, so the block indexes of the tool calls
# (2, 3) differ from their OpenAI tool-call indexes (0, 1).
TEXT_AND_TWO_TOOLS: list[Event] = [
    message_start(input_tokens=400, cache_read_input_tokens=1000),
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Two cities."},
        },
    ),
    block_stop(0),
    block_start(1, TEXT_BLOCK),
    text_delta(1, "Checking both."),
    block_stop(1),
    block_start(2, tool_block("toolu_A", "get_weather")),
    json_delta(2, ""),
    json_delta(2, '{"location": '),
    json_delta(2, '"Paris"}'),
    block_stop(2),
    block_start(3, tool_block("toolu_B", "get_time")),
    json_delta(3, '{"tz": "Europe/'),
    json_delta(3, 'Rome"}'),
    block_stop(3),
    message_delta("tool_use", 91),
    MESSAGE_STOP,
]

# The same reply with the argument fragments of the two calls interleaved: each fragment
# must still reach the tool call its block belongs to.
TEXT_AND_TWO_TOOLS_INTERLEAVED: list[Event] = [
    *TEXT_AND_TWO_TOOLS[:10],
    block_start(3, tool_block("toolu_B", "get_time")),
    json_delta(3, '{"tz": "Europe/'),
    json_delta(2, '"Paris"}'),
    json_delta(3, 'Rome"}'),
    block_stop(2),
    block_stop(3),
    *TEXT_AND_TWO_TOOLS[-2:],
]


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": MSG_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "claude-sonnet",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {
        "id": MSG_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "claude-sonnet",
        "choices": [],
        "usage": usage,
    }


def run_anthropic(events: Iterable[Event], *, include_usage: bool = True) -> list[dict[str, Any]]:
    stream = AnthropicToOpenAIStream("claude-sonnet", include_usage=include_usage, created=CREATED)
    chunks = [c for name, data in events for c in stream.feed(name, data)]
    chunks += stream.finish()
    for produced in chunks:
        ChatCompletionChunk.model_validate(produced)
    return chunks


def test_anthropic_text_stream_becomes_openai_chunks() -> None:
    assert run_anthropic(TEXT_ONLY) == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hello"}),
        chunk({"content": "! How can I help?"}),
        chunk({}, "stop"),
        usage_chunk(25, 15),
    ]


def test_without_include_usage_no_usage_chunk_is_sent() -> None:
    chunks = run_anthropic(TEXT_ONLY, include_usage=False)
    assert chunks[-1] == chunk({}, "stop")
    assert not any("usage" in c for c in chunks)


TOOL_CHUNKS_IN_ORDER = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Checking both."}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_A",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location": '}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "toolu_B",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz": "Europe/'}}]}),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": 'Rome"}'}}]}),
    chunk({}, "tool_calls"),
    usage_chunk(1400, 91, cached=1000),
]


def test_anthropic_tool_stream_maps_block_indexes_to_tool_call_indexes() -> None:
    assert run_anthropic(TEXT_AND_TWO_TOOLS) == TOOL_CHUNKS_IN_ORDER


def test_interleaved_tool_fragments_reach_their_own_tool_call() -> None:
    assert run_anthropic(TEXT_AND_TWO_TOOLS_INTERLEAVED) == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Checking both."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_A",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location": '}}]}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "toolu_B",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz": "Europe/'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": 'Rome"}'}}]}),
        chunk({}, "tool_calls"),
        usage_chunk(1400, 91, cached=1000),
    ]


def test_message_delta_input_counts_override_message_start() -> None:
    events = [
        *TEXT_ONLY[:-2],
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                "usage": {"output_tokens": 64, "input_tokens": 30, "cache_read_input_tokens": None},
            },
        ),
        MESSAGE_STOP,
    ]
    chunks = run_anthropic(events)
    assert chunks[-2] == chunk({}, "length")
    assert chunks[-1] == usage_chunk(30, 64)
    assert sum("usage" in c for c in chunks) == 1


def test_stop_sequence_is_reported_beside_the_finish_reason() -> None:
    events = [
        *TEXT_ONLY[:-2],
        message_delta("stop_sequence", 7, stop_sequence="\nUser:"),
        MESSAGE_STOP,
    ]
    finish = run_anthropic(events)[-2]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["choices"][0]["stop_reason"] == "\nUser:"


def test_anthropic_error_event_raises_stream_error() -> None:
    stream = AnthropicToOpenAIStream("c", include_usage=True)
    stream.feed(*TEXT_ONLY[0])
    with pytest.raises(StreamError) as caught:
        stream.feed(
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        )
    assert (caught.value.error_type, caught.value.message) == ("overloaded_error", "Overloaded")
    assert caught.value.status == 529


def test_a_cut_anthropic_stream_is_reported_at_finish() -> None:
    stream = AnthropicToOpenAIStream("c", include_usage=True)
    for name, data in TEXT_ONLY[:4]:
        stream.feed(name, data)
    with pytest.raises(StreamError, match="before message_stop") as caught:
        stream.finish()
    assert caught.value.error_type == "api_error"


def test_a_stream_cut_after_message_delta_is_still_cut() -> None:
    stream = AnthropicToOpenAIStream("c", include_usage=True)
    for name, data in TEXT_ONLY[:-1]:
        stream.feed(name, data)
    with pytest.raises(StreamError):
        stream.finish()


def test_tool_input_for_a_text_block_is_an_error() -> None:
    stream = AnthropicToOpenAIStream("c", include_usage=False)
    for name, data in TEXT_ONLY[:2]:
        stream.feed(name, data)
    with pytest.raises(StreamError, match="content block 0"):
        stream.feed(*json_delta(0, "{}"))


def test_event_name_falls_back_to_the_data_type() -> None:
    stream = AnthropicToOpenAIStream("claude-sonnet", include_usage=False, created=CREATED)
    assert stream.feed("", TEXT_ONLY[0][1]) == [chunk({"role": "assistant", "content": ""})]
    assert stream.feed("", text_delta(0, "x")[1]) == [chunk({"content": "x"})]


def test_unknown_events_and_events_after_message_stop_are_ignored() -> None:
    stream = AnthropicToOpenAIStream("c", include_usage=True)
    for name, data in TEXT_ONLY:
        stream.feed(name, data)
    assert stream.feed("future_event", {"type": "future_event"}) == []
    assert stream.feed(*text_delta(0, "late")) == []
    assert stream.finish() == []


# --- OpenAI streams -------------------------------------------------------------------


def oa(
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    **choice_extra: Any,
) -> dict[str, Any]:
    """A chat.completion.chunk as OpenAI streams it (usage null until the last chunk)."""
    choices = (
        []
        if delta is None
        else [
            {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish_reason,
                **choice_extra,
            }
        ]
    )
    return {
        "id": "chatcmpl-7QyqpwdfhqwajicIEznoc6Q47XAyW",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": choices,
        "usage": usage,
    }


USAGE = {"prompt_tokens": 19, "completion_tokens": 4, "total_tokens": 23}


def event_start(input_tokens: int = 0) -> Event:
    return "message_start", {
        "type": "message_start",
        "message": {
            "id": "msg_gateway",
            "type": "message",
            "role": "assistant",
            "model": "claude-alias",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 0},
        },
    }


def event_end(
    stop_reason: str, usage: dict[str, Any], stop_sequence: str | None = None
) -> list[Event]:
    return [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": usage,
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def run_openai(chunks: Iterable[dict[str, Any]]) -> list[list[Event]]:
    """The events produced per fed chunk, then those of finish(), each SDK-validated."""
    stream = OpenAIToAnthropicStream("claude-alias", message_id="msg_gateway")
    produced = [stream.feed(c) for c in chunks]
    produced.append(stream.finish())
    for events in produced:
        for name, data in events:
            assert ANTHROPIC_EVENT.validate_python(data).type == name
    return produced


def flat(produced: list[list[Event]]) -> list[Event]:
    return [event for events in produced for event in events]


TEXT_CHUNKS = [
    oa({"role": "assistant", "content": "", "refusal": None}),
    oa({"content": "Hello"}),
    oa({"content": " there."}),
    oa({}, "stop"),
    oa(None, usage=USAGE),
]


def test_openai_text_stream_with_usage_after_finish() -> None:
    produced = run_openai(TEXT_CHUNKS)
    assert flat(produced) == [
        event_start(),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hello"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": " there."},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        *event_end("end_turn", {"output_tokens": 4, "input_tokens": 19}),
    ]
    # The finish chunk closes the block but waits for the usage before message_delta.
    assert [name for name, _ in produced[3]] == ["content_block_stop"]
    assert [name for name, _ in produced[4]] == ["message_delta", "message_stop"]
    assert produced[5] == []


def test_openai_tool_stream_opens_one_block_per_tool_call() -> None:
    chunks = [
        oa({"role": "assistant", "content": None}),
        oa({"content": "Let me look."}),
        oa(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_W",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        oa({"tool_calls": [{"index": 0, "function": {"arguments": '{"location"'}}]}),
        oa({"tool_calls": [{"index": 0, "function": {"arguments": ': "Oslo"}'}}]}),
        oa(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_T",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz":'},
                    }
                ]
            }
        ),
        oa({"tool_calls": [{"index": 1, "function": {"arguments": '"CET"}'}}]}),
        oa({}, "tool_calls"),
        oa(
            None,
            usage={
                "prompt_tokens": 120,
                "completion_tokens": 33,
                "total_tokens": 153,
                "prompt_tokens_details": {"cached_tokens": 100},
            },
        ),
    ]
    assert flat(run_openai(chunks)) == [
        event_start(),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Let me look."},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "tool_use",
                    "id": "call_W",
                    "name": "get_weather",
                    "input": {},
                },
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"location"'},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": ': "Oslo"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {
                    "type": "tool_use",
                    "id": "call_T",
                    "name": "get_time",
                    "input": {},
                },
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": '{"tz":'},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": '"CET"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        *event_end(
            "tool_use", {"output_tokens": 33, "input_tokens": 20, "cache_read_input_tokens": 100}
        ),
    ]


def test_usage_in_the_finish_chunk_ends_the_message_at_once() -> None:
    produced = run_openai([oa({"content": "Hi"}), oa({}, "length", usage=USAGE)])
    assert [name for name, _ in produced[1]] == [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert produced[1][1][1]["delta"]["stop_reason"] == "max_tokens"
    assert produced[2] == []


def test_usage_is_reported_once_even_when_sent_twice() -> None:
    events = flat(run_openai([*TEXT_CHUNKS, oa(None, usage={**USAGE, "completion_tokens": 99})]))
    deltas = [data for name, data in events if name == "message_delta"]
    assert len(deltas) == 1 and deltas[0]["usage"]["output_tokens"] == 4
    assert [name for name, _ in events].count("message_stop") == 1


def test_usage_known_before_the_finish_is_used_at_the_finish() -> None:
    produced = run_openai(
        [oa({"content": "Hi"}, usage=None), oa(None, usage=USAGE), oa({}, "stop")]
    )
    assert produced[1] == []
    assert [name for name, _ in produced[2]][-2:] == ["message_delta", "message_stop"]


def test_stream_without_usage_ends_at_finish_with_zero_output_tokens() -> None:
    produced = run_openai(TEXT_CHUNKS[:-1])
    assert produced[-1] == event_end("end_turn", {"output_tokens": 0})


def test_first_chunk_usage_fills_message_start() -> None:
    produced = run_openai([oa({"content": "Hi"}, usage=USAGE), oa({}, "stop", usage=USAGE)])
    assert produced[0][0] == event_start(input_tokens=19)


def test_matched_stop_string_becomes_stop_sequence() -> None:
    produced = run_openai(
        [oa({"content": "1 2 3"}), oa({}, "stop", stop_reason="4"), oa(None, usage=USAGE)]
    )
    assert produced[2][0][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "4"}


def test_a_cut_openai_stream_is_reported_at_finish() -> None:
    stream = OpenAIToAnthropicStream("c")
    for c in TEXT_CHUNKS[:3]:
        stream.feed(c)
    with pytest.raises(StreamError, match="before a finish_reason"):
        stream.finish()
    with pytest.raises(StreamError):
        OpenAIToAnthropicStream("c").finish()


def test_late_arguments_for_a_closed_tool_call_are_an_error() -> None:
    stream = OpenAIToAnthropicStream("c")
    stream.feed(oa({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f"}}]}))
    stream.feed(oa({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g"}}]}))
    with pytest.raises(StreamError, match="tool call 0"):
        stream.feed(oa({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))


def test_tool_calls_without_index_are_told_apart_by_id() -> None:
    events = flat(
        run_openai(
            [
                oa(
                    {
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "f", "arguments": '{"a":1}'},
                            }
                        ]
                    }
                ),
                oa(
                    {
                        "tool_calls": [
                            {
                                "id": "call_2",
                                "type": "function",
                                "function": {"name": "g", "arguments": "{"},
                            }
                        ]
                    }
                ),
                oa({"tool_calls": [{"function": {"arguments": "}"}}]}),
                oa({}, "tool_calls", usage=USAGE),
            ]
        )
    )
    starts = [data["content_block"]["id"] for name, data in events if name == "content_block_start"]
    fragments = [
        (data["index"], data["delta"]["partial_json"])
        for name, data in events
        if name == "content_block_delta"
    ]
    assert starts == ["call_1", "call_2"]
    assert fragments == [(0, '{"a":1}'), (1, "{"), (1, "}")]


def test_message_id_defaults_to_the_upstream_chunk_id() -> None:
    stream = OpenAIToAnthropicStream("claude-alias")
    name, data = stream.feed(TEXT_CHUNKS[1])[0]
    assert name == "message_start"
    assert data["message"]["id"] == "chatcmpl-7QyqpwdfhqwajicIEznoc6Q47XAyW"


# --- SSE framing and the official SDKs reading it --------------------------------------


def test_sse_framing() -> None:
    assert sse_openai({"id": "x", "choices": [{"delta": {"content": "é"}}]}) == (
        'data: {"id":"x","choices":[{"delta":{"content":"é"}}]}\n\n'.encode()
    )
    assert SSE_OPENAI_DONE == b"data: [DONE]\n\n"
    assert sse_anthropic("message_stop", {"type": "message_stop"}) == (
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


def _transport(body: bytes) -> httpx2.Client:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return httpx2.Client(transport=httpx2.MockTransport(answer))


def anthropic_sdk_final_message(events: Iterable[Event]) -> anthropic.types.Message:
    body = b"".join(sse_anthropic(name, data) for name, data in events)
    client = anthropic.Anthropic(
        api_key="test", base_url="http://gateway.test", http_client=_transport(body), max_retries=0
    )
    with client.messages.stream(
        model="claude-alias", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        return stream.get_final_message()


def openai_sdk_final_completion(chunks: Iterable[dict[str, Any]]) -> Any:
    body = b"".join(sse_openai(c) for c in chunks) + SSE_OPENAI_DONE
    client = openai.OpenAI(
        api_key="test",
        base_url="http://gateway.test/v1",
        http_client=_transport(body),
        max_retries=0,
    )
    with client.chat.completions.stream(
        model="claude-sonnet", messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        return stream.get_final_completion()


@pytest.mark.parametrize(
    "events", [TEXT_AND_TWO_TOOLS, TEXT_AND_TWO_TOOLS_INTERLEAVED], ids=["in-order", "interleaved"]
)
def test_openai_sdk_reads_the_translated_tool_stream(events: list[Event]) -> None:
    final = openai_sdk_final_completion(run_anthropic(events))
    choice = final.choices[0]
    assert choice.message.content == "Checking both."
    calls = choice.message.tool_calls
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("toolu_A", "get_weather", {"location": "Paris"}),
        ("toolu_B", "get_time", {"tz": "Europe/Rome"}),
    ]
    assert choice.finish_reason == "tool_calls"
    assert final.usage.prompt_tokens == 1400 and final.usage.completion_tokens == 91


def test_anthropic_sdk_reads_the_translated_stream() -> None:
    chunks = [
        oa({"role": "assistant", "content": ""}),
        oa({"content": "Sure."}),
        oa(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": "ti'},
                    }
                ]
            }
        ),
        oa({"tool_calls": [{"index": 0, "function": {"arguments": 'des"}'}}]}),
        oa({}, "tool_calls"),
        oa(None, usage=USAGE),
    ]
    message = anthropic_sdk_final_message(flat(run_openai(chunks)))
    assert message.model_dump(
        include={"id", "model", "stop_reason", "usage"}, exclude_none=True
    ) == {
        "id": "msg_gateway",
        "model": "claude-alias",
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 19, "output_tokens": 4},
    }
    assert [block.model_dump(exclude_none=True) for block in message.content] == [
        {"type": "text", "text": "Sure."},
        {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "tides"}},
    ]


@pytest.mark.parametrize("events", [TEXT_ONLY, TEXT_AND_TWO_TOOLS], ids=["text", "text-and-tools"])
def test_anthropic_stream_survives_the_canonical_format(events: list[Event]) -> None:
    """Anthropic events -> OpenAI chunks -> Anthropic events: the SDK sees the same reply
    (thinking aside, which the canonical format does not carry)."""
    to_openai = AnthropicToOpenAIStream("claude-sonnet", include_usage=True)
    back = OpenAIToAnthropicStream("claude-sonnet-4-5-20250929", message_id=MSG_ID)
    relayed: list[Event] = []
    for name, data in events:
        for c in to_openai.feed(name, data):
            relayed += back.feed(c)
    for c in to_openai.finish():
        relayed += back.feed(c)
    relayed += back.finish()

    original = anthropic_sdk_final_message(events).model_dump(exclude_none=True)
    original["content"] = [b for b in original["content"] if b["type"] != "thinking"]
    # input counts arrive in message_delta on the way back, with cache reads split out
    assert anthropic_sdk_final_message(relayed).model_dump(exclude_none=True) == original
