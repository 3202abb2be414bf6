"""Who is calling the model APIs, and under which rules: resolved from the database once
and then remembered for at most `CALLER_TTL_SECONDS` (one second).

For each /v1 request the gateway needs the caller (key and owner, each still usable), the
workspace the request counts against (with the caller's role there), that workspace's
policy and the key's limits: four database look-ups. A busy client sends the same key
hundreds of times a second, so for API keys the answer is kept in this process for one
second and shared by every request with the same key (and `X-HexaHub-Workspace` header).

What that second means: revoking a key, disabling its owner, removing them from the
workspace or changing their role takes effect here within one second, however and
wherever it was done (another replica, the CLI). Changes made through this process's own
gateway API (a workspace's gateway policy, a key's limits) take effect at once, because
they call `CallerCache.forget`. A key's expiry time is checked on every request, and
every request still counts against the key's rate limit and updates its last use.

Failures (an unknown key, a missing scope, no workspace) are never remembered. When an
entry is missing or stale, one look-up runs and every request waiting for the same key
shares it, so a burst of requests costs one round of queries, not one per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hexahub.core.errors import Forbidden, NotFound
from hexahub.gateway import service
from hexahub.gateway.models import KeyLimits
from hexahub.identity import keys
from hexahub.identity.authz import Principal, check_scope, workspace_access
from hexahub.identity.models import Role, Workspace
from hexahub.identity.workspaces import workspaces_of

CALLER_TTL_SECONDS = 1.0
MAX_ENTRIES = 4096
SCOPE = "gateway"


@dataclass(frozen=True)
class Caller:
    """What a /v1 request needs to know about who sent it. The ORM objects in `principal`
    are detached snapshots, shared by concurrent requests: read them, never change them."""

    principal: Principal
    workspace_id: str
    local_only: bool
    trace_bodies: bool
    limits: KeyLimits | None


async def workspace_for(db: AsyncSession, principal: Principal, wanted: str | None) -> str:
    """The workspace a request counts against: the key's, else the one named by the
    `X-HexaHub-Workspace` header (`wanted`, id or slug), else the caller's first workspace
    where they are at least a member."""
    key = principal.api_key
    if key is not None and key.workspace_id is not None:
        access = await workspace_access(db, principal, key.workspace_id, Role.member, SCOPE)
        return access.workspace.id
    if wanted:
        found = await db.scalar(
            select(Workspace.id).where(or_(Workspace.id == wanted, Workspace.slug == wanted))
        )
        if found is None:
            raise NotFound(f"no workspace {wanted!r} (X-HexaHub-Workspace)")
        access = await workspace_access(db, principal, found, Role.member, SCOPE)
        return access.workspace.id
    for workspace, role in await workspaces_of(db, principal.user.id):
        if role.at_least(Role.member):
            return workspace.id
    raise Forbidden(
        "you are not a member of any workspace, so there is nothing to count this "
        "request against; ask a workspace admin to add you"
    )


async def resolve(db: AsyncSession, principal: Principal, wanted: str | None) -> Caller:
    """Everything about an identified caller, read from the database now."""
    return await resolve_in(db, principal, await workspace_for(db, principal, wanted))


async def resolve_in(db: AsyncSession, principal: Principal, workspace_id: str) -> Caller:
    """As `resolve`, for a workspace the caller's access to was already checked."""
    policy = await service.workspace_policy(db, workspace_id)
    limits = None
    if principal.api_key is not None:
        limits = await service.key_limits(db, principal.api_key.id)
    return Caller(principal, workspace_id, policy.local_only, policy.trace_bodies, limits)


Loader = Callable[[], Awaitable[Caller]]


class CallerCache:
    """API-key callers by (hash of the key, wanted workspace), each for at most `ttl`."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl: float = CALLER_TTL_SECONDS,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[tuple[str, str], tuple[float, Caller]] = {}
        self._loading: dict[tuple[str, str], asyncio.Task[Caller]] = {}
        self._generation = 0

    async def for_key(self, secret: str, wanted: str | None, *, ip: str = "") -> Caller:
        """The caller sending API key `secret`; raises as authentication would."""
        slot = (keys.hash_key(secret), wanted or "")
        entry = self._entries.get(slot)
        if entry is not None and self._clock() - entry[0] < self.ttl:
            caller = entry[1]
            # The one thing that can change with no one changing anything.
            assert caller.principal.api_key is not None
            keys.check_usable(caller.principal.user, caller.principal.api_key)
            return caller
        task = self._loading.get(slot)
        if task is None:
            task = asyncio.create_task(self._load(slot, secret, wanted, ip))
            task.add_done_callback(_retrieve)
            self._loading[slot] = task
        # Shielded: a client that goes away must not cancel the look-up others wait for.
        return await asyncio.shield(task)

    async def _load(
        self, slot: tuple[str, str], secret: str, wanted: str | None, ip: str
    ) -> Caller:
        started, generation = self._clock(), self._generation
        try:
            async with self.sessions() as db:
                user, key = await keys.authenticate_key(db, secret)
                principal = Principal(user, "api_key", ip, api_key=key)
                check_scope(principal, SCOPE)
                caller = await resolve(db, principal, wanted)
        finally:
            if self._loading.get(slot) is asyncio.current_task():
                del self._loading[slot]
        if generation == self._generation:  # nothing was forgotten while this was read
            self._store(slot, started, caller)
        return caller

    def _store(self, slot: tuple[str, str], loaded_at: float, caller: Caller) -> None:
        if len(self._entries) >= self.max_entries:
            now = self._clock()
            for stale in [s for s, (at, _) in self._entries.items() if now - at >= self.ttl]:
                del self._entries[stale]
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[slot] = (loaded_at, caller)

    def forget(self) -> None:
        """Drop everything remembered (after a change to policies or limits)."""
        self._generation += 1
        self._entries.clear()
        self._loading.clear()  # requests from now on read afresh

    def __len__(self) -> int:
        return len(self._entries)


def _retrieve(task: asyncio.Task[Caller]) -> None:
    # A look-up whose waiters all went away would otherwise log "exception never retrieved".
    if not task.cancelled():
        task.exception()
