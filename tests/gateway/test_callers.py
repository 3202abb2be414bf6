"""The gateway's caller cache: API-key callers are remembered for at most a second, a
change is seen after that second (or at once when this process made it), failures are
never remembered, and a burst of requests with one key costs one look-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core.db import Database, utcnow
from hexahub.core.errors import Forbidden, Unauthenticated
from hexahub.gateway import service as gateway_service
from hexahub.gateway.callers import CallerCache
from hexahub.identity import keys, service, workspaces
from hexahub.identity.models import User
from tests.conftest import make_settings
from tests.gateway.conftest import Hub


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    database: Database
    secret: str
    key_id: str
    user_id: str
    workspace_id: str
    lookups: int = 0

    def sessions(self) -> AbstractAsyncContextManager[AsyncSession]:
        self.lookups += 1
        return self.database.sessions()


@pytest.fixture
async def setup(tmp_path: Path, database_url: str) -> AsyncIterator[Setup]:
    database = Database(make_settings(tmp_path, database_url=database_url))
    async with database.sessions() as db:
        user = await service.create_first_admin(
            db, email="owner@example.org", password="correct horse battery"
        )
        workspace = (await workspaces.workspaces_of(db, user.id))[0][0]
        created = await keys.create_key(
            db, user, name="k", scopes=["gateway"], workspace_id=workspace.id
        )
        await db.commit()
        found = Setup(database, created.secret, created.key.id, user.id, workspace.id)
    yield found
    await database.dispose()


def cache(setup: Setup, clock: Clock) -> CallerCache:
    return CallerCache(setup.sessions, clock=clock)  # type: ignore[arg-type]


async def test_remembered_for_one_second_then_read_again(setup: Setup) -> None:
    clock = Clock()
    callers = cache(setup, clock)
    first = await callers.for_key(setup.secret, None)
    assert first.workspace_id == setup.workspace_id and first.principal.user.id == setup.user_id
    async with setup.database.sessions() as db:
        await keys.revoke_key(db, await keys.get_key(db, setup.key_id))
        await db.commit()
    clock.now += 0.5
    assert await callers.for_key(setup.secret, None) is first  # the documented second
    assert setup.lookups == 1
    clock.now += 0.5
    with pytest.raises(Unauthenticated, match="revoked"):
        await callers.for_key(setup.secret, None)


async def test_disabled_owner_is_refused_after_the_second(setup: Setup) -> None:
    clock = Clock()
    callers = cache(setup, clock)
    await callers.for_key(setup.secret, None)
    async with setup.database.sessions() as db:
        user = await db.get(User, setup.user_id)
        assert user is not None
        await service.set_active(db, user, False)
        await db.commit()
    clock.now += 1.0
    with pytest.raises(Unauthenticated, match=r"revoked|disabled"):
        await callers.for_key(setup.secret, None)


async def test_expiry_is_checked_on_every_request(setup: Setup) -> None:
    callers = cache(setup, Clock())
    caller = await callers.for_key(setup.secret, None)
    assert caller.principal.api_key is not None
    # Stands in for the key's expiry time passing while it is remembered.
    caller.principal.api_key.expires_at = utcnow() - timedelta(seconds=1)
    with pytest.raises(Unauthenticated, match="expired"):
        await callers.for_key(setup.secret, None)


async def test_forget_reads_policy_and_limits_afresh_at_once(setup: Setup) -> None:
    callers = cache(setup, Clock())
    before = await callers.for_key(setup.secret, None)
    assert not before.local_only and before.limits is None
    async with setup.database.sessions() as db:
        await gateway_service.set_workspace_policy(
            db, setup.workspace_id, local_only=True, trace_bodies=None
        )
        await gateway_service.set_key_limits(db, setup.key_id, rpm=5)
        await db.commit()
    callers.forget()
    after = await callers.for_key(setup.secret, None)
    assert after.local_only and after.limits is not None and after.limits.rpm == 5


async def test_a_burst_of_requests_shares_one_lookup(setup: Setup) -> None:
    callers = cache(setup, Clock())
    found = await asyncio.gather(*(callers.for_key(setup.secret, None) for _ in range(50)))
    assert setup.lookups == 1
    assert len({id(c) for c in found}) == 1


async def test_failures_are_not_remembered(setup: Setup) -> None:
    callers = cache(setup, Clock())
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await callers.for_key("hh_00000000_" + "x" * 43, None)
    async with setup.database.sessions() as db:
        user = await db.get(User, setup.user_id)
        assert user is not None
        reader = await keys.create_key(db, user, name="reader", scopes=["read"])
        await db.commit()
    for _ in range(2):
        with pytest.raises(Forbidden, match="gateway"):
            await callers.for_key(reader.secret, None)
    assert setup.lookups == 4 and len(callers) == 0


async def test_the_wanted_workspace_is_part_of_the_entry(setup: Setup) -> None:
    async with setup.database.sessions() as db:
        user = await db.get(User, setup.user_id)
        assert user is not None
        unbound = await keys.create_key(db, user, name="unbound", scopes=["gateway"])
        await db.commit()
    callers = cache(setup, Clock())
    assert (await callers.for_key(unbound.secret, None)).workspace_id == setup.workspace_id
    with pytest.raises(Exception, match="no workspace"):
        await callers.for_key(unbound.secret, "no-such-workspace")


# --- through the running server ---------------------------------------------------------


ASK = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


async def test_many_concurrent_requests_all_answered_and_recorded(sdk: Hub) -> None:
    """More requests at once than the database pool has connections (it once deadlocked)."""
    headers = {"Authorization": f"Bearer {sdk.key}"}
    async with httpx.AsyncClient(base_url=sdk.v1, headers=headers, timeout=60) as client:
        replies = await asyncio.gather(
            *(client.post("/chat/completions", json=ASK) for _ in range(40))
        )
    assert [r.status_code for r in replies] == [200] * 40
    for _ in range(100):  # records are written in batches; wait for them, boundedly
        records = [r for r in sdk.usage_records() if r["model"] == "gpt-test"]
        if len(records) >= 40:
            break
        await asyncio.sleep(0.05)
    assert len(records) == 40


async def test_a_revoked_key_stops_working_within_a_second(sdk: Hub) -> None:
    headers = {"Authorization": f"Bearer {sdk.key}"}
    async with httpx.AsyncClient(base_url=sdk.v1, headers=headers, timeout=30) as client:
        assert (await client.post("/chat/completions", json=ASK)).status_code == 200
        revoked = sdk.api("DELETE", f"/api/keys/{sdk.key_id}")
        assert revoked.status_code == 204, revoked.text
        statuses = []
        for _ in range(60):  # bounded: 60 x 50 ms, well past the one-second limit
            reply = await client.post("/chat/completions", json=ASK)
            statuses.append(reply.status_code)
            if reply.status_code == 401:
                break
            await asyncio.sleep(0.05)
    assert statuses[-1] == 401
    assert set(statuses[:-1]) <= {200}
