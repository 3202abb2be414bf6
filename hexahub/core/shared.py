"""Shared counters and caches: in the process by default, in Redis when configured.

Anything several replicas must agree on (rate-limit counters, budgets, response caches)
goes through `SharedState`. `InProcessState` is exact within one process; `RedisState`
shares values across every process that points at the same Redis. Both pass the same
tests (tests/core/test_shared.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis


class SharedState(Protocol):
    backend: str

    async def incr(self, key: str, amount: int = 1, *, ttl_seconds: float | None = None) -> int:
        """Add `amount` to a counter and return the new value. `ttl_seconds` starts the
        counter's expiry when the counter is created; later increments keep it."""
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

    async def incr(self, key: str, amount: int = 1, *, ttl_seconds: float | None = None) -> int:
        ttl_ms = _milliseconds(ttl_seconds)
        return int(await self._incr(keys=[self.prefix + key], args=[amount, ttl_ms]))

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
