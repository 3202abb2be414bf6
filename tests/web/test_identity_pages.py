"""The identity pages: workspaces, members, groups, API keys, audit log and account.

Driven like a browser (session cookie, CSRF cookie + hidden field, 303 redirects) through
the real app on SQLite and PostgreSQL. Each page must authorise and audit exactly like its
twin in the JSON API.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from hexahub.identity import audit, workspaces
from hexahub.identity.models import AuditEvent, Membership, Role
from hexahub.web import pages
from hexahub.web.csrf import CSRF_COOKIE
from tests.identity.conftest import PASSWORD, Person, make_person

_KEY = re.compile(r'value="(hh_[0-9a-f]{8}_[A-Za-z0-9_-]{43})"')


def runtime_of(client: httpx.AsyncClient) -> Any:
    return client.app.state.runtime  # type: ignore[attr-defined]


@dataclass
class Browser:
    """One browser: its own cookie jar, signed in as `person` through the login form."""

    client: httpx.AsyncClient
    person: Person

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(path)

    async def submit(self, path: str, data: dict[str, Any] | None = None) -> httpx.Response:
        """POST a form the way our pages do: with the CSRF cookie's token in the field."""
        return await self.client.post(
            path, data={"csrf_token": self.client.cookies[CSRF_COOKIE], **(data or {})}
        )


async def browser_sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> None:
    login = await client.get("/login")
    assert login.status_code == 200, login.text
    signed_in = await client.post(
        "/login",
        data={
            "csrf_token": client.cookies[CSRF_COOKIE],
            "email": email,
            "password": password,
            "next": "/",
        },
    )
    assert signed_in.status_code == 303, signed_in.text
    assert pages.SESSION_COOKIE in client.cookies


@asynccontextmanager
async def new_browser(app_client: httpx.AsyncClient, person: Person) -> AsyncIterator[Browser]:
    transport = httpx.ASGITransport(app=app_client.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url=str(app_client.base_url)) as c:
        c.app = app_client.app  # type: ignore[attr-defined]
        await browser_sign_in(c, person.email)
        yield Browser(c, person)


@pytest.fixture
async def alice(app_client: httpx.AsyncClient) -> Browser:
    """The first administrator, owner of the Default workspace, signed in in a browser."""
    person = await make_person(app_client, "alice@example.org", first=True)
    await browser_sign_in(app_client, person.email)
    return Browser(app_client, person)


@pytest.fixture
async def bob(app_client: httpx.AsyncClient, alice: Browser) -> AsyncIterator[Browser]:
    """An ordinary user with a workspace of his own, in a second browser."""
    person = await make_person(app_client, "bob@example.org")
    async with new_browser(app_client, person) as browser:
        yield browser


async def add_directly(
    client: httpx.AsyncClient, workspace_id: str, person: Person, role: Role
) -> None:
    async with runtime_of(client).db.sessions() as db:
        db.add(Membership(workspace_id=workspace_id, user_id=person.user_id, role=role.value))
        await db.commit()


async def role_of(client: httpx.AsyncClient, workspace_id: str, person: Person) -> str | None:
    async with runtime_of(client).db.sessions() as db:
        return await db.scalar(
            select(Membership.role).where(
                Membership.workspace_id == workspace_id, Membership.user_id == person.user_id
            )
        )


async def events(client: httpx.AsyncClient, action: str) -> list[AuditEvent]:
    async with runtime_of(client).db.sessions() as db:
        rows = await db.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.created_at)
        )
        return list(rows)


def text_of(response: httpx.Response) -> str:
    return html.unescape(response.text)


def table_rows(response: httpx.Response) -> list[str]:
    body = response.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr>.*?</tr>", body, flags=re.S)


# --- pages render, and only for the right people ---------------------------------------


async def test_every_page_renders_for_an_owner(alice: Browser) -> None:
    ws = alice.person.workspace_id
    expected = {
        "/workspaces": "Your workspaces",
        f"/workspaces/{ws}": "Short name",
        f"/workspaces/{ws}/members": "Add a member",
        f"/workspaces/{ws}/groups": "Create a group",
        f"/workspaces/{ws}/keys": "Keys bound to this workspace",
        f"/workspaces/{ws}/audit": "Export JSON lines",
        "/keys": "Create a key",
        "/account": "Change password",
        "/audit": "Logs you can read",
    }
    for path, marker in expected.items():
        page = await alice.get(path)
        assert page.status_code == 200, (path, page.text)
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
        assert marker in page.text, path
        # Navigation: the identity areas are real links, the others still placeholders.
        assert 'href="/workspaces"' in page.text
        assert 'href="/keys"' in page.text
        assert 'href="/chat"' in page.text
    workspace_page = await alice.get(f"/workspaces/{ws}/members")
    assert f'href="/workspaces/{ws}/audit">Audit</a>' in workspace_page.text
    assert 'href="/workspaces" aria-current="page"' in workspace_page.text
    assert "audit" not in {area.slug for area in pages.PRODUCT_AREAS}


async def test_pages_send_strangers_to_sign_in(
    app_client: httpx.AsyncClient, alice: Browser
) -> None:
    app_client.cookies.delete(pages.SESSION_COOKIE)
    for path in ("/workspaces", f"/workspaces/{alice.person.workspace_id}/members", "/keys"):
        page = await app_client.get(path)
        assert page.status_code == 303, path
        assert page.headers["location"].startswith("/login?next=%2F"), path
    # A form sent after the session ended comes back to the page it was on after sign-in.
    members = f"/workspaces/{alice.person.workspace_id}/members"
    late = await app_client.post(
        f"{members}/x/remove",
        data={"csrf_token": app_client.cookies[CSRF_COOKIE]},
        headers={"referer": f"http://hexahub.test{members}"},
    )
    assert late.status_code == 303
    assert late.headers["location"] == "/login?next=%2Fworkspaces%2F" + (
        f"{alice.person.workspace_id}%2Fmembers"
    )


async def test_non_members_get_404_and_viewers_403_on_admin_pages(
    app_client: httpx.AsyncClient, alice: Browser, bob: Browser
) -> None:
    ws = alice.person.workspace_id
    for tail in ("", "/members", "/groups", "/keys", "/audit"):
        page = await bob.get(f"/workspaces/{ws}{tail}")
        assert page.status_code == 404, tail
        assert page.headers["content-type"].startswith("text/html")
        assert "Not found" in page.text
        assert "alice@example.org" not in page.text
    missing = await bob.get("/workspaces/no-such-workspace/members")
    assert missing.status_code == 404

    await add_directly(app_client, ws, bob.person, Role.viewer)
    assert (await bob.get(f"/workspaces/{ws}")).status_code == 200
    members = await bob.get(f"/workspaces/{ws}/members")
    assert members.status_code == 200
    assert "alice@example.org" in members.text
    assert "Add a member" not in members.text  # no admin controls for a viewer
    assert 'name="role"' not in members.text
    assert "Leave workspace" in members.text
    assert f'href="/workspaces/{ws}/audit"' not in members.text
    for tail in ("/groups", "/keys", "/audit"):
        page = await bob.get(f"/workspaces/{ws}{tail}")
        assert page.status_code == 403, tail
        assert "Not allowed" in page.text
        assert "needs the admin role" in page.text
    denied = await events(app_client, "access.denied")
    assert [e.details["path"] for e in denied if e.details] == [
        f"/workspaces/{ws}/groups",
        f"/workspaces/{ws}/keys",
        f"/workspaces/{ws}/audit",
    ]


# --- members -----------------------------------------------------------------------------


async def test_add_change_and_remove_a_member_through_the_forms(
    app_client: httpx.AsyncClient, alice: Browser, bob: Browser
) -> None:
    ws = alice.person.workspace_id
    members = f"/workspaces/{ws}/members"
    added = await alice.submit(members, {"email": " Bob@Example.org ", "role": "member"})
    assert added.status_code == 303, added.text
    assert added.headers["location"] == f"{members}?ok=member_added"
    page = await alice.get(added.headers["location"])
    assert "Member added." in page.text
    assert "bob@example.org" in page.text
    assert await role_of(app_client, ws, bob.person) == "member"
    assert (await bob.get(f"/workspaces/{ws}")).status_code == 200

    changed = await alice.submit(f"{members}/{bob.person.user_id}/role", {"role": "admin"})
    assert changed.status_code == 303
    assert changed.headers["location"] == f"{members}?ok=role_changed"
    assert await role_of(app_client, ws, bob.person) == "admin"
    assert (await bob.get(f"/workspaces/{ws}/audit")).status_code == 200

    removed = await alice.submit(f"{members}/{bob.person.user_id}/remove")
    assert removed.status_code == 303
    assert removed.headers["location"] == f"{members}?ok=member_removed"
    assert await role_of(app_client, ws, bob.person) is None
    assert (await bob.get(f"/workspaces/{ws}")).status_code == 404

    # The same events, with the same before/after, as the API records.
    [add_event] = await events(app_client, "member.added")
    assert (add_event.workspace_id, add_event.target_id) == (ws, bob.person.user_id)
    assert add_event.actor == "alice@example.org"
    assert add_event.after == {"email": "bob@example.org", "role": "member"}
    [role_event] = await events(app_client, "member.role_changed")
    assert (role_event.before, role_event.after) == ({"role": "member"}, {"role": "admin"})
    [remove_event] = await events(app_client, "member.removed")
    assert remove_event.before == {"role": "admin"}


async def test_page_and_api_record_the_same_event(
    app_client: httpx.AsyncClient, alice: Browser, bob: Browser
) -> None:
    ws = alice.person.workspace_id
    carol = await make_person(app_client, "carol@example.org")
    via_api = await app_client.post(
        f"/api/workspaces/{ws}/members",
        json={"email": carol.email, "role": "viewer"},
        headers=alice.person.headers,
    )
    assert via_api.status_code == 201, via_api.text
    await alice.submit(f"/workspaces/{ws}/members", {"email": bob.person.email, "role": "viewer"})
    await app_client.patch(
        f"/api/workspaces/{ws}/members/{carol.user_id}",
        json={"role": "member"},
        headers=alice.person.headers,
    )
    await alice.submit(f"/workspaces/{ws}/members/{bob.person.user_id}/role", {"role": "member"})

    def shape(event: AuditEvent) -> tuple[Any, ...]:
        after = dict(event.after or {})
        after.pop("email", None)
        return (event.actor, event.outcome, event.target_type, event.before, after)

    for action in ("member.added", "member.role_changed"):
        api_event, page_event = await events(app_client, action)
        assert api_event.target_id == carol.user_id
        assert page_event.target_id == bob.person.user_id
        assert shape(api_event) == shape(page_event), action


async def test_member_form_errors_are_shown_and_change_nothing(
    app_client: httpx.AsyncClient, alice: Browser, bob: Browser
) -> None:
    members = f"/workspaces/{alice.person.workspace_id}/members"
    unknown = await alice.submit(members, {"email": "nobody@example.org", "role": "member"})
    assert unknown.status_code == 404
    assert "no active account with the e-mail nobody@example.org" in unknown.text
    assert 'value="nobody@example.org"' in unknown.text  # the form keeps what was typed
    assert 'role="alert"' in unknown.text

    as_owner = await alice.submit(members, {"email": bob.person.email, "role": "owner"})
    assert as_owner.status_code == 422
    assert "choose viewer, member or admin" in as_owner.text

    assert (await alice.submit(members, {"email": bob.person.email})).status_code == 303
    again = await alice.submit(members, {"email": bob.person.email, "role": "admin"})
    assert again.status_code == 409
    assert "already a member (as member)" in again.text
    assert len(await events(app_client, "member.added")) == 1

    owner_row = await alice.submit(f"{members}/{alice.person.user_id}/role", {"role": "viewer"})
    assert owner_row.status_code == 403
    assert "transferring ownership" in text_of(owner_row)
    assert await role_of(app_client, alice.person.workspace_id, alice.person) == "owner"


async def test_transfer_ownership_then_leave(
    app_client: httpx.AsyncClient, alice: Browser, bob: Browser
) -> None:
    ws = alice.person.workspace_id
    members = f"/workspaces/{ws}/members"
    await add_directly(app_client, ws, bob.person, Role.member)

    page = await alice.get(members)
    assert "Transfer ownership" in page.text
    assert "Leave workspace" not in page.text  # the owner cannot leave
    owner_leaves = await alice.submit(f"/workspaces/{ws}/leave")
    assert owner_leaves.status_code == 403
    assert "the owner cannot be removed" in owner_leaves.text
    # Bob is only a member: transferring is for owners.
    bob_takes = await bob.submit(f"/workspaces/{ws}/transfer", {"user_id": bob.person.user_id})
    assert bob_takes.status_code == 403
    assert await role_of(app_client, ws, bob.person) == "member"

    moved = await alice.submit(f"/workspaces/{ws}/transfer", {"user_id": bob.person.user_id})
    assert moved.status_code == 303
    assert moved.headers["location"] == f"{members}?ok=ownership_transferred"
    assert await role_of(app_client, ws, bob.person) == "owner"
    assert await role_of(app_client, ws, alice.person) == "admin"
    [event] = await events(app_client, "workspace.ownership_transferred")
    assert event.before == {"owner": alice.person.user_id}
    assert event.after == {"owner": bob.person.user_id}

    left = await alice.submit(f"/workspaces/{ws}/leave")
    assert left.status_code == 303
    assert left.headers["location"] == "/workspaces?ok=left"
    listing = await alice.get(left.headers["location"])
    assert "You left the workspace." in listing.text
    assert (await alice.get(members)).status_code == 404
    [left_event] = await events(app_client, "member.left")
    assert left_event.before == {"role": "admin"}


async def test_form_posts_without_the_csrf_field_are_refused(
    app_client: httpx.AsyncClient, alice: Browser, bob: Browser
) -> None:
    ws = alice.person.workspace_id
    refused = await alice.client.post(
        f"/workspaces/{ws}/members", data={"email": bob.person.email, "role": "admin"}
    )
    assert refused.status_code == 403
    assert "This form has expired" in refused.text
    wrong = await alice.client.post(
        f"/workspaces/{ws}/members",
        data={"email": bob.person.email, "role": "admin", "csrf_token": "x" * 43},
    )
    assert wrong.status_code == 403
    assert await role_of(app_client, ws, bob.person) is None
    assert await events(app_client, "member.added") == []


async def test_a_viewers_forged_role_change_is_refused_and_changes_nothing(
    app_client: httpx.AsyncClient, alice: Browser, bob: Browser
) -> None:
    ws = alice.person.workspace_id
    await add_directly(app_client, ws, bob.person, Role.viewer)
    await bob.get(f"/workspaces/{ws}/members")  # a real page, so his CSRF token is valid
    for target in (bob.person.user_id, alice.person.user_id):
        forged = await bob.submit(f"/workspaces/{ws}/members/{target}/role", {"role": "admin"})
        assert forged.status_code == 403
        assert "Not allowed" in forged.text
    assert await role_of(app_client, ws, bob.person) == "viewer"
    assert await role_of(app_client, ws, alice.person) == "owner"
    assert await events(app_client, "member.role_changed") == []
    denied = await events(app_client, "access.denied")
    assert len(denied) == 2
    assert denied[0].actor == "bob@example.org"
    assert denied[0].details == {
        "needs": "admin",
        "has": "viewer",
        "path": f"/workspaces/{ws}/members/{bob.person.user_id}/role",
    }


# --- workspaces and groups ---------------------------------------------------------------


async def test_create_rename_and_delete_a_workspace(
    app_client: httpx.AsyncClient, alice: Browser
) -> None:
    empty = await alice.submit("/workspaces", {"name": "  ", "description": "kept"})
    assert empty.status_code == 422
    assert "give a name of 1 to 200 characters" in empty.text
    assert ">kept</textarea>" in empty.text

    created = await alice.submit("/workspaces", {"name": "Lab", "description": "Homelab"})
    assert created.status_code == 303
    location = created.headers["location"]
    assert location.endswith("?ok=workspace_created")
    ws = location.split("/")[2].split("?")[0]
    page = await alice.get(location)
    assert "Workspace created." in page.text
    assert "<h1>Lab" in page.text
    [event] = await events(app_client, "workspace.created")
    assert event.after is not None and event.after["name"] == "Lab"
    assert event.after["role"] == "owner"

    renamed = await alice.submit(f"/workspaces/{ws}/settings", {"name": "Lab 2", "description": ""})
    assert renamed.status_code == 303
    [update] = await events(app_client, "workspace.updated")
    assert update.before is not None and update.after is not None
    assert (update.before["name"], update.after["name"]) == ("Lab", "Lab 2")

    wrong = await alice.submit(f"/workspaces/{ws}/delete", {"confirm_name": "Lab"})
    assert wrong.status_code == 422
    assert (await alice.get(f"/workspaces/{ws}")).status_code == 200
    deleted = await alice.submit(f"/workspaces/{ws}/delete", {"confirm_name": "Lab 2"})
    assert deleted.status_code == 303
    assert deleted.headers["location"] == "/workspaces?ok=workspace_deleted"
    assert (await alice.get(f"/workspaces/{ws}")).status_code == 404
    assert len(await events(app_client, "workspace.deleted")) == 1


async def test_groups_give_their_members_a_role(
    app_client: httpx.AsyncClient, alice: Browser, bob: Browser
) -> None:
    ws = alice.person.workspace_id
    groups = f"/workspaces/{ws}/groups"
    created = await alice.submit(groups, {"name": "Ops"})
    assert created.status_code == 303
    assert created.headers["location"] == f"{groups}?ok=group_created"
    duplicate = await alice.submit(groups, {"name": "Ops"})
    assert duplicate.status_code == 409
    async with runtime_of(app_client).db.sessions() as db:
        org = (await workspaces.workspaces_of(db, alice.person.user_id))[0][0].organization_id
        [group] = await workspaces.list_groups(db, org)

    added = await alice.submit(f"{groups}/{group.id}/members", {"email": bob.person.email})
    assert added.status_code == 303
    assert (await bob.get(f"/workspaces/{ws}")).status_code == 404  # no role yet
    set_role = await alice.submit(f"{groups}/{group.id}/role", {"role": "admin"})
    assert set_role.status_code == 303
    page = await bob.get(groups)  # an admin through the group
    assert page.status_code == 200
    assert "bob@example.org" in page.text

    cleared = await alice.submit(f"{groups}/{group.id}/role", {"role": ""})
    assert cleared.status_code == 303
    assert (await bob.get(groups)).status_code == 404
    removed = await alice.submit(f"{groups}/{group.id}/members/{bob.person.user_id}/remove")
    assert removed.status_code == 303
    assert "bob@example.org" not in (await alice.get(groups)).text

    role_events = await events(app_client, "group.role_changed")
    assert [(e.before, e.after) for e in role_events] == [
        ({"role": None}, {"role": "admin"}),
        ({"role": "admin"}, {"role": None}),
    ]
    [member_added] = await events(app_client, "group.member_added")
    assert member_added.after == {"user_id": bob.person.user_id, "email": bob.person.email}
    assert len(await events(app_client, "group.member_removed")) == 1


# --- API keys ----------------------------------------------------------------------------


async def test_a_key_made_on_the_page_is_shown_once_works_and_can_be_revoked(
    app_client: httpx.AsyncClient, alice: Browser
) -> None:
    ws = alice.person.workspace_id
    created = await alice.submit(
        "/keys",
        {"name": "backup script", "scopes": ["read", "write"], "workspace_id": ws},
    )
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    assert "This is the only time the key is shown" in created.text
    secret = _KEY.search(created.text)
    assert secret, created.text
    key = secret.group(1)

    me = await app_client.get("/api/me", headers={"x-api-key": key})
    assert me.status_code == 200, me.text
    assert me.json()["auth"]["method"] == "api_key"
    assert me.json()["auth"]["scopes"] == ["read", "write"]

    listing = await alice.get("/keys")
    assert key not in listing.text
    assert key[:11] in listing.text  # the prefix identifies it
    assert "backup script" in listing.text
    bound = await alice.get(f"/workspaces/{ws}/keys")
    assert "backup script" in bound.text
    [event] = await events(app_client, "key.created")
    assert key not in str(event.after)
    assert event.after == {
        "name": "backup script",
        "prefix": key[:11],
        "scopes": ["read", "write"],
        "workspace_id": ws,
        "expires_at": None,
    }

    revoked = await alice.submit(f"/keys/{event.target_id}/revoke", {"next": "/keys"})
    assert revoked.status_code == 303
    assert revoked.headers["location"] == "/keys?ok=key_revoked"
    assert "API key revoked." in (await alice.get(revoked.headers["location"])).text
    assert (await app_client.get("/api/me", headers={"x-api-key": key})).status_code == 401
    [revoke_event] = await events(app_client, "key.revoked")
    assert revoke_event.before == event.after


async def test_key_form_errors_and_foreign_keys(
    app_client: httpx.AsyncClient, alice: Browser, bob: Browser
) -> None:
    no_scope = await alice.submit("/keys", {"name": "nothing"})
    assert no_scope.status_code == 422
    assert "scopes: give at least one of" in no_scope.text
    assert 'value="nothing"' in no_scope.text
    bad_expiry = await alice.submit(
        "/keys", {"name": "x", "scopes": "read", "expires_in_days": "0"}
    )
    assert bad_expiry.status_code == 422
    assert "expires_in_days" in bad_expiry.text
    foreign = await alice.submit(
        "/keys", {"name": "x", "scopes": "read", "workspace_id": bob.person.workspace_id}
    )
    assert foreign.status_code == 404
    assert await events(app_client, "key.created") == []

    made = await bob.submit("/keys", {"name": "bob's", "scopes": "read", "expires_in_days": "30"})
    assert made.status_code == 201
    assert "expires" in made.text
    [event] = await events(app_client, "key.created")
    stolen = await alice.submit(f"/keys/{event.target_id}/revoke", {"next": "/keys"})
    assert stolen.status_code == 404
    assert "Not found" in stolen.text
    assert await events(app_client, "key.revoked") == []


# --- account -----------------------------------------------------------------------------


async def test_password_change_keeps_this_session_and_ends_the_others(
    app_client: httpx.AsyncClient, alice: Browser
) -> None:
    api_headers = alice.person.headers
    async with new_browser(app_client, alice.person) as other:
        assert (await other.get("/account")).status_code == 200

        mismatch = await alice.submit(
            "/account/password",
            {
                "current_password": PASSWORD,
                "new_password": "a-new-password-1",
                "new_password_confirm": "another-one-2",
            },
        )
        assert mismatch.status_code == 422
        assert "not the same" in mismatch.text
        wrong = await alice.submit(
            "/account/password",
            {
                "current_password": "not-my-password",
                "new_password": "a-new-password-1",
                "new_password_confirm": "a-new-password-1",
            },
        )
        assert wrong.status_code == 403
        assert "not your current password" in wrong.text
        assert (await other.get("/account")).status_code == 200

        changed = await alice.submit(
            "/account/password",
            {
                "current_password": PASSWORD,
                "new_password": "a-new-password-1",
                "new_password_confirm": "a-new-password-1",
            },
        )
        assert changed.status_code == 303
        assert changed.headers["location"] == "/account?ok=password_changed"
        after = await alice.get(changed.headers["location"])
        assert "other sessions have been signed out" in after.text

        ended = await other.get("/account")
        assert ended.status_code == 303
        assert ended.headers["location"] == "/login?next=%2Faccount"
        assert (await app_client.get("/api/me", headers=api_headers)).status_code == 401
        await browser_sign_in(other.client, alice.person.email, "a-new-password-1")
    [event] = await events(app_client, "user.password_changed")
    assert event.target_id == alice.person.user_id


async def test_profile_name_change_is_audited(
    app_client: httpx.AsyncClient, alice: Browser
) -> None:
    saved = await alice.submit("/account/profile", {"display_name": "Alice Liddell"})
    assert saved.status_code == 303
    page = await alice.get(saved.headers["location"])
    assert "Your profile is saved." in page.text
    assert 'value="Alice Liddell"' in page.text
    too_long = await alice.submit("/account/profile", {"display_name": "x" * 201})
    assert too_long.status_code == 422
    [event] = await events(app_client, "user.updated")
    assert event.before is not None and event.after is not None
    assert (event.before["display_name"], event.after["display_name"]) == (
        "alice",
        "Alice Liddell",
    )


# --- the audit log -----------------------------------------------------------------------


async def test_audit_page_filters_pages_and_exports(
    app_client: httpx.AsyncClient, alice: Browser, bob: Browser
) -> None:
    ws = alice.person.workspace_id
    audit_page = f"/workspaces/{ws}/audit"
    await alice.submit(f"/workspaces/{ws}/members", {"email": bob.person.email, "role": "viewer"})
    await bob.get(audit_page)  # denied: a viewer
    await alice.submit(f"/workspaces/{ws}/members/{bob.person.user_id}/role", {"role": "member"})

    everything = await alice.get(audit_page)
    assert everything.status_code == 200
    actions = re.findall(r"<td><code>([a-z_.]+)</code></td>", everything.text)
    assert actions[:3] == ["member.role_changed", "access.denied", "member.added"]
    assert "role: viewer → member" in everything.text

    members_only = await alice.get(f"{audit_page}?action=member.")
    assert re.findall(r"<td><code>([a-z_.]+)</code></td>", members_only.text) == [
        "member.role_changed",
        "member.added",
    ]
    denied = await alice.get(f"{audit_page}?outcome=denied")
    assert re.findall(r"<td><code>([a-z_.]+)</code></td>", denied.text) == ["access.denied"]
    by_bob = await alice.get(f"{audit_page}?actor=bob%40example.org")
    assert len(table_rows(by_bob)) == 1
    today = datetime.now(UTC).date()
    yesterday = (today - timedelta(days=1)).isoformat()
    assert "No events match." in (await alice.get(f"{audit_page}?until={yesterday}")).text
    assert len(table_rows(await alice.get(f"{audit_page}?since={today}&until={today}"))) >= 3
    bad_date = await alice.get(f"{audit_page}?since=31.01.2026")
    assert bad_date.status_code == 422
    assert "give a date like 2026-01-31" in bad_date.text

    export = re.search(r'href="(/api/workspaces/[^"]+/audit/export[^"]*)"', members_only.text)
    assert export
    exported = await alice.get(html.unescape(export.group(1)))
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    lines = exported.text.strip().splitlines()
    assert [line.split('"action": "')[1].split('"')[0] for line in lines] == [
        "member.added",
        "member.role_changed",
    ]


async def test_audit_page_goes_back_page_by_page(
    app_client: httpx.AsyncClient, alice: Browser
) -> None:
    ws = alice.person.workspace_id
    start = datetime(2026, 1, 1, tzinfo=UTC)
    async with runtime_of(app_client).db.sessions() as db:
        for n in range(60):
            event = audit.record(db, f"test.event_{n:02d}", workspace_id=ws)
            event.created_at = start + timedelta(minutes=n)
        await db.commit()
    seen: list[str] = []
    path = f"/workspaces/{ws}/audit?action=test."
    pages_seen = 0
    while path:
        pages_seen += 1
        assert pages_seen <= 3, "the pager does not end"
        page = await alice.get(path)
        assert page.status_code == 200
        seen += re.findall(r"<td><code>(test\.event_\d+)</code></td>", page.text)
        older = re.search(r'<a href="([^"]+)">Older events</a>', page.text)
        path = html.unescape(older.group(1)) if older else ""
        if pages_seen > 1:
            assert "Newest events" in page.text
    assert pages_seen == 2
    assert seen == [f"test.event_{n:02d}" for n in reversed(range(60))]


async def test_audit_index_lists_workspaces_i_administer(
    app_client: httpx.AsyncClient, alice: Browser, bob: Browser
) -> None:
    await add_directly(app_client, alice.person.workspace_id, bob.person, Role.viewer)
    mine = await bob.get("/audit")
    assert mine.status_code == 200
    assert f'href="/workspaces/{bob.person.workspace_id}/audit"' in mine.text
    assert f'href="/workspaces/{alice.person.workspace_id}/audit"' not in mine.text
    assert "/api/audit/export" not in mine.text  # not an installation administrator
    assert "/api/audit/export" in (await alice.get("/audit")).text
