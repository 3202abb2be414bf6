"""Background work: see service.py for the lifecycle, carriers.py for transports."""

from hexahub.core.queue.carriers import Carrier, InProcessCarrier, TaskiqCarrier, make_carrier
from hexahub.core.queue.registry import task
from hexahub.core.queue.service import RetryPolicy, TaskContext, TaskQueue

__all__ = [
    "Carrier",
    "InProcessCarrier",
    "RetryPolicy",
    "TaskContext",
    "TaskQueue",
    "TaskiqCarrier",
    "make_carrier",
    "task",
]
