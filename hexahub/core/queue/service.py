"""The task queue: enqueue work, run it with retries, keep failures in a dead-letter list.

The database row is the truth about a task; the carrier only moves its id. Every state
change is a conditional UPDATE (`... WHERE status = <expected>`), so any number of server
and worker processes can sweep and run at the same time: a task is claimed by exactly one
runner, and sending an id twice is harmless.

Lifecycle: pending --(due)--> queued --(claimed)--> running --> succeeded
                                                          \\--> pending (retry, backoff)
                                                          \\--> dead (attempts used up)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hexahub.core.db import utcnow
from hexahub.core.errors import Conflict, NotFound, ValidationFailed
from hexahub.core.metrics import TASK_DURATION, TASKS
from hexahub.core.queue.carriers import Carrier
from hexahub.core.queue.models import TASK_STATUSES, Task
from hexahub.core.queue.registry import get_definition

log = logging.getLogger("hexahub.queue")

MAX_ERROR_CHARS = 8000


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_seconds: float = 2.0
    max_seconds: float = 300.0
    timeout_seconds: float = 3600.0

    def delay(self, attempt: int) -> float:
        """Delay before the attempt after `attempt` (1-based): doubling, capped, jittered."""
        raw = min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))
        return raw * random.uniform(0.8, 1.0)


@dataclass
class TaskContext:
    """What a running task's handler gets beside its payload."""

    task_id: str
    name: str
    attempt: int
    queue: TaskQueue
    state: dict[str, Any] = field(default_factory=dict)


class TaskQueue:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        carrier: Carrier,
        *,
        policy: RetryPolicy | None = None,
        concurrency: int = 4,
        sweep_interval: float = 1.0,
        resend_after: float = 300.0,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.sessions = sessions
        self.carrier = carrier
        self.policy = policy or RetryPolicy()
        self.concurrency = concurrency
        self.sweep_interval = sweep_interval
        self.resend_after = resend_after
        # Shared objects handlers may need (the runtime puts the database etc. here).
        self.state = state if state is not None else {}
        self._background: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    # --- producing -------------------------------------------------------------------
    async def enqueue(
        self,
        name: str,
        payload: dict[str, Any] | None = None,
        *,
        delay_seconds: float = 0.0,
        max_attempts: int | None = None,
    ) -> str:
        """Store a task and send it on; returns its id. Unknown task names are refused."""
        definition = get_definition(name)
        if definition is None:
            raise ValidationFailed(f"no task is registered under the name {name!r}")
        attempts = max_attempts or definition.max_attempts or self.policy.max_attempts
        due_now = delay_seconds <= 0
        now = utcnow()
        row = Task(
            name=name,
            payload=payload or {},
            status="queued" if due_now else "pending",
            max_attempts=attempts,
            run_after=now + timedelta(seconds=max(0.0, delay_seconds)),
            sent_at=now if due_now else None,
        )
        async with self.sessions() as db:
            db.add(row)
            await db.commit()
        if due_now and not await self._send(row.id):
            await self._mark_unsent([row.id])
        return row.id

    async def _send(self, task_id: str) -> bool:
        try:
            await self.carrier.send(task_id)
        except Exception as exc:
            log.warning(
                "could not hand task %s to the %s carrier: %s", task_id, self.carrier.name, exc
            )
            return False
        return True

    async def _mark_unsent(self, task_ids: list[str]) -> None:
        """The rows stay queued with no sent_at, so the next sweep sends them again
        (rather than after `resend_after`) once the carrier is back."""
        try:
            async with self.sessions() as db:
                await db.execute(
                    update(Task)
                    .where(Task.id.in_(task_ids), Task.status == "queued")
                    .values(sent_at=None)
                )
                await db.commit()
        except Exception as exc:
            log.warning("could not mark %d unsent task(s): %s", len(task_ids), exc)

    # --- running ---------------------------------------------------------------------
    async def run_task(self, task_id: str) -> None:
        """Claim and run one task. Does nothing if another runner has it or it is done."""
        definition_timeout = self.policy.timeout_seconds
        async with self.sessions() as db:
            row = await db.get(Task, task_id)
            if row is None or row.status != "queued":
                return
            definition = get_definition(row.name)
            if definition is not None and definition.timeout_seconds:
                definition_timeout = definition.timeout_seconds
            now = utcnow()
            claimed = await db.execute(
                update(Task)
                .where(Task.id == task_id, Task.status == "queued")
                .values(
                    status="running",
                    attempts=Task.attempts + 1,
                    locked_until=now + timedelta(seconds=definition_timeout + 30),
                    updated_at=now,
                )
            )
            await db.commit()
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return
            await db.refresh(row)
            name, payload, attempt, max_attempts = (
                row.name,
                dict(row.payload),
                row.attempts,
                row.max_attempts,
            )

        started = time.perf_counter()
        if definition is None:
            await self._fail(
                task_id,
                name,
                attempt,
                max_attempts,
                f"no handler is registered for task {name!r} in this process",
                retry=False,
            )
            return
        context = TaskContext(task_id, name, attempt, self, self.state)
        try:
            result = await asyncio.wait_for(
                definition.handler(context, payload), timeout=definition_timeout
            )
        except asyncio.CancelledError:
            # Shutting down mid-task: give the attempt back so the task runs again.
            await self._release(task_id)
            raise
        except TimeoutError:
            await self._fail(
                task_id, name, attempt, max_attempts, f"timed out after {definition_timeout:g} s"
            )
        except Exception as exc:
            detail = "".join(traceback.format_exception(exc))[-MAX_ERROR_CHARS:]
            await self._fail(task_id, name, attempt, max_attempts, detail)
        else:
            await self._succeed(task_id, name, result)
        finally:
            TASK_DURATION.labels(name).observe(time.perf_counter() - started)

    async def _succeed(self, task_id: str, name: str, result: Any) -> None:
        async with self.sessions() as db:
            await db.execute(
                update(Task)
                .where(Task.id == task_id, Task.status == "running")
                .values(
                    status="succeeded",
                    result=_jsonable(result),
                    finished_at=utcnow(),
                    locked_until=None,
                    last_error=None,
                    updated_at=utcnow(),
                )
            )
            await db.commit()
        TASKS.labels(name, "succeeded").inc()

    async def _fail(
        self,
        task_id: str,
        name: str,
        attempt: int,
        max_attempts: int,
        error: str,
        *,
        retry: bool = True,
    ) -> None:
        now = utcnow()
        if retry and attempt < max_attempts:
            values: dict[str, Any] = {
                "status": "pending",
                "run_after": now + timedelta(seconds=self.policy.delay(attempt)),
                "sent_at": None,
            }
            outcome = "retried"
            log.warning(
                "task %s (%s) failed attempt %d of %d; retrying",
                task_id,
                name,
                attempt,
                max_attempts,
            )
        else:
            values = {"status": "dead", "finished_at": now}
            outcome = "dead"
            log.error(
                "task %s (%s) moved to the dead-letter list after %d attempts: %s",
                task_id,
                name,
                attempt,
                error.strip().splitlines()[-1] if error else "",
            )
        async with self.sessions() as db:
            await db.execute(
                update(Task)
                .where(Task.id == task_id, Task.status == "running")
                .values(last_error=error, locked_until=None, updated_at=now, **values)
            )
            await db.commit()
        TASKS.labels(name, outcome).inc()

    async def _release(self, task_id: str) -> None:
        with contextlib.suppress(Exception):
            async with self.sessions() as db:
                await db.execute(
                    update(Task)
                    .where(Task.id == task_id, Task.status == "running")
                    .values(
                        status="pending",
                        attempts=Task.attempts - 1,
                        run_after=utcnow(),
                        sent_at=None,
                        locked_until=None,
                        updated_at=utcnow(),
                    )
                )
                await db.commit()

    # --- sweeping ----------------------------------------------------------------------
    async def sweep(self, *, resend_all_queued: bool = False) -> int:
        """Send due tasks, recover abandoned ones; returns how many ids were sent."""
        now = utcnow()
        sent = 0
        async with self.sessions() as db:
            # Runners that died mid-task: retry, or dead-letter when attempts are used up.
            await db.execute(
                update(Task)
                .where(
                    Task.status == "running",
                    Task.locked_until < now,
                    Task.attempts < Task.max_attempts,
                )
                .values(
                    status="pending",
                    run_after=now,
                    locked_until=None,
                    sent_at=None,
                    last_error="the runner stopped before finishing",
                    updated_at=now,
                )
            )
            await db.execute(
                update(Task)
                .where(
                    Task.status == "running",
                    Task.locked_until < now,
                    Task.attempts >= Task.max_attempts,
                )
                .values(
                    status="dead",
                    locked_until=None,
                    finished_at=now,
                    last_error="the runner stopped before finishing",
                    updated_at=now,
                )
            )
            await db.commit()

            due = (
                await db.scalars(
                    select(Task.id)
                    .where(Task.status == "pending", Task.run_after <= now)
                    .order_by(Task.run_after, Task.id)
                    .limit(500)
                )
            ).all()
            to_send: list[str] = []
            for task_id in due:
                moved = await db.execute(
                    update(Task)
                    .where(Task.id == task_id, Task.status == "pending")
                    .values(status="queued", sent_at=now, updated_at=now)
                )
                if moved.rowcount == 1:  # type: ignore[attr-defined]
                    to_send.append(task_id)
            stale_before = now - timedelta(seconds=self.resend_after)
            stale_filter = Task.status == "queued"
            if not resend_all_queued:
                stale_filter = and_(
                    stale_filter, or_(Task.sent_at.is_(None), Task.sent_at < stale_before)
                )
            stale = (await db.scalars(select(Task.id).where(stale_filter).limit(500))).all()
            if stale:
                await db.execute(update(Task).where(Task.id.in_(stale)).values(sent_at=now))
            await db.commit()
        # A due task just moved to queued is also in `stale` when every queued id goes.
        sending = list(dict.fromkeys([*to_send, *stale]))
        for index, task_id in enumerate(sending):
            if not await self._send(task_id):
                # The carrier is down: stop rather than wait out a timeout per id.
                await self._mark_unsent(sending[index:])
                break
            sent += 1
        return sent

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("queue sweep failed: %s", exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.sweep_interval)

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self, *, consume: bool) -> None:
        """Connect the carrier, re-send unfinished work, and (if `consume`) run tasks."""
        await self.carrier.open()
        # In-process ids did not survive the last stop, so every queued task goes again.
        await self.sweep(resend_all_queued=self.carrier.name == "inprocess" and consume)
        self._background.append(asyncio.create_task(self._sweep_forever()))
        if consume:
            self._background.append(
                asyncio.create_task(self.carrier.consume(self.run_task, self.concurrency))
            )

    async def stop(self) -> None:
        for job in self._background:
            job.cancel()
        for job in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job
        self._background.clear()
        await self.carrier.close()

    # --- reading and managing ----------------------------------------------------------
    async def get(self, task_id: str) -> Task:
        async with self.sessions() as db:
            row = await db.get(Task, task_id)
        if row is None:
            raise NotFound(f"no task with id {task_id}")
        return row

    async def list(self, *, status: str | None = None, limit: int = 50) -> list[Task]:
        if status is not None and status not in TASK_STATUSES:
            raise ValidationFailed(f"status must be one of {', '.join(TASK_STATUSES)}")
        query = select(Task).order_by(Task.created_at.desc()).limit(max(1, min(limit, 1000)))
        if status:
            query = query.where(Task.status == status)
        async with self.sessions() as db:
            return list((await db.scalars(query)).all())

    async def counts(self) -> dict[str, int]:
        from sqlalchemy import func

        async with self.sessions() as db:
            rows = await db.execute(select(Task.status, func.count()).group_by(Task.status))
            found = {status: int(count) for status, count in rows.all()}
        return {status: found.get(status, 0) for status in TASK_STATUSES}

    async def retry_dead(self, task_id: str) -> None:
        """Give a dead-lettered task a fresh set of attempts."""
        async with self.sessions() as db:
            moved = await db.execute(
                update(Task)
                .where(Task.id == task_id, Task.status == "dead")
                .values(
                    status="pending",
                    attempts=0,
                    run_after=utcnow(),
                    finished_at=None,
                    sent_at=None,
                    updated_at=utcnow(),
                )
            )
            await db.commit()
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            await self.get(task_id)  # raises NotFound when missing
            raise Conflict(f"task {task_id} is not in the dead-letter list")
        self._wake.set()

    async def wait_for(self, task_id: str, *, timeout: float = 30.0) -> Task:  # noqa: ASYNC109
        """Wait until a task has succeeded or is dead (for the CLI and tests)."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            row = await self.get(task_id)
            if row.status in ("succeeded", "dead"):
                return row
            if time.monotonic() >= deadline:
                raise TimeoutError(f"task {task_id} is still {row.status} after {timeout:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)
