"""Rate limits per client IP, user and API key, and slowing of failed sign-ins.

(Interface stub: the implementation lands with the limits work.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from hexahub.core.shared import SharedState
from hexahub.settings import Settings

if TYPE_CHECKING:
    from hexahub.identity.authz import Principal


class Limiter:
    def __init__(self, shared: SharedState, settings: Settings) -> None:
        self.shared = shared
        self.settings = settings

    async def check_ip(self, ip: str) -> None:
        return None

    async def check_principal(self, principal: Principal) -> None:
        return None

    async def check_login_allowed(self, email: str, ip: str) -> None:
        return None

    async def login_failed(self, email: str, ip: str) -> None:
        return None

    async def login_succeeded(self, email: str, ip: str) -> None:
        return None


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
