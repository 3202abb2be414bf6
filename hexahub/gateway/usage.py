"""Usage: one record per gateway request, written off the request path in batches, and
Prometheus series. (The per-key spend and token counters that budgets and rate limits
read are kept by hexahub.gateway.limits.)

Records wait in memory and are written every HEXAHUB_GATEWAY_USAGE_FLUSH_SECONDS (or when
500 are waiting). Stopping flushes what is left, so a clean shutdown loses nothing; a write
that fails is kept and tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Histogram
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hexahub.core.db import new_id, utcnow
from hexahub.core.metrics import REGISTRY
from hexahub.gateway.models import UsageRecord

log = logging.getLogger("hexahub.gateway.usage")

REQUESTS = Counter(
    "hexahub_gateway_requests_total",
    "Gateway requests by model, deployment provider and status.",
    ["model", "provider", "status"],
    registry=REGISTRY,
)
TOKENS = Counter(
    "hexahub_gateway_tokens_total",
    "Tokens by model, provider and kind (prompt or completion).",
    ["model", "provider", "kind"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "hexahub_gateway_errors_total",
    "Failed gateway requests by model and error.",
    ["model", "error"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "hexahub_gateway_request_duration_seconds",
    "Whole gateway request time.",
    ["model", "provider"],
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
TTFT = Histogram(
    "hexahub_gateway_time_to_first_token_seconds",
    "Time to the first streamed chunk.",
    ["model", "provider"],
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OVERHEAD = Histogram(
    "hexahub_gateway_overhead_seconds",
    "Time the gateway itself adds to a request (total minus upstream).",
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)

BATCH = 500


def cost_usd(
    prompt_tokens: int, completion_tokens: int, input_price: float, output_price: float
) -> float:
    return (prompt_tokens * input_price + completion_tokens * output_price) / 1_000_000


class UsageRecorder:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        flush_interval: float = 1.0,
    ) -> None:
        self.sessions = sessions
        self.flush_interval = flush_interval
        self._pending: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    async def record(self, **fields: Any) -> None:
        """Queue a usage record and count it in the Prometheus series."""
        fields.setdefault("id", new_id())
        fields.setdefault("created_at", utcnow())
        self._pending.append(fields)
        model, provider = fields.get("model", ""), fields.get("provider", "")
        status = int(fields.get("status", 200))
        REQUESTS.labels(model, provider, str(status)).inc()
        if status >= 400:
            ERRORS.labels(model, str(fields.get("error") or status)[:60]).inc()
        prompt, completion = fields.get("prompt_tokens", 0), fields.get("completion_tokens", 0)
        if prompt:
            TOKENS.labels(model, provider, "prompt").inc(prompt)
        if completion:
            TOKENS.labels(model, provider, "completion").inc(completion)
        if len(self._pending) >= BATCH:
            self._wake.set()

    async def flush(self) -> int:
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                async with self.sessions() as db:
                    await db.execute(insert(UsageRecord), batch)
                    await db.commit()
            except Exception:
                self._pending = batch + self._pending  # keep them; try again next time
                raise
            return len(batch)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.flush_interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:
                log.warning("could not write %d usage record(s) yet: %s", len(self._pending), exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _ in range(3):
            try:
                await self.flush()
                return
            except Exception as exc:
                log.error("usage flush at shutdown failed: %s", exc)
        if self._pending:
            log.error("%d usage record(s) could not be written at shutdown", len(self._pending))

    @property
    def pending(self) -> int:
        return len(self._pending)


async def summary(
    db: AsyncSession,
    *,
    workspace_ids: list[str] | None,
    since: datetime,
    until: datetime | None = None,
    group_by: str = "model",
    bucket: str | None = None,
) -> list[dict[str, Any]]:
    """Totals grouped by model, key, user or workspace (optionally per hour or day)."""
    columns = {
        "model": UsageRecord.model,
        "key": UsageRecord.key_id,
        "user": UsageRecord.user_id,
        "workspace": UsageRecord.workspace_id,
        "provider": UsageRecord.provider,
    }
    if group_by not in columns:
        from hexahub.core.errors import ValidationFailed

        raise ValidationFailed(f"group_by: use one of {', '.join(columns)}")
    conditions = [UsageRecord.created_at >= since]
    if until is not None:
        conditions.append(UsageRecord.created_at < until)
    if workspace_ids is not None:
        conditions.append(UsageRecord.workspace_id.in_(workspace_ids))
    group = columns[group_by]
    rows = await db.execute(
        select(
            group.label("group"),
            UsageRecord.created_at,
            UsageRecord.prompt_tokens,
            UsageRecord.completion_tokens,
            UsageRecord.cost_usd,
            UsageRecord.latency_ms,
            UsageRecord.status,
        ).where(*conditions)
    )
    # Aggregated here rather than in SQL so hour/day buckets work the same on both backends.
    totals: dict[tuple[Any, str], dict[str, Any]] = {}
    for name, created, prompt, completion, cost, latency, status in rows.all():
        slot = ""
        if bucket == "hour":
            slot = created.replace(minute=0, second=0, microsecond=0).isoformat()
        elif bucket == "day":
            slot = created.date().isoformat()
        entry = totals.setdefault(
            (name, slot),
            {
                "group": name,
                "bucket": slot or None,
                "requests": 0,
                "errors": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cost_usd": 0.0,
                "latency_ms_sum": 0.0,
            },
        )
        entry["requests"] += 1
        entry["errors"] += int(status >= 400)
        entry["prompt_tokens"] += prompt
        entry["completion_tokens"] += completion
        entry["cost_usd"] += cost
        entry["latency_ms_sum"] += latency
    result = []
    for entry in totals.values():
        entry["avg_latency_ms"] = round(entry.pop("latency_ms_sum") / entry["requests"], 1)
        entry["cost_usd"] = round(entry["cost_usd"], 6)
        result.append(entry)
    return sorted(result, key=lambda e: (e["bucket"] or "", str(e["group"])))


def default_since(days: int = 30) -> datetime:
    return utcnow() - timedelta(days=days)
