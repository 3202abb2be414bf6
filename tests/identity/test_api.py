"""The identity API through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import httpx
import jwt
import pytest
from sqlalchemy import select, text, update

from hexahub.core.db import utcnow
from hexahub.identity.models import ApiKey, AuditEvent, AuthSession
from tests.identity.conftest import PASSWORD, Person, make_person, sign_in


def runtime_of(client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    return client.app.state.runtime  # type: ignore[attr-defined]


async def audit_actions(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    async with runtime_of(client).db.sessions() as db:
        rows = await db.scalars(select(AuditEvent).order_by(AuditEvent.created_at))
        return [(e.action, e.outcome) for e in rows]


# --- sign-in and tokens --------------------------------------------------------------


async def test_login_gives_tokens_that_reach_me(app_client: httpx.AsyncClient, alice: Person):
    me = await app_client.get("/api/me", headers=alice.headers)
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["user"]["email"] == "alice@example.org"
    assert body["user"]["is_admin"] is True
    assert "password_hash" not in json.dumps(body)
    assert [w["role"] for w in body["workspaces"]] == ["owner"]
    assert ("auth.login", "ok") in await audit_actions(app_client)


async def test_wrong_password_is_refused_and_audited(app_client: httpx.AsyncClient, alice: Person):
    response = await app_client.post(
        "/api/auth/login", json={"email": alice.email, "password": "not the password"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "wrong e-mail or password"
    assert ("auth.login", "denied") in await audit_actions(app_client)


async def test_refresh_rotates_and_reuse_revokes_the_family(
    app_client: httpx.AsyncClient, alice: Person
):
    first_refresh = alice.refresh_token
    rotated = await app_client.post("/api/auth/refresh", json={"refresh_token": first_refresh})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first_refresh
    headers = {"Authorization": f"Bearer {second['access_token']}"}
    assert (await app_client.get("/api/me", headers=headers)).status_code == 200

    reused = await app_client.post("/api/auth/refresh", json={"refresh_token": first_refresh})
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "refresh_token_reused"
    # The whole family is gone: the newest refresh token and the access tokens too.
    again = await app_client.post(
        "/api/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert again.status_code == 401
    assert (await app_client.get("/api/me", headers=headers)).status_code == 401
    assert (await app_client.get("/api/me", headers=alice.headers)).status_code == 401
    assert ("auth.refresh_reused", "denied") in await audit_actions(app_client)


async def test_logout_revokes_at_once(app_client: httpx.AsyncClient, alice: Person):
    response = await app_client.post("/api/auth/logout", headers=alice.headers)
    assert response.status_code == 204
    assert (await app_client.get("/api/me", headers=alice.headers)).status_code == 401
    refreshed = await app_client.post(
        "/api/auth/refresh", json={"refresh_token": alice.refresh_token}
    )
    assert refreshed.status_code == 401


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        jwt.encode(
            {"sub": "x", "sid": "y", "typ": "access", "exp": 9999999999}, "another-signing-key-" * 2
        ),
        "hh_00000000_notarealkeyatall",
    ],
)
async def test_malformed_and_forged_tokens_are_refused(
    app_client: httpx.AsyncClient, alice: Person, token: str
):
    response = await app_client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


async def test_token_with_our_key_but_alg_none_or_expired_is_refused(
    app_client: httpx.AsyncClient, alice: Person
):
    claims = jwt.decode(alice.access_token, options={"verify_signature": False})
    unsigned = jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]
    response = await app_client.get("/api/me", headers={"Authorization": f"Bearer {unsigned}"})
    assert response.status_code == 401
    secret = runtime_of(app_client).settings.resolved_secret_key()
    expired = jwt.encode({**claims, "exp": int(time.time()) - 5}, secret, algorithm="HS256")
    response = await app_client.get("/api/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


async def test_idle_session_ends(app_client: httpx.AsyncClient, alice: Person):
    idle = runtime_of(app_client).settings.session_idle_timeout_minutes
    async with runtime_of(app_client).db.sessions() as db:
        await db.execute(
            update(AuthSession).values(last_used_at=utcnow() - timedelta(minutes=idle + 1))
        )
        await db.commit()
    assert (await app_client.get("/api/me", headers=alice.headers)).status_code == 401


# --- API keys ------------------------------------------------------------------------


async def create_key(client: httpx.AsyncClient, person: Person, **body: object) -> dict:
    response = await client.post("/api/keys", headers=person.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_api_key_shown_once_and_works_with_both_headers(
    app_client: httpx.AsyncClient, alice: Person
):
    created = await create_key(app_client, alice, name="laptop", scopes=["read"])
    secret = created["key"]
    assert secret.startswith(created["prefix"] + "_")
    listed = (await app_client.get("/api/keys", headers=alice.headers)).json()
    assert [k["prefix"] for k in listed] == [created["prefix"]]
    assert secret not in json.dumps(listed)
    async with runtime_of(app_client).db.sessions() as db:
        stored = (await db.scalars(select(ApiKey))).one()
        assert secret not in (stored.key_hash, stored.prefix)
    for headers in ({"Authorization": f"Bearer {secret}"}, {"x-api-key": secret}):
        me = await app_client.get("/api/me", headers=headers)
        assert me.status_code == 200, me.text
        assert me.json()["auth"]["key_prefix"] == created["prefix"]


async def test_key_scopes_limit_what_it_can_do(app_client: httpx.AsyncClient, alice: Person):
    secret = (await create_key(app_client, alice, name="reader", scopes=["read"]))["key"]
    headers = {"Authorization": f"Bearer {secret}"}
    assert (await app_client.get("/api/workspaces", headers=headers)).status_code == 200
    denied = await app_client.post("/api/workspaces", headers=headers, json={"name": "x"})
    assert denied.status_code == 403
    assert "write" in denied.json()["error"]["message"]
    # A key cannot mint a stronger key.
    stronger = await app_client.post(
        "/api/keys", headers=headers, json={"name": "y", "scopes": ["admin"]}
    )
    assert stronger.status_code == 403


async def test_workspace_bound_key_sees_only_its_workspace(
    app_client: httpx.AsyncClient, alice: Person
):
    other = await app_client.post("/api/workspaces", headers=alice.headers, json={"name": "Second"})
    assert other.status_code == 201
    secret = (
        await create_key(
            app_client, alice, name="bound", scopes=["admin"], workspace_id=alice.workspace_id
        )
    )["key"]
    headers = {"Authorization": f"Bearer {secret}"}
    listed = (await app_client.get("/api/workspaces", headers=headers)).json()
    assert [w["id"] for w in listed] == [alice.workspace_id]
    hidden = await app_client.get(f"/api/workspaces/{other.json()['id']}", headers=headers)
    assert hidden.status_code == 404


async def test_revoked_and_expired_keys_stop_working(app_client: httpx.AsyncClient, alice: Person):
    revoked = await create_key(app_client, alice, name="r", scopes=["read"])
    expiring = await create_key(app_client, alice, name="e", scopes=["read"], expires_in_days=1)
    response = await app_client.delete(f"/api/keys/{revoked['id']}", headers=alice.headers)
    assert response.status_code == 204
    gone = await app_client.get("/api/me", headers={"x-api-key": revoked["key"]})
    assert gone.status_code == 401
    assert "revoked" in gone.json()["error"]["message"]
    async with runtime_of(app_client).db.sessions() as db:
        await db.execute(
            update(ApiKey)
            .where(ApiKey.id == expiring["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await db.commit()
    late = await app_client.get("/api/me", headers={"x-api-key": expiring["key"]})
    assert late.status_code == 401
    assert "expired" in late.json()["error"]["message"]


async def test_key_last_used_is_recorded_in_batches(app_client: httpx.AsyncClient, alice: Person):
    created = await create_key(app_client, alice, name="batch", scopes=["read"])
    for _ in range(3):
        assert (await app_client.get("/api/me", headers={"x-api-key": created["key"]})).is_success
    async with runtime_of(app_client).db.sessions() as db:
        assert (await db.get(ApiKey, created["id"])).last_used_at is None  # type: ignore[union-attr]
    assert await app_client.app.state.key_usage.flush() == 1  # type: ignore[attr-defined]
    async with runtime_of(app_client).db.sessions() as db:
        assert (await db.get(ApiKey, created["id"])).last_used_at is not None  # type: ignore[union-attr]


async def test_disabling_a_user_stops_their_tokens_and_keys_at_once(
    app_client: httpx.AsyncClient, alice: Person, bob: Person
):
    bobs_key = (await create_key(app_client, bob, name="k", scopes=["read"]))["key"]
    response = await app_client.patch(
        f"/api/users/{bob.user_id}", headers=alice.headers, json={"is_active": False}
    )
    assert response.status_code == 200, response.text
    assert (await app_client.get("/api/me", headers=bob.headers)).status_code == 401
    assert (await app_client.get("/api/me", headers={"x-api-key": bobs_key})).status_code == 401
    login = await app_client.post(
        "/api/auth/login", json={"email": bob.email, "password": PASSWORD}
    )
    assert login.status_code == 403


async def test_only_instance_admins_manage_users(
    app_client: httpx.AsyncClient, alice: Person, bob: Person
):
    denied = await app_client.post(
        "/api/users", headers=bob.headers, json={"email": "eve@example.org", "password": "x" * 12}
    )
    assert denied.status_code == 403
    assert ("access.denied", "denied") in await audit_actions(app_client)
    made = await app_client.post(
        "/api/users",
        headers=alice.headers,
        json={"email": "Eve@Example.org", "password": "x" * 12},
    )
    assert made.status_code == 201
    assert made.json()["email"] == "eve@example.org"
    duplicate = await app_client.post(
        "/api/users", headers=alice.headers, json={"email": "eve@example.org", "password": "y" * 12}
    )
    assert duplicate.status_code == 409


# --- workspaces and members ----------------------------------------------------------


async def test_member_management_and_role_rules(
    app_client: httpx.AsyncClient, alice: Person, bob: Person
):
    ws = alice.workspace_id
    carol = await make_person(app_client, "carol@example.org")
    added = await app_client.post(
        f"/api/workspaces/{ws}/members",
        headers=alice.headers,
        json={"email": bob.email, "role": "viewer"},
    )
    assert added.status_code == 201, added.text
    # A viewer sees the workspace and its members but cannot change them.
    assert (await app_client.get(f"/api/workspaces/{ws}", headers=bob.headers)).json()[
        "role"
    ] == "viewer"
    members = await app_client.get(f"/api/workspaces/{ws}/members", headers=bob.headers)
    assert {m["email"] for m in members.json()} == {alice.email, bob.email}
    escalate = await app_client.patch(
        f"/api/workspaces/{ws}/members/{bob.user_id}", headers=bob.headers, json={"role": "admin"}
    )
    assert escalate.status_code == 403
    invite = await app_client.post(
        f"/api/workspaces/{ws}/members",
        headers=bob.headers,
        json={"email": carol.email, "role": "member"},
    )
    assert invite.status_code == 403
    # Nobody is made owner by a role change.
    owner = await app_client.patch(
        f"/api/workspaces/{ws}/members/{bob.user_id}",
        headers=alice.headers,
        json={"role": "owner"},
    )
    assert owner.status_code == 422
    promoted = await app_client.patch(
        f"/api/workspaces/{ws}/members/{bob.user_id}",
        headers=alice.headers,
        json={"role": "admin"},
    )
    assert promoted.json()["role"] == "admin"
    # An admin cannot remove or demote the owner.
    remove_owner = await app_client.delete(
        f"/api/workspaces/{ws}/members/{alice.user_id}", headers=bob.headers
    )
    assert remove_owner.status_code == 403
    actions = await audit_actions(app_client)
    assert ("member.added", "ok") in actions
    assert ("member.role_changed", "ok") in actions
    assert ("access.denied", "denied") in actions


async def test_transfer_ownership(app_client: httpx.AsyncClient, alice: Person, bob: Person):
    ws = alice.workspace_id
    await app_client.post(
        f"/api/workspaces/{ws}/members",
        headers=alice.headers,
        json={"email": bob.email, "role": "member"},
    )
    moved = await app_client.post(
        f"/api/workspaces/{ws}/transfer-ownership",
        headers=alice.headers,
        json={"user_id": bob.user_id},
    )
    assert moved.status_code == 200, moved.text
    roles = {
        m["email"]: m["role"]
        for m in (await app_client.get(f"/api/workspaces/{ws}/members", headers=bob.headers)).json()
    }
    assert roles == {alice.email: "admin", bob.email: "owner"}
    again = await app_client.post(
        f"/api/workspaces/{ws}/transfer-ownership",
        headers=alice.headers,
        json={"user_id": alice.user_id},
    )
    assert again.status_code == 403


async def test_group_role_gives_access(app_client: httpx.AsyncClient, alice: Person, bob: Person):
    ws = alice.workspace_id
    assert (await app_client.get(f"/api/workspaces/{ws}", headers=bob.headers)).status_code == 404
    group = await app_client.post(
        f"/api/workspaces/{ws}/groups", headers=alice.headers, json={"name": "ops"}
    )
    assert group.status_code == 201, group.text
    gid = group.json()["id"]
    added = await app_client.post(
        f"/api/workspaces/{ws}/groups/{gid}/members",
        headers=alice.headers,
        json={"email": bob.email},
    )
    assert added.json()["member_ids"] == [bob.user_id]
    role = await app_client.put(
        f"/api/workspaces/{ws}/groups/{gid}/role", headers=alice.headers, json={"role": "member"}
    )
    assert role.status_code == 204
    seen = await app_client.get(f"/api/workspaces/{ws}", headers=bob.headers)
    assert seen.json()["role"] == "member"
    await app_client.put(
        f"/api/workspaces/{ws}/groups/{gid}/role", headers=alice.headers, json={"role": None}
    )
    assert (await app_client.get(f"/api/workspaces/{ws}", headers=bob.headers)).status_code == 404


async def test_cookie_session_needs_csrf_header_to_change_things(
    app_client: httpx.AsyncClient, alice: Person
):
    runtime = runtime_of(app_client)
    from hexahub.identity import sessions
    from hexahub.identity.models import User

    async with runtime.db.sessions() as db:
        user = await db.get(User, alice.user_id)
        grant = await sessions.start_browser_session(db, user, runtime.settings)
    app_client.cookies.set("hexahub_session", grant.token)
    app_client.cookies.set("hexahub_csrf", "t" * 43)
    try:
        assert (await app_client.get("/api/me")).status_code == 200
        blocked = await app_client.post("/api/workspaces", json={"name": "via cookie"})
        assert blocked.status_code == 403
        allowed = await app_client.post(
            "/api/workspaces", json={"name": "via cookie"}, headers={"X-CSRF-Token": "t" * 43}
        )
        assert allowed.status_code == 201
    finally:
        app_client.cookies.clear()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/workspaces", {"name": "x" * 201}),
        ("/api/workspaces", {"name": "ok", "unexpected": 1}),
        ("/api/keys", {"name": "k", "scopes": ["root"]}),
        ("/api/keys", {"name": "k", "scopes": []}),
        ("/api/keys", {"name": "k", "scopes": ["read"], "expires_in_days": 0}),
    ],
)
async def test_bad_input_is_422_and_changes_nothing(
    app_client: httpx.AsyncClient, alice: Person, path: str, body: dict
):
    before = await audit_actions(app_client)
    response = await app_client.post(path, headers=alice.headers, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert await audit_actions(app_client) == before


# --- audit ---------------------------------------------------------------------------


async def test_audit_log_filters_exports_and_is_append_only(
    app_client: httpx.AsyncClient, alice: Person, bob: Person
):
    ws = alice.workspace_id
    await app_client.patch(f"/api/workspaces/{ws}", headers=alice.headers, json={"name": "Main"})
    await app_client.post(
        f"/api/workspaces/{ws}/members",
        headers=alice.headers,
        json={"email": bob.email, "role": "viewer"},
    )
    events = (await app_client.get(f"/api/workspaces/{ws}/audit", headers=alice.headers)).json()
    actions = [e["action"] for e in events]
    assert actions[:2] == ["member.added", "workspace.updated"]
    renamed = next(e for e in events if e["action"] == "workspace.updated")
    assert renamed["before"]["name"] == "Default" and renamed["after"]["name"] == "Main"
    filtered = await app_client.get(
        f"/api/workspaces/{ws}/audit", headers=alice.headers, params={"action": "member."}
    )
    assert [e["action"] for e in filtered.json()] == ["member.added"]
    # Viewers do not read the audit log.
    assert (
        await app_client.get(f"/api/workspaces/{ws}/audit", headers=bob.headers)
    ).status_code == 403
    export = await app_client.get(f"/api/workspaces/{ws}/audit/export", headers=alice.headers)
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert {e["id"] for e in lines} >= {e["id"] for e in events}
    assert lines == sorted(lines, key=lambda e: e["created_at"])

    async with runtime_of(app_client).db.sessions() as db:
        with pytest.raises(Exception, match="append-only"):
            await db.execute(text("UPDATE audit_events SET action = 'tampered'"))
        await db.rollback()
        with pytest.raises(Exception, match="append-only"):
            await db.execute(text("DELETE FROM audit_events"))
        await db.rollback()


async def test_instance_audit_is_for_admins_only(
    app_client: httpx.AsyncClient, alice: Person, bob: Person
):
    assert (await app_client.get("/api/audit", headers=alice.headers)).status_code == 200
    assert (await app_client.get("/api/audit", headers=bob.headers)).status_code == 403
    naive = await app_client.get(
        "/api/audit", headers=alice.headers, params={"since": "2026-01-01T00:00:00"}
    )
    assert naive.status_code == 422


@pytest.mark.parametrize("route", ["list", "export"])
@pytest.mark.parametrize(
    "params",
    [
        {"outcome": "bogus"},
        {"since": "2026-01-01T00:00:00"},  # no time zone
        {"until": "yesterday"},
        {"action": "x" * 101},
    ],
)
async def test_bad_audit_filters_are_refused_before_anything_is_read(
    app_client: httpx.AsyncClient, alice: Person, route: str, params: dict[str, str]
):
    """The exports stream: a filter found bad once streaming began could only cut the
    connection. Both logs, listed or exported, answer 422 in the error shape first."""
    suffix = "/export" if route == "export" else ""
    for base in ("/api/audit", f"/api/workspaces/{alice.workspace_id}/audit"):
        response = await app_client.get(base + suffix, headers=alice.headers, params=params)
        assert response.status_code == 422, (base, response.text)
        assert response.json()["error"]["code"] == "validation_error"
        assert next(iter(params)) in response.json()["error"]["message"]
    good = await app_client.get(
        f"/api/audit{suffix}", headers=alice.headers, params={"outcome": "denied"}
    )
    assert good.status_code == 200


async def test_second_person_signs_in_separately(app_client: httpx.AsyncClient, bob: Person):
    await sign_in(app_client, bob)
    me = await app_client.get("/api/me", headers=bob.headers)
    assert me.json()["user"]["email"] == bob.email
