"""The local provider's workers with the shipped models: fair order, bounded queues,
cancellation, batching, lazy loading and idle unloading, and clear load errors."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hexahub.gateway.providers.base import ProviderConfig, UpstreamError, caller_var
from hexahub.gateway.providers.local import LocalProvider
from hexahub.localmodels import metrics, shipped
from hexahub.localmodels.builtin import provider_settings
from hexahub.localmodels.manager import manager
from hexahub.localmodels.registry import (
    BadModelFile,
    LocalOptions,
    RegisteredModel,
    add_model,
    save_registry,
)
from tests.gateway.conftest import Hub
from tests.localmodels.conftest import CONTEXT_SIZE, require_local_packages

CHAT = shipped.DEFAULT_CHAT_MODEL
EMBED = shipped.DEFAULT_EMBEDDING_MODEL
COUNTING = [{"role": "user", "content": "Count from 1 to 1000, one number per line."}]


@pytest.fixture(autouse=True)
def _packages() -> None:
    require_local_packages()


def make_provider(models_dir: Path, timeout: float = 60, **options: Any) -> LocalProvider:
    values: dict[str, Any] = {"context_size": CONTEXT_SIZE, **options}
    settings = provider_settings(LocalOptions(models_dir=models_dir, **values))
    return LocalProvider(
        ProviderConfig(
            name="local", kind="local", base_url="", settings=settings, timeout_seconds=timeout
        )
    )


def sample(counter: Any, *labels: str) -> float:
    return float(counter.labels(*labels)._value.get())


async def eventually(check: Callable[[], bool], seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition did not come true in time")


async def as_caller(caller: str, work: Any) -> Any:
    caller_var.set(caller)
    return await work


@contextlib.asynccontextmanager
async def running(provider: LocalProvider, caller: str = "busy") -> AsyncIterator[None]:
    """Keep the model busy with a long streamed answer until the block ends."""
    caller_var.set(caller)
    # A grammar that cannot end before 400 numbers keeps the model from stopping early
    # (an end-of-text token would free the worker and race the test).
    busy = {
        "type": "json_schema",
        "json_schema": {
            "name": "busy",
            "schema": {"type": "array", "items": {"type": "integer"}, "minItems": 400},
        },
    }
    stream = provider.chat_stream(
        {"messages": COUNTING, "max_tokens": 400, "response_format": busy}, CHAT
    )
    await anext(stream)  # the model answers: the job is running, not waiting
    try:
        yield
    finally:
        await stream.aclose()
        # The worker stops at its next token; wait for that so tests do not overlap.
        await eventually(lambda: not any(w["busy"] for w in manager().status()))


def chat(max_tokens: int = 1) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": max_tokens}


async def test_callers_are_served_round_robin(tmp_path: Path) -> None:
    provider = make_provider(tmp_path)
    order: list[str] = []

    async def ask(name: str, caller: str) -> None:
        await as_caller(caller, provider.chat(chat(), CHAT))
        order.append(name)

    async with running(provider, "alice"):
        tasks = [
            asyncio.create_task(ask("alice-2", "alice")),
            asyncio.create_task(ask("alice-3", "alice")),
            asyncio.create_task(ask("bob-1", "bob")),
        ]
        await eventually(
            lambda: metrics.QUEUE_DEPTH.labels(CHAT)._value.get() == 3
        )  # all three wait behind alice's first
    await asyncio.gather(*tasks)
    assert order == ["alice-2", "bob-1", "alice-3"]


async def test_a_full_queue_is_refused_with_retryable_errors(tmp_path: Path) -> None:
    provider = make_provider(tmp_path, queue_size=2)  # one waiting place per caller
    async with running(provider, "alice"):
        waiting = asyncio.create_task(as_caller("alice", provider.chat(chat(), CHAT)))
        await eventually(lambda: metrics.QUEUE_DEPTH.labels(CHAT)._value.get() == 1)
        with pytest.raises(UpstreamError) as mine:
            await as_caller("alice", provider.chat(chat(), CHAT))
        assert mine.value.status == 429 and mine.value.retryable
        bob = asyncio.create_task(as_caller("bob", provider.chat(chat(), CHAT)))
        await eventually(lambda: metrics.QUEUE_DEPTH.labels(CHAT)._value.get() == 2)
        with pytest.raises(UpstreamError) as full:
            await as_caller("carol", provider.chat(chat(), CHAT))
        assert full.value.status == 503 and full.value.retryable
        assert full.value.retry_after
        assert "busy" in full.value.message
    await asyncio.gather(waiting, bob)


async def test_a_waiting_request_that_is_abandoned_leaves_the_queue(tmp_path: Path) -> None:
    provider = make_provider(tmp_path)
    async with running(provider):
        waiting = asyncio.create_task(provider.chat(chat(), CHAT))
        depth = metrics.QUEUE_DEPTH.labels(CHAT)
        await eventually(lambda: depth._value.get() == 1)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        assert depth._value.get() == 0


async def test_a_request_waiting_past_the_timeout_gets_504_and_leaves(tmp_path: Path) -> None:
    impatient = make_provider(tmp_path, timeout=0.2)
    async with running(make_provider(tmp_path)):
        with pytest.raises(UpstreamError) as late:
            await impatient.chat(chat(), CHAT)
        assert late.value.status == 504 and not late.value.retryable
        assert "timeout_seconds" in late.value.message
        assert metrics.QUEUE_DEPTH.labels(CHAT)._value.get() == 0


async def test_client_disconnect_frees_the_model(hub: Hub) -> None:
    cancelled = sample(metrics.REQUESTS, CHAT, "cancelled")
    completion = sample(metrics.TOKENS, CHAT, "completion")
    body = {"model": "local-chat", "messages": COUNTING, "max_tokens": 400, "stream": True}
    headers = {"Authorization": f"Bearer {hub.key}"}
    async with (
        httpx.AsyncClient(timeout=60) as client,
        client.stream("POST", f"{hub.v1}/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        seen = 0
        async for line in response.aiter_lines():
            if '"content":"' in line and '"content":""' not in line:
                seen += 1
            if seen == 3:
                break
        # Leaving the block closed the connection in the middle of the answer.

    def freed() -> bool:
        busy = any(w["busy"] for w in manager().status() if w["model"] == CHAT)
        return sample(metrics.REQUESTS, CHAT, "cancelled") == cancelled + 1 and not busy

    await eventually(freed)
    assert sample(metrics.TOKENS, CHAT, "completion") - completion < 400

    async with httpx.AsyncClient(timeout=60) as client:
        answer = await client.post(
            f"{hub.v1}/chat/completions",
            json={"model": "local-chat", "messages": COUNTING, "max_tokens": 4},
            headers=headers,
        )
    assert answer.status_code == 200
    assert answer.json()["usage"]["completion_tokens"] == 4


async def test_waiting_embedding_requests_are_batched(tmp_path: Path) -> None:
    provider = make_provider(tmp_path)
    await provider.embeddings({"input": "warm up"}, EMBED)  # loaded before we count
    batches = metrics.EMBEDDING_BATCH.labels(EMBED)
    before_count, before_sum = _histogram(batches)
    big = asyncio.create_task(
        provider.embeddings({"input": [f"sentence number {i}" for i in range(128)]}, EMBED)
    )
    await eventually(lambda: any(w["busy"] for w in manager().status() if w["model"] == EMBED))
    small = [
        asyncio.create_task(as_caller(f"c{i}", provider.embeddings({"input": f"text {i}"}, EMBED)))
        for i in range(5)
    ]
    results = await asyncio.gather(big, *small)
    assert len(results[0]["data"]) == 128
    assert all(len(r["data"]) == 1 and len(r["data"][0]["embedding"]) == 384 for r in results[1:])
    count, total = _histogram(batches)
    assert total - before_sum == 133
    assert count - before_count == 2  # the five small requests ran as one batch


def _histogram(child: Any) -> tuple[float, float]:
    count = sum(bucket.get() for bucket in child._buckets)
    return count, child._sum.get()


async def test_models_load_lazily_and_unload_when_idle(tmp_path: Path) -> None:
    provider = make_provider(tmp_path, idle_unload_seconds=0.3, context_size=384)
    loads = sample(metrics.LOADS, CHAT, "loaded")

    def loaded() -> bool:
        return any(w["context_size"] == 384 for w in manager().status())

    assert not loaded()
    reply = await provider.chat(chat(2), CHAT)
    assert reply["usage"]["completion_tokens"] <= 2
    assert sample(metrics.LOADS, CHAT, "loaded") == loads + 1
    await eventually(lambda: not loaded())
    await provider.chat(chat(2), CHAT)
    assert sample(metrics.LOADS, CHAT, "loaded") == loads + 2


async def test_missing_and_corrupt_model_files_fail_clearly_at_load(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    broken = models_dir / "broken.gguf"
    good = shipped.default_chat_gguf()
    assert good is not None
    with good.open("rb") as source:
        broken.write_bytes(source.read(2_000_000))  # a download cut short: header, no weights
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"<html>404 Not Found</html>" * 100)
    save_registry(
        models_dir,
        [
            RegisteredModel(name="gone", path=str(tmp_path / "deleted.gguf")),
            RegisteredModel(name="junk", path=str(junk)),
        ],
    )
    provider = make_provider(models_dir)

    with pytest.raises(UpstreamError) as gone:
        await provider.chat(chat(), "gone")
    assert gone.value.status == 503
    assert "deleted.gguf does not exist" in gone.value.message

    with pytest.raises(UpstreamError) as not_gguf:
        await provider.chat(chat(), "junk")
    assert "is not a GGUF model file" in not_gguf.value.message

    failed = sample(metrics.LOADS, "broken", "failed")
    with pytest.raises(UpstreamError) as cut:
        await provider.chat(chat(), "broken")  # a file dropped into the models directory
    assert cut.value.status == 503 and cut.value.retryable
    assert "llama.cpp could not load" in cut.value.message and "broken.gguf" in cut.value.message
    with pytest.raises(UpstreamError):
        await provider.chat(chat(), "broken")
    assert sample(metrics.LOADS, "broken", "failed") == failed + 1  # remembered, not retried

    shutil.copyfile(good, broken)  # fixed on disk: the next request loads it
    reply = await provider.chat(chat(2), "broken")
    assert reply["choices"][0]["finish_reason"] in ("stop", "length")

    with pytest.raises(UpstreamError) as unknown:
        await provider.chat(chat(), "nothing-by-this-name")
    assert unknown.value.status == 404 and "hexahub models add" in unknown.value.message

    with pytest.raises(BadModelFile, match="not a GGUF model file"):
        add_model(models_dir, junk, "junk-again")


async def test_missing_packages_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shipped.installed
    monkeypatch.setattr(shipped, "installed", lambda module: module != "llama_cpp" and real(module))
    provider = make_provider(tmp_path, context_size=256)
    with pytest.raises(UpstreamError) as missing:
        await provider.chat(chat(), CHAT)
    assert missing.value.status == 503
    assert "pip install 'hexahub[local]'" in missing.value.message
