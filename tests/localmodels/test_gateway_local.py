"""Real inference with the shipped models, through HexaHub's HTTP API, driven by the official
SDKs. Assertions are on structure, token counts and stop reasons, never on wording."""

from __future__ import annotations

import base64
import struct

import anthropic
import httpx
import openai
import pytest

from tests.gateway.conftest import Hub

# A request the model cannot finish in a few tokens, so max_tokens decides where it ends.
LONG = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]


def oai(hub: Hub) -> openai.AsyncOpenAI:
    client = openai.AsyncOpenAI(base_url=hub.v1, api_key=hub.key, max_retries=0)
    hub.clients.append(client)
    return client


def claude(hub: Hub) -> anthropic.AsyncAnthropic:
    client = anthropic.AsyncAnthropic(base_url=hub.url, api_key=hub.key, max_retries=0)
    hub.clients.append(client)
    return client


async def test_fresh_install_offers_local_models(hub: Hub) -> None:
    listed = await oai(hub).models.list()
    names = {m.id for m in listed.data}
    assert {"local-chat", "local-embed"} <= names


async def test_openai_chat_plain_and_streamed(hub: Hub) -> None:
    client = oai(hub)
    plain = await client.chat.completions.create(
        model="local-chat", messages=LONG, max_tokens=8, temperature=0
    )
    assert plain.model == "local-chat"
    assert plain.object == "chat.completion"
    choice = plain.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert plain.usage is not None
    assert plain.usage.completion_tokens == 8
    assert plain.usage.prompt_tokens > 10  # the template's system turn is in there
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + 8

    stream = await client.chat.completions.create(
        model="local-chat",
        messages=LONG,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finishes, usages, roles = [], [], [], []
    async for chunk in stream:
        assert chunk.model == "local-chat"
        if chunk.usage:
            usages.append(chunk.usage)
        for c in chunk.choices:
            if c.delta.role:
                roles.append(c.delta.role)
            if c.delta.content:
                pieces.append(c.delta.content)
            if c.finish_reason:
                finishes.append(c.finish_reason)
    assert roles == ["assistant"]
    assert len(pieces) >= 4  # token by token, not one lump at the end
    assert "".join(pieces).strip()
    assert finishes == ["length"]
    assert len(usages) == 1
    assert usages[0].completion_tokens == 8
    assert usages[0].prompt_tokens == plain.usage.prompt_tokens


async def test_stop_sequences_end_the_answer_and_never_show(hub: Hub) -> None:
    client = oai(hub)
    messages = [{"role": "user", "content": "List five fruits, one per line."}]
    free = await client.chat.completions.create(
        model="local-chat", messages=messages, max_tokens=16, temperature=0
    )
    text = free.choices[0].message.content or ""
    words = text.split()
    assert len(words) >= 3, text
    stop = words[2]  # the same greedy answer reaches this word again
    cut = await client.chat.completions.create(
        model="local-chat", messages=messages, max_tokens=16, temperature=0, stop=[stop]
    )
    assert cut.choices[0].finish_reason == "stop"
    answer = cut.choices[0].message.content or ""
    assert stop not in answer
    assert text.startswith(answer)
    assert cut.usage is not None and cut.usage.completion_tokens < 16

    stream = await client.chat.completions.create(
        model="local-chat",
        messages=messages,
        max_tokens=16,
        temperature=0,
        stop=[stop],
        stream=True,
    )
    streamed, finish = [], None
    async for chunk in stream:
        for c in chunk.choices:
            streamed.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(streamed) == answer
    assert finish == "stop"


async def test_openai_text_completions(hub: Hub) -> None:
    client = oai(hub)
    done = await client.completions.create(
        model="local-chat", prompt="The three primary colours are", max_tokens=6, temperature=0
    )
    assert done.object == "text_completion"
    assert done.choices[0].finish_reason in ("length", "stop")
    assert done.usage is not None and 0 < done.usage.completion_tokens <= 6
    assert done.usage.prompt_tokens > 0

    stream = await client.completions.create(
        model="local-chat", prompt="Once upon a time", max_tokens=6, temperature=0, stream=True
    )
    texts, finish = [], None
    async for chunk in stream:
        for c in chunk.choices:
            texts.append(c.text)
            finish = c.finish_reason or finish
    assert "".join(texts).strip()
    assert finish in ("length", "stop")


async def test_anthropic_messages_plain_and_streamed(hub: Hub) -> None:
    client = claude(hub)
    message = await client.messages.create(
        model="local-chat",
        max_tokens=8,
        system="You are a storyteller.",
        messages=[{"role": "user", "content": LONG[0]["content"]}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "local-chat"
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert message.usage.output_tokens == 8
    assert message.usage.input_tokens > 10

    events: list[str] = []
    text: list[str] = []
    async with client.messages.stream(
        model="local-chat",
        max_tokens=8,
        messages=[{"role": "user", "content": LONG[0]["content"]}],
    ) as stream:
        async for event in stream:
            events.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text.append(event.delta.text)
        final = await stream.get_final_message()
    assert events[0] == "message_start"
    assert events.count("content_block_delta") >= 4
    assert "message_stop" in events
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 8
    assert "".join(text).strip()


async def test_local_model_errors_come_in_each_api_shape(hub: Hub) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await oai(hub).embeddings.create(model="local-chat", input="a chat model cannot embed")
    assert "chat model" in refused.value.message

    with pytest.raises(openai.BadRequestError) as too_long:
        await oai(hub).chat.completions.create(
            model="local-chat",
            messages=[{"role": "user", "content": "word " * 2000}],
            max_tokens=4,
        )
    assert "context window" in too_long.value.message

    with pytest.raises(anthropic.BadRequestError):
        await claude(hub).messages.create(
            model="local-chat",
            max_tokens=4,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                        }
                    ],
                }
            ],
        )


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = (sum(x * x for x in a) * sum(y * y for y in b)) ** 0.5
    return dot / norm


async def test_embeddings_put_similar_sentences_closer(hub: Hub) -> None:
    sentences = [
        "The cat sits on the mat.",
        "A kitten is resting on a rug.",
        "Quarterly revenue grew by ten percent.",
    ]
    # The SDK asks for base64 and decodes it; both encodings are served.
    result = await oai(hub).embeddings.create(model="local-embed", input=sentences)
    vectors = [item.embedding for item in result.data]
    assert [item.index for item in result.data] == [0, 1, 2]
    assert all(len(v) == 384 for v in vectors)
    assert result.usage.prompt_tokens > len(sentences)
    similar, unrelated = _cosine(vectors[0], vectors[1]), _cosine(vectors[0], vectors[2])
    assert similar > unrelated + 0.2

    async with httpx.AsyncClient(timeout=60) as client:
        raw = await client.post(
            f"{hub.v1}/embeddings",
            headers={"Authorization": f"Bearer {hub.key}"},
            json={"model": "local-embed", "input": sentences[0], "encoding_format": "float"},
        )
        packed = await client.post(
            f"{hub.v1}/embeddings",
            headers={"Authorization": f"Bearer {hub.key}"},
            json={"model": "local-embed", "input": sentences[0], "encoding_format": "base64"},
        )
    assert raw.status_code == 200, raw.text
    floats = raw.json()["data"][0]["embedding"]
    decoded = struct.unpack("<384f", base64.b64decode(packed.json()["data"][0]["embedding"]))
    assert max(abs(a - b) for a, b in zip(floats, decoded, strict=True)) < 1e-6
    assert abs(_cosine(floats, vectors[0]) - 1) < 1e-4


async def test_metrics_show_loaded_models_memory_and_speed(hub: Hub) -> None:
    await oai(hub).chat.completions.create(
        model="local-chat", messages=LONG, max_tokens=4, temperature=0
    )
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{hub.url}/metrics")).text
    lines = text.splitlines()

    def value(prefix: str) -> float:
        found = [line for line in lines if line.startswith(prefix)]
        assert found, f"no {prefix} in /metrics"
        return float(found[0].rsplit(" ", 1)[1])

    assert value('hexahub_local_model_loaded{kind="chat",model="smollm2-135m-instruct"}') == 1
    assert value('hexahub_local_model_memory_bytes{model="smollm2-135m-instruct"}') > 50e6
    assert value('hexahub_local_queue_depth{model="smollm2-135m-instruct"}') == 0
    assert value('hexahub_local_tokens_per_second_count{model="smollm2-135m-instruct"}') >= 1
    assert (
        value('hexahub_local_requests_total{model="smollm2-135m-instruct",outcome="length"}') >= 1
    )
