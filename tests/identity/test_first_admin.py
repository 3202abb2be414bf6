from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from hexahub.core.db import Database
from hexahub.core.errors import Conflict, ValidationFailed
from hexahub.identity import service
from hexahub.identity.models import User
from hexahub.settings import Settings


async def test_racing_setups_create_one_admin(settings: Settings) -> None:
    database = Database(settings)
    try:

        async def attempt(email: str) -> str:
            async with database.sessions() as db:
                try:
                    await service.create_first_admin(db, email=email, password="x" * 12)
                except Conflict:
                    return "refused"
                return "created"

        outcomes = await asyncio.gather(*(attempt(f"admin{i}@example.org") for i in range(4)))
        assert sorted(outcomes) == ["created", "refused", "refused", "refused"]
        async with database.sessions() as db:
            assert await db.scalar(select(func.count()).select_from(User)) == 1
    finally:
        await database.dispose()


@pytest.mark.parametrize(
    ("email", "password", "problem"),
    [
        ("not-an-address", "x" * 12, "email"),
        ("a@example.org", "short", "password"),
        ("a@example.org", "x" * 2000, "password"),
    ],
)
async def test_bad_first_admin_is_refused_and_nothing_stored(
    settings: Settings, email: str, password: str, problem: str
) -> None:
    database = Database(settings)
    try:
        async with database.sessions() as db:
            with pytest.raises(ValidationFailed, match=problem):
                await service.create_first_admin(db, email=email, password=password)
            assert await service.count_users(db) == 0
    finally:
        await database.dispose()
