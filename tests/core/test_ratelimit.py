"""TokenBucket and WindowCounter pass the same tests in process and on Redis.

Time is a fake clock the test moves: the in-process bucket reads it directly, and the
Redis bucket passes it into its Lua script, so no test waits out real time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from hexahub.core.ratelimit import TokenBucket, WindowCounter
from hexahub.core.shared import InProcessState, RedisState, SharedState
from tests.conftest import REDIS_SKIP, REDIS_URL


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    state: SharedState
    clock: FakeClock

    def bucket(self) -> TokenBucket:
        return TokenBucket(self.state, clock=self.clock)


def test_prefix() -> str:
    return f"hexahub-test:{uuid.uuid4().hex}:"


test_prefix.__test__ = False  # type: ignore[attr-defined]


async def delete_prefix(prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=["inprocess", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "inprocess":
        yield Backend(InProcessState(), FakeClock())
        return
    if not REDIS_URL:
        pytest.skip(REDIS_SKIP)
    prefix = test_prefix()
    state = RedisState(REDIS_URL, prefix=prefix)
    try:
        yield Backend(state, FakeClock())
    finally:
        await state.close()
        await delete_prefix(prefix)


async def test_a_full_bucket_allows_its_burst_then_refuses(backend: Backend) -> None:
    bucket = backend.bucket()
    decisions = [await bucket.take("ip", rate_per_minute=3) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert [d.retry_after for d in decisions[:3]] == [0.0, 0.0, 0.0]
    # 3 a minute: one token every 20 s.
    assert decisions[3].retry_after == pytest.approx(20.0, abs=0.01)


async def test_tokens_come_back_at_the_rate(backend: Backend) -> None:
    bucket = backend.bucket()
    for _ in range(3):
        assert (await bucket.take("ip", rate_per_minute=3)).allowed
    backend.clock.advance(15)
    refused = await bucket.take("ip", rate_per_minute=3)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(5.0, abs=0.01)
    backend.clock.advance(5)
    assert (await bucket.take("ip", rate_per_minute=3)).allowed
    assert not (await bucket.take("ip", rate_per_minute=3)).allowed


async def test_a_refused_take_consumes_nothing(backend: Backend) -> None:
    bucket = backend.bucket()
    assert (await bucket.take("k", rate_per_minute=60, burst=1)).allowed
    for _ in range(5):
        backend.clock.advance(0.1)
        assert not (await bucket.take("k", rate_per_minute=60, burst=1)).allowed
    # 0.5 s passed in refused takes; the other 0.5 s completes the token.
    backend.clock.advance(0.5)
    assert (await bucket.take("k", rate_per_minute=60, burst=1)).allowed


async def test_refill_stops_at_the_burst(backend: Backend) -> None:
    bucket = backend.bucket()
    assert (await bucket.take("k", rate_per_minute=60, burst=5)).remaining == 4
    backend.clock.advance(3600)
    decisions = [await bucket.take("k", rate_per_minute=60, burst=5) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert decisions[-1].retry_after == pytest.approx(1.0, abs=0.01)


async def test_burst_and_rate_are_separate(backend: Backend) -> None:
    bucket = backend.bucket()
    # 60 a minute, but at most 2 at once.
    assert (await bucket.take("k", rate_per_minute=60, burst=2)).allowed
    assert (await bucket.take("k", rate_per_minute=60, burst=2)).allowed
    assert not (await bucket.take("k", rate_per_minute=60, burst=2)).allowed
    backend.clock.advance(1)
    assert (await bucket.take("k", rate_per_minute=60, burst=2)).allowed


async def test_cost_takes_several_tokens_and_waits_for_all_of_them(backend: Backend) -> None:
    bucket = backend.bucket()
    first = await bucket.take("k", rate_per_minute=60, burst=10, cost=7)
    assert first.allowed and first.remaining == 3
    second = await bucket.take("k", rate_per_minute=60, burst=10, cost=7)
    assert not second.allowed and second.remaining == 3
    assert second.retry_after == pytest.approx(4.0, abs=0.01)
    assert (await bucket.take("k", rate_per_minute=60, burst=10, cost=3)).allowed


async def test_keys_are_separate_buckets(backend: Backend) -> None:
    bucket = backend.bucket()
    assert (await bucket.take("a", rate_per_minute=1)).allowed
    assert not (await bucket.take("a", rate_per_minute=1)).allowed
    assert (await bucket.take("b", rate_per_minute=1)).allowed


async def test_a_clock_going_back_neither_refills_nor_drains(backend: Backend) -> None:
    bucket = backend.bucket()
    assert (await bucket.take("k", rate_per_minute=60, burst=2)).remaining == 1
    backend.clock.advance(-30)  # e.g. a replica whose clock is behind
    assert (await bucket.take("k", rate_per_minute=60, burst=2)).allowed  # the token left
    assert not (await bucket.take("k", rate_per_minute=60, burst=2)).allowed
    # Back at the original time plus one second: exactly one token, not 31.
    backend.clock.advance(31)
    assert (await bucket.take("k", rate_per_minute=60, burst=2)).allowed
    assert not (await bucket.take("k", rate_per_minute=60, burst=2)).allowed


async def test_concurrent_takes_allow_exactly_the_burst(backend: Backend) -> None:
    bucket = backend.bucket()
    decisions = await asyncio.gather(*(bucket.take("hot", rate_per_minute=10) for _ in range(100)))
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))


@pytest.mark.parametrize(
    ("rate", "burst", "cost"),
    [(0, None, 1), (-5, None, 1), (10, None, 11), (10, 3, 4), (10, None, 0)],
)
async def test_impossible_requests_are_refused_up_front(
    backend: Backend, rate: int, burst: int | None, cost: int
) -> None:
    with pytest.raises(ValueError):
        await backend.bucket().take("k", rate_per_minute=rate, burst=burst, cost=cost)


async def test_in_process_buckets_that_have_refilled_are_forgotten() -> None:
    clock = FakeClock()
    bucket = TokenBucket(InProcessState(), clock=clock)
    for n in range(2000):
        await bucket.take(f"caller-{n}", rate_per_minute=60)
    clock.advance(2)  # every bucket is full again
    for n in range(2000):
        await bucket.take(f"new-{n}", rate_per_minute=60)
    assert len(bucket._buckets) < 2100


async def test_redis_replicas_share_buckets() -> None:
    if not REDIS_URL:
        pytest.skip(REDIS_SKIP)
    prefix = test_prefix()
    replica_a = RedisState(REDIS_URL, prefix=prefix)
    replica_b = RedisState(REDIS_URL, prefix=prefix)
    clock = FakeClock()
    bucket_a = TokenBucket(replica_a, clock=clock)
    bucket_b = TokenBucket(replica_b, clock=clock)
    try:
        assert (await bucket_a.take("ip", rate_per_minute=3)).remaining == 2
        assert (await bucket_b.take("ip", rate_per_minute=3)).remaining == 1
        assert (await bucket_a.take("ip", rate_per_minute=3)).remaining == 0
        refused = await bucket_b.take("ip", rate_per_minute=3)
        assert not refused.allowed
        assert refused.retry_after == pytest.approx(20.0, abs=0.01)

        both = await asyncio.gather(
            *(b.take("hot", rate_per_minute=20) for b in (bucket_a, bucket_b) * 50)
        )
        assert sum(d.allowed for d in both) == 20
    finally:
        for state in (replica_a, replica_b):
            await state.close()
        await delete_prefix(prefix)


async def test_redis_bucket_expires_once_it_would_be_full_again() -> None:
    if not REDIS_URL:
        pytest.skip(REDIS_SKIP)
    prefix = test_prefix()
    state = RedisState(REDIS_URL, prefix=prefix)
    try:
        bucket = TokenBucket(state, clock=FakeClock())
        await bucket.take("k", rate_per_minute=6, cost=2)  # 2 tokens short: 20 s to refill
        ttl_ms = await state.client.pttl(prefix + "k")
        assert 20_000 < ttl_ms <= 21_000
    finally:
        await state.close()
        await delete_prefix(prefix)


async def test_redis_bucket_without_a_clock_uses_the_server_time() -> None:
    if not REDIS_URL:
        pytest.skip(REDIS_SKIP)
    prefix = test_prefix()
    state = RedisState(REDIS_URL, prefix=prefix)
    try:
        bucket = TokenBucket(state)
        assert (await bucket.take("k", rate_per_minute=1)).allowed
        refused = await bucket.take("k", rate_per_minute=1)
        assert not refused.allowed
        assert 59.0 < refused.retry_after <= 60.0
        stored = await state.client.hget(prefix + "k", "ts")
        assert stored is not None
        stored_ms = float(stored)
        seconds, micros = await state.client.time()
        assert abs(seconds * 1000 + micros / 1000 - stored_ms) < 5_000
    finally:
        await state.close()
        await delete_prefix(prefix)


# --- WindowCounter


async def test_window_counter_counts_within_a_window(backend: Backend) -> None:
    counter = WindowCounter(backend.state, 900, clock=backend.clock)
    backend.clock.now = 900 * 2_000_000 + 100  # 100 s into a window
    assert await counter.count("acct") == (0, 800)
    assert await counter.add("acct") == 1
    assert await counter.add("acct") == 2
    assert await counter.add("other") == 1
    backend.clock.advance(50)
    assert await counter.count("acct") == (2, 750)


async def test_window_counter_starts_again_in_the_next_window(backend: Backend) -> None:
    counter = WindowCounter(backend.state, 60, clock=backend.clock)
    backend.clock.now = 60 * 30_000_000 + 59.5
    await counter.add("acct", 3)
    count, left = await counter.count("acct")
    assert count == 3 and left == pytest.approx(0.5)
    backend.clock.advance(0.5)
    assert await counter.count("acct") == (0, 60)
    assert await counter.add("acct") == 1


async def test_window_counter_reset(backend: Backend) -> None:
    counter = WindowCounter(backend.state, 60, clock=backend.clock)
    await counter.add("acct", 4)
    await counter.add("ip", 4)
    await counter.reset("acct")
    assert (await counter.count("acct"))[0] == 0
    assert (await counter.count("ip"))[0] == 4


async def test_window_counter_keys_expire_after_their_window() -> None:
    if not REDIS_URL:
        pytest.skip(REDIS_SKIP)
    prefix = test_prefix()
    state = RedisState(REDIS_URL, prefix=prefix)
    try:
        clock = FakeClock()
        clock.now = 600 * 3_000_000 + 500  # 100 s left in the window
        await WindowCounter(state, 600, clock=clock).add("acct")
        ttl_ms = await state.client.pttl(f"{prefix}acct:3000000")
        assert 100_000 < ttl_ms <= 106_000
    finally:
        await state.close()
        await delete_prefix(prefix)
