"""The vault API: the policy matrix across roles and API keys, audit of every read and
refusal (never a value), check-and-set, soft delete, expiry, .env files, errors."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import update

from hexahub.core.db import utcnow
from hexahub.identity import audit
from hexahub.vault.models import VaultSecretVersion
from tests.identity.conftest import Person, make_person
from tests.vault.conftest import canary


def base(person_or_id: Person | str) -> str:
    workspace_id = person_or_id if isinstance(person_or_id, str) else person_or_id.workspace_id
    return f"/api/workspaces/{workspace_id}/secrets"


async def all_events(client: httpx.AsyncClient) -> list[dict]:
    async with client.app.state.runtime.db.sessions() as db:  # type: ignore[attr-defined]
        return [audit.as_dict(e) for e in await audit.query(db, limit=500)]


async def join(client: httpx.AsyncClient, owner: Person, email: str, role: str) -> Person:
    person = await make_person(client, email)
    added = await client.post(
        f"/api/workspaces/{owner.workspace_id}/members",
        headers=owner.headers,
        json={"email": email, "role": role},
    )
    assert added.status_code == 201, added.text
    return person


async def make_key(
    client: httpx.AsyncClient, person: Person, workspace_id: str, scopes: list[str]
) -> tuple[str, dict[str, str]]:
    made = await client.post(
        "/api/keys",
        headers=person.headers,
        json={"name": "k", "scopes": scopes, "workspace_id": workspace_id},
    )
    assert made.status_code == 201, made.text
    return made.json()["id"], {"Authorization": f"Bearer {made.json()['key']}"}


async def grant(client: httpx.AsyncClient, owner: Person, **policy: object) -> str:
    made = await client.post(f"{base(owner)}/policies", headers=owner.headers, json=policy)
    assert made.status_code == 201, made.text
    return made.json()["id"]


@dataclass
class Op:
    name: str
    method: str
    path: str
    params: dict[str, str] | None = None
    json: dict | None = None


OPS = [
    Op("read apps/ci/token", "GET", "data/apps/ci/token"),
    Op("read apps/web/db", "GET", "data/apps/web/db"),
    Op("read infra/pve/token", "GET", "data/infra/pve/token"),
    Op("write apps/web/db", "PUT", "data/apps/web/db", json={"data": {"password": "new"}}),
    Op("write infra/pve/token", "PUT", "data/infra/pve/token", json={"data": {"token": "new"}}),
    Op("list apps", "GET", "", params={"prefix": "apps"}),
    Op("list infra", "GET", "", params={"prefix": "infra"}),
    Op("history apps/ci/token", "GET", "metadata/apps/ci/token"),
    Op("delete infra/pve/token", "DELETE", "data/infra/pve/token"),
]
EVERYTHING = {op.name for op in OPS}
# Who may do what (everything else is 403 for them, and 404 for an outsider).
ALLOWED = {
    "owner": EVERYTHING,
    "admin": EVERYTHING,
    "member": {
        "read apps/ci/token",
        "read apps/web/db",
        "write apps/web/db",
        "list apps",
        "history apps/ci/token",
    },
    "viewer": {"list apps", "history apps/ci/token"},
    # alice's read-scoped key, granted read+list on apps/ci.
    "key ci": {"read apps/ci/token", "list apps", "history apps/ci/token"},
    # alice's read+write key that no policy names: API keys get nothing by default.
    "key unnamed": set(),
    # the member's write key, granted read+write on apps/web (within the member's rights).
    "key member": {"read apps/web/db", "write apps/web/db"},
    # a key with only the gateway scope.
    "key gateway": set(),
    # a key the policy names but whose owner (the viewer) may not read: owner's limits hold.
    "key viewer": set(),
    "outsider": set(),
}


async def test_policy_matrix_across_roles_and_keys(
    app_client: httpx.AsyncClient, alice: Person, bob: Person
) -> None:
    c = app_client
    ws = alice.workspace_id
    values = {
        p: canary(p.replace("/", "-")) for p in ("apps/ci/token", "apps/web/db", "infra/pve/token")
    }
    for path, value in values.items():
        ok = await c.put(
            f"{base(alice)}/data/{path}", headers=alice.headers, json={"data": {"v": value}}
        )
        assert ok.status_code == 200, ok.text
    admin = await join(c, alice, "admin@example.org", "admin")
    member = await join(c, alice, "member@example.org", "member")
    viewer = await join(c, alice, "viewer@example.org", "viewer")
    ci_id, ci = await make_key(c, alice, ws, ["read"])
    _, unnamed = await make_key(c, alice, ws, ["write"])
    member_key_id, member_key = await make_key(c, member, ws, ["write"])
    _, gateway = await make_key(c, alice, ws, ["gateway"])
    viewer_key_id, viewer_key = await make_key(c, viewer, ws, ["read"])
    await grant(c, alice, role="member", path_prefix="apps", capabilities=["read", "list"])
    await grant(c, alice, role="member", path_prefix="apps/web", capabilities=["write"])
    await grant(c, alice, role="viewer", path_prefix="apps", capabilities=["list"])
    await grant(c, alice, api_key_id=ci_id, path_prefix="apps/ci", capabilities=["read", "list"])
    await grant(
        c, alice, api_key_id=member_key_id, path_prefix="apps/web", capabilities=["read", "write"]
    )
    await grant(c, alice, api_key_id=viewer_key_id, path_prefix="", capabilities=["read"])
    actors = {
        "owner": alice.headers,
        "admin": admin.headers,
        "member": member.headers,
        "viewer": viewer.headers,
        "key ci": ci,
        "key unnamed": unnamed,
        "key member": member_key,
        "key gateway": gateway,
        "key viewer": viewer_key,
        "outsider": bob.headers,
    }
    before = len(await all_events(c))
    problems = []
    refused_here = refused_outside = 0
    # Destructive ops go last for each actor, and the owner and admin go last of all.
    for actor in ["outsider", "key gateway", "key viewer", "key unnamed", "viewer", "key ci",
                  "key member", "member", "admin", "owner"]:  # fmt: skip
        for op in OPS:
            response = await c.request(
                op.method,
                f"{base(ws)}/{op.path}".rstrip("/"),
                headers=actors[actor],
                params=op.params,
                json=op.json,
            )
            if op.name in ALLOWED[actor]:
                expected = 204 if op.method == "DELETE" else 200
            elif actor == "outsider":
                expected = 404
                refused_outside += 1
            else:
                expected = 403
                refused_here += 1
            if response.status_code != expected:
                problems.append(f"{actor}: {op.name} -> {response.status_code}, wanted {expected}")
            if op.method == "DELETE" and response.status_code == 204:
                undo = await c.post(f"{base(ws)}/undelete/infra/pve/token", headers=alice.headers)
                assert undo.status_code == 200, undo.text
    assert not problems, "\n".join(problems)

    events = (await all_events(c))[: len(await all_events(c)) - before]
    denied = [e for e in events if e["action"] == "secret.denied"]
    assert len([e for e in denied if e["workspace_id"] == ws]) == refused_here
    assert len([e for e in denied if e["workspace_id"] is None]) == refused_outside
    assert {e["actor"] for e in denied if e["workspace_id"] is None} == {bob.email}
    reads = [e for e in events if e["action"] == "secret.read"]
    assert len(reads) == sum(
        1 for actor in ALLOWED for name in ALLOWED[actor] if name.startswith("read")
    )
    text = str(await all_events(c))
    assert not [v for v in values.values() if v in text], "a secret value is in the audit log"


async def test_list_is_filtered_to_what_each_caller_may_list(
    app_client: httpx.AsyncClient, alice: Person
) -> None:
    c = app_client
    for path in ("apps/ci/token", "apps/web/db", "infra/pve/token"):
        await c.put(f"{base(alice)}/data/{path}", headers=alice.headers, json={"data": {"v": "x"}})
    viewer = await join(c, alice, "viewer@example.org", "viewer")
    ci_id, ci = await make_key(c, alice, alice.workspace_id, ["read"])
    await grant(c, alice, role="viewer", path_prefix="apps", capabilities=["list"])
    await grant(c, alice, api_key_id=ci_id, path_prefix="apps/ci", capabilities=["list"])

    async def paths(headers: dict[str, str], **params: str) -> list[str]:
        listed = await c.get(base(alice), headers=headers, params=params)
        assert listed.status_code == 200, listed.text
        return [s["path"] for s in listed.json()]

    assert await paths(alice.headers) == ["apps/ci/token", "apps/web/db", "infra/pve/token"]
    assert await paths(viewer.headers) == ["apps/ci/token", "apps/web/db"]
    assert await paths(ci) == ["apps/ci/token"]
    assert await paths(ci, prefix="apps") == ["apps/ci/token"]
    refused = await c.get(base(alice), headers=ci, params={"prefix": "infra"})
    assert refused.status_code == 403
    assert "API keys get nothing by default" in refused.json()["error"]["message"]


async def test_round_trip_check_and_set_and_soft_delete(
    app_client: httpx.AsyncClient, alice: Person
) -> None:
    c, h = app_client, alice.headers
    value = canary()
    created = await c.put(
        f"{base(alice)}/data/infra/proxmox/api-token",
        headers=h,
        json={"data": {"token": value}, "cas": 0, "owner": "ops", "tags": ["pve"]},
    )
    assert created.status_code == 200, created.text
    assert created.json()["version"] == 1 and created.json()["key_names"] == ["token"]
    assert value not in created.text
    again = await c.put(
        f"{base(alice)}/data/infra/proxmox/api-token",
        headers=h,
        json={"data": {"token": "x"}, "cas": 0},
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    read = await c.get(f"{base(alice)}/data/infra/proxmox/api-token", headers=h)
    assert read.status_code == 200 and read.json()["data"] == {"token": value}
    assert read.headers["cache-control"] == "no-store"
    patched = await c.patch(
        f"{base(alice)}/data/infra/proxmox/api-token",
        headers=h,
        json={"data": {"user": "root@pam"}, "cas": 1},
    )
    assert patched.json()["key_names"] == ["token", "user"]
    meta = await c.get(f"{base(alice)}/metadata/infra/proxmox/api-token", headers=h)
    body = meta.json()
    assert [v["version"] for v in body["versions"]] == [2, 1]
    assert body["owner"] == "ops" and body["tags"] == ["pve"] and value not in meta.text
    changed = await c.patch(
        f"{base(alice)}/metadata/infra/proxmox/api-token",
        headers=h,
        json={"rotate_by": "2000-01-01T00:00:00Z"},
    )
    assert changed.json()["rotation_due"] is True
    assert (
        await c.delete(f"{base(alice)}/data/infra/proxmox/api-token", headers=h)
    ).status_code == 204
    gone = await c.get(f"{base(alice)}/data/infra/proxmox/api-token", headers=h)
    assert gone.status_code == 404 and "undelete" in gone.json()["error"]["message"]
    listed = await c.get(base(alice), headers=h, params={"deleted": "true"})
    assert listed.json()[0]["deleted"] is True
    back = await c.post(f"{base(alice)}/undelete/infra/proxmox/api-token", headers=h)
    assert back.status_code == 200 and back.json()["deleted"] is False
    old = await c.get(
        f"{base(alice)}/data/infra/proxmox/api-token", headers=h, params={"version": 1}
    )
    assert old.json()["data"] == {"token": value}


async def test_expired_secret_answers_410(app_client: httpx.AsyncClient, alice: Person) -> None:
    c = app_client
    made = await c.put(
        f"{base(alice)}/data/tmp/t",
        headers=alice.headers,
        json={"data": {"v": "x"}, "ttl_seconds": 60},
    )
    assert made.json()["expires_at"] is not None
    async with c.app.state.runtime.db.sessions() as db:  # type: ignore[attr-defined]
        await db.execute(update(VaultSecretVersion).values(expires_at=utcnow()))
        await db.commit()
    read = await c.get(f"{base(alice)}/data/tmp/t", headers=alice.headers)
    assert read.status_code == 410 and read.json()["error"]["code"] == "secret_expired"
    listed = await c.get(base(alice), headers=alice.headers)
    assert listed.json()[0]["expired"] is True
    both = await c.put(
        f"{base(alice)}/data/tmp/t",
        headers=alice.headers,
        json={"data": {"v": "x"}, "ttl_seconds": 60, "expires_at": "2099-01-01T00:00:00Z"},
    )
    assert both.status_code == 422


async def test_wrong_master_key_answers_503_and_no_value(
    app_client: httpx.AsyncClient, alice: Person, settings
) -> None:
    from hexahub.vault import keyring

    value = canary()
    await app_client.put(
        f"{base(alice)}/data/k", headers=alice.headers, json={"data": {"v": value}}
    )
    path = keyring.key_file_path(settings)
    keyring.replace_key_file(path, [keyring.MasterKey.generate()], {})  # someone swapped it
    keyring.forget_keyrings()
    read = await app_client.get(f"{base(alice)}/data/k", headers=alice.headers)
    assert read.status_code == 503 and read.json()["error"]["code"] == "vault_locked"
    assert value not in read.text and "wrong key" in read.text


async def test_policies_are_managed_by_admins_only(
    app_client: httpx.AsyncClient, alice: Person, bob: Person
) -> None:
    c = app_client
    member = await join(c, alice, "member@example.org", "member")
    refused = await c.post(
        f"{base(alice)}/policies",
        headers=member.headers,
        json={"role": "member", "capabilities": ["read"]},
    )
    assert refused.status_code == 403
    for bad in (
        {"role": "admin", "capabilities": ["read"]},
        {"role": "member", "api_key_id": "x", "capabilities": ["read"]},
        {"capabilities": ["read"]},
        {"role": "member", "capabilities": ["delete"]},
        {"role": "member", "capabilities": ["read"], "path_prefix": "a/../b"},
    ):
        answer = await c.post(f"{base(alice)}/policies", headers=alice.headers, json=bad)
        assert answer.status_code == 422, (bad, answer.text)
    bobs_key, _ = await make_key(c, bob, bob.workspace_id, ["read"])
    foreign = await c.post(
        f"{base(alice)}/policies",
        headers=alice.headers,
        json={"api_key_id": bobs_key, "capabilities": ["read"]},
    )
    assert foreign.status_code == 404
    policy_id = await grant(c, alice, role="member", path_prefix="apps", capabilities=["read"])
    listed = await c.get(f"{base(alice)}/policies", headers=alice.headers)
    assert [p["id"] for p in listed.json()] == [policy_id]
    assert (
        await c.delete(f"{base(alice)}/policies/{policy_id}", headers=member.headers)
    ).status_code == 403
    assert (
        await c.delete(f"{base(alice)}/policies/{policy_id}", headers=alice.headers)
    ).status_code == 204
    assert (
        await c.delete(f"{base(alice)}/policies/{policy_id}", headers=alice.headers)
    ).status_code == 404
    actions = [e["action"] for e in await all_events(c)]
    assert "secret.policy_created" in actions and "secret.policy_deleted" in actions


async def test_destroy_is_for_owners_and_admins_only(
    app_client: httpx.AsyncClient, alice: Person
) -> None:
    c = app_client
    member = await join(c, alice, "member@example.org", "member")
    await grant(c, alice, role="member", path_prefix="", capabilities=["read", "write", "list"])
    await c.put(f"{base(alice)}/data/x", headers=member.headers, json={"data": {"v": "1"}})
    assert (await c.delete(f"{base(alice)}/destroy/x", headers=member.headers)).status_code == 403
    assert (await c.delete(f"{base(alice)}/destroy/x", headers=alice.headers)).status_code == 204


async def test_env_import_and_export(app_client: httpx.AsyncClient, alice: Person) -> None:
    c = app_client
    token = "ghp_" + "a" * 36
    imported = await c.post(
        f"{base(alice)}/import/apps/grafana",
        headers=alice.headers,
        json={"content": f"ADMIN_USER=admin\nGITHUB_TOKEN={token}\n", "source": "repo/.env.sample"},
    )
    assert imported.status_code == 200, imported.text
    body = imported.json()
    assert body["key_names"] == ["ADMIN_USER", "GITHUB_TOKEN"]
    assert {(w["kind"], w["key"]) for w in body["warnings"]} == {
        ("example_file", None),
        ("credential_format", "GITHUB_TOKEN"),
    }
    assert token not in imported.text
    exported = await c.get(
        f"{base(alice)}/export", headers=alice.headers, params={"prefix": "apps"}
    )
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/plain")
    assert exported.headers["cache-control"] == "no-store"
    assert exported.text == f"ADMIN_USER=admin\nGITHUB_TOKEN={token}\n"
    # A member who may read one of two secrets under the prefix may not export it.
    await c.put(f"{base(alice)}/data/apps/other", headers=alice.headers, json={"data": {"X": "1"}})
    member = await join(c, alice, "member@example.org", "member")
    await grant(c, alice, role="member", path_prefix="apps/grafana", capabilities=["read"])
    partial = await c.get(
        f"{base(alice)}/export", headers=member.headers, params={"prefix": "apps"}
    )
    assert partial.status_code == 403 and "every secret" in partial.json()["error"]["message"]
    narrow = await c.get(
        f"{base(alice)}/export", headers=member.headers, params={"prefix": "apps/grafana"}
    )
    assert narrow.status_code == 200 and token in narrow.text
    bad = await c.post(
        f"{base(alice)}/import/apps/x", headers=alice.headers, json={"content": "just-a-value\n"}
    )
    assert bad.status_code == 422 and "just-a-value" not in bad.text


@pytest.mark.parametrize(
    "body",
    [
        {"data": {}},
        {"data": {"bad key": "v"}},
        {"data": {"trailing\n": "v"}},
        {"data": {"v": 1}},
        {"data": {"v": "x"}, "cas": -1},
        {"data": {"v": "x"}, "expires_at": "2020-01-01T00:00:00"},
        {"data": {"v": "x"}, "surprise": True},
    ],
)
async def test_bad_writes_are_4xx_and_change_nothing(
    app_client: httpx.AsyncClient, alice: Person, body: dict
) -> None:
    answer = await app_client.put(f"{base(alice)}/data/a", headers=alice.headers, json=body)
    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["error"]["code"] in ("validation_error", "bad_request")
    listed = await app_client.get(base(alice), headers=alice.headers)
    assert listed.json() == []
