"""What an API key may do with other API keys: it sees, revokes and creates only keys
within its own reach (its workspace, if bound; no scope it lacks; no later expiry)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.identity.conftest import Person, make_person


async def new_key(client: httpx.AsyncClient, headers: dict[str, str], **body: object) -> dict:
    response = await client.post("/api/keys", headers=headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def bearer(key: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


@dataclass
class Keys:
    """Alice owns workspaces A (Default) and B; her keys of every reach, and a key of
    Carol's (an admin of both workspaces) bound to B."""

    a: str
    b: str
    bound_write: dict  # A, write: the key under test
    bound_read: dict  # A, read: within its reach
    bound_admin: dict  # A, admin: a stronger scope
    bound_b: dict  # B, write
    unbound_admin: dict
    unbound_write: dict
    carol_b: dict  # Carol's, B, write
    carol_a: dict  # Carol's, A, read


@pytest.fixture
async def keys(app_client: httpx.AsyncClient, alice: Person) -> Keys:
    h = alice.headers
    created = await app_client.post("/api/workspaces", headers=h, json={"name": "B"})
    assert created.status_code == 201, created.text
    a, b = alice.workspace_id, created.json()["id"]
    carol = await make_person(app_client, "carol@example.org")
    for workspace in (a, b):
        added = await app_client.post(
            f"/api/workspaces/{workspace}/members",
            headers=h,
            json={"email": carol.email, "role": "admin"},
        )
        assert added.status_code == 201, added.text
    return Keys(
        a=a,
        b=b,
        bound_write=await new_key(app_client, h, name="bw", scopes=["write"], workspace_id=a),
        bound_read=await new_key(app_client, h, name="br", scopes=["read"], workspace_id=a),
        bound_admin=await new_key(app_client, h, name="ba", scopes=["admin"], workspace_id=a),
        bound_b=await new_key(app_client, h, name="bb", scopes=["write"], workspace_id=b),
        unbound_admin=await new_key(app_client, h, name="ua", scopes=["admin"]),
        unbound_write=await new_key(app_client, h, name="uw", scopes=["write"]),
        carol_b=await new_key(
            app_client, carol.headers, name="cb", scopes=["write"], workspace_id=b
        ),
        carol_a=await new_key(
            app_client, carol.headers, name="ca", scopes=["read"], workspace_id=a
        ),
    )


async def still_works(client: httpx.AsyncClient, key: dict) -> bool:
    return (await client.get("/api/me", headers=bearer(key))).status_code == 200


async def test_a_bound_key_lists_only_keys_within_its_reach(
    app_client: httpx.AsyncClient, keys: Keys
):
    listed = await app_client.get("/api/keys", headers=bearer(keys.bound_write))
    assert listed.status_code == 200, listed.text
    assert {k["id"] for k in listed.json()} == {keys.bound_write["id"], keys.bound_read["id"]}
    # An unbound key reaches every workspace, but still no stronger scope.
    listed = await app_client.get("/api/keys", headers=bearer(keys.unbound_write))
    shown = {k["id"] for k in listed.json()}
    assert keys.unbound_admin["id"] not in shown and keys.bound_admin["id"] not in shown
    assert {keys.bound_b["id"], keys.bound_read["id"], keys.unbound_write["id"]} <= shown


async def test_a_bound_key_revokes_nothing_beyond_its_reach(
    app_client: httpx.AsyncClient, keys: Keys
):
    headers = bearer(keys.bound_write)
    for target in (keys.unbound_admin, keys.unbound_write, keys.bound_b, keys.bound_admin):
        response = await app_client.delete(f"/api/keys/{target['id']}", headers=headers)
        assert response.status_code == 404, (target["name"], response.text)
        assert await still_works(app_client, target), target["name"]
    within = await app_client.delete(f"/api/keys/{keys.bound_read['id']}", headers=headers)
    assert within.status_code == 204
    assert not await still_works(app_client, keys.bound_read)


async def test_a_workspace_admins_bound_key_manages_only_that_workspaces_keys(
    app_client: httpx.AsyncClient, keys: Keys
):
    """Alice administers A and B; her admin key bound to A must not reach Carol's key
    bound to B, though Alice, signed in, could revoke it."""
    headers = bearer(keys.bound_admin)
    outside = await app_client.delete(f"/api/keys/{keys.carol_b['id']}", headers=headers)
    assert outside.status_code == 404
    assert await still_works(app_client, keys.carol_b)
    listed = await app_client.get(f"/api/workspaces/{keys.b}/keys", headers=headers)
    assert listed.status_code == 404
    inside = await app_client.delete(f"/api/keys/{keys.carol_a['id']}", headers=headers)
    assert inside.status_code == 204
    assert not await still_works(app_client, keys.carol_a)


async def test_a_workspace_key_list_through_a_key_hides_stronger_keys(
    app_client: httpx.AsyncClient, alice: Person, keys: Keys
):
    reader = await new_key(
        app_client, alice.headers, name="r", scopes=["read"], workspace_id=keys.a
    )
    listed = await app_client.get(f"/api/workspaces/{keys.a}/keys", headers=bearer(reader))
    assert listed.status_code == 200, listed.text
    shown = {k["id"] for k in listed.json()}
    assert shown == {reader["id"], keys.bound_read["id"], keys.carol_a["id"]}
    # Signed in, Alice sees every key bound to A.
    everything = await app_client.get(f"/api/workspaces/{keys.a}/keys", headers=alice.headers)
    assert {keys.bound_admin["id"], keys.bound_write["id"]} <= {k["id"] for k in everything.json()}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"scopes": ["read"]}, "workspace"),  # unbound
        ({"scopes": ["read"], "workspace_id": "B"}, "workspace"),
        ({"scopes": ["admin"], "workspace_id": "A"}, "admin"),
        ({"scopes": ["gateway"], "workspace_id": "A"}, "gateway"),
    ],
)
async def test_a_bound_key_mints_no_key_beyond_its_reach(
    app_client: httpx.AsyncClient, keys: Keys, body: dict, why: str
):
    if "workspace_id" in body:
        body = {**body, "workspace_id": {"A": keys.a, "B": keys.b}[body["workspace_id"]]}
    headers = bearer(keys.bound_write)
    before = await app_client.get("/api/keys", headers=bearer(keys.unbound_admin))
    response = await app_client.post("/api/keys", headers=headers, json={"name": "x", **body})
    assert response.status_code == 403, response.text
    assert why in response.json()["error"]["message"]
    after = await app_client.get("/api/keys", headers=bearer(keys.unbound_admin))
    assert after.json() == before.json()
    allowed = await app_client.post(
        "/api/keys",
        headers=headers,
        json={"name": "ok", "scopes": ["read"], "workspace_id": keys.a},
    )
    assert allowed.status_code == 201, allowed.text


async def test_an_expiring_key_mints_no_key_that_outlives_it(
    app_client: httpx.AsyncClient, alice: Person
):
    minter = bearer(
        await new_key(app_client, alice.headers, name="m", scopes=["write"], expires_in_days=10)
    )
    for extra in ({}, {"expires_in_days": 11}):
        response = await app_client.post(
            "/api/keys", headers=minter, json={"name": "x", "scopes": ["read"], **extra}
        )
        assert response.status_code == 403, response.text
        assert "outlive" in response.json()["error"]["message"]
    shorter = await app_client.post(
        "/api/keys", headers=minter, json={"name": "x", "scopes": ["read"], "expires_in_days": 9}
    )
    assert shorter.status_code == 201, shorter.text
