"""The secrets page: /workspaces/{workspace_id}/secrets.

Lists the paths the signed-in person may list, with metadata; values stay hidden until
"Reveal", a CSRF-checked POST that the vault audits as `secret.revealed`. Forms set one key
(keeping the others), delete and undelete. Every decision is the vault service's, under the
same path policies as the API (any role reaches the page, as any role reaches the API);
this module only renders. Registered by create_app() through register_pages().
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from hexahub.core.deps import DbSession, RuntimeDep
from hexahub.core.errors import HexaHubError
from hexahub.identity import workspaces
from hexahub.identity.authz import WorkspaceAccess
from hexahub.vault import service
from hexahub.vault.service import Caller
from hexahub.web.access import PagePrincipal, PageRoute, WorkspaceReaderPage, workspace_context
from hexahub.web.csrf import require_csrf
from hexahub.web.rendering import redirect, render

router = APIRouter(include_in_schema=False, route_class=PageRoute)
CsrfChecked = Depends(require_csrf)
PathField = Annotated[str, Form(max_length=512)]


async def _recover(db: AsyncSession, access: WorkspaceAccess) -> None:
    """After a refused change: a failed write rolled the session back, which expires
    what the page shows; reload it."""
    await db.rollback()
    await db.refresh(access.workspace)
    await db.refresh(access.user)


async def _page(
    request: Request,
    db: AsyncSession,
    access: WorkspaceAccess,
    *,
    prefix: str = "",
    deleted: bool = False,
    revealed: service.SecretRead | None = None,
    notice: str = "",
    error: HexaHubError | None = None,
) -> Response:
    context = workspace_context(access, "secrets")
    rows: list[dict[str, Any]] = []
    list_error = ""
    try:
        found = await service.list_secrets(
            db, Caller.of(access), access.workspace.id, prefix=prefix, include_deleted=deleted
        )
        rows = [service.summary_dict(i.secret, i.current) for i in found]
    except HexaHubError as exc:
        list_error = exc.message
    return render(
        request,
        "secrets.html",
        {
            **context,
            "active": "secrets",
            "secrets": rows,
            "prefix": prefix,
            "deleted": deleted,
            "revealed": revealed,
            "notice": notice,
            "list_error": list_error,
            "page_error": error.message if error else "",
        },
        status_code=error.status_code if error else 200,
        user=access.user,
    )


@router.get("/secrets")
async def secrets_index(db: DbSession, principal: PagePrincipal) -> Response:
    """The navigation's Secrets entry: the vault of my first workspace."""
    mine = await workspaces.workspaces_of(db, principal.user.id)
    if not mine:
        return redirect("/workspaces")
    return redirect(f"/workspaces/{mine[0][0].id}/secrets")


@router.get("/workspaces/{workspace_id}/secrets")
async def secrets_page(
    request: Request,
    access: WorkspaceReaderPage,
    db: DbSession,
    prefix: str = "",
    deleted: bool = False,
    saved: bool = False,
) -> Response:
    notice = "Saved a new version." if saved else ""
    return await _page(request, db, access, prefix=prefix, deleted=deleted, notice=notice)


@router.post("/workspaces/{workspace_id}/secrets/reveal", dependencies=[CsrfChecked])
async def reveal_secret(
    request: Request,
    access: WorkspaceReaderPage,
    db: DbSession,
    runtime: RuntimeDep,
    path: PathField = "",
) -> Response:
    try:
        revealed = await service.read_secret(
            db,
            runtime.settings,
            Caller.of(access),
            access.workspace.id,
            path,
            action="secret.revealed",
            details={"via": "web"},
        )
    except HexaHubError as exc:
        await _recover(db, access)
        return await _page(request, db, access, error=exc)
    return await _page(request, db, access, revealed=revealed)


@router.post("/workspaces/{workspace_id}/secrets/put", dependencies=[CsrfChecked])
async def put_secret(
    request: Request,
    access: WorkspaceReaderPage,
    db: DbSession,
    runtime: RuntimeDep,
    path: PathField = "",
    key: Annotated[str, Form(max_length=128)] = service.DEFAULT_KEY,
    value: Annotated[str, Form(max_length=1024 * 1024)] = "",
) -> Response:
    try:
        await service.write_secret(
            db,
            runtime.settings,
            Caller.of(access),
            access.workspace.id,
            path,
            {key.strip() or service.DEFAULT_KEY: value},
            merge=True,
        )
    except HexaHubError as exc:
        await _recover(db, access)
        return await _page(request, db, access, error=exc)
    return redirect(f"/workspaces/{access.workspace.id}/secrets?saved=true")


@router.post("/workspaces/{workspace_id}/secrets/delete", dependencies=[CsrfChecked])
async def delete_secret(
    request: Request, access: WorkspaceReaderPage, db: DbSession, path: PathField = ""
) -> Response:
    try:
        await service.delete_secret(db, Caller.of(access), access.workspace.id, path)
    except HexaHubError as exc:
        await _recover(db, access)
        return await _page(request, db, access, error=exc)
    notice = "Deleted. Undelete restores it with every version."
    return await _page(request, db, access, deleted=True, notice=notice)


@router.post("/workspaces/{workspace_id}/secrets/undelete", dependencies=[CsrfChecked])
async def undelete_secret(
    request: Request, access: WorkspaceReaderPage, db: DbSession, path: PathField = ""
) -> Response:
    try:
        await service.undelete_secret(db, Caller.of(access), access.workspace.id, path)
    except HexaHubError as exc:
        await _recover(db, access)
        return await _page(request, db, access, error=exc)
    return await _page(request, db, access, notice="Restored.")


def register_pages(app: FastAPI) -> None:
    """Called by create_app() right after pages.mount(app)."""
    app.include_router(router)
