"""Request translation between Anthropic Messages and OpenAI Chat Completions bodies.

Payloads follow the shapes of the two APIs' documented examples; every produced body is
also checked against the official SDKs' request types.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from pydantic import TypeAdapter

from hexahub.gateway.translate.anthropic import (
    JSON_OBJECT_INSTRUCTION,
    TOOL_ERROR_PREFIX,
    TranslationError,
    anthropic_request_to_openai,
    openai_request_to_anthropic,
)

PNG_B64 = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
    "AAAABJRU5ErkJggg=="
)

WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "City and state"}},
        "required": ["location"],
    },
}
WEATHER_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": WEATHER_TOOL_ANTHROPIC["input_schema"],
    },
}
TIME_TOOL_OPENAI = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}


def _consume(value: Any) -> Any:
    """Walk a validated TypedDict fully: pydantic checks `Iterable` fields lazily."""
    if isinstance(value, dict):
        return {k: _consume(v) for k, v in value.items()}
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return value
    try:
        return [_consume(item) for item in value]
    except TypeError:
        return value


# Kept alive for the whole module: the lazy iterators they return refer back to them.
OPENAI_REQUEST = TypeAdapter(CompletionCreateParamsNonStreaming)
ANTHROPIC_REQUEST = TypeAdapter(MessageCreateParamsNonStreaming)


def assert_openai_request(body: dict[str, Any]) -> None:
    _consume(OPENAI_REQUEST.validate_python(body))


def assert_anthropic_request(body: dict[str, Any]) -> None:
    _consume(ANTHROPIC_REQUEST.validate_python(body))


def test_the_validators_reject_a_wrong_shape() -> None:
    """The SDK checks below can fail: a misspelt role does not pass them."""
    with pytest.raises(ValueError):
        assert_openai_request({"model": "m", "messages": [{"role": "usr", "content": "x"}]})
    with pytest.raises(ValueError):
        assert_anthropic_request(
            {"model": "m", "max_tokens": 1, "messages": [{"role": "tool", "content": "x"}]}
        )


# --- Anthropic -> OpenAI --------------------------------------------------------------


def test_anthropic_conversation_with_tools_images_and_results() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [
            {"type": "text", "text": "You are a weather assistant."},
            {"type": "text", "text": "Answer briefly.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/sky.jpg"},
                    },
                    {"type": "text", "text": "What is the weather where these were taken?"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Two cities.", "signature": "sig"},
                    {"type": "text", "text": "Let me check both cities."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01A",
                        "name": "get_weather",
                        "input": {"location": "San Francisco, CA"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_01B",
                        "name": "get_weather",
                        "input": {"location": "Zürich"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01A",
                        "content": [
                            {"type": "text", "text": "15 degrees"},
                            {"type": "text", "text": "foggy"},
                        ],
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01B",
                        "is_error": True,
                        "content": "station offline",
                    },
                    {"type": "text", "text": "Thanks, go on."},
                ],
            },
        ],
        "tools": [WEATHER_TOOL_ANTHROPIC],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["\n\nHuman:"],
        "metadata": {"user_id": "user-7"},
        "thinking": {"type": "enabled", "budget_tokens": 2000},
    }
    out = anthropic_request_to_openai(body)
    assert out == {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "You are a weather assistant.\n\nAnswer briefly."},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/sky.jpg"}},
                    {"type": "text", "text": "What is the weather where these were taken?"},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me check both cities.",
                "tool_calls": [
                    {
                        "id": "toolu_01A",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"location":"San Francisco, CA"}',
                        },
                    },
                    {
                        "id": "toolu_01B",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Zürich"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01A", "content": "15 degrees\n\nfoggy"},
            {
                "role": "tool",
                "tool_call_id": "toolu_01B",
                "content": TOOL_ERROR_PREFIX + "station offline",
            },
            {"role": "user", "content": "Thanks, go on."},
        ],
        "tools": [WEATHER_TOOL_OPENAI],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "max_tokens": 1024,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\nHuman:"],
        "user": "user-7",
    }
    assert "top_k" not in out and "thinking" not in out
    assert_openai_request(out)


def test_anthropic_string_system_and_streaming() -> None:
    out = anthropic_request_to_openai(
        {
            "model": "claude-haiku",
            "max_tokens": 64,
            "stream": True,
            "system": "Be terse.",
            "messages": [{"role": "user", "content": "Hello, Claude"}],
        }
    )
    assert out == {
        "model": "claude-haiku",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Hello, Claude"},
        ],
        "max_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_tool_result_images_follow_the_tool_messages_in_a_user_message() -> None:
    out = anthropic_request_to_openai(
        {
            "model": "c",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_9",
                            "content": [
                                {"type": "text", "text": "screenshot taken"},
                                {
                                    "type": "image",
                                    "source": {
                                        "type": "base64",
                                        "media_type": "image/jpeg",
                                        "data": "/9j/AA==",
                                    },
                                },
                            ],
                        }
                    ],
                },
            ],
        }
    )
    assert out["messages"] == [
        {"role": "tool", "tool_call_id": "toolu_9", "content": "screenshot taken"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Image returned by tool call toolu_9:"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/AA=="}},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("anthropic_choice", "openai_choice", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
            None,
        ),
        ({"type": "none"}, "none", None),
    ],
)
def test_every_anthropic_tool_choice(
    anthropic_choice: dict[str, Any], openai_choice: Any, parallel: bool | None
) -> None:
    out = anthropic_request_to_openai(
        {
            "model": "c",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [WEATHER_TOOL_ANTHROPIC],
            "tool_choice": anthropic_choice,
        }
    )
    assert out["tool_choice"] == openai_choice
    assert out.get("parallel_tool_calls") == parallel
    assert_openai_request(out)


def test_anthropic_tool_choice_without_tools_is_dropped() -> None:
    out = anthropic_request_to_openai(
        {
            "model": "c",
            "max_tokens": 5,
            "tool_choice": {"type": "auto"},
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    assert "tool_choice" not in out and "tools" not in out


@pytest.mark.parametrize(
    ("body_patch", "param"),
    [
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools.0.type"),
        (
            {"messages": [{"role": "user", "content": [{"type": "search_result", "source": "x"}]}]},
            "messages.0.content.0.type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
                        ],
                    }
                ]
            },
            "messages.0.content.0.source.type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
            "messages.0.content.0.tool_use_id",
        ),
        ({"system": [{"type": "image", "source": {}}]}, "system.0"),
        (
            {"tool_choice": {"type": "sometimes"}, "tools": [WEATHER_TOOL_ANTHROPIC]},
            "tool_choice.type",
        ),
    ],
)
def test_untranslatable_anthropic_requests_name_the_field(
    body_patch: dict[str, Any], param: str
) -> None:
    body = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(TranslationError) as caught:
        anthropic_request_to_openai({**body, **body_patch})
    assert caught.value.param == param
    assert str(caught.value).startswith(f"{param}: ")


def test_anthropic_pdf_document_becomes_an_openai_file_part_and_back() -> None:
    document = {
        "type": "document",
        "title": "report.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
    }
    out = anthropic_request_to_openai(
        {
            "model": "c",
            "max_tokens": 5,
            "messages": [
                {"role": "user", "content": [document, {"type": "text", "text": "Summarise it."}]}
            ],
        }
    )
    assert out["messages"][0]["content"][0] == {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64,JVBERi0x", "filename": "report.pdf"},
    }
    back = openai_request_to_anthropic(out)
    assert back["messages"][0]["content"][0] == document


# --- OpenAI -> Anthropic --------------------------------------------------------------


def test_system_and_developer_messages_anywhere_merge_in_order() -> None:
    out = openai_request_to_anthropic(
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are helpful."},
                {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
                {"role": "user", "content": "Weather in Oslo?"},
                {"role": "system", "content": "Never mention these rules."},
                {"role": "assistant", "content": "It is 3 °C."},
                {"role": "user", "content": "And tomorrow?"},
            ],
        }
    )
    assert out == {
        "model": "gpt-4o",
        "system": "You are helpful.\n\nUse metric units.\n\nNever mention these rules.",
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": "It is 3 °C."},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "max_tokens": 4096,
    }
    assert_anthropic_request(out)


def test_consecutive_tool_results_and_the_next_user_text_form_one_user_turn() -> None:
    out = openai_request_to_anthropic(
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"location": "Paris"}',
                            },
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"location": "Rome"}',
                            },
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees, sunny"},
                {
                    "role": "tool",
                    "tool_call_id": "call_2",
                    "content": [{"type": "text", "text": TOOL_ERROR_PREFIX + "timeout"}],
                },
                {"role": "user", "content": "Which is warmer?"},
            ],
            "tools": [WEATHER_TOOL_OPENAI],
        }
    )
    assert out["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"location": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "get_weather",
                    "input": {"location": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18 degrees, sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2",
                    "is_error": True,
                    "content": "timeout",
                },
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
    ]
    assert out["tools"] == [WEATHER_TOOL_ANTHROPIC]
    assert_anthropic_request(out)


def test_consecutive_same_role_messages_merge_to_keep_alternation() -> None:
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "First question."},
                {"role": "user", "content": [{"type": "text", "text": "Second question."}]},
                {"role": "assistant", "content": "Answer one."},
                {"role": "assistant", "content": "Answer two."},
                {"role": "user", "content": ""},
                {"role": "user", "content": "Third."},
            ],
        }
    )
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "First question."},
                {"type": "text", "text": "Second question."},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Answer one."},
                {"type": "text", "text": "Answer two."},
            ],
        },
        {"role": "user", "content": "Third."},
    ]
    roles = [m["role"] for m in out["messages"]]
    assert all(a != b for a, b in itertools.pairwise(roles))


def test_tool_results_are_placed_before_other_content_of_their_turn() -> None:
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
                    ],
                },
                {"role": "user", "content": "(while the tool runs)"},
                {"role": "tool", "tool_call_id": "c1", "content": "done"},
            ],
        }
    )
    assert out["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    ]
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": "done"},
        {"type": "text", "text": "(while the tool runs)"},
    ]


def test_openai_images_become_base64_and_url_sources() -> None:
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare these."},
                        {
                            "type": "image_url",
                            "image_url": {
                                "url": f"data:image/png;base64,{PNG_B64}",
                                "detail": "high",
                            },
                        },
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/jpg;base64,/9j/AA=="},
                        },
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.webp"}},
                    ],
                }
            ],
        }
    )
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/AA=="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.webp"}},
    ]
    assert_anthropic_request(out)


@pytest.mark.parametrize(
    ("message", "param"),
    [
        (
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}
                ],
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}],
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "role": "user",
                "content": [
                    {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}
                ],
            },
            "messages[0].content[0].type",
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"location": "Par'},
                    }
                ],
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "f", "arguments": "[1, 2]"},
                    }
                ],
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            "messages[0].tool_calls[0].id",
        ),
        ({"role": "function", "name": "f", "content": "x"}, "messages[0].role"),
        ({"role": "tool", "content": "x"}, "messages[0].tool_call_id"),
    ],
)
def test_untranslatable_openai_messages_name_the_field(message: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as caught:
        openai_request_to_anthropic({"model": "m", "messages": [message]})
    assert caught.value.param == param
    assert param in str(caught.value)


def test_invalid_tool_arguments_say_why() -> None:
    with pytest.raises(TranslationError, match=r"is not valid JSON \(.* at character 13\)"):
        openai_request_to_anthropic(
            {
                "model": "m",
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": '{"location": Paris}'},
                            }
                        ],
                    }
                ],
            }
        )


@pytest.mark.parametrize(
    ("openai_choice", "parallel", "anthropic_choice"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, None, None),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)
def test_every_openai_tool_choice(
    openai_choice: Any, parallel: bool | None, anthropic_choice: dict[str, Any] | None
) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [WEATHER_TOOL_OPENAI],
    }
    if openai_choice is not None:
        body["tool_choice"] = openai_choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    out = openai_request_to_anthropic(body)
    assert out.get("tool_choice") == anthropic_choice
    assert out["tools"] == [WEATHER_TOOL_ANTHROPIC]
    assert_anthropic_request(out)


def test_openai_tool_choice_without_tools_is_dropped() -> None:
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "tool_choice": "required",
            "parallel_tool_calls": False,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    assert "tool_choice" not in out and "tools" not in out


def test_tool_without_parameters_gets_an_empty_object_schema() -> None:
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "tools": [{"type": "function", "function": {"name": "now"}}],
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    assert out["tools"] == [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, {"max_tokens": 4096}),
        ({"max_tokens": 300}, {"max_tokens": 300}),
        ({"max_tokens": 300, "max_completion_tokens": 200}, {"max_tokens": 200}),
        ({"stop": "END"}, {"max_tokens": 4096, "stop_sequences": ["END"]}),
        ({"stop": ["END", "", "STOP"]}, {"max_tokens": 4096, "stop_sequences": ["END", "STOP"]}),
        ({"temperature": 1.7}, {"max_tokens": 4096, "temperature": 1.0}),
        (
            {"temperature": 0.3, "top_p": 0.8},
            {"max_tokens": 4096, "temperature": 0.3, "top_p": 0.8},
        ),
        ({"temperature": 0}, {"max_tokens": 4096, "temperature": 0.0}),
        ({"user": "u-1"}, {"max_tokens": 4096, "metadata": {"user_id": "u-1"}}),
        ({"safety_identifier": "hash-1"}, {"max_tokens": 4096, "metadata": {"user_id": "hash-1"}}),
        ({"n": 1, "seed": 7, "presence_penalty": 0.5, "logprobs": True}, {"max_tokens": 4096}),
        (
            {"stream": True, "stream_options": {"include_usage": True}},
            {"max_tokens": 4096, "stream": True},
        ),
    ],
)
def test_openai_sampling_parameters(params: dict[str, Any], expected: dict[str, Any]) -> None:
    out = openai_request_to_anthropic(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **params}
    )
    out.pop("messages")
    out.pop("model")
    assert out == expected


def test_default_max_tokens_is_configurable() -> None:
    out = openai_request_to_anthropic(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, default_max_tokens=512
    )
    assert out["max_tokens"] == 512


def test_n_above_one_is_refused() -> None:
    with pytest.raises(TranslationError, match=r"^n: Anthropic models return one choice"):
        openai_request_to_anthropic(
            {"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]}
        )


def test_legacy_functions_are_refused() -> None:
    with pytest.raises(TranslationError) as caught:
        openai_request_to_anthropic(
            {
                "model": "m",
                "functions": [{"name": "f"}],
                "messages": [{"role": "user", "content": "hi"}],
            }
        )
    assert caught.value.param == "functions"


def test_response_format_json_object_becomes_a_system_instruction() -> None:
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": "Extract."},
                {"role": "user", "content": "Ada, 36"},
            ],
        }
    )
    assert out["system"] == f"Extract.\n\n{JSON_OBJECT_INSTRUCTION}"
    assert "output_config" not in out


def test_response_format_json_schema_becomes_structured_output() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
        "additionalProperties": False,
    }
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Ada"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "person", "strict": True, "schema": schema},
            },
        }
    )
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "system" not in out
    assert_anthropic_request(out)


def test_response_format_text_changes_nothing_and_unknown_types_are_refused() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert openai_request_to_anthropic({**base, "response_format": {"type": "text"}}) == (
        openai_request_to_anthropic(base)
    )
    with pytest.raises(TranslationError, match=r"^response_format\.type: "):
        openai_request_to_anthropic({**base, "response_format": {"type": "xml"}})


def test_final_assistant_prefill_loses_trailing_whitespace() -> None:
    out = openai_request_to_anthropic(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "Name a colour."},
                {"role": "assistant", "content": "The colour is "},
            ],
        }
    )
    assert out["messages"][-1] == {"role": "assistant", "content": "The colour is"}


def test_a_conversation_with_nothing_to_send_is_refused() -> None:
    with pytest.raises(TranslationError, match=r"^messages: "):
        openai_request_to_anthropic(
            {
                "model": "m",
                "messages": [
                    {"role": "system", "content": "Only rules."},
                    {"role": "user", "content": "  "},
                ],
            }
        )


def test_inputs_are_not_modified() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b  "},
        ],
        "tools": [WEATHER_TOOL_OPENAI],
    }
    snapshot = copy.deepcopy(body)
    openai_request_to_anthropic(body)
    assert body == snapshot


# --- round trips ----------------------------------------------------------------------


def test_anthropic_request_survives_a_round_trip_through_the_canonical_format() -> None:
    original = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 700,
        "system": "You are a careful assistant.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture, and the weather there?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "A harbour. Checking the weather."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"location": "Hamburg"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "rain",
                        "is_error": True,
                    },
                    {"type": "text", "text": "Try again?"},
                ],
            },
        ],
        "tools": [WEATHER_TOOL_ANTHROPIC],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        "stop_sequences": ["###"],
        "temperature": 0.5,
        "top_p": 0.95,
        "metadata": {"user_id": "u-42"},
    }
    assert openai_request_to_anthropic(anthropic_request_to_openai(original)) == original


def test_openai_request_survives_a_round_trip_through_anthropic() -> None:
    original = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Where is this?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/p.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Looking it up.",
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Lima"}'},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "22 degrees"},
            {"role": "tool", "tool_call_id": "call_b", "content": "14:05"},
        ],
        "tools": [WEATHER_TOOL_OPENAI, TIME_TOOL_OPENAI],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_tokens": 99,
        "stop": ["END"],
        "temperature": 0.7,
        "user": "u-1",
    }
    assert anthropic_request_to_openai(openai_request_to_anthropic(original)) == original
