"""Identity routes under /api: sign-in, tokens, me, users, workspaces, members, groups,
API keys and the audit log. Each route names what it needs in its signature (authz.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from hexahub.core.deps import DbSession, RuntimeDep
from hexahub.core.errors import Forbidden, ValidationFailed
from hexahub.core.runtime import Runtime
from hexahub.core.timestamps import Timestamp
from hexahub.identity import actions, audit, service, sessions, workspaces
from hexahub.identity.authz import (
    Authenticated,
    AuthenticatedWriter,
    InstanceAdmin,
    InstanceAdminReader,
    Principal,
    WorkspaceAccess,
    WorkspaceAdmin,
    WorkspaceAdminReader,
    WorkspaceMember,
    WorkspaceOwner,
    WorkspaceReader,
    client_ip,
)
from hexahub.identity.models import ApiKey, Role
from hexahub.identity.schemas import (
    AuditEventOut,
    GroupCreate,
    GroupMemberAdd,
    GroupOut,
    GroupRoleSet,
    KeyCreate,
    KeyCreated,
    KeyOut,
    LoginRequest,
    LogoutRequest,
    MemberAdd,
    MemberOut,
    MemberUpdate,
    MeUpdate,
    OwnershipTransfer,
    PasswordChange,
    RefreshRequest,
    TokenResponse,
    UserCreate,
    UserOut,
    UserUpdate,
    WorkspaceCreate,
    WorkspaceOut,
    WorkspaceUpdate,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in, or the credentials are not valid"},
    403: {"description": "Signed in, but not allowed to do this"},
    404: {"description": "Not found, or not visible to the caller"},
    422: {"description": "The request is malformed; the message names the field"},
}

router = APIRouter(prefix="/api", tags=["identity"], responses=ERRORS)


def _user_out(user: Any) -> UserOut:
    return UserOut(**service.public_user(user))


def _key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=list(key.scopes),
        user_id=key.user_id,
        workspace_id=key.workspace_id,
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


# --- sign-in and tokens --------------------------------------------------------------


@router.post(
    "/auth/login",
    summary="Sign in with e-mail and password; get API tokens",
    response_model=TokenResponse,
    tags=["auth"],
    responses={429: {"description": "Too many failed sign-ins; see Retry-After"}},
)
async def login(
    body: LoginRequest, request: Request, runtime: RuntimeDep, db: DbSession
) -> dict[str, Any]:
    user = await service.password_sign_in(
        db,
        request.app.state.limiter,
        email=body.email,
        password=body.password,
        ip=client_ip(request),
    )
    pair = await sessions.start_api_session(
        db,
        user,
        runtime.settings,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    return pair.as_response()


@router.post(
    "/auth/refresh",
    summary="Trade a refresh token for a new token pair",
    response_model=TokenResponse,
    tags=["auth"],
)
async def refresh(
    body: RefreshRequest, request: Request, runtime: RuntimeDep, db: DbSession
) -> dict[str, Any]:
    try:
        pair = await sessions.refresh(db, runtime.settings, body.refresh_token)
    except sessions.RefreshReused as exc:
        details = exc.details or {}
        await audit.record_now(
            db,
            "auth.refresh_reused",
            outcome="denied",
            ip=client_ip(request),
            target_type="session",
            target_id=str(details.get("session_id", "")),
            details={"user_id": details.get("user_id"), "action": "session revoked"},
        )
        exc.details = None
        raise
    return pair.as_response()


@router.post("/auth/logout", summary="End the current session", status_code=204, tags=["auth"])
async def logout(
    principal: Authenticated, db: DbSession, runtime: RuntimeDep, body: LogoutRequest | None = None
) -> Response:
    if principal.session is not None:
        await sessions.revoke(db, principal.session.id, "signed out")
    elif body and body.refresh_token:
        pair_session = await sessions.session_of_refresh_token(db, body.refresh_token)
        if pair_session is not None and pair_session.user_id == principal.user.id:
            await sessions.revoke(db, pair_session.id, "signed out")
    else:
        raise ValidationFailed("API keys have no session; revoke the key instead")
    audit.record(
        db, "auth.logout", actor=principal, target_type="user", target_id=principal.user.id
    )
    await db.commit()
    return Response(status_code=204)


# --- me ------------------------------------------------------------------------------


@router.get("/me", summary="The signed-in user and their workspaces", tags=["me"])
async def me(principal: Authenticated, db: DbSession) -> dict[str, Any]:
    mine = await _my_workspaces(db, principal)
    return {
        "user": _user_out(principal.user).model_dump(),
        "auth": {
            "method": principal.method,
            "scopes": sorted(principal.scopes),
            "key_prefix": principal.api_key.prefix if principal.api_key else None,
        },
        "workspaces": [workspaces.workspace_dict(w, r) for w, r in mine],
    }


@router.patch("/me", summary="Change my display name", response_model=UserOut, tags=["me"])
async def update_me(body: MeUpdate, principal: AuthenticatedWriter, db: DbSession) -> UserOut:
    return _user_out(await actions.update_display_name(db, principal, body.display_name))


@router.post("/me/password", summary="Change my password", status_code=204, tags=["me"])
async def change_my_password(
    body: PasswordChange, principal: AuthenticatedWriter, db: DbSession
) -> Response:
    await actions.change_password(
        db, principal, current=body.current_password, new=body.new_password
    )
    return Response(status_code=204)


# --- users (installation administrators) --------------------------------------------


@router.get("/users", summary="Every account", response_model=list[UserOut], tags=["users"])
async def list_users(principal: InstanceAdminReader, db: DbSession) -> list[UserOut]:
    return [_user_out(u) for u in await service.list_users(db)]


@router.post(
    "/users",
    summary="Create an account",
    response_model=UserOut,
    status_code=201,
    tags=["users"],
    responses={409: {"description": "An account with that e-mail exists already"}},
)
async def create_user(body: UserCreate, principal: InstanceAdmin, db: DbSession) -> UserOut:
    user = await service.create_user(
        db,
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        is_admin=body.is_admin,
    )
    audit.record(
        db,
        "user.created",
        actor=principal,
        target_type="user",
        target_id=user.id,
        after=service.public_user(user),
    )
    await db.commit()
    return _user_out(user)


@router.patch(
    "/users/{user_id}",
    summary="Disable, enable or promote an account",
    response_model=UserOut,
    tags=["users"],
)
async def update_user(
    user_id: str, body: UserUpdate, principal: InstanceAdmin, db: DbSession
) -> UserOut:
    user = await service.get_user(db, user_id)
    before = service.public_user(user)
    if user.id == principal.user.id and (body.is_active is False or body.is_admin is False):
        raise Forbidden("you cannot disable or demote yourself; ask another administrator")
    if body.display_name is not None:
        user.display_name = service.check_display_name(body.display_name) or user.display_name
    if body.is_admin is not None:
        user.is_admin = body.is_admin
    if body.is_active is not None and body.is_active != user.is_active:
        await service.set_active(db, user, body.is_active)
    audit.record(
        db,
        "user.updated",
        actor=principal,
        target_type="user",
        target_id=user.id,
        before=before,
        after=service.public_user(user),
    )
    await db.commit()
    return _user_out(user)


@router.delete(
    "/users/{user_id}",
    summary="Delete an account",
    status_code=204,
    tags=["users"],
    responses={409: {"description": "The account is the only owner of a workspace"}},
)
async def delete_user(user_id: str, principal: InstanceAdmin, db: DbSession) -> Response:
    user = await service.get_user(db, user_id)
    if user.id == principal.user.id:
        raise Forbidden("you cannot delete yourself; ask another administrator")
    before = service.public_user(user)
    await service.delete_user(db, user)
    audit.record(
        db, "user.deleted", actor=principal, target_type="user", target_id=user_id, before=before
    )
    await db.commit()
    return Response(status_code=204)


# --- workspaces ----------------------------------------------------------------------


@router.get(
    "/workspaces",
    summary="Workspaces I belong to",
    response_model=list[WorkspaceOut],
    tags=["workspaces"],
)
async def list_workspaces(principal: Authenticated, db: DbSession) -> list[dict[str, Any]]:
    return [workspaces.workspace_dict(w, r) for w, r in await _my_workspaces(db, principal)]


async def _my_workspaces(db: DbSession, principal: Principal) -> list[tuple[Any, Role]]:
    """The caller's workspaces; through a key bound to one workspace, that one only."""
    mine = await workspaces.workspaces_of(db, principal.user.id)
    bound = principal.bound_workspace_id
    return [(w, r) for w, r in mine if bound in (None, w.id)]


@router.post(
    "/workspaces",
    summary="Create a workspace I own",
    response_model=WorkspaceOut,
    status_code=201,
    tags=["workspaces"],
)
async def create_workspace(
    body: WorkspaceCreate, principal: AuthenticatedWriter, db: DbSession
) -> dict[str, Any]:
    return await actions.create_workspace(
        db,
        principal,
        name=body.name,
        description=body.description,
        organization_id=body.organization_id,
    )


@router.get(
    "/workspaces/{workspace_id}",
    summary="One workspace",
    response_model=WorkspaceOut,
    tags=["workspaces"],
)
async def get_workspace(access: WorkspaceReader) -> dict[str, Any]:
    return workspaces.workspace_dict(access.workspace, access.role)


@router.patch(
    "/workspaces/{workspace_id}",
    summary="Rename or describe a workspace",
    response_model=WorkspaceOut,
    tags=["workspaces"],
)
async def update_workspace(
    body: WorkspaceUpdate, access: WorkspaceAdmin, db: DbSession
) -> dict[str, Any]:
    await actions.update_workspace(db, access, name=body.name, description=body.description)
    return workspaces.workspace_dict(access.workspace, access.role)


@router.delete(
    "/workspaces/{workspace_id}",
    summary="Delete a workspace and everything in it",
    status_code=204,
    tags=["workspaces"],
)
async def delete_workspace(access: WorkspaceOwner, db: DbSession) -> Response:
    await actions.delete_workspace(db, access)
    return Response(status_code=204)


# --- members -------------------------------------------------------------------------


def _member_out(membership: Any, user: Any) -> MemberOut:
    return MemberOut(
        user_id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=membership.role,
        joined_at=membership.created_at.isoformat(),
    )


@router.get(
    "/workspaces/{workspace_id}/members",
    summary="Members and their roles",
    response_model=list[MemberOut],
    tags=["members"],
)
async def list_members(access: WorkspaceReader, db: DbSession) -> list[MemberOut]:
    return [_member_out(m, u) for m, u in await workspaces.list_members(db, access.workspace.id)]


@router.post(
    "/workspaces/{workspace_id}/members",
    summary="Add a person by e-mail",
    response_model=MemberOut,
    status_code=201,
    tags=["members"],
    responses={409: {"description": "The person is a member already"}},
)
async def add_member(body: MemberAdd, access: WorkspaceAdmin, db: DbSession) -> MemberOut:
    membership, user = await actions.add_member(db, access, email=body.email, role=Role(body.role))
    return _member_out(membership, user)


@router.patch(
    "/workspaces/{workspace_id}/members/{user_id}",
    summary="Change a member's role",
    response_model=MemberOut,
    tags=["members"],
)
async def change_member_role(
    user_id: str, body: MemberUpdate, access: WorkspaceAdmin, db: DbSession
) -> MemberOut:
    membership, user = await actions.change_member_role(db, access, user_id, Role(body.role))
    return _member_out(membership, user)


@router.delete(
    "/workspaces/{workspace_id}/members/{user_id}",
    summary="Remove a member",
    status_code=204,
    tags=["members"],
)
async def remove_member(user_id: str, access: WorkspaceAdmin, db: DbSession) -> Response:
    await actions.remove_member(db, access, user_id)
    return Response(status_code=204)


@router.post(
    "/workspaces/{workspace_id}/leave",
    summary="Leave a workspace",
    status_code=204,
    tags=["members"],
)
async def leave_workspace(access: WorkspaceMember, db: DbSession) -> Response:
    await actions.leave_workspace(db, access)
    return Response(status_code=204)


@router.post(
    "/workspaces/{workspace_id}/transfer-ownership",
    summary="Make another member the owner (you become an admin)",
    response_model=MemberOut,
    tags=["members"],
)
async def transfer_ownership(
    body: OwnershipTransfer, access: WorkspaceOwner, db: DbSession
) -> MemberOut:
    membership, user = await actions.transfer_ownership(db, access, body.user_id)
    return _member_out(membership, user)


# --- groups --------------------------------------------------------------------------


async def _group_out(db: DbSession, group: Any) -> GroupOut:
    return GroupOut(
        id=group.id,
        name=group.name,
        source=group.source,
        member_ids=await workspaces.group_member_ids(db, group.id),
    )


@router.get(
    "/workspaces/{workspace_id}/groups",
    summary="Groups of the workspace's organisation, with their role here",
    tags=["groups"],
)
async def list_groups(access: WorkspaceAdminReader, db: DbSession) -> list[dict[str, Any]]:
    roles = await workspaces.group_roles_in(db, access.workspace.id)
    found = await workspaces.list_groups(db, access.workspace.organization_id)
    return [{**(await _group_out(db, g)).model_dump(), "role": roles.get(g.id)} for g in found]


@router.post(
    "/workspaces/{workspace_id}/groups",
    summary="Create a group",
    response_model=GroupOut,
    status_code=201,
    tags=["groups"],
    responses={409: {"description": "A group of that name exists already"}},
)
async def create_group(body: GroupCreate, access: WorkspaceAdmin, db: DbSession) -> GroupOut:
    return await _group_out(db, await actions.create_group(db, access, body.name))


@router.post(
    "/workspaces/{workspace_id}/groups/{group_id}/members",
    summary="Add a person to a group",
    response_model=GroupOut,
    tags=["groups"],
)
async def add_group_member(
    group_id: str, body: GroupMemberAdd, access: WorkspaceAdmin, db: DbSession
) -> GroupOut:
    return await _group_out(db, await actions.add_group_member(db, access, group_id, body.email))


@router.delete(
    "/workspaces/{workspace_id}/groups/{group_id}/members/{user_id}",
    summary="Remove a person from a group",
    status_code=204,
    tags=["groups"],
)
async def remove_group_member(
    group_id: str, user_id: str, access: WorkspaceAdmin, db: DbSession
) -> Response:
    await actions.remove_group_member(db, access, group_id, user_id)
    return Response(status_code=204)


@router.put(
    "/workspaces/{workspace_id}/groups/{group_id}/role",
    summary="Give a group a role in this workspace (null takes it away)",
    status_code=204,
    tags=["groups"],
)
async def set_group_role(
    group_id: str, body: GroupRoleSet, access: WorkspaceAdmin, db: DbSession
) -> Response:
    await actions.set_group_role(db, access, group_id, Role(body.role) if body.role else None)
    return Response(status_code=204)


# --- API keys ------------------------------------------------------------------------


@router.get("/keys", summary="My API keys", response_model=list[KeyOut], tags=["keys"])
async def list_my_keys(principal: Authenticated, db: DbSession) -> list[KeyOut]:
    return [_key_out(k) for k in await actions.list_keys(db, principal)]


@router.get(
    "/workspaces/{workspace_id}/keys",
    summary="Every key bound to this workspace",
    response_model=list[KeyOut],
    tags=["keys"],
)
async def list_workspace_keys(access: WorkspaceAdminReader, db: DbSession) -> list[KeyOut]:
    found = await actions.list_keys(db, access.principal, workspace_id=access.workspace.id)
    return [_key_out(k) for k in found]


@router.post(
    "/keys",
    summary="Create an API key (the secret is shown once)",
    response_model=KeyCreated,
    status_code=201,
    tags=["keys"],
)
async def create_key(body: KeyCreate, principal: AuthenticatedWriter, db: DbSession) -> KeyCreated:
    created = await actions.create_key(
        db,
        principal,
        name=body.name,
        scopes=list(body.scopes),
        workspace_id=body.workspace_id,
        expires_in_days=body.expires_in_days,
    )
    return KeyCreated(**_key_out(created.key).model_dump(), key=created.secret)


@router.delete("/keys/{key_id}", summary="Revoke an API key", status_code=204, tags=["keys"])
async def revoke_key(key_id: str, principal: AuthenticatedWriter, db: DbSession) -> Response:
    await actions.revoke_key(db, principal, key_id)
    return Response(status_code=204)


# --- audit log -----------------------------------------------------------------------

ActionQ = Annotated[
    str | None, Query(max_length=100, description="Exact action, or a prefix ending in '.'")
]
ActorQ = Annotated[str | None, Query(max_length=320)]
OutcomeQ = Annotated[Literal["ok", "denied", "failed"] | None, Query()]
SinceQ = Annotated[Timestamp | None, Query(description="RFC 3339 time, inclusive")]
UntilQ = Annotated[Timestamp | None, Query(description="RFC 3339 time, exclusive")]
LimitQ = Annotated[int, Query(ge=1, le=audit.MAX_PAGE)]
BeforeQ = Annotated[str | None, Query(max_length=36, description="Page after this event id")]


def audit_filters(
    action: ActionQ = None,
    actor: ActorQ = None,
    outcome: OutcomeQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
) -> dict[str, Any]:
    """The filters the audit routes share, checked before anything is read: an export
    streams, so a bad filter found once it started could only cut the stream short."""
    return {"action": action, "actor": actor, "outcome": outcome, "since": since, "until": until}


AuditFilters = Annotated[dict[str, Any], Depends(audit_filters)]
JSON_LINES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One audit event (as in the list) per line",
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
    }
}


def _jsonl(runtime: Runtime, filename: str, **filters: Any) -> StreamingResponse:
    """Stream matching events; the stream reads through its own database session, since
    it runs after the route has returned."""

    async def lines() -> AsyncIterator[str]:
        async with runtime.db.sessions() as db:
            async for line in audit.export_lines(db, **filters):
                yield line

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/workspaces/{workspace_id}/audit",
    summary="The workspace's audit log",
    response_model=list[AuditEventOut],
    tags=["audit"],
)
async def workspace_audit(
    access: WorkspaceAdminReader,
    db: DbSession,
    filters: AuditFilters,
    limit: LimitQ = 100,
    before: BeforeQ = None,
) -> list[dict[str, Any]]:
    events = await audit.query(
        db, workspace_ids=[access.workspace.id], limit=limit, before_id=before, **filters
    )
    return [audit.as_dict(e) for e in events]


@router.get(
    "/workspaces/{workspace_id}/audit/export",
    summary="The workspace's audit log as JSON lines",
    tags=["audit"],
    response_class=StreamingResponse,
    responses=JSON_LINES,
)
async def workspace_audit_export(
    access: WorkspaceAdminReader, runtime: RuntimeDep, filters: AuditFilters
) -> StreamingResponse:
    return _jsonl(
        runtime,
        f"audit-{access.workspace.slug}.jsonl",
        workspace_ids=[access.workspace.id],
        **filters,
    )


@router.get(
    "/audit",
    summary="The whole installation's audit log",
    response_model=list[AuditEventOut],
    tags=["audit"],
)
async def instance_audit(
    principal: InstanceAdminReader,
    db: DbSession,
    filters: AuditFilters,
    limit: LimitQ = 100,
    before: BeforeQ = None,
) -> list[dict[str, Any]]:
    events = await audit.query(db, limit=limit, before_id=before, **filters)
    return [audit.as_dict(e) for e in events]


@router.get(
    "/audit/export",
    summary="The whole audit log as JSON lines",
    tags=["audit"],
    response_class=StreamingResponse,
    responses=JSON_LINES,
)
async def instance_audit_export(
    principal: InstanceAdminReader, runtime: RuntimeDep, filters: AuditFilters
) -> StreamingResponse:
    return _jsonl(runtime, "audit.jsonl", **filters)


__all__ = ["Principal", "WorkspaceAccess", "router"]
