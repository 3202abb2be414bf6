"""The queue in front of one loaded model: bounded, and fair between callers.

Each caller (an API key, else a user; see `caller_var` in the provider protocol) has its own
lane. The worker takes from the lanes round-robin: with caller A's three requests and
caller B's one waiting, the order is A, B, A, A; a caller that arrives later goes to the
back of the rotation, not behind everything A queued. Admission is bounded twice: in all
(`capacity`, else 503 "busy") and per caller (half the capacity, else 429), so one client
cannot fill the queue and lock everyone else out. Thread-safe: asyncio code puts, the
model's worker thread takes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """No room for another request; `per_caller` says whether this caller hit its share."""

    def __init__(self, message: str, *, per_caller: bool) -> None:
        super().__init__(message)
        self.per_caller = per_caller


class FairQueue(Generic[T]):
    def __init__(self, capacity: int, *, per_caller: int | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.per_caller = per_caller if per_caller is not None else max(1, capacity // 2)
        self._lanes: OrderedDict[str, deque[T]] = OrderedDict()
        self._size = 0
        self._closed = False
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return self._size

    def put(self, caller: str, item: T) -> None:
        with self._cond:
            if self._closed:
                raise QueueFull("the model is being unloaded", per_caller=False)
            if self._size >= self.capacity:
                raise QueueFull(
                    f"{self._size} requests are already waiting (the limit is {self.capacity})",
                    per_caller=False,
                )
            lane = self._lanes.get(caller)
            if lane is not None and len(lane) >= self.per_caller:
                raise QueueFull(
                    f"you have {len(lane)} requests waiting for this model already (the "
                    f"limit per caller is {self.per_caller})",
                    per_caller=True,
                )
            if lane is None:
                lane = self._lanes[caller] = deque()
            lane.append(item)
            self._size += 1
            self._cond.notify()

    def take(self, timeout: float | None) -> T | None:
        """The next item in round-robin order; None when `timeout` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._size == 0:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._pop()

    def take_more(self, limit: int, accept: Callable[[T], bool]) -> list[T]:
        """Without waiting, up to `limit` further items in round-robin order, while `accept`
        says yes (used to batch embedding requests)."""
        taken: list[T] = []
        with self._cond:
            while self._size and len(taken) < limit:
                lane = next(iter(self._lanes.values()))
                if not accept(lane[0]):
                    break
                taken.append(self._pop())
        return taken

    def _pop(self) -> T:
        caller, lane = next(iter(self._lanes.items()))
        item = lane.popleft()
        self._size -= 1
        if lane:
            self._lanes.move_to_end(caller)
        else:
            del self._lanes[caller]
        return item

    def discard(self, item: T) -> bool:
        """Take a waiting item out (its client went away); False when it already left."""
        with self._cond:
            for caller, lane in self._lanes.items():
                try:
                    lane.remove(item)
                except ValueError:
                    continue
                self._size -= 1
                if not lane:
                    del self._lanes[caller]
                return True
        return False

    def drain(self) -> list[T]:
        """Everything still waiting, in order; the queue is empty afterwards."""
        with self._cond:
            items: list[T] = []
            while self._size:
                items.append(self._pop())
            return items

    def close(self) -> list[T]:
        """Refuse new items, wake a waiting `take` (it returns None) and hand back what
        was still waiting."""
        with self._cond:
            self._closed = True
            items = self.drain()
            self._cond.notify_all()
            return items
