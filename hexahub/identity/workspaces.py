"""Organisations, workspaces, members and groups. Knows nothing of HTTP.

Functions add to the caller's transaction (flush, no commit), so a route commits the
change and its audit entry together.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from hexahub.identity.models import (
    Group,
    GroupMember,
    GroupRole,
    Membership,
    Organization,
    Role,
    User,
    Workspace,
)

MAX_NAME = 200
MAX_DESCRIPTION = 2000
_SLUG_CHARS = re.compile(r"[^a-z0-9]+")


def slugify(name: str) -> str:
    slug = _SLUG_CHARS.sub("-", name.lower()).strip("-")[:60]
    return slug or "workspace"


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValidationFailed(
            f"role: {value!r} is not a role; use one of {', '.join(r.value for r in Role)}"
        ) from None


def check_name(name: str, field: str = "name") -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME:
        raise ValidationFailed(f"{field}: give a name of 1 to {MAX_NAME} characters")
    return cleaned


def workspace_dict(workspace: Workspace, role: Role | None = None) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": workspace.id,
        "organization_id": workspace.organization_id,
        "name": workspace.name,
        "slug": workspace.slug,
        "description": workspace.description,
        "created_at": workspace.created_at.isoformat(),
    }
    if role is not None:
        shown["role"] = role.value
    return shown


# --- organisations -------------------------------------------------------------------


async def _free_slug(db: AsyncSession, model: Any, base: str, **scope: Any) -> str:
    slug, n = base, 1
    while await db.scalar(
        select(func.count())
        .select_from(model)
        .where(model.slug == slug, *[getattr(model, k) == v for k, v in scope.items()])
    ):
        n += 1
        slug = f"{base}-{n}"
    return slug


async def create_organization(db: AsyncSession, name: str) -> Organization:
    name = check_name(name)
    org = Organization(name=name, slug=await _free_slug(db, Organization, slugify(name)))
    db.add(org)
    await db.flush()
    return org


async def list_organizations(db: AsyncSession) -> list[Organization]:
    return list((await db.scalars(select(Organization).order_by(Organization.name))).all())


async def get_organization(db: AsyncSession, org_id: str) -> Organization:
    org = await db.get(Organization, org_id)
    if org is None:
        raise NotFound(f"no organisation with id {org_id}")
    return org


async def default_organization(db: AsyncSession) -> Organization:
    org = await db.scalar(select(Organization).order_by(Organization.created_at).limit(1))
    if org is None:
        org = await create_organization(db, "Default")
    return org


# --- workspaces ----------------------------------------------------------------------


async def create_workspace(
    db: AsyncSession,
    owner: User,
    *,
    name: str,
    organization_id: str | None = None,
    description: str = "",
) -> Workspace:
    """Create a workspace owned by `owner` (in the first organisation unless given)."""
    name = check_name(name)
    if len(description) > MAX_DESCRIPTION:
        raise ValidationFailed(f"description: use at most {MAX_DESCRIPTION} characters")
    org = (
        await get_organization(db, organization_id)
        if organization_id
        else await default_organization(db)
    )
    workspace = Workspace(
        organization_id=org.id,
        name=name,
        slug=await _free_slug(db, Workspace, slugify(name), organization_id=org.id),
        description=description.strip(),
    )
    db.add(workspace)
    await db.flush()
    db.add(Membership(workspace_id=workspace.id, user_id=owner.id, role=Role.owner.value))
    await db.flush()
    return workspace


async def create_default_home(db: AsyncSession, user: User) -> Workspace:
    """The first organisation and workspace, made at first-admin setup."""
    await default_organization(db)
    return await create_workspace(db, user, name="Default")


async def update_workspace(
    db: AsyncSession, workspace: Workspace, *, name: str | None, description: str | None
) -> None:
    # Check everything before changing anything, so a refusal leaves the row untouched.
    new_name = check_name(name) if name is not None else None
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise ValidationFailed(f"description: use at most {MAX_DESCRIPTION} characters")
    if new_name is not None:
        workspace.name = new_name
    if description is not None:
        workspace.description = description.strip()
    await db.flush()


async def delete_workspace(db: AsyncSession, workspace: Workspace) -> None:
    await db.delete(workspace)
    await db.flush()


async def workspaces_of(db: AsyncSession, user_id: str) -> list[tuple[Workspace, Role]]:
    """Every workspace a user has a role in (own or through a group), strongest role."""
    own = select(Membership.workspace_id, Membership.role).where(Membership.user_id == user_id)
    via_groups = (
        select(GroupRole.workspace_id, GroupRole.role)
        .join(GroupMember, GroupMember.group_id == GroupRole.group_id)
        .where(GroupMember.user_id == user_id)
    )
    best: dict[str, Role] = {}
    for workspace_id, role in (await db.execute(own.union_all(via_groups))).all():
        candidate = Role(role)
        if workspace_id not in best or candidate.rank > best[workspace_id].rank:
            best[workspace_id] = candidate
    if not best:
        return []
    found = (
        await db.scalars(select(Workspace).where(Workspace.id.in_(best)).order_by(Workspace.name))
    ).all()
    return [(workspace, best[workspace.id]) for workspace in found]


async def workspaces_solely_owned_by(db: AsyncSession, user_id: str) -> list[Workspace]:
    owned = (
        await db.scalars(
            select(Membership.workspace_id).where(
                Membership.user_id == user_id, Membership.role == Role.owner.value
            )
        )
    ).all()
    sole: list[Workspace] = []
    for workspace_id in owned:
        owners = await db.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.workspace_id == workspace_id, Membership.role == Role.owner.value)
        )
        if owners == 1:
            workspace = await db.get(Workspace, workspace_id)
            if workspace is not None:
                sole.append(workspace)
    return sole


async def find_workspace(db: AsyncSession, id_or_slug: str) -> Workspace:
    """A workspace by id or slug (slugs are unique per organisation, so ask for the id
    when several organisations use the same one)."""
    by_id = await db.get(Workspace, id_or_slug)
    if by_id is not None:
        return by_id
    found = list(await db.scalars(select(Workspace).where(Workspace.slug == id_or_slug)))
    if not found:
        raise NotFound(f"no workspace with id or slug {id_or_slug}")
    if len(found) > 1:
        raise Conflict(f"several organisations have a workspace {id_or_slug}; use its id")
    return found[0]


# --- members -------------------------------------------------------------------------


async def list_members(db: AsyncSession, workspace_id: str) -> list[tuple[Membership, User]]:
    rows = await db.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.workspace_id == workspace_id)
        .order_by(User.email)
    )
    return [(m, u) for m, u in rows.all()]


async def get_membership(db: AsyncSession, workspace_id: str, user_id: str) -> Membership:
    membership = await db.scalar(
        select(Membership).where(
            Membership.workspace_id == workspace_id, Membership.user_id == user_id
        )
    )
    if membership is None:
        raise NotFound(f"user {user_id} is not a member of this workspace")
    return membership


def check_may_grant(actor_role: Role, role: Role) -> None:
    """Admins hand out roles up to admin; only owners make owners (by transfer)."""
    if role == Role.owner:
        raise Forbidden("ownership is given by transferring it, not by setting a role")
    if not actor_role.at_least(role):
        raise Forbidden(f"you cannot give a role stronger than your own ({actor_role.value})")


async def add_member(
    db: AsyncSession, workspace: Workspace, user: User, role: Role, *, actor_role: Role
) -> Membership:
    check_may_grant(actor_role, role)
    existing = await db.scalar(
        select(Membership).where(
            Membership.workspace_id == workspace.id, Membership.user_id == user.id
        )
    )
    if existing is not None:
        raise Conflict(f"{user.email} is already a member (as {existing.role})")
    membership = Membership(workspace_id=workspace.id, user_id=user.id, role=role.value)
    db.add(membership)
    await db.flush()
    return membership


async def change_role(
    db: AsyncSession, membership: Membership, role: Role, *, actor_role: Role
) -> None:
    current = Role(membership.role)
    check_may_grant(actor_role, role)
    if current == Role.owner:
        raise Forbidden("an owner's role changes only by transferring ownership")
    if current.rank > actor_role.rank:
        raise Forbidden(f"you cannot change the role of a {current.value}")
    membership.role = role.value
    await db.flush()


async def remove_member(
    db: AsyncSession, membership: Membership, *, actor_role: Role, actor_id: str
) -> None:
    current = Role(membership.role)
    if current == Role.owner:
        raise Forbidden("the owner cannot be removed; transfer ownership first")
    if current.rank > actor_role.rank and membership.user_id != actor_id:
        raise Forbidden(f"you cannot remove a {current.value}")
    await db.delete(membership)
    await db.flush()


async def transfer_ownership(
    db: AsyncSession, workspace: Workspace, from_user: User, to_user_id: str
) -> Membership:
    """The new owner must already be a member; the old owner becomes an admin."""
    if to_user_id == from_user.id:
        raise ValidationFailed("user_id: you already own this workspace")
    target = await get_membership(db, workspace.id, to_user_id)
    mine = await get_membership(db, workspace.id, from_user.id)
    target.role = Role.owner.value
    mine.role = Role.admin.value
    await db.flush()
    return target


# --- groups --------------------------------------------------------------------------


async def list_groups(db: AsyncSession, organization_id: str) -> list[Group]:
    return list(
        (
            await db.scalars(
                select(Group).where(Group.organization_id == organization_id).order_by(Group.name)
            )
        ).all()
    )


async def get_group(db: AsyncSession, group_id: str, organization_id: str) -> Group:
    group = await db.get(Group, group_id)
    if group is None or group.organization_id != organization_id:
        raise NotFound(f"no group with id {group_id}")
    return group


async def ensure_group(
    db: AsyncSession, organization_id: str, name: str, *, source: str = "manual"
) -> Group:
    name = check_name(name)
    group = await db.scalar(
        select(Group).where(Group.organization_id == organization_id, Group.name == name)
    )
    if group is None:
        group = Group(organization_id=organization_id, name=name, source=source)
        db.add(group)
        await db.flush()
    return group


async def create_group(db: AsyncSession, organization_id: str, name: str) -> Group:
    name = check_name(name)
    if await db.scalar(
        select(Group).where(Group.organization_id == organization_id, Group.name == name)
    ):
        raise Conflict(f"a group named {name!r} already exists")
    return await ensure_group(db, organization_id, name)


async def group_member_ids(db: AsyncSession, group_id: str) -> list[str]:
    return list(
        await db.scalars(select(GroupMember.user_id).where(GroupMember.group_id == group_id))
    )


async def add_group_member(db: AsyncSession, group: Group, user: User) -> None:
    if await db.get(GroupMember, (group.id, user.id)) is None:
        db.add(GroupMember(group_id=group.id, user_id=user.id))
        await db.flush()


async def remove_group_member(db: AsyncSession, group: Group, user_id: str) -> None:
    await db.execute(
        delete(GroupMember).where(GroupMember.group_id == group.id, GroupMember.user_id == user_id)
    )


async def group_roles_in(db: AsyncSession, workspace_id: str) -> dict[str, str]:
    """group id -> role, for the groups that have a role in this workspace."""
    rows = await db.execute(
        select(GroupRole.group_id, GroupRole.role).where(GroupRole.workspace_id == workspace_id)
    )
    return {group_id: role for group_id, role in rows.all()}


async def set_group_role(
    db: AsyncSession, workspace: Workspace, group: Group, role: Role | None, *, actor_role: Role
) -> None:
    """Give a group a role in a workspace (None takes it away)."""
    if group.organization_id != workspace.organization_id:
        raise NotFound(f"no group with id {group.id}")
    existing = await db.scalar(
        select(GroupRole).where(
            GroupRole.workspace_id == workspace.id, GroupRole.group_id == group.id
        )
    )
    if role is None:
        if existing is not None:
            await db.delete(existing)
        await db.flush()
        return
    check_may_grant(actor_role, role)
    if existing is None:
        db.add(GroupRole(workspace_id=workspace.id, group_id=group.id, role=role.value))
    else:
        existing.role = role.value
    await db.flush()


async def sync_user_groups(
    db: AsyncSession, user: User, organization_id: str, names: list[str], *, source: str
) -> None:
    """Make the user's membership in `source` groups match `names` (e.g. an SSO claim)."""
    wanted = {check_name(n, "group") for n in names if n.strip()}
    current = (
        await db.scalars(
            select(Group)
            .join(GroupMember, GroupMember.group_id == Group.id)
            .where(
                GroupMember.user_id == user.id,
                Group.organization_id == organization_id,
                Group.source == source,
            )
        )
    ).all()
    for group in current:
        if group.name not in wanted:
            await remove_group_member(db, group, user.id)
    have = {g.name for g in current}
    for name in wanted - have:
        group = await ensure_group(db, organization_id, name, source=source)
        await add_group_member(db, group, user)
    await db.flush()
