"""Built-in background tasks."""

from __future__ import annotations

from typing import Any

from hexahub.core.queue import TaskContext, task


@task("hexahub.echo", max_attempts=1, timeout_seconds=30)
async def echo(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Return the payload: `hexahub doctor` and operators use it to see a worker answer."""
    return {"echo": payload, "attempt": ctx.attempt}
