"""The official SDKs against a running HexaHub, with cloud-shaped and local upstreams.

Upstreams are the protocol stand-ins (tests/gateway/standins); HexaHub is served on a real
port. Assertions are on structure, token counts, stop reasons and what reached upstream.
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from tests.gateway.conftest import Hub
from tests.gateway.standins.server import StandinServer


def oai(hub: Hub, key: str | None = None) -> openai.AsyncOpenAI:
    client = openai.AsyncOpenAI(base_url=hub.v1, api_key=key or hub.key, max_retries=0)
    hub.clients.append(client)
    return client


def claude(hub: Hub, key: str | None = None) -> anthropic.AsyncAnthropic:
    client = anthropic.AsyncAnthropic(base_url=hub.url, api_key=key or hub.key, max_retries=0)
    hub.clients.append(client)
    return client


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.mark.parametrize("model", ["gpt-test", "claude-test", "llama-test"])
async def test_openai_sdk_chat_plain_and_streamed(sdk: Hub, model: str) -> None:
    client = oai(sdk)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello there gateway"},
    ]
    plain = await client.chat.completions.create(model=model, messages=messages)
    assert plain.model == model
    assert plain.choices[0].finish_reason == "stop"
    text = plain.choices[0].message.content
    assert text and "hello there gateway" in text
    assert plain.usage is not None and plain.usage.prompt_tokens > 0
    assert plain.usage.completion_tokens > 0

    stream = await client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    pieces, usages, finishes = [], [], []
    async for chunk in stream:
        assert chunk.model == model
        if chunk.usage:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    assert "".join(pieces) == text
    assert finishes == ["stop"]
    assert len(usages) == 1
    assert usages[0].completion_tokens == plain.usage.completion_tokens


async def test_openai_sdk_max_tokens_and_tools(sdk: Hub) -> None:
    client = oai(sdk)
    cut = await client.chat.completions.create(
        model="claude-test",
        max_tokens=2,
        messages=[{"role": "user", "content": "one two three four five six"}],
    )
    assert cut.choices[0].finish_reason == "length"

    for model in ("gpt-test", "claude-test"):
        called = await client.chat.completions.create(
            model=model,
            tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": "call get_weather for Oslo"}],
        )
        choice = called.choices[0]
        assert choice.finish_reason == "tool_calls", model
        call = choice.message.tool_calls[0]
        assert call.function.name == "get_weather"
        assert "city" in json.loads(call.function.arguments)


async def test_openai_sdk_streamed_tool_call_across_providers(sdk: Hub) -> None:
    stream = await oai(sdk).chat.completions.create(
        model="claude-test",
        tools=[WEATHER_TOOL],
        stream=True,
        messages=[{"role": "user", "content": "call get_weather please"}],
    )
    names, arguments, finish = [], [], None
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                assert call.index == 0
                if call.function and call.function.name:
                    names.append(call.function.name)
                if call.function and call.function.arguments:
                    arguments.append(call.function.arguments)
            finish = choice.finish_reason or finish
    assert names == ["get_weather"]
    assert "city" in json.loads("".join(arguments))
    assert finish == "tool_calls"


async def test_openai_sdk_embeddings_and_models(sdk: Hub) -> None:
    client = oai(sdk)
    result = await client.embeddings.create(model="embed-test", input=["alpha", "beta"])
    assert [item.index for item in result.data] == [0, 1]
    assert len(result.data[0].embedding) > 0
    assert result.usage.prompt_tokens > 0
    listed = [m.id async for m in client.models.list()]
    assert {"gpt-test", "claude-test", "llama-test", "embed-test"} <= set(listed)


@pytest.mark.parametrize("model", ["claude-test", "gpt-test", "llama-test"])
async def test_anthropic_sdk_messages_plain_and_streamed(sdk: Hub, model: str) -> None:
    client = claude(sdk)
    message = await client.messages.create(
        model=model,
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "tell me something"}],
    )
    assert message.role == "assistant"
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert "tell me something" in message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0

    async with client.messages.stream(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": "tell me something"}],
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == message.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == message.usage.output_tokens


async def test_anthropic_sdk_tool_use_through_an_openai_upstream(sdk: Hub) -> None:
    message = await claude(sdk).messages.create(
        model="gpt-test",
        max_tokens=128,
        tools=[
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": WEATHER_TOOL["function"]["parameters"],
            }
        ],
        messages=[{"role": "user", "content": "call get_weather now"}],
    )
    assert message.stop_reason == "tool_use"
    block = next(b for b in message.content if b.type == "tool_use")
    assert block.name == "get_weather" and "city" in block.input
    count = await claude(sdk).messages.count_tokens(
        model="gpt-test", messages=[{"role": "user", "content": "count these words please"}]
    )
    assert count.input_tokens > 0


async def test_sdk_errors_and_nothing_forwarded(sdk: Hub, openai_upstream: StandinServer) -> None:
    client = oai(sdk)
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert "no-such-model" in str(missing.value)
    with pytest.raises(openai.AuthenticationError):
        await oai(sdk, key="hh_00000000_wrong").chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="gpt-test", messages=[])
    assert "messages" in str(bad.value)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "function", "function": {"name": ""}}],
        )
    with pytest.raises(anthropic.BadRequestError):
        await claude(sdk).messages.create(model="gpt-test", max_tokens=10, messages=[])
    with pytest.raises(anthropic.NotFoundError):
        await claude(sdk).messages.create(
            model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    raw = sdk.raw(
        "POST",
        "/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {sdk.key}"},
    )
    assert raw.status_code == 400
    assert raw.json()["error"]["type"] == "invalid_request_error"
    assert openai_upstream.state.requests == []


async def test_usage_recorded_per_request_with_cost(sdk: Hub) -> None:
    client = oai(sdk)
    reply = await client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "count my tokens"}]
    )
    records = [r for r in sdk.usage_records() if r["model"] == "gpt-test"]
    assert len(records) == 1
    record = records[0]
    assert record["prompt_tokens"] == reply.usage.prompt_tokens
    assert record["completion_tokens"] == reply.usage.completion_tokens
    expected = (reply.usage.prompt_tokens * 1.0 + reply.usage.completion_tokens * 2.0) / 1e6
    assert record["cost_usd"] == pytest.approx(expected)
    assert record["key_id"] == sdk.key_id and record["status"] == 200
    assert record["request_body"] is None  # bodies are off by default
    metrics = sdk.raw("GET", "/metrics").text
    assert (
        'hexahub_gateway_requests_total{model="gpt-test",provider="openai",status="200"}' in metrics
    )
