"""`hexahub user ...` and `hexahub key ...`: account and key chores from a shell.

Every change is audited with the actor `cli:<login name>`.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core.clitools import actor_label, with_session
from hexahub.core.db import utcnow
from hexahub.core.errors import NotFound, ValidationFailed
from hexahub.identity import audit, keys, service
from hexahub.identity.models import ApiKey, User, Workspace

user_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
key_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")


async def _user_by_email(db: AsyncSession, email: str) -> User:
    user = await service.find_user_by_email(db, email)
    if user is None:
        raise NotFound(f"no account with the e-mail {email.strip().lower()}")
    return user


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Argument(help="E-mail address (the sign-in name).")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    admin: Annotated[bool, typer.Option(help="Make an installation administrator.")] = False,
    sso_only: Annotated[
        bool, typer.Option(help="No password: the person signs in through SSO only.")
    ] = False,
) -> None:
    """Create an account (the first one becomes the administrator). Asks for a password."""
    password = None
    if not sso_only:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def work(db: AsyncSession) -> User:
        if await service.count_users(db) == 0:
            if password is None:
                raise ValidationFailed("the first account needs a password")
            return await service.create_first_admin(
                db, email=email, password=password, display_name=name
            )
        user = await service.create_user(
            db, email=email, password=password, display_name=name, is_admin=admin
        )
        audit.record(
            db,
            "user.created",
            actor_label=actor_label(),
            target_type="user",
            target_id=user.id,
            after=service.public_user(user),
        )
        await db.commit()
        return user

    user = with_session(work)
    role = "administrator" if user.is_admin else "account"
    console.print(f"Created {role} {user.email} ({user.id}).")


@user_app.command("list")
def user_list() -> None:
    """List every account."""

    async def work(db: AsyncSession) -> list[User]:
        return await service.list_users(db)

    table = Table("e-mail", "name", "admin", "active", "created (UTC)", "last sign-in (UTC)")
    for user in with_session(work):
        table.add_row(
            user.email,
            user.display_name,
            "yes" if user.is_admin else "",
            "yes" if user.is_active else "[red]disabled[/red]",
            f"{user.created_at:%Y-%m-%d %H:%M}",
            f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never",
        )
    console.print(table)


def _set_active(email: str, active: bool) -> None:
    async def work(db: AsyncSession) -> None:
        user = await _user_by_email(db, email)
        before = service.public_user(user)
        await service.set_active(db, user, active)
        audit.record(
            db,
            "user.updated",
            actor_label=actor_label(),
            target_type="user",
            target_id=user.id,
            before=before,
            after=service.public_user(user),
        )
        await db.commit()

    with_session(work)


@user_app.command("disable")
def user_disable(email: str) -> None:
    """Disable an account: its sessions and API keys stop working at once."""
    _set_active(email, False)
    console.print(f"Disabled {email}; its sessions and keys no longer work.")


@user_app.command("enable")
def user_enable(email: str) -> None:
    """Enable a disabled account again (its old keys stay revoked)."""
    _set_active(email, True)
    console.print(f"Enabled {email}.")


@key_app.command("create")
def key_create(
    email: Annotated[str, typer.Option("--user", help="Owner's e-mail.")],
    name: Annotated[str, typer.Option(help="What the key is for.")],
    scope: Annotated[
        list[str], typer.Option(help="read, write, admin or gateway (repeatable).")
    ] = ["gateway"],  # noqa: B006 - Typer needs a list default
    workspace: Annotated[
        str | None, typer.Option(help="Bind the key to one workspace (id or slug).")
    ] = None,
    expires_days: Annotated[int | None, typer.Option(help="Expire after this many days.")] = None,
) -> None:
    """Create an API key and print its secret (shown only now)."""

    async def work(db: AsyncSession) -> keys.NewKey:
        user = await _user_by_email(db, email)
        workspace_id = None
        if workspace:
            found = await db.scalar(
                select(Workspace).where(or_(Workspace.id == workspace, Workspace.slug == workspace))
            )
            if found is None:
                raise NotFound(f"no workspace with id or slug {workspace}")
            from hexahub.identity.authz import effective_role

            if await effective_role(db, found.id, user.id) is None:
                raise NotFound(f"{user.email} has no role in workspace {workspace}")
            workspace_id = found.id
        created = await keys.create_key(
            db,
            user,
            name=name,
            scopes=scope,
            workspace_id=workspace_id,
            expires_in_days=expires_days,
        )
        audit.record(
            db,
            "key.created",
            actor_label=actor_label(),
            workspace_id=workspace_id,
            target_type="api_key",
            target_id=created.key.id,
            after={"name": name, "prefix": created.key.prefix, "scopes": scope},
        )
        await db.commit()
        return created

    created = with_session(work)
    console.print(f"Key {created.key.prefix} for {email} ({', '.join(created.key.scopes)}):")
    console.print(created.secret, soft_wrap=True, highlight=False)
    console.print("[yellow]Store it now: it is not shown again.[/yellow]")


@key_app.command("list")
def key_list(
    email: Annotated[str | None, typer.Option("--user", help="Only this owner's keys.")] = None,
) -> None:
    """List API keys (never their secrets)."""

    async def work(db: AsyncSession) -> list[tuple[ApiKey, str]]:
        query = select(ApiKey, User.email).join(User, User.id == ApiKey.user_id)
        if email:
            query = query.where(User.email == email.strip().lower())
        rows = await db.execute(query.order_by(ApiKey.created_at.desc()))
        return [(k, e) for k, e in rows.all()]

    table = Table("prefix", "name", "owner", "scopes", "workspace", "last used", "state")
    for key, owner in with_session(work):
        state: Any = "active"
        if key.revoked_at:
            state = "[red]revoked[/red]"
        elif key.expires_at and key.expires_at <= utcnow():
            state = "[red]expired[/red]"
        table.add_row(
            key.prefix,
            key.name,
            owner,
            ",".join(key.scopes),
            key.workspace_id or "any",
            f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never",
            state,
        )
    console.print(table)


@key_app.command("revoke")
def key_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (hh_...) or id.")],
) -> None:
    """Revoke an API key at once."""

    async def work(db: AsyncSession) -> ApiKey:
        key = await db.scalar(
            select(ApiKey).where(or_(ApiKey.prefix == prefix, ApiKey.id == prefix))
        )
        if key is None:
            raise NotFound(f"no API key with prefix or id {prefix}")
        await keys.revoke_key(db, key)
        audit.record(
            db,
            "key.revoked",
            actor_label=actor_label(),
            workspace_id=key.workspace_id,
            target_type="api_key",
            target_id=key.id,
            before={"name": key.name, "prefix": key.prefix},
        )
        await db.commit()
        return key

    key = with_session(work)
    console.print(f"Revoked {key.prefix} ({key.name}).")
