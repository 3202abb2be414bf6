"""Rate limits per client IP, user and API key, and slowing of failed sign-ins.

Requests are limited by token buckets (`hexahub.core.ratelimit.TokenBucket`): each IP,
user and API key may make its `rate_limit_*_per_minute` requests in a burst, then one
every `60 / rate` seconds. Failed sign-ins are counted per account and per IP in windows
of `login_lockout_minutes`; once either count reaches its maximum, sign-ins for that
account (or from that IP) are refused until the window ends. Counts live in the
`SharedState`, so replicas sharing a Redis share the limits.

Every refusal is a `RateLimited` error (429) with a `Retry-After` header in whole seconds.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from hexahub.core.errors import RateLimited, error_response
from hexahub.core.ratelimit import Clock, TokenBucket, WindowCounter
from hexahub.core.shared import SharedState
from hexahub.settings import Settings

if TYPE_CHECKING:
    from hexahub.identity.authz import Principal

log = logging.getLogger("hexahub.limits")

# Paths that probes, scrapers and the browser's static files hit: never limited, so a
# busy monitor cannot lock itself (or the pages' CSS) out.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
EXEMPT_PREFIXES = ("/static/",)


def _email_key(email: str) -> str:
    """An account's storage key: the normalised e-mail, hashed so it is not stored."""
    normalised = email.strip().lower()
    return hashlib.sha256(normalised.encode()).hexdigest()[:32]


def _retry_after_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def _wait_text(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    return f"{math.ceil(seconds / 60)} min"


def _refusal(what: str, retry_after: float) -> RateLimited:
    seconds = _retry_after_seconds(retry_after)
    return RateLimited(
        f"{what}; retry in {_wait_text(seconds)}",
        headers={"Retry-After": str(seconds)},
    )


class Limiter:
    def __init__(
        self, shared: SharedState, settings: Settings, *, clock: Clock | None = None
    ) -> None:
        self.shared = shared
        self.settings = settings
        self.buckets = TokenBucket(shared, clock=clock)
        self.failures = WindowCounter(shared, settings.login_lockout_minutes * 60, clock=clock)

    async def _check_bucket(self, key: str, rate_per_minute: int, what: str) -> None:
        if rate_per_minute <= 0:
            return
        decision = await self.buckets.take(key, rate_per_minute=rate_per_minute)
        if not decision.allowed:
            raise _refusal(
                f"too many requests {what} (limit {rate_per_minute} per minute)",
                decision.retry_after,
            )

    async def check_ip(self, ip: str) -> None:
        # No address (a proxy that hides it) gives nothing to tell callers apart by;
        # one shared bucket for all of them would let one caller lock out everyone.
        if not ip:
            return
        await self._check_bucket(
            f"ratelimit:ip:{ip}", self.settings.rate_limit_ip_per_minute, "from this IP address"
        )

    async def check_principal(self, principal: Principal) -> None:
        if principal.api_key is not None:
            await self._check_bucket(
                f"ratelimit:key:{principal.api_key.id}",
                self.settings.rate_limit_key_per_minute,
                "with this API key",
            )
        else:
            await self._check_bucket(
                f"ratelimit:user:{principal.user.id}",
                self.settings.rate_limit_user_per_minute,
                "by this user",
            )

    async def check_login_allowed(self, email: str, ip: str) -> None:
        failures, left = await self.failures.count(f"login:account:{_email_key(email)}")
        if failures >= self.settings.login_max_failures:
            raise _refusal(
                f"too many failed sign-ins for this account ({failures} in this "
                f"{self.settings.login_lockout_minutes}-minute window)",
                left,
            )
        if not ip:
            return
        failures, left = await self.failures.count(f"login:ip:{ip}")
        if failures >= self.settings.login_max_failures_per_ip:
            raise _refusal(
                f"too many failed sign-ins from this IP address ({failures} in this "
                f"{self.settings.login_lockout_minutes}-minute window)",
                left,
            )

    async def login_failed(self, email: str, ip: str) -> None:
        await self.failures.add(f"login:account:{_email_key(email)}")
        if ip:
            await self.failures.add(f"login:ip:{ip}")

    async def login_succeeded(self, email: str, ip: str) -> None:
        # Only the account's count: an IP shared by many people (an office, a NAT) keeps
        # counting the failures of all of them.
        await self.failures.reset(f"login:account:{_email_key(email)}")


class RateLimitMiddleware:
    """Limits every HTTP request by client IP through `app.state.limiter`, answering 429.

    Runs before routing, so it is cheap for the refused. When the limiter's storage is
    unreachable the request goes through (and a warning is logged): a Redis outage
    should not take the whole API down with it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _exempt(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        state = getattr(scope.get("app"), "state", None)
        limiter: Limiter | None = getattr(state, "limiter", None)
        if limiter is not None:
            client = scope.get("client")
            try:
                await limiter.check_ip(client[0] if client else "")
            except RateLimited as exc:
                await error_response(scope, exc)(scope, receive, send)
                return
            except (RedisError, OSError):
                log.warning("rate limit not checked: shared state unreachable", exc_info=True)
        await self.app(scope, receive, send)


def _exempt(path: str) -> bool:
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)
