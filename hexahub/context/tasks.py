"""Background work of the code context: indexing and embedding (see service.py)."""

from __future__ import annotations

from typing import Any

from hexahub.context import service
from hexahub.core.queue import TaskContext, task
from hexahub.core.runtime import Runtime


def _runtime(ctx: TaskContext) -> Runtime:
    runtime: Runtime = ctx.queue.state["runtime"]
    return runtime


@task("context.index", max_attempts=3, timeout_seconds=3 * 3600)
async def index_repository(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Read a repository's tree into the index (changed files only)."""
    report = await service.run_index(
        _runtime(ctx), str(payload["repo_id"]), full=bool(payload.get("full"))
    )
    if report is None:
        return {"indexed": False}
    return {
        "indexed": True,
        "seen": report.seen,
        "changed": report.changed,
        "removed": report.removed,
        "skipped": report.skipped,
        "chunks": report.chunks,
        "seconds": round(report.seconds, 2),
    }


@task("context.embed", max_attempts=5, timeout_seconds=service.EMBED_SLICE_SECONDS * 2)
async def embed_repository(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Fill in the vectors of a repository's chunks, a slice at a time."""
    return {"embedded": await service.run_embed(_runtime(ctx), str(payload["repo_id"]))}
