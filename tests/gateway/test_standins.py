"""The stand-in upstreams speak their providers' wire protocols the way the official SDKs
expect: each SDK is pointed straight at a stand-in and must parse every reply, stream and
error into its own types."""

# ruff: noqa: F811  (the imported pytest fixtures are test parameters of the same name)

from __future__ import annotations

import asyncio
import base64
import json
import socket
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest

from tests.gateway.standins import behaviour
from tests.gateway.standins.fixtures import (  # noqa: F401  (pytest fixtures)
    anthropic_upstream,
    ollama_upstream,
    openai_upstream,
)
from tests.gateway.standins.openai_api import create_openai_app
from tests.gateway.standins.server import StandinServer
from tests.gateway.standins.state import Fault

pytestmark = pytest.mark.timeout(30)

GPT = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-6"
LLAMA = "llama3.2"

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "detailed": {"type": "boolean"},
    },
    "required": ["city", "days", "unit"],
}
WEATHER_ARGS = {"city": "x", "days": 1, "unit": "celsius"}
OPENAI_TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}},
]
ANTHROPIC_TOOLS: list[Any] = [
    {"name": "get_time", "input_schema": {"type": "object"}},
    {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA},
]
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="  # noqa: E501


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


# the server helper


async def test_server_starts_and_stops_in_bounded_time() -> None:
    with StandinServer(create_openai_app(api_keys=())) as server:
        port = server.port
        assert server.base_url == f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client:
            response = await client.get(server.url("/v1/models"))
        assert response.status_code == 200
    assert not server.running
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


async def test_stopping_releases_a_delayed_request() -> None:
    server = StandinServer(create_openai_app(api_keys=())).start()
    try:
        server.state.inject(Fault(kind="delay", seconds=60))
        async with httpx.AsyncClient(timeout=10) as client:
            pending = asyncio.create_task(client.get(server.url("/v1/models")))
            await asyncio.to_thread(server.state.wait_for_requests, 1)
            await asyncio.to_thread(server.stop)
            response = await pending
    finally:
        server.stop()
    assert response.status_code == 200


async def test_request_log_records_what_was_sent_with_credentials_redacted(
    openai_upstream: StandinServer,
) -> None:
    key = openai_upstream.state.api_key
    async with httpx.AsyncClient(base_url=openai_upstream.base_url) as client:
        await client.post(
            "/v1/chat/completions?trace=1",
            json={"model": GPT, "messages": user("hi")},
            headers={"authorization": f"Bearer {key}"},
        )
        await client.get("/v1/models", headers={"authorization": "Bearer wrong"})
    first, second = openai_upstream.state.requests
    assert (first.method, first.path, first.query) == ("POST", "/v1/chat/completions", "trace=1")
    assert first.body == {"model": GPT, "messages": user("hi")}
    assert first.header("authorization") == "Bearer <redacted>"
    assert key not in repr(first)
    assert first.authorized is True
    assert (second.method, second.path, second.body, second.authorized) == (
        "GET",
        "/v1/models",
        None,
        False,
    )
    assert openai_upstream.state.requests_to("/v1/models") == [second]


async def test_faults_hit_the_next_matching_requests_then_clear(
    openai_upstream: StandinServer,
) -> None:
    state = openai_upstream.state
    state.inject(Fault(kind="status", status=503, times=2, path="/v1/chat/completions"))
    headers = {"authorization": f"Bearer {state.api_key}"}
    body = {"model": GPT, "messages": user("hi")}
    async with httpx.AsyncClient(base_url=openai_upstream.base_url, headers=headers) as client:
        assert (await client.get("/v1/models")).status_code == 200
        statuses = [
            (await client.post("/v1/chat/completions", json=body)).status_code for _ in range(3)
        ]
    assert statuses == [503, 503, 200]
    assert state.faults == []
    assert [r.fault.status if r.fault else None for r in state.requests] == [None, 503, 503, None]


def test_waiting_for_requests_is_bounded(openai_upstream: StandinServer) -> None:
    with pytest.raises(TimeoutError, match="received 0 request"):
        openai_upstream.state.wait_for_requests(1, timeout=0.05)


def test_behaviour_rules() -> None:
    conversation = behaviour.Conversation(last_user_text="one two three", texts=["one two three"])
    assert behaviour.reply_to(conversation).text == "echo: one two three"
    limited = behaviour.reply_to(conversation, max_tokens=2, stop=["three"])
    assert (limited.text, limited.finish) == ("echo: one", "length")
    stopped = behaviour.reply_to(conversation, max_tokens=3, stop=["three", " two"])
    assert (stopped.text, stopped.finish, stopped.stop_sequence) == (
        "echo: one",
        "stop_sequence",
        " two",
    )
    assert behaviour.fill_schema(WEATHER_SCHEMA) == WEATHER_ARGS
    vector = behaviour.embedding("text", 32)
    assert len(vector) == 32
    assert abs(sum(x * x for x in vector) - 1) < 1e-5
    assert vector == behaviour.embedding("text", 32) != behaviour.embedding("other", 32)


# OpenAI


def openai_client(upstream: StandinServer, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=upstream.url("/v1"),
        api_key=upstream.state.api_key,
        max_retries=0,
        timeout=5,
        **options,
    )


async def test_openai_chat(openai_upstream: StandinServer) -> None:
    client = openai_client(openai_upstream)
    completion = await client.chat.completions.create(
        model=GPT, messages=[{"role": "system", "content": "be brief"}, *user("hello there")]
    )
    assert completion.object == "chat.completion"
    assert completion.model == GPT
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content) == ("assistant", "echo: hello there")
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
    ) == (4, 3, 7)
    forwarded = openai_upstream.state.last_request
    assert forwarded.path == "/v1/chat/completions"
    assert forwarded.body["messages"][1] == {"role": "user", "content": "hello there"}


async def test_openai_chat_honours_max_tokens_and_stop(openai_upstream: StandinServer) -> None:
    client = openai_client(openai_upstream)
    long = await client.chat.completions.create(model=GPT, messages=user("a b c d"), max_tokens=3)
    assert (long.choices[0].message.content, long.choices[0].finish_reason) == (
        "echo: a b",
        "length",
    )
    assert long.usage is not None and long.usage.completion_tokens == 3
    stopped = await client.chat.completions.create(
        model=GPT, messages=user("a b STOP c"), stop=["STOP"], max_completion_tokens=50
    )
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == (
        "echo: a b ",
        "stop",
    )


async def test_openai_chat_stream_with_usage(openai_upstream: StandinServer) -> None:
    client = openai_client(openai_upstream)
    stream = await client.chat.completions.create(
        model=GPT,
        messages=user("hello streaming world"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1
    *content_chunks, usage_chunk = chunks
    assert content_chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    assert text == "echo: hello streaming world"
    assert [c.choices[0].finish_reason for c in content_chunks][-1] == "stop"
    assert all(c.usage is None for c in content_chunks)
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (3, 4)


async def test_openai_chat_stream_without_usage(openai_upstream: StandinServer) -> None:
    async with httpx.AsyncClient() as raw:
        response = await raw.post(
            openai_upstream.url("/v1/chat/completions"),
            headers={"authorization": f"Bearer {openai_upstream.state.api_key}"},
            json={"model": GPT, "messages": user("hi"), "stream": True},
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    events = [json.loads(frame.removeprefix("data: ")) for frame in frames[:-2]]
    assert all("usage" not in event for event in events)
    assert events[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


async def test_openai_tool_call(openai_upstream: StandinServer) -> None:
    client = openai_client(openai_upstream)
    completion = await client.chat.completions.create(
        model=GPT, messages=user("please call get_weather now"), tools=OPENAI_TOOLS
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS
    answered = await client.chat.completions.create(
        model=GPT,
        tools=OPENAI_TOOLS,
        messages=[
            *user("please call get_weather now"),
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny 21C"},
        ],
    )
    assert answered.choices[0].message.content == "result: sunny 21C"
    forced = await client.chat.completions.create(
        model=GPT,
        messages=user("anything"),
        tools=OPENAI_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert forced.choices[0].message.tool_calls is not None
    assert forced.choices[0].message.tool_calls[0].function.arguments == "{}"


async def test_openai_streamed_tool_call_assembles(openai_upstream: StandinServer) -> None:
    client = openai_client(openai_upstream)
    async with client.chat.completions.stream(
        model=GPT,
        messages=user("call get_time and call get_weather"),
        tools=OPENAI_TOOLS,
    ) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls]
    assert calls == [("get_time", {}), ("get_weather", WEATHER_ARGS)]


async def test_openai_image_and_json_schema(openai_upstream: StandinServer) -> None:
    client = openai_client(openai_upstream)
    seen = await client.chat.completions.create(
        model=GPT,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                ],
            }
        ],
    )
    assert seen.choices[0].message.content == "echo: what is this (saw 1 image)"
    structured = await client.chat.completions.create(
        model=GPT,
        messages=user("weather"),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA},
        },
    )
    assert json.loads(structured.choices[0].message.content or "") == WEATHER_ARGS


async def test_openai_completions(openai_upstream: StandinServer) -> None:
    client = openai_client(openai_upstream)
    completion = await client.completions.create(model=GPT, prompt="once upon", max_tokens=5)
    assert completion.object == "text_completion"
    assert (completion.choices[0].text, completion.choices[0].finish_reason) == (
        "echo: once upon",
        "stop",
    )
    stream = await client.completions.create(
        model=GPT,
        prompt="once upon a time",
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: once upon"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


async def test_openai_embeddings(openai_upstream: StandinServer) -> None:
    client = openai_client(openai_upstream)
    # The SDK asks for base64 unless told otherwise and decodes it itself.
    result = await client.embeddings.create(
        model="text-embedding-3-small", input=["hello world", "bye"]
    )
    assert openai_upstream.state.last_request.body["encoding_format"] == "base64"
    assert [d.embedding for d in result.data] == [
        behaviour.embedding("hello world"),
        behaviour.embedding("bye"),
    ]
    assert [d.index for d in result.data] == [0, 1]
    assert result.usage.prompt_tokens == result.usage.total_tokens == 3
    floats = await client.embeddings.create(
        model="text-embedding-3-small", input="hi", encoding_format="float", dimensions=8
    )
    assert floats.data[0].embedding == behaviour.embedding("hi", 8)
    raw = base64.b64decode(
        (await openai_upstream_raw_embedding(openai_upstream))["data"][0]["embedding"]
    )
    assert raw == behaviour.float32_bytes(behaviour.embedding("hi"))


async def openai_upstream_raw_embedding(upstream: StandinServer) -> Any:
    async with httpx.AsyncClient() as raw:
        response = await raw.post(
            upstream.url("/v1/embeddings"),
            headers={"authorization": f"Bearer {upstream.state.api_key}"},
            json={"model": "text-embedding-3-small", "input": "hi", "encoding_format": "base64"},
        )
    return response.json()


async def test_openai_models(openai_upstream: StandinServer) -> None:
    client = openai_client(openai_upstream)
    openai_upstream.state.models = ["model-a", "model-b"]
    page = await client.models.list()
    assert [m.id for m in page.data] == ["model-a", "model-b"]
    assert (await client.models.retrieve("model-b")).owned_by == "standin"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("model-c")


async def test_openai_errors_are_typed(openai_upstream: StandinServer) -> None:
    client = openai_client(openai_upstream)
    bad_key = openai.AsyncOpenAI(
        base_url=openai_upstream.url("/v1"), api_key="sk-wrong-12345", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError, match="Incorrect API key") as auth:
        await bad_key.models.list()
    assert auth.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError, match="`gpt-9` does not exist") as missing:
        await client.chat.completions.create(model="gpt-9", messages=user("hi"))
    assert missing.value.code == "model_not_found"
    state = openai_upstream.state
    state.inject(Fault(status=429, retry_after=7))
    with pytest.raises(openai.RateLimitError, match="Rate limit reached") as limited:
        await client.chat.completions.create(model=GPT, messages=user("hi"))
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.type == "requests"
    state.inject(Fault(status=500), Fault(status=503, message="try later"))
    with pytest.raises(openai.InternalServerError, match="had an error"):
        await client.models.list()
    with pytest.raises(openai.InternalServerError, match="try later") as unavailable:
        await client.models.list()
    assert unavailable.value.status_code == 503
    assert (await client.models.list()).data


async def test_openai_stream_cut_raises_connection_error(openai_upstream: StandinServer) -> None:
    client = openai_client(openai_upstream)
    openai_upstream.state.inject(Fault(kind="cut", after_events=2))
    received = []
    stream = await client.chat.completions.create(
        model=GPT, messages=user("a b c d e"), stream=True
    )
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "echo:"]


async def test_openai_stream_error_event_and_malformed_body(
    openai_upstream: StandinServer,
) -> None:
    client = openai_client(openai_upstream)
    openai_upstream.state.inject(Fault(kind="stream_error", after_events=1, message="boom"))
    stream = await client.chat.completions.create(model=GPT, messages=user("hi"), stream=True)
    with pytest.raises(openai.APIError, match="boom"):
        async for _ in stream:
            pass
    openai_upstream.state.inject(Fault(kind="malformed"))
    # The SDK lets the decoder's error through as it is.
    with pytest.raises(json.JSONDecodeError):
        await client.chat.completions.create(model=GPT, messages=user("hi"))


async def test_openai_delay_makes_the_client_time_out(openai_upstream: StandinServer) -> None:
    client = openai_client(openai_upstream)
    openai_upstream.state.inject(Fault(kind="delay", seconds=30))
    with pytest.raises(openai.APITimeoutError):
        await client.models.list(timeout=0.2)
    # The abandoned request ended server-side with the disconnect: the next one is served.
    assert (await client.models.list()).data


# Anthropic


def anthropic_client(upstream: StandinServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=upstream.base_url, api_key=upstream.state.api_key, max_retries=0, timeout=5
    )


async def test_anthropic_message(anthropic_upstream: StandinServer) -> None:
    client = anthropic_client(anthropic_upstream)
    message = await client.messages.create(
        model=CLAUDE, max_tokens=100, system="be brief", messages=user("hello there")
    )
    assert (message.type, message.role, message.model) == ("message", "assistant", CLAUDE)
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello there"
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 3)
    forwarded = anthropic_upstream.state.last_request
    assert forwarded.header("anthropic-version")
    assert forwarded.authorized is True
    assert anthropic_upstream.state.api_key not in json.dumps(forwarded.headers)


async def test_anthropic_headers_are_required(anthropic_upstream: StandinServer) -> None:
    body = {"model": CLAUDE, "max_tokens": 5, "messages": user("hi")}
    key = anthropic_upstream.state.api_key
    async with httpx.AsyncClient(base_url=anthropic_upstream.base_url) as raw:
        documented = await raw.post(
            "/v1/messages", json=body, headers={"x-api-key": key, "anthropic-version": "2023-06-01"}
        )
        no_version = await raw.post("/v1/messages", json=body, headers={"x-api-key": key})
        no_key = await raw.post(
            "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}
        )
    assert documented.status_code == 200
    assert documented.json()["content"] == [{"type": "text", "text": "echo: hi"}]
    assert no_version.status_code == 400
    assert no_version.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }
    assert no_key.status_code == 401
    assert no_key.json()["type"] == "error"
    assert no_key.json()["error"]["type"] == "authentication_error"
    assert no_key.json()["request_id"] == no_key.headers["request-id"]


async def test_anthropic_limits(anthropic_upstream: StandinServer) -> None:
    client = anthropic_client(anthropic_upstream)
    cut = await client.messages.create(model=CLAUDE, max_tokens=2, messages=user("a b c"))
    assert cut.content[0].type == "text"
    assert (cut.content[0].text, cut.stop_reason) == ("echo: a", "max_tokens")
    stopped = await client.messages.create(
        model=CLAUDE, max_tokens=50, messages=user("a b END"), stop_sequences=["END", "zzz"]
    )
    assert stopped.content[0].type == "text"
    assert (stopped.content[0].text, stopped.stop_reason, stopped.stop_sequence) == (
        "echo: a b ",
        "stop_sequence",
        "END",
    )


async def test_anthropic_stream_helper(anthropic_upstream: StandinServer) -> None:
    client = anthropic_client(anthropic_upstream)
    async with client.messages.stream(
        model=CLAUDE, max_tokens=100, messages=user("stream me please")
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert pieces == ["echo:", " stream", " me", " please"]
    assert final.content[0].type == "text"
    assert final.content[0].text == "echo: stream me please"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 4)


async def test_anthropic_stream_event_sequence(anthropic_upstream: StandinServer) -> None:
    client = anthropic_client(anthropic_upstream)
    stream = await client.messages.create(
        model=CLAUDE, max_tokens=100, messages=user("hi"), stream=True
    )
    events = [event async for event in stream]
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and start.message.usage.input_tokens == 1
    assert delta.type == "message_delta" and delta.usage.output_tokens == 2
    async with httpx.AsyncClient() as raw:
        response = await raw.post(
            anthropic_upstream.url("/v1/messages"),
            json={
                "model": CLAUDE,
                "max_tokens": 5,
                "messages": user("hi"),
                "stream": True,
            },
            headers={"x-api-key": anthropic_upstream.state.api_key, "anthropic-version": "1"},
        )
    names = [
        line.removeprefix("event: ")
        for line in response.text.splitlines()
        if line.startswith("event: ")
    ]
    assert names[:3] == ["message_start", "content_block_start", "ping"]


async def test_anthropic_tool_use(anthropic_upstream: StandinServer) -> None:
    client = anthropic_client(anthropic_upstream)
    message = await client.messages.create(
        model=CLAUDE,
        max_tokens=100,
        tools=ANTHROPIC_TOOLS,
        messages=user("call get_weather please"),
    )
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("get_weather", WEATHER_ARGS)
    assert block.id.startswith("toolu_")
    async with client.messages.stream(
        model=CLAUDE,
        max_tokens=100,
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "any"},
        messages=user("whatever"),
    ) as stream:
        streamed = await stream.get_final_message()
    assert streamed.content[0].type == "tool_use"
    assert (streamed.content[0].name, streamed.content[0].input) == ("get_time", {})
    answered = await client.messages.create(
        model=CLAUDE,
        max_tokens=100,
        tools=ANTHROPIC_TOOLS,
        messages=[
            *user("call get_weather please"),
            {"role": "assistant", "content": [block.model_dump()]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": block.id,
                        "content": [{"type": "text", "text": "rain"}],
                    }
                ],
            },
        ],
    )
    assert answered.content[0].type == "text"
    assert answered.content[0].text == "result: rain"


async def test_anthropic_image_and_count_tokens(anthropic_upstream: StandinServer) -> None:
    client = anthropic_client(anthropic_upstream)
    messages: list[Any] = [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
                },
                {"type": "text", "text": "describe this"},
            ],
        }
    ]
    message = await client.messages.create(
        model=CLAUDE, max_tokens=100, messages=messages, system="you see"
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: describe this (saw 1 image)"
    counted = await client.messages.count_tokens(model=CLAUDE, messages=messages, system="you see")
    assert counted.input_tokens == message.usage.input_tokens == 4


async def test_anthropic_models(anthropic_upstream: StandinServer) -> None:
    client = anthropic_client(anthropic_upstream)
    page = await client.models.list()
    assert [m.id for m in page.data] == ["claude-sonnet-4-6", "claude-haiku-4-5"]
    assert (await client.models.retrieve("claude-haiku-4-5")).display_name == "Claude Haiku 4.5"
    with pytest.raises(anthropic.NotFoundError, match="model: claude-0"):
        await client.messages.create(model="claude-0", max_tokens=5, messages=user("hi"))


async def test_anthropic_errors_are_typed(anthropic_upstream: StandinServer) -> None:
    client = anthropic_client(anthropic_upstream)
    bad_key = anthropic.AsyncAnthropic(
        base_url=anthropic_upstream.base_url, api_key="nope", max_retries=0
    )
    with pytest.raises(anthropic.AuthenticationError, match="invalid x-api-key"):
        await bad_key.models.list()
    state = anthropic_upstream.state
    state.inject(Fault(status=529), Fault(status=429), Fault(status=500, message="oops"))
    request = {"model": CLAUDE, "max_tokens": 5, "messages": user("hi")}
    with pytest.raises(anthropic.OverloadedError, match="overloaded_error") as overloaded:
        await client.messages.create(**request)
    assert overloaded.value.status_code == 529
    with pytest.raises(anthropic.RateLimitError) as limited:
        await client.messages.create(**request)
    assert limited.value.response.headers["retry-after"] == "1"
    with pytest.raises(anthropic.InternalServerError, match="oops"):
        await client.messages.create(**request)
    assert (await client.messages.create(**request)).content


async def test_anthropic_broken_streams(anthropic_upstream: StandinServer) -> None:
    client = anthropic_client(anthropic_upstream)
    request = {"model": CLAUDE, "max_tokens": 50, "messages": user("a b c")}
    anthropic_upstream.state.inject(Fault(kind="stream_error", status=529, after_events=3))
    # A mid-stream error event arrives on a 200 response, so the SDK raises its generic
    # status error carrying the event's body, not OverloadedError.
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error") as event_error:
        async with client.messages.stream(**request) as stream:
            await stream.get_final_message()
    assert event_error.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    anthropic_upstream.state.inject(Fault(kind="cut", after_events=4))
    seen = []
    with pytest.raises(Exception, match="peer closed connection") as cut:
        async with client.messages.stream(**request) as stream:
            async for text in stream.text_stream:
                seen.append(text)
    assert not isinstance(cut.value, anthropic.APIStatusError)
    assert seen == ["echo:"]


# Ollama


def ollama_client(upstream: StandinServer) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=upstream.base_url, timeout=5)


async def test_ollama_chat(ollama_upstream: StandinServer) -> None:
    client = ollama_client(ollama_upstream)
    reply = await client.chat(model=LLAMA, messages=user("hello there"))
    assert (reply.message.role, reply.message.content) == ("assistant", "echo: hello there")
    assert (reply.done, reply.done_reason) == (True, "stop")
    assert (reply.prompt_eval_count, reply.eval_count) == (2, 3)
    assert reply.model == LLAMA
    limited = await client.chat(
        model=LLAMA, messages=user("a b c"), options={"num_predict": 2, "stop": ["zzz"]}
    )
    assert (limited.message.content, limited.done_reason) == ("echo: a", "length")


async def test_ollama_chat_stream(ollama_upstream: StandinServer) -> None:
    client = ollama_client(ollama_upstream)
    parts = [
        part async for part in await client.chat(model=LLAMA, messages=user("hi you"), stream=True)
    ]
    assert [p.message.content for p in parts] == ["echo:", " hi", " you", ""]
    assert [p.done for p in parts] == [False, False, False, True]
    assert (parts[-1].done_reason, parts[-1].prompt_eval_count, parts[-1].eval_count) == (
        "stop",
        2,
        3,
    )
    assert ollama_upstream.state.last_request.body["stream"] is True


async def test_ollama_tools_and_images(ollama_upstream: StandinServer) -> None:
    client = ollama_client(ollama_upstream)
    reply = await client.chat(model=LLAMA, messages=user("call get_weather"), tools=OPENAI_TOOLS)
    assert reply.message.tool_calls is not None
    (call,) = reply.message.tool_calls
    assert (call.function.name, dict(call.function.arguments)) == ("get_weather", WEATHER_ARGS)
    seen = await client.chat(
        model=LLAMA, messages=[{"role": "user", "content": "look", "images": [PIXEL, PIXEL]}]
    )
    assert seen.message.content == "echo: look (saw 2 images)"


async def test_ollama_generate_embed_and_list(ollama_upstream: StandinServer) -> None:
    client = ollama_client(ollama_upstream)
    generated = await client.generate(model=LLAMA, prompt="tell me")
    assert (generated.response, generated.done_reason) == ("echo: tell me", "stop")
    embedded = await client.embed(model="nomic-embed-text", input=["a b", "c"])
    assert [list(v) for v in embedded.embeddings] == [
        behaviour.embedding("a b"),
        behaviour.embedding("c"),
    ]
    assert embedded.prompt_eval_count == 3
    listed = await client.list()
    assert [m.model for m in listed.models] == ["llama3.2:latest", "nomic-embed-text:latest"]


async def test_ollama_errors(ollama_upstream: StandinServer) -> None:
    client = ollama_client(ollama_upstream)
    with pytest.raises(ollama.ResponseError, match='model "mistral" not found') as missing:
        await client.chat(model="mistral", messages=user("hi"))
    assert missing.value.status_code == 404
    ollama_upstream.state.inject(Fault(status=503))
    with pytest.raises(ollama.ResponseError, match="server busy") as busy:
        await client.chat(model=LLAMA, messages=user("hi"))
    assert busy.value.status_code == 503


async def test_ollama_broken_streams(ollama_upstream: StandinServer) -> None:
    client = ollama_client(ollama_upstream)
    ollama_upstream.state.inject(Fault(kind="stream_error", after_events=1, message="gpu lost"))
    with pytest.raises(ollama.ResponseError, match="gpu lost"):
        async for _ in await client.chat(model=LLAMA, messages=user("a b"), stream=True):
            pass
    ollama_upstream.state.inject(Fault(kind="cut", after_events=2))
    seen = []
    with pytest.raises(httpx.RemoteProtocolError, match="peer closed connection"):
        async for part in await client.chat(model=LLAMA, messages=user("a b c"), stream=True):
            seen.append(part.message.content)
    assert seen == ["echo:", " a"]
