"""Who is signed in to a page, and what they may do there.

Pages authorise exactly like the JSON API: the browser session becomes an
`authz.Principal` and every workspace page goes through `authz.workspace_access` with the
role and scope its API twin needs, so a page can never do more than the API. As in the
API, each route names what it needs as a typed parameter:

    async def members_page(access: WorkspaceReaderPage) -> ...   # any role in the workspace
    async def add_member(access: WorkspaceAdminPage) -> ...      # admin role

Routes on a `PageRoute` router answer problems as HTML: no session sends the visitor to
sign in; HexaHub errors (404 for strangers, 403 for too weak a role, 429) become the
friendly error page with the same status.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from hexahub.core.deps import DbSession
from hexahub.core.errors import HexaHubError
from hexahub.identity import authz, service, sessions
from hexahub.identity.authz import SESSION_COOKIE, Principal, WorkspaceAccess, client_ip
from hexahub.identity.models import Role, User
from hexahub.settings import Settings
from hexahub.web.rendering import redirect, referring_page, render, settings_of

ERROR_TITLES = {
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    422: "Please check the form",
    429: "Too many requests",
}


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=settings.behind_tls, httponly=True, samesite="lax"
    )


async def signed_in_user(request: Request, db: DbSession) -> User | None:
    found = await sessions.browser_session(
        db, settings_of(request), request.cookies.get(SESSION_COOKIE)
    )
    return found[0] if found else None


SignedIn = Annotated[User | None, Depends(signed_in_user)]


async def sign_in_first(request: Request, db: DbSession) -> Response:
    """Where to send a visitor who is not signed in: setup when nobody exists yet."""
    if await service.count_users(db) == 0:
        return redirect("/setup")
    htmx = request.headers.get("hx-request") == "true"
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    else:
        # After signing in, return to the page the form was on, not to a POST-only URL.
        target = referring_page(request)
    login = "/login?" + urlencode({"next": referring_page(request) if htmx else target})
    # An HTMX request (a polling status block, a search box) would swap the login page
    # into part of the page: have HTMX load it as a whole page instead.
    response = (
        Response(status_code=200, headers={"HX-Redirect": login}) if htmx else redirect(login)
    )
    if SESSION_COOKIE in request.cookies:
        clear_session_cookie(response, settings_of(request))
    return response


class SignInRequired(Exception):
    """Raised by page dependencies when no live browser session came with the request."""

    def __init__(self, response: Response) -> None:
        super().__init__("sign in first")
        self.response = response


def error_page(request: Request, exc: HexaHubError) -> Response:
    user: User | None = getattr(request.state, "page_user", None)
    response = render(
        request,
        "error.html",
        {
            "title": ERROR_TITLES.get(exc.status_code, "Something went wrong"),
            "message": exc.message,
            "status": exc.status_code,
        },
        status_code=exc.status_code,
        user=user,
    )
    if exc.headers:
        response.headers.update(exc.headers)
    return response


class PageRoute(APIRoute):
    """A page route: problems are answered with HTML pages instead of JSON errors."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:
                return exc.response
            except HexaHubError as exc:
                return error_page(request, exc)

        return page_handler


async def page_principal(request: Request, db: DbSession) -> Principal:
    """The signed-in browser session as the API sees it (a "session" principal)."""
    found = await sessions.browser_session(
        db, settings_of(request), request.cookies.get(SESSION_COOKIE)
    )
    if found is None:
        raise SignInRequired(await sign_in_first(request, db))
    user, auth_session = found
    request.state.page_user = user
    principal = Principal(user, "session", client_ip(request), session=auth_session)
    limiter = getattr(request.app.state, "limiter", None)
    if limiter is not None:
        await limiter.check_principal(principal)
    return principal


PagePrincipal = Annotated[Principal, Depends(page_principal)]


def page_workspace(minimum: Role, scope: str) -> Any:
    async def dependency(
        request: Request, workspace_id: str, db: DbSession, principal: PagePrincipal
    ) -> WorkspaceAccess:
        return await authz.workspace_access(
            db, principal, workspace_id, minimum, scope, path=request.url.path
        )

    dependency.__name__ = f"page_workspace_{minimum.value}_{scope}"
    return dependency


# The same role and scope pairs as authz.WorkspaceReader, WorkspaceAdmin, ... for the API.
WorkspaceReaderPage = Annotated[WorkspaceAccess, Depends(page_workspace(Role.viewer, "read"))]
WorkspaceAdminPage = Annotated[WorkspaceAccess, Depends(page_workspace(Role.admin, "admin"))]
WorkspaceAdminReaderPage = Annotated[WorkspaceAccess, Depends(page_workspace(Role.admin, "read"))]
WorkspaceOwnerPage = Annotated[WorkspaceAccess, Depends(page_workspace(Role.owner, "admin"))]


def workspace_context(access: WorkspaceAccess, tab: str) -> dict[str, Any]:
    """What every page of one workspace shows: its name, your role and the tabs."""
    can_admin = access.role.at_least(Role.admin)
    base = f"/workspaces/{access.workspace.id}"
    return {
        "workspace": access.workspace,
        "role": access.role.value,
        "can_admin": can_admin,
        "is_owner": access.role == Role.owner,
        "tab": tab,
        "base": base,
        "active": "workspaces",
        # In a workspace you administer, the navigation's Audit link opens its log.
        "audit_path": f"{base}/audit" if can_admin else "/audit",
    }
