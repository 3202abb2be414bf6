"""InProcessState and RedisState pass the same tests.

Expiry is checked without waiting out real time where possible: InProcessState runs on
a fake clock that the test moves forward; on Redis the key's PTTL is read and short TTLs
are polled for with a bounded deadline.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from hexahub.core.shared import Claim, InProcessState, RedisState, SharedState, make_shared_state
from tests.conftest import REDIS_SKIP, REDIS_URL


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    """One SharedState plus the backend-specific way to see a key expire."""

    state: SharedState
    clock: FakeClock | None = None

    async def assert_expires_after(self, key: str, seconds: float) -> None:
        """The key is alive now, has about `seconds` left, and is then gone."""
        assert await self.state.get(key) is not None
        if self.clock is not None:
            self.clock.now += seconds - 0.01
            assert await self.state.get(key) is not None, "expired too early"
            self.clock.now += 0.02
            assert await self.state.get(key) is None, "did not expire"
            return
        assert isinstance(self.state, RedisState)
        remaining_ms = await self.state.client.pttl(self.state.prefix + key)
        assert 0 < remaining_ms <= seconds * 1000, remaining_ms
        deadline = time.monotonic() + seconds + 5
        while await self.state.get(key) is not None:
            assert time.monotonic() < deadline, f"{key} outlived its {seconds} s expiry"
            await asyncio.sleep(0.02)

    async def assert_no_expiry(self, key: str) -> None:
        if self.clock is not None:
            self.clock.now += 10**6
            assert await self.state.get(key) is not None
            return
        assert isinstance(self.state, RedisState)
        assert await self.state.client.pttl(self.state.prefix + key) == -1


def _test_prefix() -> str:
    return f"hexahub-test:{uuid.uuid4().hex}:"


async def _delete_prefix(prefix: str) -> None:
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
        clock = FakeClock()
        state = InProcessState(clock=clock)
        yield Backend(state, clock)
        await state.close()
        return
    if not REDIS_URL:
        pytest.skip(REDIS_SKIP)
    prefix = _test_prefix()
    redis_state = RedisState(REDIS_URL, prefix=prefix)
    try:
        yield Backend(redis_state)
    finally:
        await redis_state.close()
        await _delete_prefix(prefix)


async def test_incr_counts_per_key(backend: Backend) -> None:
    state = backend.state
    assert await state.incr("hits") == 1
    assert await state.incr("hits", 4) == 5
    assert await state.incr("hits", -2) == 3
    assert await state.incr("other") == 1
    assert await state.get("hits") == b"3"
    await backend.assert_no_expiry("hits")


async def test_incr_ttl_starts_when_the_counter_is_created(backend: Backend) -> None:
    state = backend.state
    assert await state.incr("window", ttl_seconds=0.3) == 1
    # Later increments neither extend nor drop the window.
    assert await state.incr("window", ttl_seconds=60) == 2
    assert await state.incr("window") == 3

    await backend.assert_expires_after("window", 0.3)

    # Expired: the next increment starts a new counter with its own expiry.
    assert await state.incr("window") == 1
    await backend.assert_no_expiry("window")


async def test_incr_ttl_is_kept_when_the_counter_comes_back_to_its_first_value(
    backend: Backend,
) -> None:
    state = backend.state
    assert await state.incr("budget", 2, ttl_seconds=0.3) == 2
    assert await state.incr("budget", -2) == 0
    # Same value as when it was created, but the counter is not new: no fresh expiry.
    assert await state.incr("budget", 2, ttl_seconds=60) == 2

    await backend.assert_expires_after("budget", 0.3)


async def test_get_set_delete(backend: Backend) -> None:
    state = backend.state
    assert await state.get("missing") is None
    await state.set("greeting", b"hello")
    assert await state.get("greeting") == b"hello"
    await state.set("greeting", b"\x00binary\xff")
    assert await state.get("greeting") == b"\x00binary\xff"
    await state.delete("greeting")
    assert await state.get("greeting") is None
    await state.delete("greeting")  # deleting a missing key is fine
    await state.incr("counter")
    await state.delete("counter")
    assert await state.incr("counter") == 1


async def test_set_with_ttl_expires_and_a_plain_set_clears_the_ttl(backend: Backend) -> None:
    state = backend.state
    await state.set("cached", b"v1", ttl_seconds=0.3)
    await backend.assert_expires_after("cached", 0.3)

    await state.set("kept", b"v1", ttl_seconds=0.3)
    await state.set("kept", b"v2")
    await backend.assert_no_expiry("kept")
    assert await state.get("kept") == b"v2"


async def test_concurrent_increments_are_exact(backend: Backend) -> None:
    state = backend.state
    results = await asyncio.gather(*(state.incr("concurrent") for _ in range(200)))
    assert sorted(results) == list(range(1, 201))
    assert await state.get("concurrent") == b"200"


async def test_reserve_adds_to_every_counter_while_each_is_under_its_limit(
    backend: Backend,
) -> None:
    state = backend.state
    claims = [Claim("tokens", 30, limit=50, ttl_seconds=0.3), Claim("spend", 7, limit=None)]
    assert await state.reserve(claims) is None
    assert (await state.get("tokens"), await state.get("spend")) == (b"30", b"7")
    # 30 is under 50: granted, and the counter may end past the limit.
    assert await state.reserve(claims) is None
    assert (await state.get("tokens"), await state.get("spend")) == (b"60", b"14")
    # Now at or over it: refused, naming the claim, and nothing is added anywhere.
    assert await state.reserve(claims) == 0
    assert (await state.get("tokens"), await state.get("spend")) == (b"60", b"14")
    # A release is a plain negative increment; the expiry set at creation is kept.
    assert await state.incr("tokens", -30) == 30
    await backend.assert_expires_after("tokens", 0.3)
    await backend.assert_no_expiry("spend")


async def test_reserve_is_all_or_nothing(backend: Backend) -> None:
    state = backend.state
    await state.incr("monthly", 100)
    claims = [Claim("daily", 5, limit=10), Claim("monthly", 5, limit=100)]
    assert await state.reserve(claims) == 1
    assert await state.get("daily") is None
    assert await state.reserve([Claim("daily", 5, limit=0)]) == 0  # a zero limit refuses
    assert await state.reserve([]) is None


async def test_concurrent_reservations_stop_at_the_limit(backend: Backend) -> None:
    state = backend.state
    amount, limit, callers = 3, 100, 200
    results = await asyncio.gather(
        *(state.reserve([Claim("burst", amount, limit=limit)]) for _ in range(callers))
    )
    granted = results.count(None)
    # Granted while the counter was under the limit: the limit plus at most one amount.
    assert granted == -(-limit // amount)
    assert results.count(0) == callers - granted
    assert await state.get("burst") == str(granted * amount).encode()


async def test_ping(backend: Backend) -> None:
    await backend.state.ping()


async def test_redis_counters_are_shared_between_replicas() -> None:
    if not REDIS_URL:
        pytest.skip(REDIS_SKIP)
    prefix = _test_prefix()
    replica_a = RedisState(REDIS_URL, prefix=prefix)
    replica_b = RedisState(REDIS_URL, prefix=prefix)
    elsewhere = RedisState(REDIS_URL, prefix=_test_prefix())
    try:
        assert await replica_a.incr("requests") == 1
        assert await replica_b.incr("requests") == 1 + 1
        both = await asyncio.gather(
            *(replica.incr("requests") for replica in (replica_a, replica_b) * 50)
        )
        assert sorted(both) == list(range(3, 103))
        assert await replica_a.get("requests") == b"102"
        await replica_b.set("cache", b"answer")
        assert await replica_a.get("cache") == b"answer"
        await replica_a.delete("cache")
        assert await replica_b.get("cache") is None
        # Another prefix is another namespace.
        assert await elsewhere.get("requests") is None
    finally:
        for state in (replica_a, replica_b, elsewhere):
            await state.close()
        await _delete_prefix(prefix)


async def test_redis_reservations_hold_across_replicas() -> None:
    if not REDIS_URL:
        pytest.skip(REDIS_SKIP)
    prefix = _test_prefix()
    replicas = [RedisState(REDIS_URL, prefix=prefix) for _ in range(3)]
    amount, limit = 7, 250
    try:
        results = await asyncio.gather(
            *(replica.reserve([Claim("budget", amount, limit=limit)]) for replica in replicas * 40)
        )
        granted = results.count(None)
        assert granted == -(-limit // amount)
        assert await replicas[0].get("budget") == str(granted * amount).encode()
    finally:
        for state in replicas:
            await state.close()
        await _delete_prefix(prefix)


async def test_in_process_state_is_per_instance() -> None:
    one, two = InProcessState(), InProcessState()
    await one.incr("x")
    assert await two.get("x") is None


async def test_redis_ping_fails_when_unreachable() -> None:
    state = RedisState("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(Exception, match=r"(?i)connect|refused"):
            await state.ping()
    finally:
        await state.close()


async def test_make_shared_state_picks_the_backend() -> None:
    in_process = make_shared_state("")
    redis = make_shared_state("redis://127.0.0.1:6379/15")
    try:
        assert isinstance(in_process, InProcessState) and in_process.backend == "inprocess"
        assert isinstance(redis, RedisState) and redis.backend == "redis"
    finally:
        await in_process.close()
        await redis.close()
