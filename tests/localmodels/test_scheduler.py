"""The fair, bounded queue in front of each local model."""

from __future__ import annotations

import threading

import pytest

from hexahub.localmodels.scheduler import FairQueue, QueueFull


def test_round_robin_between_callers() -> None:
    queue: FairQueue[str] = FairQueue(16, per_caller=8)
    for item in ("a1", "a2", "a3"):
        queue.put("alice", item)
    queue.put("bob", "b1")
    queue.put("carol", "c1")
    queue.put("bob", "b2")
    taken = [queue.take(0) for _ in range(6)]
    assert taken == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert queue.take(0) is None


def test_a_newcomer_is_not_queued_behind_a_busy_caller() -> None:
    queue: FairQueue[str] = FairQueue(16, per_caller=8)
    for i in range(5):
        queue.put("batch-job", f"x{i}")
    assert queue.take(0) == "x0"
    queue.put("person", "p1")
    assert [queue.take(0) for _ in range(2)] == ["x1", "p1"]


def test_bounded_in_all_and_per_caller() -> None:
    queue: FairQueue[int] = FairQueue(4)
    assert queue.per_caller == 2
    queue.put("a", 1)
    queue.put("a", 2)
    with pytest.raises(QueueFull) as mine:
        queue.put("a", 3)
    assert mine.value.per_caller
    queue.put("b", 4)
    queue.put("c", 5)
    with pytest.raises(QueueFull) as everyone:
        queue.put("d", 6)
    assert not everyone.value.per_caller
    assert queue.take(0) == 1
    queue.put("d", 6)  # a place came free


def test_discard_frees_the_place_and_keeps_order() -> None:
    queue: FairQueue[str] = FairQueue(2, per_caller=2)
    queue.put("a", "one")
    queue.put("a", "two")
    assert queue.discard("one")
    assert not queue.discard("one")
    queue.put("b", "three")
    assert [queue.take(0), queue.take(0)] == ["two", "three"]


def test_batching_takes_more_in_fair_order_while_accepted() -> None:
    queue: FairQueue[int] = FairQueue(16, per_caller=8)
    for caller, size in (("a", 3), ("b", 2), ("a", 4), ("c", 9)):
        queue.put(caller, size)
    budget = [8]

    def fits(size: int) -> bool:
        if size > budget[0]:
            return False
        budget[0] -= size
        return True

    # a's 3, then b's 2 (a goes to the back), then c's 9 does not fit: the batch ends there.
    assert queue.take_more(10, fits) == [3, 2]
    assert len(queue) == 2


def test_take_waits_for_work_and_close_wakes_it() -> None:
    queue: FairQueue[str] = FairQueue(4)
    got: list[str | None] = []
    taker = threading.Thread(target=lambda: got.append(queue.take(None)))
    taker.start()
    queue.put("a", "job")
    taker.join(5)
    assert got == ["job"]

    waiter = threading.Thread(target=lambda: got.append(queue.take(None)))
    waiter.start()
    queue.put("a", "left behind")
    waiter.join(5)
    assert got[-1] == "left behind"
    waiter = threading.Thread(target=lambda: got.append(queue.take(None)))
    waiter.start()
    assert queue.close() == []
    waiter.join(5)
    assert got[-1] is None
    with pytest.raises(QueueFull):
        queue.put("a", "too late")
