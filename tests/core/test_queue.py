"""The task queue on SQLite and PostgreSQL, carried in-process, over Redis streams and
over NATS JetStream.

Handlers record what they saw in `ctx.state`, which is the running queue's own `state`
dict, so a test can tell which "process" (TaskQueue) ran a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Update, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hexahub.core.db import Database, utcnow
from hexahub.core.errors import Conflict, NotFound, ValidationFailed
from hexahub.core.metrics import REGISTRY
from hexahub.core.queue import (
    InProcessCarrier,
    RetryPolicy,
    TaskContext,
    TaskiqCarrier,
    TaskQueue,
    make_carrier,
    task,
)
from hexahub.core.queue.carriers import Carrier, Runner
from hexahub.core.queue.models import TASK_STATUSES, Task
from tests.conftest import NATS_SKIP, NATS_URL, REDIS_SKIP, REDIS_URL, make_settings

# Fast retries so a test sees several attempts in well under a second.
FAST = RetryPolicy(max_attempts=3, base_seconds=0.02, max_seconds=0.1, timeout_seconds=30)

ECHO = "tests.core.queue.echo"
FLAKY = "tests.core.queue.flaky"
FAILING = "tests.core.queue.failing"
FRAGILE = "tests.core.queue.fragile"
HANGS = "tests.core.queue.hangs"
BLOCKS = "tests.core.queue.blocks"


@task(ECHO)
async def _echo(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    ctx.state.setdefault("ran", []).append((ctx.task_id, ctx.attempt))
    return {"echo": payload, "attempt": ctx.attempt}


@task(FLAKY)
async def _flaky(ctx: TaskContext, payload: dict[str, Any]) -> str:
    row = await ctx.queue.get(ctx.task_id)
    record: dict[str, Any] = {
        "attempt": ctx.attempt,
        "run_after": row.run_after,
        "started": utcnow(),
    }
    ctx.state.setdefault("flaky", []).append(record)
    if ctx.attempt < payload["succeed_on"]:
        record["failed"] = utcnow()
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    return "ok"


@task(FAILING)
async def _failing(ctx: TaskContext, payload: dict[str, Any]) -> str:
    if ctx.state.get("healed"):
        return "healed"
    raise ValueError(payload["message"])


@task(FRAGILE, max_attempts=1)
async def _fragile(ctx: TaskContext, payload: dict[str, Any]) -> None:
    raise ValueError("fragile tasks get one attempt")


@task(HANGS, max_attempts=1, timeout_seconds=0.2)
async def _hangs(ctx: TaskContext, payload: dict[str, Any]) -> None:
    try:
        await asyncio.Event().wait()  # never set: only the timeout ends this
    except asyncio.CancelledError:
        ctx.state["hang_cancelled"] = True
        raise


@task(BLOCKS)
async def _blocks(ctx: TaskContext, payload: dict[str, Any]) -> str:
    ctx.state["attempts_seen"] = [*ctx.state.get("attempts_seen", []), ctx.attempt]
    ctx.state["started"].set()
    await ctx.state["release"].wait()
    return "released"


class RecordingCarrier:
    """A carrier that only remembers what it was asked to send (and can be broken)."""

    name = "recording"

    def __init__(self, *, failures: int = 0) -> None:
        self.sent: list[str] = []
        self.failures = failures

    async def open(self) -> None:
        return None

    async def send(self, task_id: str) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("broker unreachable")
        self.sent.append(task_id)

    async def consume(self, runner: Runner, concurrency: int) -> None:
        await asyncio.Event().wait()

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


QueueFactory = Callable[..., TaskQueue]


@pytest.fixture
async def queues(tmp_path: Path, database_url: str) -> AsyncIterator[QueueFactory]:
    """Makes TaskQueues on the test database, each with its own engine, like separate
    server and worker processes; stops them all afterwards."""
    made: list[TaskQueue] = []
    databases: list[Database] = []

    def make(
        carrier: Carrier | None = None,
        *,
        policy: RetryPolicy = FAST,
        state: dict[str, Any] | None = None,
        session_class: type[AsyncSession] = AsyncSession,
        **options: Any,
    ) -> TaskQueue:
        database = Database(make_settings(tmp_path, database_url=database_url))
        databases.append(database)
        options.setdefault("sweep_interval", 0.05)
        queue = TaskQueue(
            async_sessionmaker(database.engine, class_=session_class, expire_on_commit=False),
            carrier or InProcessCarrier(),
            policy=policy,
            state=state if state is not None else {},
            **options,
        )
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.stop()
    for database in databases:
        await database.dispose()


async def _edit(queue: TaskQueue, task_id: str, **values: Any) -> None:
    async with queue.sessions() as db:
        await db.execute(update(Task).where(Task.id == task_id).values(**values))
        await db.commit()


def _tasks_total(name: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("hexahub_tasks_total", {"task": name, "outcome": outcome})
    return value or 0.0


# --- one task through each carrier ---------------------------------------------------------


async def test_task_runs_in_process(queues: QueueFactory) -> None:
    queue = queues()
    await queue.start(consume=True)
    task_id = await queue.enqueue(ECHO, {"n": 1})

    row = await queue.wait_for(task_id, timeout=15)

    assert row.status == "succeeded", row.last_error
    assert row.attempts == 1
    assert row.result == {"echo": {"n": 1}, "attempt": 1}
    assert row.finished_at is not None
    assert row.locked_until is None
    assert row.last_error is None
    assert queue.state["ran"] == [(task_id, 1)]


# Broker fixtures give (broker URL, namespace unique to this test); the namespace's streams
# are deleted afterwards so runs sharing the servers never see each other's messages. Ask
# for them before `queues`, so that the queues stop before their streams are deleted.


@pytest.fixture
async def redis_broker() -> AsyncIterator[tuple[str, str]]:
    if not REDIS_URL:
        pytest.skip(REDIS_SKIP)
    namespace = f"hexahub-test-{uuid.uuid4().hex[:12]}"
    yield REDIS_URL, namespace
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{namespace}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def nats_broker() -> AsyncIterator[tuple[str, str]]:
    if not NATS_URL:
        pytest.skip(NATS_SKIP)
    namespace = f"hexahub-test-{uuid.uuid4().hex[:12]}"
    yield NATS_URL, namespace
    import nats
    from nats.js.errors import NotFoundError

    connection = await nats.connect(NATS_URL)
    try:
        with contextlib.suppress(NotFoundError):
            await connection.jetstream().delete_stream(f"{namespace}-tasks")
    finally:
        await connection.close()


@pytest.fixture(params=["redis", "nats"])
def broker(request: pytest.FixtureRequest) -> tuple[str, str]:
    value: tuple[str, str] = request.getfixturevalue(f"{request.param}_broker")
    return value


async def test_task_runs_on_a_separate_worker_over_a_broker(
    broker: tuple[str, str], queues: QueueFactory
) -> None:
    url, namespace = broker
    server = queues(TaskiqCarrier(url, namespace=namespace))
    worker = queues(TaskiqCarrier(url, namespace=namespace))
    await server.start(consume=False)
    await server.carrier.ping()

    # Sent while no worker listens: the broker keeps it for the worker that starts later.
    early = await server.enqueue(ECHO, {"n": 1})
    await worker.start(consume=True)
    late = await server.enqueue(ECHO, {"n": 2})

    for task_id, n in ((early, 1), (late, 2)):
        row = await server.wait_for(task_id, timeout=30)
        assert row.status == "succeeded", row.last_error
        assert row.attempts == 1
        assert row.result == {"echo": {"n": n}, "attempt": 1}
    assert sorted(worker.state["ran"]) == sorted([(early, 1), (late, 1)])
    assert "ran" not in server.state  # the server only hands work on


async def test_failures_on_a_broker_worker_are_retried(
    broker: tuple[str, str], queues: QueueFactory
) -> None:
    url, namespace = broker
    server = queues(TaskiqCarrier(url, namespace=namespace))
    worker = queues(TaskiqCarrier(url, namespace=namespace))
    await worker.start(consume=True)
    await server.start(consume=False)

    task_id = await server.enqueue(FLAKY, {"succeed_on": 2})

    row = await server.wait_for(task_id, timeout=30)
    assert row.status == "succeeded", row.last_error
    assert row.attempts == 2
    assert [run["attempt"] for run in worker.state["flaky"]] == [1, 2]


async def test_worker_recovers_when_redis_loses_its_stream(
    redis_broker: tuple[str, str], queues: QueueFactory
) -> None:
    url, namespace = redis_broker
    server = queues(TaskiqCarrier(url, namespace=namespace))
    worker = queues(TaskiqCarrier(url, namespace=namespace))
    await server.start(consume=False)
    await worker.start(consume=True)
    first = await server.enqueue(ECHO, {"n": 1})
    assert (await server.wait_for(first, timeout=30)).status == "succeeded"

    # What a Redis restarted without persistence looks like: stream and group are gone.
    # The worker's reads now fail with NOGROUP until it declares its group again.
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        assert await client.delete(f"{namespace}:tasks") == 1
    finally:
        await client.aclose()
    second = await server.enqueue(ECHO, {"n": 2})

    row = await server.wait_for(second, timeout=30)
    assert row.status == "succeeded", row.last_error
    # ...and the worker still stops promptly.
    await asyncio.wait_for(worker.stop(), timeout=15)


def test_carriers_are_chosen_by_settings() -> None:
    assert isinstance(make_carrier("inprocess", ""), InProcessCarrier)
    redis = make_carrier("broker", "redis://127.0.0.1:6379/0", namespace="x")
    nats = make_carrier("broker", "nats://127.0.0.1:4222", namespace="x")
    assert isinstance(redis, TaskiqCarrier) and redis.name == "redis"
    assert isinstance(nats, TaskiqCarrier) and nats.name == "nats"


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "nats://127.0.0.1:1"])
async def test_opening_an_unreachable_broker_fails_clearly(url: str) -> None:
    carrier = TaskiqCarrier(url, namespace="unreachable", open_timeout=1.0)
    with pytest.raises(Exception, match=r"(?i)connect|could not reach"):
        await asyncio.wait_for(carrier.open(), timeout=15)
    await carrier.close()


async def test_broker_ping_fails_when_unreachable() -> None:
    # Port 1 has no Redis; a NATS carrier that was never opened is not connected.
    with pytest.raises(Exception, match=r"(?i)connect|refused"):
        await TaskiqCarrier("redis://127.0.0.1:1/0").ping()
    with pytest.raises(ConnectionError, match="not connected to NATS"):
        await TaskiqCarrier("nats://127.0.0.1:1").ping()


# --- retries, dead letters -----------------------------------------------------------------


def test_retry_delay_doubles_is_jittered_and_capped() -> None:
    policy = RetryPolicy(base_seconds=2.0, max_seconds=10.0)
    for attempt, full in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (30, 10.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0.8 * full <= delay <= full for delay in delays), (attempt, delays[:5])


async def test_failing_task_is_retried_with_growing_backoff(queues: QueueFactory) -> None:
    policy = RetryPolicy(max_attempts=5, base_seconds=0.1, max_seconds=1.0)
    queue = queues(policy=policy)
    retried_before = _tasks_total(FLAKY, "retried")
    await queue.start(consume=True)

    task_id = await queue.enqueue(FLAKY, {"succeed_on": 3})

    row = await queue.wait_for(task_id, timeout=20)
    assert row.status == "succeeded", row.last_error
    assert row.attempts == 3
    assert row.result == "ok"
    assert row.last_error is None
    runs = queue.state["flaky"]
    assert [run["attempt"] for run in runs] == [1, 2, 3]
    gaps = []
    for failed_attempt in (1, 2):
        before, after = runs[failed_attempt - 1], runs[failed_attempt]
        gap = after["run_after"] - before["failed"]
        # The jittered delay is at least 80 % of base * 2^(attempt - 1).
        assert gap >= timedelta(seconds=0.8 * policy.base_seconds * 2 ** (failed_attempt - 1))
        # ...and no attempt starts before its run_after.
        assert after["started"] >= after["run_after"]
        gaps.append(gap)
    assert gaps[1] > gaps[0]
    assert _tasks_total(FLAKY, "retried") - retried_before == 2


async def test_task_is_dead_lettered_after_its_attempts_and_can_be_retried(
    queues: QueueFactory,
) -> None:
    queue = queues(policy=RetryPolicy(max_attempts=2, base_seconds=0.01, max_seconds=0.05))
    await queue.start(consume=True)
    message = f"disk on fire {uuid.uuid4().hex}"

    task_id = await queue.enqueue(FAILING, {"message": message})

    row = await queue.wait_for(task_id, timeout=20)
    assert row.status == "dead"
    assert row.attempts == 2
    assert row.last_error is not None
    assert message in row.last_error
    assert "ValueError" in row.last_error
    assert row.finished_at is not None
    assert row.locked_until is None
    assert (await queue.counts())["dead"] == 1
    assert [dead.id for dead in await queue.list(status="dead")] == [task_id]

    queue.state["healed"] = True
    await queue.retry_dead(task_id)
    row = await queue.wait_for(task_id, timeout=20)
    assert row.status == "succeeded", row.last_error
    assert row.attempts == 1  # a fresh set of attempts
    assert row.result == "healed"
    assert (await queue.counts())["dead"] == 0


async def test_retry_dead_refuses_tasks_that_are_not_dead(queues: QueueFactory) -> None:
    queue = queues()
    await queue.start(consume=True)
    task_id = await queue.enqueue(ECHO)
    assert (await queue.wait_for(task_id, timeout=15)).status == "succeeded"

    with pytest.raises(Conflict, match="not in the dead-letter list"):
        await queue.retry_dead(task_id)
    with pytest.raises(NotFound):
        await queue.retry_dead(str(uuid.uuid4()))
    assert (await queue.get(task_id)).status == "succeeded"


async def test_max_attempts_come_from_enqueue_then_task_then_policy(
    queues: QueueFactory,
) -> None:
    queue = queues(policy=RetryPolicy(max_attempts=4, base_seconds=0.01, max_seconds=0.02))
    await queue.start(consume=True)
    by_task = await queue.enqueue(FRAGILE)
    by_enqueue = await queue.enqueue(FRAGILE, max_attempts=2)
    by_policy = await queue.enqueue(FAILING, {"message": "no"})

    for task_id, attempts in ((by_task, 1), (by_enqueue, 2), (by_policy, 4)):
        row = await queue.wait_for(task_id, timeout=20)
        assert (row.status, row.attempts, row.max_attempts) == ("dead", attempts, attempts)


async def test_unknown_task_name_is_refused_and_nothing_is_stored(queues: QueueFactory) -> None:
    carrier = RecordingCarrier()
    queue = queues(carrier)

    with pytest.raises(ValidationFailed, match="no task is registered"):
        await queue.enqueue("tests.core.queue.no-such-task", {"x": 1})

    assert await queue.counts() == dict.fromkeys(TASK_STATUSES, 0)
    assert carrier.sent == []


async def test_task_without_a_handler_in_this_process_is_dead_lettered(
    queues: QueueFactory,
) -> None:
    queue = queues()
    async with queue.sessions() as db:
        row = Task(name="tests.core.queue.removed-in-this-version", status="queued")
        db.add(row)
        await db.commit()

    await queue.run_task(row.id)

    stored = await queue.get(row.id)
    assert stored.status == "dead"
    assert stored.attempts == 1
    assert "no handler is registered" in (stored.last_error or "")


async def test_delayed_task_waits_for_its_run_after(queues: QueueFactory) -> None:
    queue = queues()
    await queue.start(consume=True)

    before = utcnow()
    task_id = await queue.enqueue(ECHO, {"later": True}, delay_seconds=0.3)

    pending = await queue.get(task_id)
    assert pending.status == "pending"
    assert pending.sent_at is None
    assert pending.run_after - before >= timedelta(seconds=0.3)
    row = await queue.wait_for(task_id, timeout=15)
    assert row.status == "succeeded"
    assert row.finished_at is not None and row.finished_at >= row.run_after


# --- recovery ------------------------------------------------------------------------------


async def test_task_of_a_crashed_runner_is_run_again_by_sweep(queues: QueueFactory) -> None:
    crashed = queues()  # never started: its in-process ids die with it
    task_id = await crashed.enqueue(ECHO, {"n": 7})
    # What a worker that died mid-task leaves behind: running, with its lock run out.
    await _edit(
        crashed,
        task_id,
        status="running",
        attempts=1,
        locked_until=utcnow() - timedelta(seconds=1),
    )

    survivor = queues()
    await survivor.start(consume=True)

    row = await survivor.wait_for(task_id, timeout=15)
    assert row.status == "succeeded", row.last_error
    assert row.attempts == 2  # the crashed attempt counts
    assert survivor.state["ran"] == [(task_id, 2)]


async def test_crashed_runner_on_the_last_attempt_dead_letters_the_task(
    queues: QueueFactory,
) -> None:
    queue = queues(RecordingCarrier())
    task_id = await queue.enqueue(ECHO, max_attempts=1)
    await _edit(
        queue,
        task_id,
        status="running",
        attempts=1,
        locked_until=utcnow() - timedelta(seconds=1),
    )

    await queue.sweep()

    row = await queue.get(task_id)
    assert row.status == "dead"
    assert row.last_error == "the runner stopped before finishing"


async def test_sweep_leaves_a_task_with_a_live_lock_alone(queues: QueueFactory) -> None:
    carrier = RecordingCarrier()
    queue = queues(carrier)
    task_id = await queue.enqueue(ECHO)
    await _edit(
        queue,
        task_id,
        status="running",
        attempts=1,
        locked_until=utcnow() + timedelta(minutes=5),
    )

    assert await queue.sweep() == 0

    row = await queue.get(task_id)
    assert (row.status, row.attempts) == ("running", 1)
    assert carrier.sent == [task_id]  # only the send from enqueue


async def test_queued_task_lost_with_the_in_process_carrier_is_resent_on_start(
    queues: QueueFactory,
) -> None:
    before_crash = queues()  # its carrier holds the id, and nobody ever consumes it
    task_id = await before_crash.enqueue(ECHO, {"n": 3})
    assert (await before_crash.get(task_id)).status == "queued"

    # sent_at is recent, so only the start-up re-send (not the stale re-send) can find it.
    restarted = queues()
    await restarted.start(consume=True)

    row = await restarted.wait_for(task_id, timeout=15)
    assert row.status == "succeeded", row.last_error
    assert restarted.state["ran"] == [(task_id, 1)]


async def test_sweep_sends_due_and_stale_tasks_once_each(queues: QueueFactory) -> None:
    carrier = RecordingCarrier()
    queue = queues(carrier, resend_after=60)
    fresh = await queue.enqueue(ECHO)
    stale = await queue.enqueue(ECHO)
    due = await queue.enqueue(ECHO, delay_seconds=60)
    later = await queue.enqueue(ECHO, delay_seconds=60)
    await _edit(queue, stale, sent_at=utcnow() - timedelta(seconds=120))
    await _edit(queue, due, run_after=utcnow() - timedelta(seconds=1))
    carrier.sent.clear()

    assert await queue.sweep() == 2
    assert sorted(carrier.sent) == sorted([stale, due])
    assert (await queue.get(due)).status == "queued"
    assert (await queue.get(later)).status == "pending"
    assert await queue.sweep() == 0  # sent_at was refreshed

    carrier.sent.clear()
    await _edit(queue, later, run_after=utcnow() - timedelta(seconds=1))
    # At start-up of an in-process queue every queued id goes again, each exactly once.
    assert await queue.sweep(resend_all_queued=True) == 4
    assert sorted(carrier.sent) == sorted([fresh, stale, due, later])


async def test_task_whose_send_failed_is_sent_by_the_next_sweep(queues: QueueFactory) -> None:
    carrier = RecordingCarrier(failures=1)
    queue = queues(carrier)

    task_id = await queue.enqueue(ECHO)  # the broker is down: the row stays queued

    assert (await queue.get(task_id)).status == "queued"
    assert carrier.sent == []
    assert await queue.sweep() == 1
    assert carrier.sent == [task_id]


# --- claiming, timeouts, shutdown ----------------------------------------------------------


async def test_a_task_is_claimed_by_exactly_one_runner(queues: QueueFactory) -> None:
    runners = 8
    # Hold every runner at its claiming UPDATE until all of them have read the row as
    # queued, so the claim itself (not luck in timing) has to pick the one winner.
    barrier = asyncio.Barrier(runners)

    class ClaimTogether(AsyncSession):
        async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
            if (
                isinstance(statement, Update)
                and statement.compile().params.get("status") == "running"
            ):
                await asyncio.wait_for(barrier.wait(), timeout=15)
            return await super().execute(statement, *args, **kwargs)

    # Two processes, each with its own connections.
    first, second = queues(session_class=ClaimTogether), queues(session_class=ClaimTogether)
    task_id = await first.enqueue(ECHO)

    await asyncio.gather(*(queue.run_task(task_id) for queue in (first, second) * (runners // 2)))

    runs = first.state.get("ran", []) + second.state.get("ran", [])
    assert runs == [(task_id, 1)]
    row = await first.get(task_id)
    assert (row.status, row.attempts) == ("succeeded", 1)


async def test_a_task_exceeding_its_timeout_is_failed(queues: QueueFactory) -> None:
    queue = queues()
    await queue.start(consume=True)

    task_id = await queue.enqueue(HANGS)

    row = await queue.wait_for(task_id, timeout=15)
    assert row.status == "dead"
    assert row.last_error is not None and "timed out after 0.2 s" in row.last_error
    assert queue.state["hang_cancelled"] is True


async def test_stopping_mid_task_gives_the_attempt_back(queues: QueueFactory) -> None:
    first = queues(state={"started": asyncio.Event(), "release": asyncio.Event()})
    await first.start(consume=True)
    task_id = await first.enqueue(BLOCKS)
    await asyncio.wait_for(first.state["started"].wait(), timeout=15)

    await first.stop()

    row = await first.get(task_id)
    assert (row.status, row.attempts, row.locked_until) == ("pending", 0, None)
    release = asyncio.Event()
    release.set()
    second = queues(state={"started": asyncio.Event(), "release": release})
    await second.start(consume=True)
    row = await second.wait_for(task_id, timeout=15)
    assert (row.status, row.attempts, row.result) == ("succeeded", 1, "released")
    assert second.state["attempts_seen"] == [1]


# --- reading -------------------------------------------------------------------------------


async def test_reading_tasks(queues: QueueFactory) -> None:
    queue = queues(RecordingCarrier())
    first = await queue.enqueue(ECHO)
    second = await queue.enqueue(ECHO, delay_seconds=60)

    assert await queue.counts() == {**dict.fromkeys(TASK_STATUSES, 0), "queued": 1, "pending": 1}
    assert {row.id for row in await queue.list()} == {first, second}
    assert [row.id for row in await queue.list(status="pending")] == [second]
    with pytest.raises(ValidationFailed, match="status must be one of"):
        await queue.list(status="bogus")
    with pytest.raises(NotFound):
        await queue.get(str(uuid.uuid4()))
    with pytest.raises(TimeoutError, match="still pending"):
        await queue.wait_for(second, timeout=0.05)
