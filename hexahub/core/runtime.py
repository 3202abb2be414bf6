"""The long-lived objects of one HexaHub process, built from settings.

`serve`, `worker` and CLI commands all build a `Runtime`, so each of them talks to the
same database, shared state and queue in the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hexahub.core.db import Database
from hexahub.core.queue import RetryPolicy, TaskQueue, make_carrier
from hexahub.core.shared import SharedState, make_shared_state
from hexahub.settings import Settings

log = logging.getLogger("hexahub.runtime")

# Modules whose import registers background tasks (`@task`). Each domain adds its own.
TASK_MODULES: tuple[str, ...] = ("hexahub.core.tasks", "hexahub.context.tasks")


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    elapsed_ms: float = 0.0


@dataclass
class Runtime:
    settings: Settings
    db: Database
    shared: SharedState
    queue: TaskQueue
    started: list[str] = field(default_factory=list)
    # Long-lived objects other domains share by name (e.g. "gateway", "context.store"),
    # and how to close them; `close()` runs the closers, newest first.
    services: dict[str, Any] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        import importlib

        for module in TASK_MODULES:
            importlib.import_module(module)
        db = Database(settings)
        shared = make_shared_state(settings.redis_url)
        queue = TaskQueue(
            db.sessions,
            make_carrier(settings.queue_backend, settings.broker_url),
            policy=RetryPolicy(
                max_attempts=settings.queue_max_attempts,
                base_seconds=settings.queue_retry_base_seconds,
                max_seconds=settings.queue_retry_max_seconds,
                timeout_seconds=settings.queue_task_timeout_seconds,
            ),
            concurrency=settings.queue_concurrency,
        )
        runtime = cls(settings=settings, db=db, shared=shared, queue=queue)
        queue.state["runtime"] = runtime
        return runtime

    async def start_queue(self, *, consume: bool) -> None:
        await self.queue.start(consume=consume)
        self.started.append("queue")

    async def close(self) -> None:
        if "queue" in self.started:
            await self.queue.stop()
        for closer in reversed(self.closers):
            try:
                await closer()
            except Exception as exc:
                log.warning("closing %s failed: %s", closer, exc)
        self.closers.clear()
        await self.shared.close()
        await self.db.dispose()

    async def check_readiness(self, limit_seconds: float = 3.0) -> list[CheckResult]:
        """Reach the database, shared state and broker; say what failed."""

        async def probe(name: str, call: object) -> CheckResult:
            started = time.perf_counter()
            try:
                await asyncio.wait_for(call, timeout=limit_seconds)  # type: ignore[arg-type]
            except Exception as exc:
                detail = str(exc) or type(exc).__name__
                return CheckResult(name, False, detail, (time.perf_counter() - started) * 1000)
            return CheckResult(name, True, "ok", (time.perf_counter() - started) * 1000)

        checks = [probe("database", self.db.ping())]
        if self.shared.backend == "redis":
            checks.append(probe("redis", self.shared.ping()))
        if self.queue.carrier.name != "inprocess":
            checks.append(probe("broker", self.queue.carrier.ping()))
        return list(await asyncio.gather(*checks))
