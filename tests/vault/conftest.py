"""Vault test helpers: a database with an owner's workspace, distinctive secret values to
look for in raw dumps, and fresh keyrings for every test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from hexahub.core.db import Database
from hexahub.identity import service as identity_service
from hexahub.identity import workspaces
from hexahub.settings import Settings
from hexahub.vault import keyring
from hexahub.vault.service import Caller

# Imported so vault tests can use the identity fixtures (alice, bob) as well.
from tests.identity.conftest import alice, bob  # noqa: F401

PASSWORD = "correct horse battery"
SYSTEM = Caller.system("test")


def canary(label: str = "value") -> str:
    """A value no database, dump or log line could hold by accident."""
    return f"plaintext-{label}-{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def _fresh_keyrings() -> Iterator[None]:
    keyring.forget_keyrings()
    yield
    keyring.forget_keyrings()


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    found = Database(settings)
    try:
        yield found
    finally:
        await found.dispose()


@dataclass
class Space:
    workspace_id: str
    slug: str
    owner_email: str


@pytest.fixture
async def space(database: Database) -> Space:
    """The first administrator and the Default workspace they own."""
    async with database.sessions() as db:
        user = await identity_service.create_first_admin(
            db, email="owner@example.org", password=PASSWORD
        )
        workspace = (await workspaces.workspaces_of(db, user.id))[0][0]
        return Space(workspace.id, workspace.slug, user.email)
