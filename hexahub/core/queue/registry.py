"""Task definitions: a name, an async handler and its retry policy.

Each domain declares its background work in its own `tasks.py` with `@task(...)`; the
definitions are looked up by name when a runner picks up a task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hexahub.core.queue.service import TaskContext

Handler = Callable[["TaskContext", dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class TaskDefinition:
    name: str
    handler: Handler
    max_attempts: int | None = None
    timeout_seconds: float | None = None


_DEFINITIONS: dict[str, TaskDefinition] = {}


def task(
    name: str, *, max_attempts: int | None = None, timeout_seconds: float | None = None
) -> Callable[[Handler], Handler]:
    """Register an async function `handler(ctx, payload)` as the task `name`."""

    def register(handler: Handler) -> Handler:
        existing = _DEFINITIONS.get(name)
        if existing is not None and existing.handler is not handler:
            raise ValueError(f"task {name!r} is already registered by {existing.handler!r}")
        _DEFINITIONS[name] = TaskDefinition(name, handler, max_attempts, timeout_seconds)
        return handler

    return register


def get_definition(name: str) -> TaskDefinition | None:
    return _DEFINITIONS.get(name)


def registered_names() -> list[str]:
    return sorted(_DEFINITIONS)
