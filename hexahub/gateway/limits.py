"""A key's limits on gateway calls: requests and tokens per minute, daily and monthly
budgets in US dollars.

Requests per minute are counted as a request arrives (`check`). Tokens and money are
*reserved*: before anything is sent upstream, a request's estimate (its prompt, about
four characters per token, plus its max_tokens or HEXAHUB_GATEWAY_DEFAULT_MAX_TOKENS, at
the prices of the dearest deployment it may be routed to) is added to the key's counters
in one atomic step that succeeds only while every limited counter is under its limit
(`SharedState.reserve`, a Lua script on Redis). When the request ends its `Hold` is
settled: the reservation is taken back and what the request really used is counted (a
failed request uses nothing). So a burst of concurrent requests spends at most the
budget plus one request's estimate, on one replica or across replicas sharing Redis.

Counters hold tokens, and millionths of a dollar so they stay integers. They are kept for
every key, limited or not, so a budget set during the day counts the day's spend so far.
A process that dies while requests are in flight leaves their reservations counted until
the counter's window (minute, day, month) ends.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hexahub.core.errors import RateLimited
from hexahub.core.shared import Claim, SharedState
from hexahub.gateway.models import KeyLimits

log = logging.getLogger("hexahub.gateway.limits")

MICRO = 1_000_000
MINUTE_TTL = 120.0
DAY_TTL = 2 * 86400.0
MONTH_TTL = 32 * 86400.0


class BudgetExceeded(RateLimited):
    code = "budget_exceeded"


def _micro(dollars: float) -> int:
    return round(dollars * MICRO)


@dataclass(frozen=True)
class Windows:
    """The counter keys of one key at one moment: this minute's tokens, today's and this
    month's spend (UTC)."""

    tokens: str
    day: str
    month: str

    @classmethod
    def of(cls, key_id: str, now: datetime | None = None) -> Windows:
        now = now or datetime.now(UTC)
        return cls(
            tokens=f"gw:tpm:{key_id}:{now:%Y%m%d%H%M}",
            day=f"gw:spend:{key_id}:d{now:%Y%m%d}",
            month=f"gw:spend:{key_id}:m{now:%Y%m}",
        )


def _retry_after() -> dict[str, str]:
    return {"Retry-After": str(60 - time.gmtime().tm_sec)}


def _tpm_refusal(limits: KeyLimits) -> RateLimited:
    return RateLimited(
        f"this key's limit of {limits.tpm} tokens per minute is reached", headers=_retry_after()
    )


def _budget_refusal(period: str, budget: float | None) -> BudgetExceeded:
    return BudgetExceeded(f"this key has spent its {period} budget of ${budget or 0:g}")


async def check(shared: SharedState, key_id: str | None, limits: KeyLimits | None) -> None:
    """As a request arrives: count it against the key's requests per minute, and refuse
    at once a key already at its token rate or budget (the reservation made before the
    request goes upstream is what holds the limits under concurrency)."""
    if limits is None or key_id is None:
        return
    if limits.rpm:
        minute = time.strftime("%Y%m%d%H%M", time.gmtime())
        count = await shared.incr(f"gw:rpm:{key_id}:{minute}", ttl_seconds=120)
        if count > limits.rpm:
            raise RateLimited(
                f"this key's limit of {limits.rpm} requests per minute is reached",
                headers=_retry_after(),
            )
    if not limits.tpm and limits.daily_budget_usd is None and limits.monthly_budget_usd is None:
        return
    windows = Windows.of(key_id)
    if limits.tpm and await _read(shared, windows.tokens) >= limits.tpm:
        raise _tpm_refusal(limits)
    daily, monthly = limits.daily_budget_usd, limits.monthly_budget_usd
    if daily is not None and await _read(shared, windows.day) >= _micro(daily):
        raise _budget_refusal("daily", daily)
    if monthly is not None and await _read(shared, windows.month) >= _micro(monthly):
        raise _budget_refusal("monthly", monthly)


async def _read(shared: SharedState, key: str) -> int:
    return int(await shared.get(key) or 0)


@dataclass
class Hold:
    """What one request reserved on its key's counters, until `settle` replaces it with
    what the request used. Settling twice counts once."""

    shared: SharedState
    key_id: str | None
    windows: Windows | None = None
    tokens: int = 0
    micro: int = 0
    settled: bool = field(default=False, init=False)

    async def settle(self, tokens: int, cost_usd: float) -> None:
        """Take the reservation back from the windows it went to and count `tokens` and
        `cost_usd` in the current ones (0 and 0 for a request that failed)."""
        if self.settled or self.key_id is None:
            return
        self.settled = True
        deltas: dict[str, int] = {}
        ttls: dict[str, float] = {}

        def add(key: str, amount: int, ttl: float) -> None:
            deltas[key] = deltas.get(key, 0) + amount
            ttls[key] = ttl

        if self.windows is not None:
            add(self.windows.tokens, -self.tokens, MINUTE_TTL)
            add(self.windows.day, -self.micro, DAY_TTL)
            add(self.windows.month, -self.micro, MONTH_TTL)
        now = Windows.of(self.key_id)
        add(now.tokens, tokens, MINUTE_TTL)
        add(now.day, _micro(cost_usd), DAY_TTL)
        add(now.month, _micro(cost_usd), MONTH_TTL)
        try:
            for key, amount in deltas.items():
                if amount:
                    await self.shared.incr(key, amount, ttl_seconds=ttls[key])
        except Exception as exc:  # the request is answered; its record is still written
            log.warning("could not update the usage counters of key %s: %s", self.key_id, exc)


async def reserve(
    shared: SharedState,
    key_id: str | None,
    limits: KeyLimits | None,
    *,
    tokens: int,
    cost_usd: float,
) -> Hold:
    """Reserve a request's estimated `tokens` and `cost_usd` on its key's counters, or
    refuse it (429: RateLimited for tokens per minute, BudgetExceeded for a budget) when a
    limited counter is already at its limit. Nothing is reserved for a key without token
    or budget limits; its use is still counted when the hold is settled."""
    if key_id is None:
        return Hold(shared, None)
    daily = limits.daily_budget_usd if limits else None
    monthly = limits.monthly_budget_usd if limits else None
    tpm = limits.tpm if limits and limits.tpm else None
    if tpm is None and daily is None and monthly is None:
        return Hold(shared, key_id)
    windows = Windows.of(key_id)
    micro = _micro(cost_usd)
    claims = [
        Claim(windows.tokens, tokens, tpm, MINUTE_TTL),
        Claim(windows.day, micro, None if daily is None else _micro(daily), DAY_TTL),
        Claim(windows.month, micro, None if monthly is None else _micro(monthly), MONTH_TTL),
    ]
    refused = await shared.reserve(claims)
    if refused == 0 and limits is not None:
        raise _tpm_refusal(limits)
    if refused == 1:
        raise _budget_refusal("daily", daily)
    if refused == 2:
        raise _budget_refusal("monthly", monthly)
    return Hold(shared, key_id, windows, tokens, micro)


async def spend(
    shared: SharedState, key_id: str, now: datetime | None = None
) -> tuple[float, float]:
    """(today's, this month's) spend of a key in dollars, reservations in flight included."""
    windows = Windows.of(key_id, now)
    return (await _read(shared, windows.day) / MICRO, await _read(shared, windows.month) / MICRO)


async def tokens_this_minute(shared: SharedState, key_id: str) -> int:
    """This minute's tokens of a key, reservations in flight included."""
    return await _read(shared, Windows.of(key_id).tokens)
