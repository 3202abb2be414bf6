"""Complete replies: Anthropic message objects <-> OpenAI chat.completion objects, checked
against the official SDKs' response models."""

from __future__ import annotations

from typing import Any

import anthropic.types
import openai.types.chat
import pytest

from hexahub.gateway.translate.anthropic import (
    anthropic_response_to_openai,
    openai_response_to_anthropic,
)

ANTHROPIC_TOOL_REPLY: dict[str, Any] = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQBCgIYAh"},
        {"type": "text", "text": "I'll check "},
        {"type": "text", "text": "the weather."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"location": "San Francisco, CA", "unit": "celsius"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 472,
        "output_tokens": 89,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 2000,
    },
}

OPENAI_TOOL_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4.1-2025-04-14",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking both cities.",
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_abc",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                    },
                    {
                        "id": "call_def",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Rome"'},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 40,
        "total_tokens": 1240,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    },
}


def test_anthropic_message_becomes_a_chat_completion() -> None:
    out = anthropic_response_to_openai(
        ANTHROPIC_TOOL_REPLY, model="claude-sonnet", created=1700000000
    )
    assert out == {
        "id": "msg_01Aq9w938a90dw8q",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "claude-sonnet",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "I'll check the weather.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_01A09q90qw90lq917835lq9",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"location":"San Francisco, CA","unit":"celsius"}',
                            },
                        }
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 2572,
            "completion_tokens": 89,
            "total_tokens": 2661,
            "prompt_tokens_details": {"cached_tokens": 2000},
        },
    }
    parsed = openai.types.chat.ChatCompletion.model_validate(out)
    assert parsed.choices[0].message.tool_calls is not None
    assert parsed.usage is not None and parsed.usage.prompt_tokens == 2572


def test_tool_only_anthropic_reply_has_null_content() -> None:
    reply = {**ANTHROPIC_TOOL_REPLY, "content": [ANTHROPIC_TOOL_REPLY["content"][-1]]}
    out = anthropic_response_to_openai(reply, model="c")
    assert out["choices"][0]["message"]["content"] is None
    assert isinstance(out["created"], int)


def test_empty_anthropic_reply_has_empty_text() -> None:
    reply = {
        **ANTHROPIC_TOOL_REPLY,
        "content": [],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 1},
    }
    out = anthropic_response_to_openai(reply, model="c")
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "", "refusal": None}
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    openai.types.chat.ChatCompletion.model_validate(out)


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(stop_reason: str | None, finish_reason: str) -> None:
    reply = {**ANTHROPIC_TOOL_REPLY, "stop_reason": stop_reason}
    out = anthropic_response_to_openai(reply, model="c")
    assert out["choices"][0]["finish_reason"] == finish_reason
    openai.types.chat.ChatCompletion.model_validate(out)


def test_the_matched_stop_sequence_survives_the_canonical_format() -> None:
    reply = {
        **ANTHROPIC_TOOL_REPLY,
        "content": [{"type": "text", "text": "1, 2, 3"}],
        "stop_reason": "stop_sequence",
        "stop_sequence": "4",
    }
    out = anthropic_response_to_openai(reply, model="c")
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["choices"][0]["stop_reason"] == "4"
    back = openai_response_to_anthropic(out)
    assert (back["stop_reason"], back["stop_sequence"]) == ("stop_sequence", "4")


def test_openai_completion_becomes_an_anthropic_message() -> None:
    out = openai_response_to_anthropic(OPENAI_TOOL_COMPLETION)
    assert out == {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4.1-2025-04-14",
        "content": [
            {"type": "text", "text": "Checking both cities."},
            {
                "type": "tool_use",
                "id": "call_abc",
                "name": "get_weather",
                "input": {"location": "Paris"},
            },
            {
                "type": "tool_use",
                "id": "call_def",
                "name": "get_weather",
                "input": {"_raw": '{"location": "Rome"'},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 176, "output_tokens": 40, "cache_read_input_tokens": 1024},
    }
    parsed = anthropic.types.Message.model_validate(out)
    assert parsed.usage.cache_read_input_tokens == 1024


@pytest.mark.parametrize(
    ("arguments", "tool_input"),
    [
        ("", {}),
        ("   ", {}),
        ('{"a": [1, 2]}', {"a": [1, 2]}),
        ("[1, 2]", {"_raw": "[1, 2]"}),
        ('"just a string"', {"_raw": '"just a string"'}),
        ("{not json", {"_raw": "{not json"}),
    ],
)
def test_tool_arguments_become_tool_input(arguments: str, tool_input: dict[str, Any]) -> None:
    completion = {
        "id": "c",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": arguments},
                        }
                    ],
                },
            }
        ],
    }
    out = openai_response_to_anthropic(completion)
    assert out["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "f", "input": tool_input}
    ]
    anthropic.types.Message.model_validate(out)


@pytest.mark.parametrize(
    ("finish_reason", "matched", "stop_reason", "stop_sequence"),
    [
        ("stop", None, "end_turn", None),
        ("stop", "###", "stop_sequence", "###"),
        ("stop", 128001, "end_turn", None),
        ("length", None, "max_tokens", None),
        ("tool_calls", None, "tool_use", None),
        ("function_call", None, "tool_use", None),
        ("content_filter", None, "refusal", None),
        (None, None, "end_turn", None),
    ],
)
def test_finish_reasons_map_to_stop_reasons(
    finish_reason: str | None, matched: Any, stop_reason: str, stop_sequence: str | None
) -> None:
    choice: dict[str, Any] = {
        "index": 0,
        "finish_reason": finish_reason,
        "message": {"role": "assistant", "content": "ok"},
    }
    if matched is not None:
        choice["stop_reason"] = matched  # vLLM's field: the stop string or token id
    out = openai_response_to_anthropic({"id": "c", "model": "m", "choices": [choice]})
    assert (out["stop_reason"], out["stop_sequence"]) == (stop_reason, stop_sequence)
    anthropic.types.Message.model_validate(out)


def test_openai_refusal_becomes_text_with_stop_reason_refusal() -> None:
    out = openai_response_to_anthropic(
        {
            "id": "c",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "content_filter",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "refusal": "I can't help with that.",
                    },
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
        }
    )
    assert out["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert out["stop_reason"] == "refusal"
    assert out["usage"] == {"input_tokens": 9, "output_tokens": 6}


def test_openai_completion_without_usage_or_choices_still_parses() -> None:
    out = openai_response_to_anthropic({"id": "c", "model": "m", "choices": []})
    assert out["content"] == [] and out["usage"] == {"input_tokens": 0, "output_tokens": 0}
    anthropic.types.Message.model_validate(out)


def test_usage_and_content_survive_a_round_trip() -> None:
    reply = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [
            {"type": "text", "text": "Here you go."},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 30, "output_tokens": 12, "cache_read_input_tokens": 70},
    }
    back = openai_response_to_anthropic(anthropic_response_to_openai(reply, model="claude"))
    assert back == reply
