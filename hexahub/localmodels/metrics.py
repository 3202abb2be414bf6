"""Local model series on /metrics (the shared REGISTRY). The `model` label is the local
model's name, so the number of series is bounded by the models configured."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

from hexahub.core.metrics import REGISTRY

LOADED = Gauge(
    "hexahub_local_model_loaded",
    "1 while a local model is loaded in this process, by model and kind (chat, embedding).",
    ["model", "kind"],
    registry=REGISTRY,
)
MEMORY = Gauge(
    "hexahub_local_model_memory_bytes",
    "Memory a loaded local model holds: weights plus, for chat models, the KV cache at its "
    "full context size.",
    ["model"],
    registry=REGISTRY,
)
RSS_GROWTH = Gauge(
    "hexahub_local_model_rss_growth_bytes",
    "How much this process's resident memory grew while the model loaded (libraries "
    "imported for it included; weights are memory-mapped and counted as they are touched).",
    ["model"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "hexahub_local_queue_depth",
    "Requests waiting for a local model (not counting the one it is working on).",
    ["model"],
    registry=REGISTRY,
)
TOKENS_PER_SECOND = Histogram(
    "hexahub_local_tokens_per_second",
    "Generation speed of one request (completion tokens after the first, per second).",
    ["model"],
    buckets=(1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000),
    registry=REGISTRY,
)
TOKENS = Counter(
    "hexahub_local_tokens_total",
    "Tokens processed by local models, by kind (prompt, completion).",
    ["model", "kind"],
    registry=REGISTRY,
)
EMBEDDING_BATCH = Histogram(
    "hexahub_local_embedding_batch_size",
    "Texts embedded together in one batch (requests waiting at once are batched).",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
REQUESTS = Counter(
    "hexahub_local_requests_total",
    "Requests a local model finished, by outcome: stop, length (max_tokens or the context "
    "was reached), cancelled (the client went away), failed, embedded.",
    ["model", "outcome"],
    registry=REGISTRY,
)
LOADS = Counter(
    "hexahub_local_model_loads_total",
    "Local model loads, by outcome (loaded, failed).",
    ["model", "outcome"],
    registry=REGISTRY,
)
REJECTED = Counter(
    "hexahub_local_requests_rejected_total",
    "Requests refused because a local model's queue was full.",
    ["model"],
    registry=REGISTRY,
)


def forget(model: str, kind: str) -> None:
    """A model was unloaded: its gauges go back to nothing."""
    LOADED.labels(model, kind).set(0)
    for gauge in (MEMORY, RSS_GROWTH):
        with contextlib.suppress(KeyError):
            gauge.remove(model)
    QUEUE_DEPTH.labels(model).set(0)
