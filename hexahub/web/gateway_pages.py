"""The gateway's pages: /models and /workspaces/{workspace_id}/usage.

/models shows every signed-in person the model names, their deployments (prices, health,
breaker state) and how to call them; installation administrators also see the providers
(never a key, only whether one is stored) and forms to add a provider or a model, which go
through the same service functions and audit events as the JSON API.

The usage page charts tokens and cost per day as server-rendered SVG (no script, no inline
style) and totals them by model and by member; workspace admins can change the gateway
policy there. Registered by create_app() through register_pages().
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from hexahub.core.db import utcnow
from hexahub.core.deps import DbSession
from hexahub.core.errors import Forbidden, HexaHubError, ValidationFailed
from hexahub.gateway import service, usage
from hexahub.gateway.config import ModelSpec, ProviderSpec
from hexahub.gateway.engine import Gateway
from hexahub.identity import audit
from hexahub.identity.authz import Principal, WorkspaceAccess
from hexahub.identity.models import User
from hexahub.web import charts
from hexahub.web.access import (
    PagePrincipal,
    PageRoute,
    WorkspaceAdminPage,
    WorkspaceReaderPage,
    workspace_context,
)
from hexahub.web.csrf import require_csrf
from hexahub.web.rendering import redirect, render

router = APIRouter(include_in_schema=False, route_class=PageRoute)
CsrfChecked = Depends(require_csrf)

PROVIDER_KINDS = ("openai", "openai_compatible", "anthropic", "ollama", "local")
PERIODS = (7, 30, 90)

ShortField = Annotated[str, Form(max_length=200)]
UrlField = Annotated[str, Form(max_length=2000)]
Checkbox = Annotated[str, Form(max_length=10)]


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _problem(exc: ValidationError | HexaHubError) -> HexaHubError:
    if isinstance(exc, HexaHubError):
        return exc
    parts = []
    for item in exc.errors():
        where = ".".join(str(p) for p in item["loc"] if not isinstance(p, int))
        parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
    return ValidationFailed("; ".join(parts))


async def _require_admin(request: Request, db: AsyncSession, principal: Principal) -> None:
    """As require_instance_admin for the API: refused attempts are audited."""
    if not principal.user.is_admin:
        await audit.record_now(
            db,
            "access.denied",
            actor=principal,
            outcome="denied",
            details={"needs": "instance admin", "path": request.url.path},
        )
        raise Forbidden("only administrators of this HexaHub installation may do this")


# --- /models ---------------------------------------------------------------------------


async def _models_page(
    request: Request,
    db: AsyncSession,
    principal: Principal,
    *,
    error: HexaHubError | None = None,
    provider_form: dict[str, Any] | None = None,
    model_form: dict[str, Any] | None = None,
) -> Response:
    health = {row["deployment_id"]: row for row in _gateway(request).router.status()}
    models = []
    for route, deployments in await service.list_models(db):
        shown = service.model_dict(route, deployments)
        for deployment in shown["deployments"]:
            state = health.get(deployment["id"])
            deployment["healthy"] = state["healthy"] if state else None
            deployment["breaker"] = state["breaker"] if state else "disabled"
        models.append(shown)
    is_admin = principal.user.is_admin
    providers = (
        [service.provider_dict(p) for p in await service.list_providers(db)] if is_admin else []
    )
    return render(
        request,
        "models.html",
        {
            "active": "models",
            "models": models,
            "is_admin": is_admin,
            "providers": providers,
            "kinds": PROVIDER_KINDS,
            "base_url": str(request.base_url).rstrip("/") + "/v1",
            "provider_form": provider_form
            or {"name": "", "kind": "openai", "base_url": "", "local": False},
            "model_form": model_form
            or {
                "name": "",
                "provider": "",
                "upstream_model": "",
                "input_price": "",
                "output_price": "",
            },
            "page_error": error.message if error else "",
        },
        status_code=error.status_code if error else 200,
        user=principal.user,
    )


async def _recover(db: AsyncSession, principal: Principal) -> None:
    await db.rollback()
    await db.refresh(principal.user)


@router.get("/models")
async def models_page(request: Request, db: DbSession, principal: PagePrincipal) -> Response:
    return await _models_page(request, db, principal)


@router.post("/models/providers", dependencies=[CsrfChecked])
async def add_provider(
    request: Request,
    db: DbSession,
    principal: PagePrincipal,
    name: ShortField = "",
    kind: ShortField = "",
    base_url: UrlField = "",
    api_key: Annotated[str, Form(max_length=4000)] = "",
    local: Checkbox = "",
) -> Response:
    await _require_admin(request, db, principal)
    is_local = local == "true"
    try:
        spec = ProviderSpec(
            name=name.strip(),
            kind=kind,
            base_url=base_url.strip(),
            api_key=api_key or None,
            local=is_local,
        )
        secret = _gateway(request).runtime.settings.resolved_secret_key()
        provider = await service.create_provider(db, spec, secret)
    except (ValidationError, HexaHubError) as exc:
        await _recover(db, principal)
        form = {"name": name, "kind": kind, "base_url": base_url, "local": is_local}
        return await _models_page(request, db, principal, error=_problem(exc), provider_form=form)
    audit.record(
        db,
        "gateway.provider_created",
        actor=principal,
        target_type="provider",
        target_id=provider.id,
        after=service.provider_dict(provider),
    )
    await db.commit()
    await _gateway(request).reload()
    return redirect("/models?ok=provider_created")


@router.post("/models/models", dependencies=[CsrfChecked])
async def add_model(
    request: Request,
    db: DbSession,
    principal: PagePrincipal,
    name: ShortField = "",
    provider: ShortField = "",
    upstream_model: ShortField = "",
    input_price: Annotated[str, Form(max_length=32)] = "",
    output_price: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    await _require_admin(request, db, principal)
    try:
        spec = ModelSpec(
            name=name.strip(),
            deployments=[
                {
                    "provider": provider,
                    "model": upstream_model.strip(),
                    "input_price": input_price.strip() or "0",
                    "output_price": output_price.strip() or "0",
                }
            ],
        )
        route = await service.create_model(db, spec)
    except (ValidationError, HexaHubError) as exc:
        await _recover(db, principal)
        form = {
            "name": name,
            "provider": provider,
            "upstream_model": upstream_model,
            "input_price": input_price,
            "output_price": output_price,
        }
        return await _models_page(request, db, principal, error=_problem(exc), model_form=form)
    audit.record(
        db,
        "gateway.model_created",
        actor=principal,
        target_type="model",
        target_id=route.id,
        after=spec.model_dump(),
    )
    await db.commit()
    await _gateway(request).reload()
    return redirect("/models?ok=model_created")


# --- /workspaces/{workspace_id}/usage --------------------------------------------------


async def emails_of(db: AsyncSession, user_ids: list[str]) -> dict[str, str]:
    if not user_ids:
        return {}
    rows = await db.execute(select(User.id, User.email).where(User.id.in_(user_ids)))
    return {user_id: email for user_id, email in rows.all()}


async def _usage_page(
    request: Request,
    db: AsyncSession,
    access: WorkspaceAccess,
    period: int,
) -> Response:
    await _gateway(request).usage.flush()
    today = utcnow().date()
    first = today - timedelta(days=period - 1)
    since = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=period - 1)
    ws = [access.workspace.id]
    daily = await usage.summary(db, workspace_ids=ws, since=since, group_by="model", bucket="day")
    days = charts.daily_totals(daily, first, period)

    by_model = await usage.summary(db, workspace_ids=ws, since=since, group_by="model")
    by_user = await usage.summary(db, workspace_ids=ws, since=since, group_by="user")
    emails = await emails_of(db, [row["group"] for row in by_user if row["group"]])
    for row in by_user:
        row["email"] = emails.get(row["group"] or "", "")
    totals = {
        name: sum(row[name] for row in by_model)
        for name in ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd")
    }
    policy = await service.workspace_policy(db, access.workspace.id)
    return render(
        request,
        "usage.html",
        {
            **workspace_context(access, "usage"),
            "period": period,
            "periods": PERIODS,
            "first_day": first.isoformat(),
            "last_day": today.isoformat(),
            "tokens_chart": charts.bar_chart(days, "tokens"),
            "cost_chart": charts.bar_chart(days, "cost"),
            "by_model": by_model,
            "by_user": by_user,
            "totals": totals,
            "policy": {"local_only": policy.local_only, "trace_bodies": policy.trace_bodies},
        },
        user=access.user,
    )


@router.get("/workspaces/{workspace_id}/usage")
async def usage_page(
    request: Request, access: WorkspaceReaderPage, db: DbSession, days: str = "30"
) -> Response:
    period = int(days) if days in {str(p) for p in PERIODS} else 30
    return await _usage_page(request, db, access, period)


@router.post("/workspaces/{workspace_id}/usage/policy", dependencies=[CsrfChecked])
async def set_policy(
    request: Request,
    access: WorkspaceAdminPage,
    db: DbSession,
    local_only: Checkbox = "",
    trace_bodies: Checkbox = "",
) -> Response:
    await service.change_workspace_policy(
        db, access, local_only=local_only == "true", trace_bodies=trace_bodies == "true"
    )
    _gateway(request).forget_callers()
    return redirect(f"/workspaces/{access.workspace.id}/usage?ok=gateway_policy_saved")


def register_pages(app: FastAPI) -> None:
    """Called by create_app() right after pages.mount(app)."""
    app.include_router(router)
