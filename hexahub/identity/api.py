"""Identity routes under /api: sign-in, tokens, me, users, workspaces, members, groups,
API keys and the audit log. Each route names what it needs in its signature (authz.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from hexahub.core.deps import DbSession, RuntimeDep
from hexahub.core.errors import Forbidden, NotFound, ValidationFailed
from hexahub.core.runtime import Runtime
from hexahub.identity import audit, keys, service, sessions, workspaces
from hexahub.identity.authz import (
    Authenticated,
    AuthenticatedWriter,
    InstanceAdmin,
    InstanceAdminReader,
    Principal,
    WorkspaceAccess,
    WorkspaceAdmin,
    WorkspaceAdminReader,
    WorkspaceOwner,
    WorkspaceReader,
    client_ip,
    effective_role,
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


def _key_public(key: ApiKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "workspace_id": key.workspace_id,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
    }


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
    mine = await workspaces.workspaces_of(db, principal.user.id)
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
    before = service.public_user(principal.user)
    principal.user.display_name = (
        service.check_display_name(body.display_name) or (principal.user.email.split("@")[0])
    )
    audit.record(
        db,
        "user.updated",
        actor=principal,
        target_type="user",
        target_id=principal.user.id,
        before=before,
        after=service.public_user(principal.user),
    )
    await db.commit()
    return _user_out(principal.user)


@router.post("/me/password", summary="Change my password", status_code=204, tags=["me"])
async def change_my_password(
    body: PasswordChange, principal: AuthenticatedWriter, db: DbSession
) -> Response:
    if principal.api_key is not None:
        raise Forbidden("passwords cannot be changed with an API key; sign in")
    await service.change_password(
        db,
        principal.user,
        current=body.current_password,
        new=body.new_password,
        keep_session=principal.session.id if principal.session else None,
    )
    audit.record(
        db,
        "user.password_changed",
        actor=principal,
        target_type="user",
        target_id=principal.user.id,
    )
    await db.commit()
    return Response(status_code=204)


# --- users (installation administrators) --------------------------------------------


@router.get("/users", summary="Every account", response_model=list[UserOut], tags=["users"])
async def list_users(principal: InstanceAdminReader, db: DbSession) -> list[UserOut]:
    return [_user_out(u) for u in await service.list_users(db)]


@router.post(
    "/users", summary="Create an account", response_model=UserOut, status_code=201, tags=["users"]
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


@router.delete("/users/{user_id}", summary="Delete an account", status_code=204, tags=["users"])
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
    mine = await workspaces.workspaces_of(db, principal.user.id)
    bound = principal.api_key.workspace_id if principal.api_key else None
    return [workspaces.workspace_dict(w, r) for w, r in mine if bound in (None, w.id)]


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
    if principal.api_key is not None and principal.api_key.workspace_id is not None:
        raise Forbidden("a key bound to one workspace cannot create workspaces")
    if body.organization_id is not None and not principal.user.is_admin:
        raise Forbidden("only installation administrators choose the organisation")
    workspace = await workspaces.create_workspace(
        db,
        principal.user,
        name=body.name,
        organization_id=body.organization_id,
        description=body.description,
    )
    shown = workspaces.workspace_dict(workspace, Role.owner)
    audit.record(
        db,
        "workspace.created",
        actor=principal,
        workspace_id=workspace.id,
        target_type="workspace",
        target_id=workspace.id,
        after=shown,
    )
    await db.commit()
    return shown


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
    before = workspaces.workspace_dict(access.workspace)
    await workspaces.update_workspace(
        db, access.workspace, name=body.name, description=body.description
    )
    after = workspaces.workspace_dict(access.workspace)
    audit.record(
        db,
        "workspace.updated",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="workspace",
        target_id=access.workspace.id,
        before=before,
        after=after,
    )
    await db.commit()
    return workspaces.workspace_dict(access.workspace, access.role)


@router.delete(
    "/workspaces/{workspace_id}",
    summary="Delete a workspace and everything in it",
    status_code=204,
    tags=["workspaces"],
)
async def delete_workspace(access: WorkspaceOwner, db: DbSession) -> Response:
    before = workspaces.workspace_dict(access.workspace)
    await workspaces.delete_workspace(db, access.workspace)
    audit.record(
        db,
        "workspace.deleted",
        actor=access.principal,
        workspace_id=before["id"],
        target_type="workspace",
        target_id=before["id"],
        before=before,
    )
    await db.commit()
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
)
async def add_member(body: MemberAdd, access: WorkspaceAdmin, db: DbSession) -> MemberOut:
    user = await service.find_user_by_email(db, body.email)
    if user is None or not user.is_active:
        raise NotFound(
            f"no active account with the e-mail {body.email.strip().lower()}; an administrator "
            "creates accounts (POST /api/users or `hexahub user create`)"
        )
    membership = await workspaces.add_member(
        db, access.workspace, user, Role(body.role), actor_role=access.role
    )
    audit.record(
        db,
        "member.added",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="user",
        target_id=user.id,
        after={"email": user.email, "role": body.role},
    )
    await db.commit()
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
    membership = await workspaces.get_membership(db, access.workspace.id, user_id)
    user = await service.get_user(db, user_id)
    before = {"role": membership.role}
    await workspaces.change_role(db, membership, Role(body.role), actor_role=access.role)
    audit.record(
        db,
        "member.role_changed",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="user",
        target_id=user_id,
        before=before,
        after={"role": membership.role},
    )
    await db.commit()
    return _member_out(membership, user)


@router.delete(
    "/workspaces/{workspace_id}/members/{user_id}",
    summary="Remove a member",
    status_code=204,
    tags=["members"],
)
async def remove_member(user_id: str, access: WorkspaceAdmin, db: DbSession) -> Response:
    membership = await workspaces.get_membership(db, access.workspace.id, user_id)
    before = {"role": membership.role}
    await workspaces.remove_member(db, membership, actor_role=access.role, actor_id=access.user.id)
    audit.record(
        db,
        "member.removed",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="user",
        target_id=user_id,
        before=before,
    )
    await db.commit()
    return Response(status_code=204)


@router.post(
    "/workspaces/{workspace_id}/leave",
    summary="Leave a workspace",
    status_code=204,
    tags=["members"],
)
async def leave_workspace(access: WorkspaceReader, db: DbSession) -> Response:
    membership = await workspaces.get_membership(db, access.workspace.id, access.user.id)
    await workspaces.remove_member(db, membership, actor_role=access.role, actor_id=access.user.id)
    audit.record(
        db,
        "member.left",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="user",
        target_id=access.user.id,
        before={"role": membership.role},
    )
    await db.commit()
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
    membership = await workspaces.transfer_ownership(
        db, access.workspace, access.user, body.user_id
    )
    user = await service.get_user(db, body.user_id)
    audit.record(
        db,
        "workspace.ownership_transferred",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="user",
        target_id=user.id,
        before={"owner": access.user.id},
        after={"owner": user.id},
    )
    await db.commit()
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
)
async def create_group(body: GroupCreate, access: WorkspaceAdmin, db: DbSession) -> GroupOut:
    group = await workspaces.create_group(db, access.workspace.organization_id, body.name)
    audit.record(
        db,
        "group.created",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="group",
        target_id=group.id,
        after={"name": group.name},
    )
    await db.commit()
    return await _group_out(db, group)


@router.post(
    "/workspaces/{workspace_id}/groups/{group_id}/members",
    summary="Add a person to a group",
    response_model=GroupOut,
    tags=["groups"],
)
async def add_group_member(
    group_id: str, body: GroupMemberAdd, access: WorkspaceAdmin, db: DbSession
) -> GroupOut:
    group = await workspaces.get_group(db, group_id, access.workspace.organization_id)
    user = await service.find_user_by_email(db, body.email)
    if user is None:
        raise NotFound(f"no account with the e-mail {body.email.strip().lower()}")
    await workspaces.add_group_member(db, group, user)
    audit.record(
        db,
        "group.member_added",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="group",
        target_id=group.id,
        after={"user_id": user.id, "email": user.email},
    )
    await db.commit()
    return await _group_out(db, group)


@router.delete(
    "/workspaces/{workspace_id}/groups/{group_id}/members/{user_id}",
    summary="Remove a person from a group",
    status_code=204,
    tags=["groups"],
)
async def remove_group_member(
    group_id: str, user_id: str, access: WorkspaceAdmin, db: DbSession
) -> Response:
    group = await workspaces.get_group(db, group_id, access.workspace.organization_id)
    await workspaces.remove_group_member(db, group, user_id)
    audit.record(
        db,
        "group.member_removed",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="group",
        target_id=group.id,
        before={"user_id": user_id},
    )
    await db.commit()
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
    group = await workspaces.get_group(db, group_id, access.workspace.organization_id)
    before = (await workspaces.group_roles_in(db, access.workspace.id)).get(group.id)
    await workspaces.set_group_role(
        db, access.workspace, group, Role(body.role) if body.role else None, actor_role=access.role
    )
    audit.record(
        db,
        "group.role_changed",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="group",
        target_id=group.id,
        before={"role": before},
        after={"role": body.role},
    )
    await db.commit()
    return Response(status_code=204)


# --- API keys ------------------------------------------------------------------------


@router.get("/keys", summary="My API keys", response_model=list[KeyOut], tags=["keys"])
async def list_my_keys(principal: Authenticated, db: DbSession) -> list[KeyOut]:
    return [_key_out(k) for k in await keys.list_keys(db, user_id=principal.user.id)]


@router.get(
    "/workspaces/{workspace_id}/keys",
    summary="Every key bound to this workspace",
    response_model=list[KeyOut],
    tags=["keys"],
)
async def list_workspace_keys(access: WorkspaceAdminReader, db: DbSession) -> list[KeyOut]:
    return [_key_out(k) for k in await keys.list_keys(db, workspace_id=access.workspace.id)]


@router.post(
    "/keys",
    summary="Create an API key (the secret is shown once)",
    response_model=KeyCreated,
    status_code=201,
    tags=["keys"],
)
async def create_key(body: KeyCreate, principal: AuthenticatedWriter, db: DbSession) -> KeyCreated:
    workspace_id = body.workspace_id
    if principal.api_key is not None:
        # A key can mint keys no stronger than itself.
        extra = keys.expand_scopes(list(body.scopes)) - principal.scopes
        if extra:
            raise Forbidden(f"this key cannot grant scopes it lacks: {', '.join(sorted(extra))}")
        bound = principal.api_key.workspace_id
        if bound is not None and workspace_id != bound:
            raise Forbidden("a key bound to a workspace can only create keys for it")
    if (
        workspace_id is not None
        and await effective_role(db, workspace_id, principal.user.id) is None
    ):
        raise NotFound(f"no workspace with id {workspace_id}")
    created = await keys.create_key(
        db,
        principal.user,
        name=body.name,
        scopes=list(body.scopes),
        workspace_id=workspace_id,
        expires_in_days=body.expires_in_days,
    )
    audit.record(
        db,
        "key.created",
        actor=principal,
        workspace_id=workspace_id,
        target_type="api_key",
        target_id=created.key.id,
        after=_key_public(created.key),
    )
    await db.commit()
    return KeyCreated(**_key_out(created.key).model_dump(), key=created.secret)


@router.delete("/keys/{key_id}", summary="Revoke an API key", status_code=204, tags=["keys"])
async def revoke_key(key_id: str, principal: AuthenticatedWriter, db: DbSession) -> Response:
    key = await keys.get_key(db, key_id)
    allowed = key.user_id == principal.user.id
    if not allowed and key.workspace_id is not None:
        role = await effective_role(db, key.workspace_id, principal.user.id)
        allowed = role is not None and role.at_least(Role.admin) and principal.has_scope("admin")
    if not allowed:
        raise NotFound(f"no API key with id {key_id}")
    await keys.revoke_key(db, key)
    audit.record(
        db,
        "key.revoked",
        actor=principal,
        workspace_id=key.workspace_id,
        target_type="api_key",
        target_id=key.id,
        before=_key_public(key),
    )
    await db.commit()
    return Response(status_code=204)


# --- audit log -----------------------------------------------------------------------

AuditFilters = dict[str, Any]


def _audit_filters(
    action: str | None,
    actor: str | None,
    outcome: str | None,
    since: datetime | None,
    until: datetime | None,
) -> AuditFilters:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed(f"{name}: give a time zone, e.g. 2026-01-31T00:00:00Z")
    return {"action": action, "actor": actor, "outcome": outcome, "since": since, "until": until}


ActionQ = Annotated[
    str | None, Query(max_length=100, description="Exact action, or a prefix ending in '.'")
]
ActorQ = Annotated[str | None, Query(max_length=320)]
OutcomeQ = Annotated[str | None, Query(max_length=16, description="ok, denied or failed")]
SinceQ = Annotated[datetime | None, Query(description="ISO 8601 time, inclusive")]
UntilQ = Annotated[datetime | None, Query(description="ISO 8601 time, exclusive")]
LimitQ = Annotated[int, Query(ge=1, le=audit.MAX_PAGE)]
BeforeQ = Annotated[str | None, Query(max_length=36, description="Page after this event id")]


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
    action: ActionQ = None,
    actor: ActorQ = None,
    outcome: OutcomeQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
    limit: LimitQ = 100,
    before: BeforeQ = None,
) -> list[dict[str, Any]]:
    events = await audit.query(
        db,
        workspace_ids=[access.workspace.id],
        limit=limit,
        before_id=before,
        **_audit_filters(action, actor, outcome, since, until),
    )
    return [audit.as_dict(e) for e in events]


@router.get(
    "/workspaces/{workspace_id}/audit/export",
    summary="The workspace's audit log as JSON lines",
    tags=["audit"],
)
async def workspace_audit_export(
    access: WorkspaceAdminReader,
    runtime: RuntimeDep,
    action: ActionQ = None,
    actor: ActorQ = None,
    outcome: OutcomeQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
) -> StreamingResponse:
    return _jsonl(
        runtime,
        f"audit-{access.workspace.slug}.jsonl",
        workspace_ids=[access.workspace.id],
        **_audit_filters(action, actor, outcome, since, until),
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
    action: ActionQ = None,
    actor: ActorQ = None,
    outcome: OutcomeQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
    limit: LimitQ = 100,
    before: BeforeQ = None,
) -> list[dict[str, Any]]:
    events = await audit.query(
        db, limit=limit, before_id=before, **_audit_filters(action, actor, outcome, since, until)
    )
    return [audit.as_dict(e) for e in events]


@router.get("/audit/export", summary="The whole audit log as JSON lines", tags=["audit"])
async def instance_audit_export(
    principal: InstanceAdminReader,
    runtime: RuntimeDep,
    action: ActionQ = None,
    actor: ActorQ = None,
    outcome: OutcomeQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
) -> StreamingResponse:
    return _jsonl(runtime, "audit.jsonl", **_audit_filters(action, actor, outcome, since, until))


__all__ = ["Principal", "WorkspaceAccess", "router"]
