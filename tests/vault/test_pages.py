"""The secrets page: values hidden until revealed, every reveal audited, CSRF on every
form, and the same path policies as the API."""

from __future__ import annotations

import re

import httpx

from hexahub.identity import audit
from tests.identity.conftest import PASSWORD, Person, make_person
from tests.vault.conftest import canary

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def browser_sign_in(client: httpx.AsyncClient, person: Person) -> None:
    page = await client.get("/login")
    token = _CSRF.search(page.text)
    assert token, page.text
    signed = await client.post(
        "/login",
        data={
            "csrf_token": token.group(1),
            "email": person.email,
            "password": PASSWORD,
            "next": "/",
        },
    )
    assert signed.status_code == 303, signed.text


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


async def actions(client: httpx.AsyncClient, action: str) -> list[audit.AuditEvent]:
    async with client.app.state.runtime.db.sessions() as db:  # type: ignore[attr-defined]
        return await audit.query(db, action=action)


async def test_values_are_hidden_until_revealed_and_reveals_are_audited(
    app_client: httpx.AsyncClient, alice: Person
) -> None:
    c = app_client
    value = canary()
    put = await c.put(
        f"/api/workspaces/{alice.workspace_id}/secrets/data/infra/pve",
        headers=alice.headers,
        json={"data": {"token": value}, "tags": ["proxmox"]},
    )
    assert put.status_code == 200
    await browser_sign_in(c, alice)
    url = f"/workspaces/{alice.workspace_id}/secrets"
    page = await c.get(url)
    assert page.status_code == 200
    assert "infra/pve" in page.text and "proxmox" in page.text and value not in page.text
    assert page.headers["cache-control"] == "no-store"

    # Without the form's CSRF token, nothing is revealed.
    forged = await c.post(f"{url}/reveal", data={"path": "infra/pve", "csrf_token": "x" * 43})
    assert forged.status_code == 403 and value not in forged.text
    assert await actions(c, "secret.revealed") == []

    shown = await c.post(f"{url}/reveal", data={"path": "infra/pve", "csrf_token": csrf_of(page)})
    assert shown.status_code == 200 and value in shown.text
    revealed = await actions(c, "secret.revealed")
    assert len(revealed) == 1 and revealed[0].actor == alice.email
    assert revealed[0].details["via"] == "web" and value not in str(revealed[0].details)


async def test_forms_put_delete_and_undelete(app_client: httpx.AsyncClient, alice: Person) -> None:
    c = app_client
    await browser_sign_in(c, alice)
    url = f"/workspaces/{alice.workspace_id}/secrets"
    token = csrf_of(await c.get(url))
    saved = await c.post(
        f"{url}/put",
        data={"csrf_token": token, "path": "apps/db", "key": "password", "value": "p1"},
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("?saved=true")
    await c.post(
        f"{url}/put", data={"csrf_token": token, "path": "apps/db", "key": "user", "value": "app"}
    )
    read = await c.get(
        f"/api/workspaces/{alice.workspace_id}/secrets/data/apps/db", headers=alice.headers
    )
    assert read.json()["data"] == {"password": "p1", "user": "app"}  # the form merges keys
    deleted = await c.post(f"{url}/delete", data={"csrf_token": token, "path": "apps/db"})
    assert deleted.status_code == 200 and "Undelete restores it" in deleted.text
    assert "Undelete" in deleted.text
    restored = await c.post(f"{url}/undelete", data={"csrf_token": token, "path": "apps/db"})
    assert restored.status_code == 200 and "Restored." in restored.text
    bad = await c.post(
        f"{url}/put", data={"csrf_token": token, "path": "a/../b", "key": "k", "value": "v"}
    )
    assert bad.status_code == 422 and "segments" in bad.text


async def test_page_refuses_strangers_outsiders_and_unpermitted_reveals(
    app_client: httpx.AsyncClient, alice: Person
) -> None:
    c = app_client
    value = canary()
    await c.put(
        f"/api/workspaces/{alice.workspace_id}/secrets/data/apps/x",
        headers=alice.headers,
        json={"data": {"v": value}},
    )
    url = f"/workspaces/{alice.workspace_id}/secrets"
    stranger = await c.get(url)
    assert stranger.status_code == 303 and stranger.headers["location"].startswith("/login")

    bob = await make_person(c, "bob@example.org")
    await browser_sign_in(c, bob)
    outsider = await c.get(url)
    assert outsider.status_code == 404 and "apps/x" not in outsider.text

    viewer = await make_person(c, "viewer@example.org")
    added = await c.post(
        f"/api/workspaces/{alice.workspace_id}/members",
        headers=alice.headers,
        json={"email": viewer.email, "role": "viewer"},
    )
    assert added.status_code == 201
    await c.post(
        f"/api/workspaces/{alice.workspace_id}/secrets/policies",
        headers=alice.headers,
        json={"role": "viewer", "path_prefix": "apps", "capabilities": ["list"]},
    )
    c.cookies.clear()
    await browser_sign_in(c, viewer)
    page = await c.get(url)
    assert page.status_code == 200 and "apps/x" in page.text
    refused = await c.post(f"{url}/reveal", data={"path": "apps/x", "csrf_token": csrf_of(page)})
    assert refused.status_code == 403 and value not in refused.text
    assert "no vault policy" in refused.text
    denied = await actions(c, "secret.denied")
    assert denied[0].actor == viewer.email and denied[0].details["capability"] == "read"


async def test_a_write_refused_after_rollback_still_renders_the_page(
    app_client: httpx.AsyncClient, alice: Person
) -> None:
    c = app_client
    await browser_sign_in(c, alice)
    url = f"/workspaces/{alice.workspace_id}/secrets"
    token = csrf_of(await c.get(url))
    too_big = "x" * 70_000  # over HEXAHUB_VAULT_MAX_VALUE_BYTES, found inside the write
    answer = await c.post(
        f"{url}/put", data={"csrf_token": token, "path": "big", "key": "v", "value": too_big}
    )
    assert answer.status_code == 422 and "the limit is 65536" in answer.text
    assert alice.email in answer.text  # the signed-in shell still renders
