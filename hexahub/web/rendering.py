"""Rendering for every page: the template environment, the navigation, messages, redirects.

The page modules (pages.py, workspace_pages.py, audit_pages.py, account_pages.py) build on
these and on access.py; pages.mount() wires them all into the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from hexahub import __version__
from hexahub.core.db import utcnow
from hexahub.core.runtime import Runtime
from hexahub.identity.models import ApiKey, User
from hexahub.settings import Settings
from hexahub.web.csrf import CSRF_FIELD, attach_csrf_cookie, csrf_token

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATES_DIR = WEB_DIR / "templates"


@dataclass(frozen=True)
class ProductArea:
    slug: str
    title: str
    summary: str

    @property
    def path(self) -> str:
        return f"/{self.slug}"


# Areas still to come. Each shows a "coming soon" page until its domain adds real pages;
# that domain then moves its entry to READY_AREAS and drops the placeholder route.
PRODUCT_AREAS: tuple[ProductArea, ...] = (
    ProductArea("automation", "Automation", "Scheduled jobs, functions and their run history."),
    ProductArea("infrastructure", "Infrastructure", "Hosts, services, health and drift."),
)

# Areas with real pages.
READY_AREAS: tuple[ProductArea, ...] = (
    ProductArea("chat", "Chat", "Conversations with any model, grounded in your code."),
    ProductArea("repositories", "Repositories", "Indexed code, search and secret scanning."),
    ProductArea("workspaces", "Workspaces", "Your workspaces, their members, groups and roles."),
    ProductArea("models", "Models", "Model names, prices, health, providers; how to call them."),
    ProductArea("keys", "API keys", "Scoped keys for scripts, tools and the model APIs."),
    ProductArea("secrets", "Secrets", "The vault: encrypted, versioned, audited secrets."),
    ProductArea("audit", "Audit", "Who changed what, and every secret read."),
)

# The main navigation's order, which stays put while areas move from one tuple to the other.
NAVIGATION_ORDER = (
    "chat",
    "repositories",
    "automation",
    "infrastructure",
    "workspaces",
    "models",
    "keys",
    "secrets",
    "audit",
)
NAVIGATION: tuple[ProductArea, ...] = tuple(
    sorted(
        PRODUCT_AREAS + READY_AREAS,
        key=lambda a: (
            NAVIGATION_ORDER.index(a.slug) if a.slug in NAVIGATION_ORDER else len(NAVIGATION_ORDER)
        ),
    )
)

# Success messages a redirect-after-post names with `?ok=<key>`. Only these fixed texts
# are shown, so a crafted link cannot put words of its own on a page.
MESSAGES: dict[str, str] = {
    "workspace_created": "Workspace created. You are its owner.",
    "workspace_updated": "Workspace saved.",
    "workspace_deleted": "Workspace deleted.",
    "member_added": "Member added.",
    "role_changed": "Role changed.",
    "member_removed": "Member removed.",
    "ownership_transferred": "Ownership transferred. You are now an admin of this workspace.",
    "left": "You left the workspace.",
    "group_created": "Group created.",
    "group_member_added": "Added to the group.",
    "group_member_removed": "Removed from the group.",
    "group_role_changed": "The group's role here is saved.",
    "key_revoked": "API key revoked. It stops working at once.",
    "profile_saved": "Your profile is saved.",
    "password_changed": "Password changed. Your other sessions have been signed out.",
    "provider_created": "Provider added. Its models can be added now.",
    "model_created": "Model added. It can be called at once.",
    "gateway_policy_saved": "Gateway policy saved.",
    "conversation_saved": "Conversation settings saved.",
    "conversation_deleted": "Conversation deleted.",
    "conversation_shared": "Shared read-only with everyone in this workspace.",
    "conversation_unshared": "No longer shared.",
    "template_created": "Template created.",
    "template_saved": "Template saved.",
    "template_deleted": "Template deleted.",
    "repo_added": "Repository added. Indexing has started; its status updates below.",
    "repo_added_unindexed": "Repository added. Press Index now when you want it indexed.",
    "repo_saved": "Repository settings saved. They apply from the next index.",
    "repo_removed": "Repository removed, with its index.",
    "index_started": "Indexing has started; its status updates by itself.",
    "finding_moved": "Moved into the vault. The value is still in the repository's history: "
    "see below how to take it out.",
}


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _key_status(key: ApiKey) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= utcnow():
        return "expired"
    return "active"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    env.filters["key_status"] = _key_status
    return env


templates = Jinja2Templates(env=_environment())


def settings_of(request: Request) -> Settings:
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
        "areas": NAVIGATION,
        "active": "",
        "audit_path": "/audit",
        "version": __version__,
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token(request),
        "flash": MESSAGES.get(request.query_params.get("ok", ""), ""),
        "page_error": "",
    }
    values.update(context or {})
    response = templates.TemplateResponse(request, template, values, status_code=status_code)
    # Pages hold per-user data and form tokens: never keep them in a shared cache.
    response.headers["Cache-Control"] = "no-store"
    attach_csrf_cookie(request, response, secure=settings_of(request).behind_tls)
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


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


def referring_page(request: Request) -> str:
    """The local page a form was sent from (from Referer, sent same-origin only), or "/"."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc != request.url.netloc:
        return "/"
    return safe_next(referer.path + (f"?{referer.query}" if referer.query else ""))
