"""Rate-limiting building blocks over `SharedState`: a token bucket and a fixed-window counter.

`TokenBucket` keeps, per key, a number of tokens that refills at `rate_per_minute / 60`
per second up to `burst`; each request takes `cost` tokens or is refused with the time
until enough have come back. On `RedisState` every take is one Lua script, so replicas
sharing a Redis update a bucket atomically; on `InProcessState` the buckets live in a
dict that is read and written with no `await` in between, which is atomic on one event
loop.

`WindowCounter` counts events (failed sign-ins) per key in fixed windows aligned to the
wall clock, through `SharedState.incr`, so the time left in a window is known without
asking the storage for it.

Both take an optional clock (seconds) so tests can move time in either backend. Without
one, Redis buckets use the Redis server's own time, which every replica agrees on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from hexahub.core.shared import RedisState, SharedState

Clock = Callable[[], float]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    """Whole tokens left after this take."""
    retry_after: float
    """Seconds until `cost` tokens are available again; 0.0 when allowed."""


# A take short of less than a millisecond's refill is allowed: float rounding of clocks
# must not refuse a caller who waited exactly the retry_after they were told.
_SLACK_SECONDS = 0.001

# KEYS[1]: the bucket (a hash of tokens and ts). ARGV: refill per millisecond, capacity,
# cost, now in milliseconds ("" means the server's clock), slack in milliseconds.
# Numbers go back as strings: Redis would truncate Lua numbers to integers.
_TAKE = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local slack = tonumber(ARGV[5])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(saved[1])
local ts = tonumber(saved[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
-- A clock behind the stored one (another replica's, or a step back) refills nothing.
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate)
  ts = now
end
local allowed = 0
local wait = 0
if tokens + rate * slack >= cost then
  tokens = math.max(0, tokens - cost)
  allowed = 1
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.17g', ts))
-- Once full again the bucket equals a missing one, so it may go then (plus a margin).
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate) + 1000)
return {allowed, string.format('%.17g', tokens), string.format('%.17g', wait)}
"""

# In-process buckets are swept of full ones (equal to missing ones) once the dict has
# grown to this size, and then whenever it doubles, so the sweep costs O(1) a take.
_SWEEP_MIN = 1024


class TokenBucket:
    """Token buckets keyed by string, stored in Redis or in this process (by `state`)."""

    def __init__(self, state: SharedState, *, clock: Clock | None = None) -> None:
        self._clock = clock
        self._redis = state if isinstance(state, RedisState) else None
        if self._redis is not None:
            self._script = self._redis.client.register_script(_TAKE)
        # key -> (tokens, last refill time, time the bucket is full again)
        self._buckets: dict[str, tuple[float, float, float]] = {}
        self._sweep_at = _SWEEP_MIN

    async def take(
        self, key: str, *, rate_per_minute: int, burst: int | None = None, cost: int = 1
    ) -> Decision:
        """Take `cost` tokens from the bucket `key` if it holds that many.

        The bucket holds at most `burst` tokens (default: one minute's worth) and starts
        full. A refused take consumes nothing.
        """
        capacity = rate_per_minute if burst is None else burst
        if rate_per_minute < 1:
            raise ValueError(f"rate_per_minute must be at least 1 (got {rate_per_minute})")
        if not 1 <= cost <= capacity:
            raise ValueError(f"cost must be between 1 and the burst of {capacity} (got {cost})")
        if self._redis is not None:
            return await self._take_redis(key, rate_per_minute, capacity, cost)
        return self._take_local(key, rate_per_minute / 60, capacity, cost)

    async def _take_redis(
        self, key: str, rate_per_minute: int, capacity: int, cost: int
    ) -> Decision:
        assert self._redis is not None
        now_ms = "" if self._clock is None else repr(self._clock() * 1000)
        allowed, tokens, wait_ms = await self._script(
            keys=[self._redis.prefix + key],
            args=[
                repr(rate_per_minute / 60_000),
                capacity,
                cost,
                now_ms,
                repr(_SLACK_SECONDS * 1000),
            ],
        )
        return Decision(
            allowed=bool(allowed),
            remaining=math.floor(float(tokens)),
            retry_after=float(wait_ms) / 1000,
        )

    def _take_local(self, key: str, rate: float, capacity: int, cost: int) -> Decision:
        # No await from here to the end: nothing else on the loop can interleave.
        now = (self._clock or time.monotonic)()
        tokens, ts, _ = self._buckets.get(key, (float(capacity), now, now))
        if now > ts:
            tokens = min(float(capacity), tokens + (now - ts) * rate)
            ts = now
        if tokens + rate * _SLACK_SECONDS >= cost:
            tokens = max(0.0, tokens - cost)
            decision = Decision(True, math.floor(tokens), 0.0)
        else:
            decision = Decision(False, math.floor(tokens), (cost - tokens) / rate)
        self._buckets[key] = (tokens, ts, ts + (capacity - tokens) / rate)
        if len(self._buckets) >= self._sweep_at:
            self._sweep(now)
        return decision

    def _sweep(self, now: float) -> None:
        for key in [k for k, (_, _, full_at) in self._buckets.items() if full_at <= now]:
            del self._buckets[key]
        self._sweep_at = max(_SWEEP_MIN, 2 * len(self._buckets))


class WindowCounter:
    """Counts per key in fixed windows of `window_seconds` aligned to the clock.

    The default clock is the wall clock, so replicas (with synchronised clocks) agree on
    where windows start. Each window's count is its own key in `state`, expiring after
    the window ends.
    """

    def __init__(
        self, state: SharedState, window_seconds: float, *, clock: Clock | None = None
    ) -> None:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive (got {window_seconds})")
        self.state = state
        self.window_seconds = window_seconds
        self._clock = clock or time.time

    def _window(self) -> tuple[int, float]:
        """The current window's number, and the seconds left in it (more than 0)."""
        now = self._clock()
        index = math.floor(now / self.window_seconds)
        left = (index + 1) * self.window_seconds - now
        return index, left if left > 0 else self.window_seconds

    async def add(self, key: str, amount: int = 1) -> int:
        """Count `amount` more in the current window and return the window's count."""
        index, left = self._window()
        # A little longer than the window, for replicas whose clocks lag a bit behind.
        return await self.state.incr(f"{key}:{index}", amount, ttl_seconds=left + 5)

    async def count(self, key: str) -> tuple[int, float]:
        """The current window's count, and the seconds until the window ends."""
        index, left = self._window()
        value = await self.state.get(f"{key}:{index}")
        return (int(value) if value is not None else 0), left

    async def reset(self, key: str) -> None:
        index, _ = self._window()
        await self.state.delete(f"{key}:{index}")
