"""Server-rendered pages: first-admin setup, sign-in, and the areas still to come.

Every page works without JavaScript; the vendored HTMX only boosts the navigation links.
The Content-Security-Policy allows no inline script or style, so templates carry none.
Errors on pages are rendered as HTML; every other route keeps the JSON errors of
hexahub.core.errors. Rendering lives in rendering.py, who may see which page in
access.py; the identity pages are workspace_pages.py and account_pages.py, and `mount()`
wires them all. The home dashboard is dashboard.py.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response

from hexahub.core.deps import DbSession, RuntimeDep
from hexahub.core.errors import (
    Conflict,
    Forbidden,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)
from hexahub.core.runtime import Runtime
from hexahub.identity import oidc, service, sessions
from hexahub.identity.authz import SESSION_COOKIE, client_ip
from hexahub.settings import Settings
from hexahub.web import account_pages, audit_pages, workspace_pages
from hexahub.web.access import SignedIn, clear_session_cookie, sign_in_first, signed_in_user
from hexahub.web.csrf import CsrfRejected, require_csrf
from hexahub.web.rendering import (
    PRODUCT_AREAS,
    STATIC_DIR,
    TEMPLATES_DIR,
    WEB_DIR,
    ProductArea,
    redirect,
    referring_page,
    render,
    safe_next,
    settings_of,
    templates,
)

__all__ = [
    "PRODUCT_AREAS",
    "SESSION_COOKIE",
    "STATIC_DIR",
    "TEMPLATES_DIR",
    "WEB_DIR",
    "ProductArea",
    "SignedIn",
    "announce_setup_link",
    "mount",
    "redirect",
    "render",
    "safe_next",
    "setup_url",
    "templates",
]

log = logging.getLogger("hexahub.web")

# The names these helpers had before they moved to rendering.py and access.py.
_settings = settings_of
_signed_in = signed_in_user
_sign_in_first = sign_in_first
_clear_session_cookie = clear_session_cookie

router = APIRouter(include_in_schema=False)


# --- helpers -------------------------------------------------------------------------


def setup_url(settings: Settings) -> str:
    """The first-admin setup link, with its one-time token (also used by the CLI)."""
    token = service.setup_token(settings.resolved_secret_key())
    return f"{settings.external_base_url}/setup?{urlencode({'token': token})}"


def _sso_name(request: Request) -> str:
    return oidc.sso_display_name(_settings(request))


def _set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_absolute_timeout_hours * 3600,
        path="/",
        secure=settings.behind_tls,
        httponly=True,
        samesite="lax",
    )


def _client(request: Request) -> dict[str, str]:
    return {"ip": client_ip(request), "user_agent": request.headers.get("user-agent", "")}


CsrfChecked = Depends(require_csrf)


# --- first-admin setup ---------------------------------------------------------------


def _bad_setup_link(request: Request) -> Response:
    return render(
        request,
        "setup_link.html",
        {"error": "This setup link is not valid. Use the link HexaHub printed."},
        status_code=403,
    )


@router.get("/setup")
async def setup_page(
    request: Request, runtime: RuntimeDep, db: DbSession, token: str = ""
) -> Response:
    if await service.count_users(db) > 0:
        return redirect("/login")
    if not token:
        return render(request, "setup_link.html", {"error": ""})
    if not service.check_setup_token(runtime.settings.resolved_secret_key(), token):
        return _bad_setup_link(request)
    return render(request, "setup.html", {"token": token, "error": "", "form": {}})


@router.post("/setup", dependencies=[CsrfChecked])
async def setup_submit(
    request: Request,
    runtime: RuntimeDep,
    db: DbSession,
    token: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    display_name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    password_confirm: Annotated[str, Form()] = "",
) -> Response:
    if await service.count_users(db) > 0:
        return redirect("/login")
    if not service.check_setup_token(runtime.settings.resolved_secret_key(), token):
        return _bad_setup_link(request)
    form = {"email": email, "display_name": display_name}
    try:
        if password != password_confirm:
            raise ValidationFailed("password: the two passwords are not the same")
        user = await service.create_first_admin(
            db, email=email, password=password, display_name=display_name
        )
    except (ValidationFailed, Conflict) as exc:
        return render(
            request,
            "setup.html",
            {"token": token, "error": exc.message, "form": form},
            status_code=exc.status_code,
        )
    grant = await sessions.start_browser_session(db, user, runtime.settings, **_client(request))
    log.info("first administrator %s created", user.email)
    response = redirect("/")
    _set_session_cookie(response, runtime.settings, grant.token)
    return response


async def announce_setup_link(runtime: Runtime) -> None:
    """On start, print the setup link while no account exists, so the owner can sign up."""
    try:
        async with runtime.db.sessions() as db:
            users = await service.count_users(db)
    except SQLAlchemyError as exc:
        log.warning(
            "could not check whether an account exists (%s); has `hexahub migrate` run?",
            type(exc).__name__,
        )
        return
    if users == 0:
        log.warning(
            "No account exists yet. Open %s to create the first administrator.",
            setup_url(runtime.settings),
        )


# --- sign-in -------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request, db: DbSession, user: SignedIn, next: str = "/") -> Response:
    if user is not None:
        return redirect(safe_next(next))
    if await service.count_users(db) == 0:
        return redirect("/setup")
    return render(
        request,
        "login.html",
        {"next": safe_next(next), "email": "", "error": "", "sso_name": _sso_name(request)},
    )


@router.post("/login", dependencies=[CsrfChecked])
async def login_submit(
    request: Request,
    runtime: RuntimeDep,
    db: DbSession,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    target = safe_next(next)
    try:
        user = await service.password_sign_in(
            db, request.app.state.limiter, email=email, password=password, ip=client_ip(request)
        )
    except (Unauthenticated, Forbidden, RateLimited) as exc:
        message = "Wrong e-mail or password." if isinstance(exc, Unauthenticated) else exc.message
        refused = render(
            request,
            "login.html",
            {"next": target, "email": email, "error": message, "sso_name": _sso_name(request)},
            status_code=exc.status_code,
        )
        if exc.headers:
            refused.headers.update(exc.headers)
        return refused
    # A browser signing in again drops the session it held before.
    await sessions.end_browser_session(db, request.cookies.get(SESSION_COOKIE))
    grant = await sessions.start_browser_session(db, user, runtime.settings, **_client(request))
    response = redirect(target)
    _set_session_cookie(response, runtime.settings, grant.token)
    return response


@router.post("/logout", dependencies=[CsrfChecked])
async def logout(request: Request, runtime: RuntimeDep, db: DbSession) -> Response:
    await sessions.end_browser_session(db, request.cookies.get(SESSION_COOKIE))
    response = redirect("/login")
    clear_session_cookie(response, runtime.settings)
    return response


# --- signed-in pages -----------------------------------------------------------------


def _area_page(area: ProductArea) -> Any:
    async def page(request: Request, db: DbSession, user: SignedIn) -> Response:
        if user is None:
            return await sign_in_first(request, db)
        return render(request, "coming_soon.html", {"area": area, "active": area.slug}, user=user)

    page.__name__ = f"{area.slug}_page"
    return page


for _area in PRODUCT_AREAS:
    router.add_api_route(_area.path, _area_page(_area), methods=["GET"])


# --- wiring --------------------------------------------------------------------------


async def _csrf_rejected(request: Request, exc: Exception) -> Response:
    if request.url.path in ("/login", "/setup"):
        retry = request.url.path
    else:
        retry = referring_page(request)
    return render(request, "form_expired.html", {"retry": retry}, status_code=403)


def mount(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(CsrfRejected, _csrf_rejected)
    app.include_router(router)
    app.include_router(workspace_pages.router)
    app.include_router(audit_pages.router)
    app.include_router(account_pages.router)
