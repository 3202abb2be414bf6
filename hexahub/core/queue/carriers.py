"""How a task's id travels from whoever enqueues it to whoever runs it.

A carrier moves only ids; the task itself (payload, attempts, status) lives in the
database. That is why losing a carrier's message loses no work: the queue's sweeper
sends it again.

- `InProcessCarrier`: an asyncio queue inside the server process (the embedded default).
- `TaskiqCarrier`: taskiq over Redis streams or NATS JetStream, so `hexahub worker`
  processes on other machines take the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

log = logging.getLogger("hexahub.queue")

Runner = Callable[[str], Awaitable[None]]


class Carrier(Protocol):
    name: str

    async def open(self) -> None:
        """Connect so that `send` works."""
        ...

    async def send(self, task_id: str) -> None: ...

    async def consume(self, runner: Runner, concurrency: int) -> None:
        """Call `runner(task_id)` for each id received, until cancelled."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class InProcessCarrier:
    name = "inprocess"

    def __init__(self) -> None:
        self._ids: asyncio.Queue[str] = asyncio.Queue()

    async def open(self) -> None:
        return None

    async def send(self, task_id: str) -> None:
        self._ids.put_nowait(task_id)

    async def consume(self, runner: Runner, concurrency: int) -> None:
        async def work() -> None:
            while True:
                task_id = await self._ids.get()
                try:
                    await runner(task_id)
                except Exception:
                    log.exception("runner failed on task %s", task_id)
                finally:
                    self._ids.task_done()

        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(work())

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


class TaskiqCarrier:
    """Carries ids over a taskiq broker: Redis streams (redis://) or NATS JetStream."""

    def __init__(self, url: str, *, namespace: str = "hexahub") -> None:
        self.url = url
        self.name = "nats" if url.startswith(("nats://", "tls://")) else "redis"
        self.broker = _make_broker(url, namespace)
        self._runner: Runner | None = None
        self._opened = False

        @self.broker.task(task_name=f"{namespace}.run")
        async def carry(task_id: str) -> None:
            if self._runner is None:
                raise RuntimeError("this process is not consuming tasks")
            await self._runner(task_id)

        self._carry = carry

    async def open(self) -> None:
        if not self._opened:
            await self.broker.startup()
            self._opened = True

    async def send(self, task_id: str) -> None:
        await self._carry.kiq(task_id)

    async def consume(self, runner: Runner, concurrency: int) -> None:
        from taskiq.api import run_receiver_task

        self._runner = runner
        self.broker.is_worker_process = True
        await self.open()
        await run_receiver_task(self.broker, max_async_tasks=concurrency, run_startup=False)

    async def ping(self) -> None:
        if self.name == "redis":
            from redis.asyncio import Redis

            async with Redis(connection_pool=self.broker.connection_pool) as conn:  # type: ignore[attr-defined]
                await conn.ping()
        else:
            client: Any = self.broker.client  # type: ignore[attr-defined]
            if not client.is_connected:
                raise ConnectionError(f"not connected to NATS at {self.url}")
            await client.flush(timeout=3)

    async def close(self) -> None:
        if self._opened:
            with contextlib.suppress(Exception):
                await self.broker.shutdown()
            self._opened = False


async def _log_nats_error(exc: Exception) -> None:
    # nats-py prints a full traceback for every failed connection attempt by default.
    log.warning("NATS: %s", exc or type(exc).__name__)


def _make_broker(url: str, namespace: str) -> Any:
    if url.startswith(("nats://", "tls://")):
        from taskiq_nats import PullBasedJetStreamBroker

        return PullBasedJetStreamBroker(
            servers=url,
            subject=f"{namespace}.tasks",
            stream_name=f"{namespace}-tasks",
            durable=f"{namespace}-workers",
            pull_consume_timeout=1.0,
            connect_timeout=3,
            max_reconnect_attempts=3,
            error_cb=_log_nats_error,
        )
    from taskiq_redis import RedisStreamBroker

    return RedisStreamBroker(
        url,
        queue_name=f"{namespace}:tasks",
        consumer_group_name=f"{namespace}-workers",
        consumer_id="0",
        xread_block=1000,
        unacknowledged_lock_timeout=60,
        socket_connect_timeout=3,
    )


def make_carrier(backend: str, broker_url: str, *, namespace: str = "hexahub") -> Carrier:
    if backend == "broker":
        return TaskiqCarrier(broker_url, namespace=namespace)
    return InProcessCarrier()
