"""My account: profile, password, and my API keys.

Like the workspace pages, every change goes through hexahub.identity.actions, so it is checked
and audited exactly as through /api/me, /api/me/password and /api/keys.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from hexahub.core.deps import DbSession
from hexahub.core.errors import HexaHubError, ValidationFailed
from hexahub.identity import actions, keys, service, workspaces
from hexahub.identity.authz import Principal
from hexahub.web.access import PagePrincipal, PageRoute
from hexahub.web.csrf import require_csrf
from hexahub.web.rendering import redirect, render, safe_next

router = APIRouter(include_in_schema=False, route_class=PageRoute)
CsrfChecked = Depends(require_csrf)
MAX_EXPIRY_DAYS = 3650


async def recover(db: AsyncSession, principal: Principal) -> None:
    """Undo a refused change, and reload the user the page shows (rollback expires it)."""
    await db.rollback()
    await db.refresh(principal.user)


def with_message(path: str, message: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}ok={message}"


# --- API keys ------------------------------------------------------------------------


def _expiry_days(value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= MAX_EXPIRY_DAYS:
        raise ValidationFailed(
            f"expires_in_days: give a whole number of days from 1 to {MAX_EXPIRY_DAYS}, "
            "or leave it empty for a key that does not expire"
        )
    return int(value)


async def _keys_page(
    request: Request,
    db: AsyncSession,
    principal: Principal,
    *,
    error: HexaHubError | None = None,
    form: dict[str, object] | None = None,
) -> Response:
    mine = await workspaces.workspaces_of(db, principal.user.id)
    names = {workspace.id: workspace.name for workspace, _ in mine}
    return render(
        request,
        "keys.html",
        {
            "keys": await actions.list_keys(db, principal),
            "workspace_names": names,
            "workspaces": [workspace for workspace, _ in mine],
            "scopes": keys.SCOPES,
            "form": form
            or {"name": "", "scopes": ["read"], "workspace_id": "", "expires_in_days": ""},
            "active": "keys",
            "page_error": error.message if error else "",
        },
        status_code=error.status_code if error else 200,
        user=principal.user,
    )


@router.get("/keys")
async def keys_page(request: Request, db: DbSession, principal: PagePrincipal) -> Response:
    return await _keys_page(request, db, principal)


@router.post("/keys", dependencies=[CsrfChecked])
async def create_key(
    request: Request,
    db: DbSession,
    principal: PagePrincipal,
    name: Annotated[str, Form()] = "",
    scopes: Annotated[list[str] | None, Form()] = None,
    workspace_id: Annotated[str, Form()] = "",
    expires_in_days: Annotated[str, Form()] = "",
) -> Response:
    try:
        created = await actions.create_key(
            db,
            principal,
            name=name,
            scopes=scopes or [],
            workspace_id=workspace_id or None,
            expires_in_days=_expiry_days(expires_in_days),
        )
    except HexaHubError as exc:
        await recover(db, principal)
        form: dict[str, object] = {
            "name": name,
            "scopes": scopes or [],
            "workspace_id": workspace_id,
            "expires_in_days": expires_in_days,
        }
        return await _keys_page(request, db, principal, error=exc, form=form)
    workspace_name = ""
    if created.key.workspace_id is not None:
        for workspace, _ in await workspaces.workspaces_of(db, principal.user.id):
            if workspace.id == created.key.workspace_id:
                workspace_name = workspace.name
    # The secret exists only in this response: it is shown here once and never stored.
    return render(
        request,
        "key_created.html",
        {"key": created.key, "secret": created.secret, "workspace_name": workspace_name},
        status_code=201,
        user=principal.user,
    )


@router.post("/keys/{key_id}/revoke", dependencies=[CsrfChecked])
async def revoke_key(
    db: DbSession,
    principal: PagePrincipal,
    key_id: str,
    next: Annotated[str, Form()] = "/keys",
) -> Response:
    await actions.revoke_key(db, principal, key_id)
    return redirect(with_message(safe_next(next), "key_revoked"))


# --- profile and password ------------------------------------------------------------


async def _account_page(
    request: Request,
    principal: Principal,
    *,
    error: HexaHubError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "account.html",
        {
            "form": form or {"display_name": principal.user.display_name},
            "has_password": principal.user.password_hash is not None,
            "min_password": service.MIN_PASSWORD_LENGTH,
            "active": "account",
            "page_error": error.message if error else "",
        },
        status_code=error.status_code if error else 200,
        user=principal.user,
    )


@router.get("/account")
async def account_page(request: Request, principal: PagePrincipal) -> Response:
    return await _account_page(request, principal)


@router.post("/account/profile", dependencies=[CsrfChecked])
async def update_profile(
    request: Request,
    db: DbSession,
    principal: PagePrincipal,
    display_name: Annotated[str, Form()] = "",
) -> Response:
    try:
        await actions.update_display_name(db, principal, display_name)
    except HexaHubError as exc:
        await recover(db, principal)
        return await _account_page(
            request, principal, error=exc, form={"display_name": display_name}
        )
    return redirect("/account?ok=profile_saved")


@router.post("/account/password", dependencies=[CsrfChecked])
async def change_password(
    request: Request,
    db: DbSession,
    principal: PagePrincipal,
    current_password: Annotated[str, Form()] = "",
    new_password: Annotated[str, Form()] = "",
    new_password_confirm: Annotated[str, Form()] = "",
) -> Response:
    try:
        if new_password != new_password_confirm:
            raise ValidationFailed("new_password: the two new passwords are not the same")
        await actions.change_password(
            db, principal, current=current_password or None, new=new_password
        )
    except HexaHubError as exc:
        await recover(db, principal)
        return await _account_page(request, principal, error=exc)
    return redirect("/account?ok=password_changed")
