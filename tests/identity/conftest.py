"""Helpers for identity tests: people with passwords, tokens and workspaces."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import pytest

from hexahub.identity import service, workspaces

PASSWORD = "correct horse battery"


@dataclass
class Person:
    email: str
    user_id: str
    workspace_id: str
    access_token: str = ""
    refresh_token: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def make_person(
    client: httpx.AsyncClient, email: str, *, admin: bool = False, first: bool = False
) -> Person:
    """Create an account with its own workspace, sign it in over the API."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    async with runtime.db.sessions() as db:
        if first:
            user = await service.create_first_admin(db, email=email, password=PASSWORD)
            found = await workspaces.workspaces_of(db, user.id)
            workspace_id = found[0][0].id
        else:
            user = await service.create_user(db, email=email, password=PASSWORD, is_admin=admin)
            workspace = await workspaces.create_workspace(db, user, name=f"{email} space")
            workspace_id = workspace.id
            await db.commit()
    person = Person(email=email, user_id=user.id, workspace_id=workspace_id)
    await sign_in(client, person)
    return person


async def sign_in(client: httpx.AsyncClient, person: Person) -> None:
    response = await client.post(
        "/api/auth/login", json={"email": person.email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    person.access_token = body["access_token"]
    person.refresh_token = body["refresh_token"]


@pytest.fixture
async def alice(app_client: httpx.AsyncClient) -> Person:
    """The first administrator, owner of the Default workspace."""
    return await make_person(app_client, "alice@example.org", first=True)


@pytest.fixture
async def bob(app_client: httpx.AsyncClient, alice: Person) -> Person:
    """An ordinary user with a workspace of his own."""
    return await make_person(app_client, "bob@example.org")
