"""Shared counters and caches: in the process by default, in Redis when configured.

Anything several replicas must agree on (rate-limit counters, budgets, response caches)
goes through `SharedState`. `InProcessState` is exact within one process; `RedisState`
shares values across every process that points at the same Redis. Both pass the same
tests (tests/core/test_shared.py).

`reserve` adds to several counters only while each is under its limit, in one atomic
step, so concurrent callers cannot all pass a check that only some of them should (the
gateway's budget and token-rate reservations, hexahub.gateway.limits).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis


@dataclass(frozen=True)
class Claim:
    """One counter a `reserve` call adds to: `amount` goes onto counter `key` (created with
    `ttl_seconds`, as `incr` does) provided its value is below `limit` (None: no limit)."""

    key: str
    amount: int
    limit: int | None = None
    ttl_seconds: float | None = None


class SharedState(Protocol):
    backend: str

    async def incr(self, key: str, amount: int = 1, *, ttl_seconds: float | None = None) -> int:
        """Add `amount` to a counter and return the new value. `ttl_seconds` starts the
        counter's expiry when the counter is created; later increments keep it."""
        ...

    async def reserve(self, claims: Sequence[Claim]) -> int | None:
        """All or nothing, in one atomic step: when every claimed counter that has a limit
        is below it, add each claim's amount and return None; otherwise change nothing and
        return the index of the first claim whose counter is at or over its limit."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, *, ttl_seconds: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class InProcessState:
    backend = "inprocess"

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._values: dict[str, tuple[bytes | int, float | None]] = {}
        self._lock = asyncio.Lock()
        self._clock = clock

    def _live(self, key: str) -> bytes | int | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if expires_at is not None and self._clock() >= expires_at:
            del self._values[key]
            return None
        return value

    def _expiry(self, ttl_seconds: float | None) -> float | None:
        return None if ttl_seconds is None else self._clock() + ttl_seconds

    async def incr(self, key: str, amount: int = 1, *, ttl_seconds: float | None = None) -> int:
        async with self._lock:
            current = self._live(key)
            if current is None:
                self._values[key] = (amount, self._expiry(ttl_seconds))
                return amount
            if not isinstance(current, int):
                raise TypeError(f"{key} holds a value, not a counter")
            new = current + amount
            self._values[key] = (new, self._values[key][1])
            return new

    async def reserve(self, claims: Sequence[Claim]) -> int | None:
        async with self._lock:
            for index, claim in enumerate(claims):
                current = self._live(claim.key)
                if current is not None and not isinstance(current, int):
                    raise TypeError(f"{claim.key} holds a value, not a counter")
                if claim.limit is not None and (current or 0) >= claim.limit:
                    return index
            for claim in claims:
                current = self._live(claim.key)
                if current is None:
                    self._values[claim.key] = (claim.amount, self._expiry(claim.ttl_seconds))
                else:
                    self._values[claim.key] = (
                        int(current) + claim.amount,
                        self._values[claim.key][1],
                    )
            return None

    async def get(self, key: str) -> bytes | None:
        value = self._live(key)
        if value is None:
            return None
        return str(value).encode() if isinstance(value, int) else value

    async def set(self, key: str, value: bytes, *, ttl_seconds: float | None = None) -> None:
        self._values[key] = (value, self._expiry(ttl_seconds))

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._values.clear()


# Increment and set the expiry only when the key is new, atomically on the server. "New"
# is asked of the key itself: a counter that comes back to its first value is not new.
_INCR_WITH_TTL = """
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if created and tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""


# `reserve`: ARGV holds (amount, limit, ttl in ms) per key; a limit below 0 means none.
# Checked first, then added, in one script, so no other client runs in between.
_RESERVE = """
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[3 * i - 1])
  if limit >= 0 and tonumber(redis.call('GET', key) or '0') >= limit then
    return i - 1
  end
end
for i, key in ipairs(KEYS) do
  local created = redis.call('EXISTS', key) == 0
  redis.call('INCRBY', key, ARGV[3 * i - 2])
  local ttl = tonumber(ARGV[3 * i])
  if created and ttl > 0 then
    redis.call('PEXPIRE', key, ttl)
  end
end
return -1
"""


def _milliseconds(ttl_seconds: float | None) -> int:
    """0 means no expiry; any positive TTL is at least 1 ms (Redis refuses PX 0)."""
    return max(1, int(ttl_seconds * 1000)) if ttl_seconds else 0


class RedisState:
    backend = "redis"

    def __init__(self, url: str, *, prefix: str = "hexahub:", max_connections: int = 100) -> None:
        # A blocking pool: a burst of more concurrent calls than connections waits for a
        # free one instead of failing with "Too many connections".
        self._pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=5,
            socket_connect_timeout=3,
            socket_timeout=5,
            health_check_interval=30,
        )
        self.client = aioredis.Redis(connection_pool=self._pool)
        self.prefix = prefix
        self._incr = self.client.register_script(_INCR_WITH_TTL)
        self._reserve = self.client.register_script(_RESERVE)

    async def incr(self, key: str, amount: int = 1, *, ttl_seconds: float | None = None) -> int:
        ttl_ms = _milliseconds(ttl_seconds)
        return int(await self._incr(keys=[self.prefix + key], args=[amount, ttl_ms]))

    async def reserve(self, claims: Sequence[Claim]) -> int | None:
        if not claims:
            return None
        args: list[int] = []
        for claim in claims:
            limit = -1 if claim.limit is None else max(0, claim.limit)
            args += [claim.amount, limit, _milliseconds(claim.ttl_seconds)]
        keys = [self.prefix + claim.key for claim in claims]
        refused = int(await self._reserve(keys=keys, args=args))
        return None if refused < 0 else refused

    async def get(self, key: str) -> bytes | None:
        value = await self.client.get(self.prefix + key)
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def set(self, key: str, value: bytes, *, ttl_seconds: float | None = None) -> None:
        await self.client.set(self.prefix + key, value, px=_milliseconds(ttl_seconds) or None)

    async def delete(self, key: str) -> None:
        await self.client.delete(self.prefix + key)

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()
        await self._pool.disconnect()


def make_shared_state(redis_url: str) -> SharedState:
    return RedisState(redis_url) if redis_url else InProcessState()
