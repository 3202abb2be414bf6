"""Workspace pages: the list, one workspace, its members, groups and API keys.

Each route needs what its twin in hexahub/identity/api.py needs (see access.py) and makes
its change through hexahub.identity.actions, which records the same audit event as the API. A
change that the service refuses re-renders its page with the reason and the error's
status; a change that works redirects (303) to the page with a short message.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from hexahub.core.deps import DbSession
from hexahub.core.errors import HexaHubError, ValidationFailed
from hexahub.identity import actions, keys, service, workspaces
from hexahub.identity.authz import WorkspaceAccess
from hexahub.identity.models import Role, User
from hexahub.web.access import (
    PagePrincipal,
    PageRoute,
    WorkspaceAdminPage,
    WorkspaceAdminReaderPage,
    WorkspaceOwnerPage,
    WorkspaceReaderPage,
    workspace_context,
)
from hexahub.web.csrf import require_csrf
from hexahub.web.rendering import redirect, render

router = APIRouter(include_in_schema=False, route_class=PageRoute)
CsrfChecked = Depends(require_csrf)
GRANTABLE_ROLES = (Role.viewer, Role.member, Role.admin)


def grantable_role(value: str) -> Role:
    """A role a form may hand out; ownership moves only by transfer."""
    for role in GRANTABLE_ROLES:
        if value == role.value:
            return role
    raise ValidationFailed("role: choose viewer, member or admin")


async def recover(db: AsyncSession, access: WorkspaceAccess) -> None:
    """Undo a refused change, and reload what the page shows (rollback expires it)."""
    await db.rollback()
    await db.refresh(access.workspace)
    await db.refresh(access.user)


# --- the list ------------------------------------------------------------------------


async def _list_page(
    request: Request,
    db: AsyncSession,
    user: User,
    *,
    error: HexaHubError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "workspaces.html",
        {
            "rows": await workspaces.workspaces_of(db, user.id),
            "form": form or {"name": "", "description": ""},
            "page_error": error.message if error else "",
            "active": "workspaces",
        },
        status_code=error.status_code if error else 200,
        user=user,
    )


@router.get("/workspaces")
async def workspaces_page(request: Request, db: DbSession, principal: PagePrincipal) -> Response:
    return await _list_page(request, db, principal.user)


@router.post("/workspaces", dependencies=[CsrfChecked])
async def create_workspace(
    request: Request,
    db: DbSession,
    principal: PagePrincipal,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
) -> Response:
    try:
        created = await actions.create_workspace(db, principal, name=name, description=description)
    except HexaHubError as exc:
        await db.rollback()
        await db.refresh(principal.user)
        form = {"name": name, "description": description}
        return await _list_page(request, db, principal.user, error=exc, form=form)
    return redirect(f"/workspaces/{created['id']}?ok=workspace_created")


# --- one workspace -------------------------------------------------------------------


async def _overview_page(
    request: Request,
    db: AsyncSession,
    access: WorkspaceAccess,
    *,
    error: HexaHubError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    members = await workspaces.list_members(db, access.workspace.id)
    context = workspace_context(access, "overview")
    context.update(
        {
            "member_count": len(members),
            "form": form
            or {"name": access.workspace.name, "description": access.workspace.description},
            "page_error": error.message if error else "",
        }
    )
    return render(
        request,
        "workspace.html",
        context,
        status_code=error.status_code if error else 200,
        user=access.user,
    )


@router.get("/workspaces/{workspace_id}")
async def workspace_page(request: Request, db: DbSession, access: WorkspaceReaderPage) -> Response:
    return await _overview_page(request, db, access)


@router.post("/workspaces/{workspace_id}/settings", dependencies=[CsrfChecked])
async def update_workspace(
    request: Request,
    db: DbSession,
    access: WorkspaceAdminPage,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
) -> Response:
    try:
        await actions.update_workspace(db, access, name=name, description=description)
    except HexaHubError as exc:
        await recover(db, access)
        form = {"name": name, "description": description}
        return await _overview_page(request, db, access, error=exc, form=form)
    return redirect(f"/workspaces/{access.workspace.id}?ok=workspace_updated")


@router.post("/workspaces/{workspace_id}/delete", dependencies=[CsrfChecked])
async def delete_workspace(
    request: Request,
    db: DbSession,
    access: WorkspaceOwnerPage,
    confirm_name: Annotated[str, Form()] = "",
) -> Response:
    if confirm_name.strip() != access.workspace.name:
        refused = ValidationFailed(
            "confirm_name: type the workspace's name exactly to delete it; nothing was deleted"
        )
        return await _overview_page(request, db, access, error=refused)
    await actions.delete_workspace(db, access)
    return redirect("/workspaces?ok=workspace_deleted")


# --- members -------------------------------------------------------------------------


async def _members_page(
    request: Request,
    db: AsyncSession,
    access: WorkspaceAccess,
    *,
    error: HexaHubError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    me = access.user.id
    rows = []
    for membership, person in await workspaces.list_members(db, access.workspace.id):
        role = Role(membership.role)
        manageable = (
            access.role.at_least(Role.admin) and role != Role.owner and access.role.at_least(role)
        )
        rows.append(
            {
                "user": person,
                "role": role.value,
                "joined": membership.created_at,
                "is_me": person.id == me,
                "can_change_role": manageable,
                "can_remove": manageable and person.id != me,
            }
        )
    context = workspace_context(access, "members")
    context.update(
        {
            "rows": rows,
            "grantable": [r.value for r in GRANTABLE_ROLES if access.role.at_least(r)],
            "others": [row["user"] for row in rows if not row["is_me"]],
            "can_leave": any(row["is_me"] and row["role"] != "owner" for row in rows),
            "form": form or {"email": "", "role": "member"},
            "page_error": error.message if error else "",
        }
    )
    return render(
        request,
        "members.html",
        context,
        status_code=error.status_code if error else 200,
        user=access.user,
    )


@router.get("/workspaces/{workspace_id}/members")
async def members_page(request: Request, db: DbSession, access: WorkspaceReaderPage) -> Response:
    return await _members_page(request, db, access)


@router.post("/workspaces/{workspace_id}/members", dependencies=[CsrfChecked])
async def add_member(
    request: Request,
    db: DbSession,
    access: WorkspaceAdminPage,
    email: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "member",
) -> Response:
    try:
        await actions.add_member(db, access, email=email, role=grantable_role(role))
    except HexaHubError as exc:
        await recover(db, access)
        form = {"email": email, "role": role}
        return await _members_page(request, db, access, error=exc, form=form)
    return redirect(f"/workspaces/{access.workspace.id}/members?ok=member_added")


@router.post("/workspaces/{workspace_id}/members/{user_id}/role", dependencies=[CsrfChecked])
async def change_member_role(
    request: Request,
    db: DbSession,
    access: WorkspaceAdminPage,
    user_id: str,
    role: Annotated[str, Form()] = "",
) -> Response:
    try:
        await actions.change_member_role(db, access, user_id, grantable_role(role))
    except HexaHubError as exc:
        await recover(db, access)
        return await _members_page(request, db, access, error=exc)
    return redirect(f"/workspaces/{access.workspace.id}/members?ok=role_changed")


@router.post("/workspaces/{workspace_id}/members/{user_id}/remove", dependencies=[CsrfChecked])
async def remove_member(
    request: Request, db: DbSession, access: WorkspaceAdminPage, user_id: str
) -> Response:
    try:
        await actions.remove_member(db, access, user_id)
    except HexaHubError as exc:
        await recover(db, access)
        return await _members_page(request, db, access, error=exc)
    return redirect(f"/workspaces/{access.workspace.id}/members?ok=member_removed")


@router.post("/workspaces/{workspace_id}/transfer", dependencies=[CsrfChecked])
async def transfer_ownership(
    request: Request,
    db: DbSession,
    access: WorkspaceOwnerPage,
    user_id: Annotated[str, Form()] = "",
) -> Response:
    try:
        await actions.transfer_ownership(db, access, user_id)
    except HexaHubError as exc:
        await recover(db, access)
        return await _members_page(request, db, access, error=exc)
    return redirect(f"/workspaces/{access.workspace.id}/members?ok=ownership_transferred")


@router.post("/workspaces/{workspace_id}/leave", dependencies=[CsrfChecked])
async def leave_workspace(request: Request, db: DbSession, access: WorkspaceReaderPage) -> Response:
    try:
        await actions.leave_workspace(db, access)
    except HexaHubError as exc:
        await recover(db, access)
        return await _members_page(request, db, access, error=exc)
    return redirect("/workspaces?ok=left")


# --- groups --------------------------------------------------------------------------


async def _groups_page(
    request: Request,
    db: AsyncSession,
    access: WorkspaceAccess,
    *,
    error: HexaHubError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    roles = await workspaces.group_roles_in(db, access.workspace.id)
    groups = []
    for group in await workspaces.list_groups(db, access.workspace.organization_id):
        people = [
            await service.get_user(db, user_id)
            for user_id in await workspaces.group_member_ids(db, group.id)
        ]
        groups.append(
            {
                "group": group,
                "role": roles.get(group.id) or "",
                "members": sorted(people, key=lambda person: person.email),
            }
        )
    context = workspace_context(access, "groups")
    context.update(
        {
            "groups": groups,
            "grantable": [r.value for r in GRANTABLE_ROLES if access.role.at_least(r)],
            "form": form or {"name": ""},
            "page_error": error.message if error else "",
        }
    )
    return render(
        request,
        "groups.html",
        context,
        status_code=error.status_code if error else 200,
        user=access.user,
    )


@router.get("/workspaces/{workspace_id}/groups")
async def groups_page(
    request: Request, db: DbSession, access: WorkspaceAdminReaderPage
) -> Response:
    return await _groups_page(request, db, access)


@router.post("/workspaces/{workspace_id}/groups", dependencies=[CsrfChecked])
async def create_group(
    request: Request,
    db: DbSession,
    access: WorkspaceAdminPage,
    name: Annotated[str, Form()] = "",
) -> Response:
    try:
        await actions.create_group(db, access, name)
    except HexaHubError as exc:
        await recover(db, access)
        return await _groups_page(request, db, access, error=exc, form={"name": name})
    return redirect(f"/workspaces/{access.workspace.id}/groups?ok=group_created")


@router.post("/workspaces/{workspace_id}/groups/{group_id}/members", dependencies=[CsrfChecked])
async def add_group_member(
    request: Request,
    db: DbSession,
    access: WorkspaceAdminPage,
    group_id: str,
    email: Annotated[str, Form()] = "",
) -> Response:
    try:
        await actions.add_group_member(db, access, group_id, email)
    except HexaHubError as exc:
        await recover(db, access)
        return await _groups_page(request, db, access, error=exc)
    return redirect(f"/workspaces/{access.workspace.id}/groups?ok=group_member_added")


@router.post(
    "/workspaces/{workspace_id}/groups/{group_id}/members/{user_id}/remove",
    dependencies=[CsrfChecked],
)
async def remove_group_member(
    request: Request, db: DbSession, access: WorkspaceAdminPage, group_id: str, user_id: str
) -> Response:
    try:
        await actions.remove_group_member(db, access, group_id, user_id)
    except HexaHubError as exc:
        await recover(db, access)
        return await _groups_page(request, db, access, error=exc)
    return redirect(f"/workspaces/{access.workspace.id}/groups?ok=group_member_removed")


@router.post("/workspaces/{workspace_id}/groups/{group_id}/role", dependencies=[CsrfChecked])
async def set_group_role(
    request: Request,
    db: DbSession,
    access: WorkspaceAdminPage,
    group_id: str,
    role: Annotated[str, Form()] = "",
) -> Response:
    try:
        await actions.set_group_role(db, access, group_id, grantable_role(role) if role else None)
    except HexaHubError as exc:
        await recover(db, access)
        return await _groups_page(request, db, access, error=exc)
    return redirect(f"/workspaces/{access.workspace.id}/groups?ok=group_role_changed")


# --- keys bound to the workspace ---------------------------------------------------------


@router.get("/workspaces/{workspace_id}/keys")
async def workspace_keys_page(
    request: Request, db: DbSession, access: WorkspaceAdminReaderPage
) -> Response:
    rows = []
    for key in await keys.list_keys(db, workspace_id=access.workspace.id):
        owner = await service.get_user(db, key.user_id)
        rows.append({"key": key, "owner": owner.email})
    context = workspace_context(access, "keys")
    context["rows"] = rows
    return render(request, "workspace_keys.html", context, user=access.user)
