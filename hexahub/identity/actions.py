"""Identity changes with their audit events: one function per action, HTTP-free.

Each function takes an already authorised caller (a `Principal`, or the `WorkspaceAccess`
that `authz.workspace_access` returned), calls the identity service, records the audit
event and commits both together. The events are the ones hexahub/identity/api.py records
for the same action, with the same names and before/after shapes, so a change made on a
page reads exactly like one made through the API: both call these.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core.db import utcnow
from hexahub.core.errors import Forbidden, NotFound
from hexahub.identity import audit, keys, service, workspaces
from hexahub.identity.authz import Principal, WorkspaceAccess, effective_role
from hexahub.identity.models import ApiKey, Group, Membership, Role, User


def key_public(key: ApiKey) -> dict[str, Any]:
    """What the audit log keeps of a key (never its secret or hash)."""
    return {
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "workspace_id": key.workspace_id,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
    }


# --- me ------------------------------------------------------------------------------


async def update_display_name(db: AsyncSession, principal: Principal, display_name: str) -> User:
    user = principal.user
    before = service.public_user(user)
    user.display_name = service.check_display_name(display_name) or user.email.split("@")[0]
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
    return user


async def change_password(
    db: AsyncSession, principal: Principal, *, current: str | None, new: str
) -> None:
    """Set a new password; every other session ends, the caller's own stays."""
    if principal.api_key is not None:
        raise Forbidden("passwords cannot be changed with an API key; sign in")
    await service.change_password(
        db,
        principal.user,
        current=current,
        new=new,
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


# --- workspaces ----------------------------------------------------------------------


async def create_workspace(
    db: AsyncSession,
    principal: Principal,
    *,
    name: str,
    description: str = "",
    organization_id: str | None = None,
) -> dict[str, Any]:
    if principal.bound_workspace_id is not None:
        raise Forbidden("a key bound to one workspace cannot create workspaces")
    if organization_id is not None and not principal.is_instance_admin:
        raise Forbidden("only installation administrators choose the organisation")
    workspace = await workspaces.create_workspace(
        db, principal.user, name=name, description=description, organization_id=organization_id
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


async def update_workspace(
    db: AsyncSession, access: WorkspaceAccess, *, name: str | None, description: str | None
) -> None:
    before = workspaces.workspace_dict(access.workspace)
    await workspaces.update_workspace(db, access.workspace, name=name, description=description)
    audit.record(
        db,
        "workspace.updated",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="workspace",
        target_id=access.workspace.id,
        before=before,
        after=workspaces.workspace_dict(access.workspace),
    )
    await db.commit()


async def delete_workspace(db: AsyncSession, access: WorkspaceAccess) -> None:
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


# --- members -------------------------------------------------------------------------


async def add_member(
    db: AsyncSession, access: WorkspaceAccess, *, email: str, role: Role
) -> tuple[Membership, User]:
    user = await service.find_user_by_email(db, email)
    if user is None or not user.is_active:
        raise NotFound(
            f"no active account with the e-mail {email.strip().lower()}; an administrator "
            "creates accounts (POST /api/users or `hexahub user create`)"
        )
    membership = await workspaces.add_member(
        db, access.workspace, user, role, actor_role=access.role
    )
    audit.record(
        db,
        "member.added",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="user",
        target_id=user.id,
        after={"email": user.email, "role": role.value},
    )
    await db.commit()
    return membership, user


async def change_member_role(
    db: AsyncSession, access: WorkspaceAccess, user_id: str, role: Role
) -> tuple[Membership, User]:
    membership = await workspaces.get_membership(db, access.workspace.id, user_id)
    user = await service.get_user(db, user_id)
    before = {"role": membership.role}
    await workspaces.change_role(db, membership, role, actor_role=access.role)
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
    return membership, user


async def remove_member(db: AsyncSession, access: WorkspaceAccess, user_id: str) -> None:
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


async def leave_workspace(db: AsyncSession, access: WorkspaceAccess) -> None:
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


async def transfer_ownership(
    db: AsyncSession, access: WorkspaceAccess, user_id: str
) -> tuple[Membership, User]:
    membership = await workspaces.transfer_ownership(db, access.workspace, access.user, user_id)
    user = await service.get_user(db, user_id)
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
    return membership, user


# --- groups --------------------------------------------------------------------------


async def create_group(db: AsyncSession, access: WorkspaceAccess, name: str) -> Group:
    group = await workspaces.create_group(db, access.workspace.organization_id, name)
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
    return group


async def add_group_member(
    db: AsyncSession, access: WorkspaceAccess, group_id: str, email: str
) -> Group:
    group = await workspaces.get_group(db, group_id, access.workspace.organization_id)
    user = await service.find_user_by_email(db, email)
    if user is None:
        raise NotFound(f"no account with the e-mail {email.strip().lower()}")
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
    return group


async def remove_group_member(
    db: AsyncSession, access: WorkspaceAccess, group_id: str, user_id: str
) -> None:
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


async def set_group_role(
    db: AsyncSession, access: WorkspaceAccess, group_id: str, role: Role | None
) -> None:
    """Give a group a role in the workspace; None takes it away."""
    group = await workspaces.get_group(db, group_id, access.workspace.organization_id)
    before = (await workspaces.group_roles_in(db, access.workspace.id)).get(group.id)
    await workspaces.set_group_role(db, access.workspace, group, role, actor_role=access.role)
    audit.record(
        db,
        "group.role_changed",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="group",
        target_id=group.id,
        before={"role": before},
        after={"role": role.value if role else None},
    )
    await db.commit()


# --- API keys ------------------------------------------------------------------------


def key_visible(principal: Principal, key: ApiKey) -> bool:
    """Whether the caller may see or manage `key` at all: a caller using an API key only
    reaches keys within that key's reach (keys.within_reach); people signed in, any."""
    return principal.api_key is None or keys.within_reach(key, principal.api_key)


async def list_keys(
    db: AsyncSession, principal: Principal, *, workspace_id: str | None = None
) -> list[ApiKey]:
    """The caller's own keys, or, with `workspace_id` (access to it already checked),
    every key bound to that workspace; either way only those the caller may see."""
    if workspace_id is None:
        found = await keys.list_keys(
            db, user_id=principal.user.id, workspace_id=principal.bound_workspace_id
        )
    else:
        found = await keys.list_keys(db, workspace_id=workspace_id)
    return [key for key in found if key_visible(principal, key)]


def _check_mintable(
    principal: Principal, scopes: list[str], workspace_id: str | None, expires_in_days: int | None
) -> None:
    """A key creates only keys no stronger than itself: no scope it lacks, no other
    workspace (nor none) when it is bound, and no later expiry than its own."""
    minter = principal.api_key
    if minter is None:
        return
    extra = keys.expand_scopes(scopes) - principal.scopes
    if extra:
        raise Forbidden(f"this key cannot grant scopes it lacks: {', '.join(sorted(extra))}")
    if minter.workspace_id is not None and workspace_id != minter.workspace_id:
        raise Forbidden(
            "a key bound to a workspace can only create keys bound to that workspace: "
            f"set workspace_id to {minter.workspace_id}"
        )
    if minter.expires_at is not None:
        days_left = (minter.expires_at - utcnow()).days
        if expires_in_days is None or expires_in_days > days_left:
            raise Forbidden(
                f"this key expires on {minter.expires_at:%Y-%m-%d}, and a key it creates "
                f"cannot outlive it: set expires_in_days to at most {days_left}"
                if days_left >= 1
                else f"this key expires on {minter.expires_at:%Y-%m-%d %H:%M} UTC, too soon "
                "to create keys with it"
            )


async def create_key(
    db: AsyncSession,
    principal: Principal,
    *,
    name: str,
    scopes: list[str],
    workspace_id: str | None,
    expires_in_days: int | None,
) -> keys.NewKey:
    _check_mintable(principal, scopes, workspace_id, expires_in_days)
    if (
        workspace_id is not None
        and await effective_role(db, workspace_id, principal.user.id) is None
    ):
        raise NotFound(f"no workspace with id {workspace_id}")
    created = await keys.create_key(
        db,
        principal.user,
        name=name,
        scopes=scopes,
        workspace_id=workspace_id,
        expires_in_days=expires_in_days,
    )
    audit.record(
        db,
        "key.created",
        actor=principal,
        workspace_id=workspace_id,
        target_type="api_key",
        target_id=created.key.id,
        after=key_public(created.key),
    )
    await db.commit()
    return created


async def revoke_key(db: AsyncSession, principal: Principal, key_id: str) -> ApiKey:
    """Revoke one's own key, or, as a workspace admin, any key bound to the workspace;
    with an API key, only keys within its reach."""
    key = await keys.get_key(db, key_id)
    allowed = key_visible(principal, key)
    if allowed and key.user_id != principal.user.id:
        role = (
            await effective_role(db, key.workspace_id, principal.user.id)
            if key.workspace_id is not None
            else None
        )
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
        before=key_public(key),
    )
    await db.commit()
    return key
