"""Server-rendered pages: first-admin setup, sign-in, and the signed-in shell.

Every page works without JavaScript; the vendored HTMX only boosts the navigation links.
The Content-Security-Policy allows no inline script or style, so templates carry none.
Errors on these pages are rendered as HTML here; every other route keeps the JSON errors
of hexahub.core.errors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response

from hexahub import __version__
from hexahub.core.deps import DbSession, RuntimeDep
from hexahub.core.errors import (
    Conflict,
    Forbidden,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)
from hexahub.core.runtime import Runtime
from hexahub.identity import service, sessions
from hexahub.identity.authz import SESSION_COOKIE, client_ip
from hexahub.identity.models import User
from hexahub.settings import Settings
from hexahub.web.csrf import CSRF_FIELD, CsrfRejected, attach_csrf_cookie, csrf_token, require_csrf

log = logging.getLogger("hexahub.web")

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATES_DIR = WEB_DIR / "templates"

templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)


@dataclass(frozen=True)
class ProductArea:
    slug: str
    title: str
    summary: str

    @property
    def path(self) -> str:
        return f"/{self.slug}"


# The navigation. Each area shows a "coming soon" page until its domain adds real pages;
# that domain then drops its entry's placeholder route here.
PRODUCT_AREAS: tuple[ProductArea, ...] = (
    ProductArea("chat", "Chat", "Conversations with any model, grounded in your code."),
    ProductArea("models", "Models", "Providers, model aliases, routes, keys and usage."),
    ProductArea("repositories", "Repositories", "Indexed code, search and secret scanning."),
    ProductArea("automation", "Automation", "Scheduled jobs, functions and their run history."),
    ProductArea("infrastructure", "Infrastructure", "Hosts, services, health and drift."),
    ProductArea("secrets", "Secrets", "The vault: encrypted, versioned, audited secrets."),
    ProductArea("audit", "Audit", "Who changed what, and every secret read."),
)

router = APIRouter(include_in_schema=False)


# --- helpers -------------------------------------------------------------------------


def setup_url(settings: Settings) -> str:
    """The first-admin setup link, with its one-time token (also used by the CLI)."""
    if settings.public_url:
        base = settings.public_url.rstrip("/")
    else:
        host = settings.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        base = f"http://{host}:{settings.port}"
    token = service.setup_token(settings.resolved_secret_key())
    return f"{base}/setup?{urlencode({'token': token})}"


def safe_next(target: str | None) -> str:
    """A local path to go to after sign-in; anything that could leave the site becomes /."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    # Browsers read "\" as "/", and control characters can split a header.
    if "\\" in target or any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _sso_name(request: Request) -> str:
    """The SSO button's label, or "" when single sign-on is not configured."""
    settings = _settings(request)
    return settings.oidc_display_name if settings.oidc_issuer else ""


def _settings(request: Request) -> Settings:
    runtime: Runtime = request.app.state.runtime
    return runtime.settings


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    user: User | None = None,
) -> HTMLResponse:
    values: dict[str, Any] = {
        "user": user,
        "areas": PRODUCT_AREAS,
        "active": "",
        "version": __version__,
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token(request),
    }
    values.update(context or {})
    response = templates.TemplateResponse(request, template, values, status_code=status_code)
    # Pages hold per-user data and form tokens: never keep them in a shared cache.
    response.headers["Cache-Control"] = "no-store"
    attach_csrf_cookie(request, response, secure=_settings(request).behind_tls)
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


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


def _clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=settings.behind_tls, httponly=True, samesite="lax"
    )


def _client(request: Request) -> dict[str, str]:
    return {"ip": client_ip(request), "user_agent": request.headers.get("user-agent", "")}


async def _signed_in(request: Request, db: DbSession) -> User | None:
    found = await sessions.browser_session(
        db, _settings(request), request.cookies.get(SESSION_COOKIE)
    )
    return found[0] if found else None


SignedIn = Annotated[User | None, Depends(_signed_in)]
CsrfChecked = Depends(require_csrf)


async def _sign_in_first(request: Request, db: DbSession) -> Response:
    """Where to send a visitor who is not signed in: setup when nobody exists yet."""
    if await service.count_users(db) == 0:
        return redirect("/setup")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = redirect("/login?" + urlencode({"next": target}))
    if SESSION_COOKIE in request.cookies:
        _clear_session_cookie(response, _settings(request))
    return response


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
    grant = await sessions.start_browser_session(
        db, user, runtime.settings, **_client(request)
    )
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
        response = render(
            request,
            "login.html",
            {"next": target, "email": email, "error": message, "sso_name": _sso_name(request)},
            status_code=exc.status_code,
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    # A browser signing in again drops the session it held before.
    await sessions.end_browser_session(db, request.cookies.get(SESSION_COOKIE))
    grant = await sessions.start_browser_session(
        db, user, runtime.settings, **_client(request)
    )
    response = redirect(target)
    _set_session_cookie(response, runtime.settings, grant.token)
    return response


@router.post("/logout", dependencies=[CsrfChecked])
async def logout(request: Request, runtime: RuntimeDep, db: DbSession) -> Response:
    await sessions.end_browser_session(db, request.cookies.get(SESSION_COOKIE))
    response = redirect("/login")
    _clear_session_cookie(response, runtime.settings)
    return response


# --- signed-in pages -----------------------------------------------------------------


@router.get("/")
async def home(request: Request, runtime: RuntimeDep, db: DbSession, user: SignedIn) -> Response:
    if user is None:
        return await _sign_in_first(request, db)
    status = {
        "database": runtime.db.backend,
        "queue": runtime.settings.queue_backend,
        "carrier": runtime.queue.carrier.name,
        "tasks": await runtime.queue.counts(),
    }
    return render(request, "home.html", {"status": status, "active": "home"}, user=user)


def _area_page(area: ProductArea) -> Any:
    async def page(request: Request, db: DbSession, user: SignedIn) -> Response:
        if user is None:
            return await _sign_in_first(request, db)
        return render(request, "coming_soon.html", {"area": area, "active": area.slug}, user=user)

    page.__name__ = f"{area.slug}_page"
    return page


for _area in PRODUCT_AREAS:
    router.add_api_route(_area.path, _area_page(_area), methods=["GET"])


# --- wiring --------------------------------------------------------------------------


async def _csrf_rejected(request: Request, exc: Exception) -> Response:
    retry = request.url.path if request.url.path in ("/login", "/setup") else "/"
    return render(request, "form_expired.html", {"retry": retry}, status_code=403)


def mount(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(CsrfRejected, _csrf_rejected)
    app.include_router(router)
