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
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from hexahub.settings import redact_url

log = logging.getLogger("hexahub.queue")

Runner = Callable[[str], Awaitable[None]]

# Waits before listening again after a broker failure: doubling from the first to the last.
RELISTEN_MIN_SECONDS = 0.5
RELISTEN_MAX_SECONDS = 30.0


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

    def __init__(self, url: str, *, namespace: str = "hexahub", open_timeout: float = 10.0) -> None:
        self.url = url
        # NATS reconnects forever once connected, and would also retry its first connect
        # forever: this bounds how long a process waits for an unreachable broker at start.
        self.open_timeout = open_timeout
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
            try:
                await asyncio.wait_for(self.broker.startup(), timeout=self.open_timeout)
            except TimeoutError:
                with contextlib.suppress(Exception):
                    await self.broker.shutdown()
                raise ConnectionError(
                    f"could not reach the {self.name} broker at {redact_url(self.url)} "
                    f"within {self.open_timeout:g} s"
                ) from None
            self._opened = True

    async def send(self, task_id: str) -> None:
        await self._carry.kiq(task_id)

    async def consume(self, runner: Runner, concurrency: int) -> None:
        # Our own loop rather than taskiq's run_receiver_task, which re-listens at once,
        # forever, when listening fails (a Redis that lost its stream answers NOGROUP to
        # every read: a busy loop), and can lose the cancellation that stops it.
        from taskiq.receiver import Receiver

        self._runner = runner
        self.broker.is_worker_process = True
        await self.open()
        backoff = RELISTEN_MIN_SECONDS
        # taskiq wants an executor for synchronous tasks; ours is async, so it stays idle.
        with ThreadPoolExecutor(max_workers=1) as executor:
            while True:
                receiver = Receiver(
                    self.broker, executor=executor, max_async_tasks=concurrency, run_startup=False
                )
                started = time.monotonic()
                try:
                    await receiver.listen(asyncio.Event())
                    problem = "the broker ended the stream of messages"
                except Exception as exc:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        # The task group turned our cancellation into an error group.
                        raise asyncio.CancelledError from exc
                    problem = _describe(exc)
                if time.monotonic() - started > RELISTEN_MAX_SECONDS:
                    backoff = RELISTEN_MIN_SECONDS  # it had been working
                log.warning(
                    "the %s carrier stopped receiving (%s); listening again in %g s",
                    self.name,
                    problem,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RELISTEN_MAX_SECONDS)
                await self._restore_broker_state()

    async def _restore_broker_state(self) -> None:
        """Re-create what the broker set up at start (Redis consumer group; NATS stream
        and consumer), in case the server lost it, e.g. a Redis restarted without
        persistence. These are taskiq's own start-up steps."""
        steps = (
            ["_declare_consumer_group"]
            if self.name == "redis"
            else ["_add_or_reuse_stream", "_startup_consumer"]
        )
        for step in steps:
            method = getattr(self.broker, step, None)
            if method is None:
                return
            try:
                await method()
            except Exception as exc:
                log.warning("could not restore the %s broker's %s: %s", self.name, step, exc)
                return

    async def ping(self) -> None:
        if self.name == "redis":
            from redis.asyncio import Redis

            async with Redis(connection_pool=self.broker.connection_pool) as conn:
                await conn.ping()
        else:
            client: Any = self.broker.client
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


def _describe(exc: BaseException) -> str:
    """The first real error inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


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
            # Keep reconnecting: a long-lived server or worker must survive a NATS restart.
            max_reconnect_attempts=-1,
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
