"""The home dashboard (GET /): one workspace at a glance.

For the workspace chosen with `?workspace=` (else the first the person belongs to, by
name): tokens and cost over the last days by model and by member (server-drawn SVG, the
same charts as the usage page), the gateway's health (deployments up and down, breaker
states, this workspace's error rate over the last hour), recent conversations and, for the
workspace's admins, the latest audit events and how many secret findings are open in the
workspace's repositories. Every list is limited and every query walks
an index, so the page stays fast in a busy workspace.

Who sees what follows the API: any member reads usage and conversations they can open,
the audit log needs the admin role as GET /api/workspaces/{id}/audit does, and gateway
health is what /models shows every signed-in person.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from hexahub.chat import service as chat_service
from hexahub.chat.models import Conversation
from hexahub.context import findings
from hexahub.core.db import utcnow
from hexahub.core.deps import DbSession, RuntimeDep
from hexahub.gateway import usage
from hexahub.gateway.engine import Gateway
from hexahub.identity import audit, authz, workspaces
from hexahub.identity.authz import WorkspaceAccess
from hexahub.identity.models import Role
from hexahub.web import charts
from hexahub.web.access import PagePrincipal, PageRoute
from hexahub.web.gateway_pages import emails_of
from hexahub.web.rendering import render

router = APIRouter(include_in_schema=False, route_class=PageRoute)

PERIOD_DAYS = 14
RECENT_EVENTS = 8
RECENT_CONVERSATIONS = 8


def gateway_health(gateway: Gateway) -> dict[str, Any]:
    """Deployments up and down and their breakers, from the running router."""
    rows = gateway.router.status()
    breakers = {"closed": 0, "half_open": 0, "open": 0}
    for row in rows:
        breakers[row["breaker"]] = breakers.get(row["breaker"], 0) + 1
    down = [row for row in rows if not row["healthy"] or row["breaker"] == "open"]
    return {
        "deployments": len(rows),
        "up": len(rows) - len(down),
        "down": down,
        "breakers": breakers,
        "models": len({row["model"] for row in rows}),
    }


async def _last_hour(db: AsyncSession, workspace_id: str) -> dict[str, Any]:
    rows = await usage.summary(
        db, workspace_ids=[workspace_id], since=utcnow() - timedelta(hours=1), group_by="model"
    )
    requests = sum(row["requests"] for row in rows)
    errors = sum(row["errors"] for row in rows)
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": round(100 * errors / requests, 1) if requests else 0.0,
    }


async def _usage(db: AsyncSession, workspace_id: str) -> dict[str, Any]:
    today = utcnow().date()
    first = today - timedelta(days=PERIOD_DAYS - 1)
    since = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=PERIOD_DAYS - 1
    )
    ws = [workspace_id]
    by_model = await usage.summary(
        db, workspace_ids=ws, since=since, group_by="model", bucket="day"
    )
    by_user = await usage.summary(db, workspace_ids=ws, since=since, group_by="user", bucket="day")
    emails = await emails_of(db, sorted({row["group"] for row in by_user if row["group"]}))
    return {
        "first_day": first.isoformat(),
        "last_day": today.isoformat(),
        "days": PERIOD_DAYS,
        "tokens": sum(charts.row_tokens(row) for row in by_model),
        "cost": sum(row["cost_usd"] for row in by_model),
        "requests": sum(row["requests"] for row in by_model),
        "tokens_by_model": charts.stacked_chart(by_model, first, PERIOD_DAYS, "tokens"),
        "cost_by_model": charts.stacked_chart(by_model, first, PERIOD_DAYS, "cost"),
        "tokens_by_member": charts.stacked_chart(by_user, first, PERIOD_DAYS, "tokens", emails),
        "cost_by_member": charts.stacked_chart(by_user, first, PERIOD_DAYS, "cost", emails),
    }


async def recent_conversations(db: AsyncSession, access: WorkspaceAccess) -> list[Conversation]:
    """The newest conversations the person may open in this workspace (theirs, pinned
    first, and those shared with them), through the chat service as the API lists them."""
    page = await chat_service.list_conversations(db, access, limit=RECENT_CONVERSATIONS)
    return [item.conversation for item in page.items]


@router.get("/")
async def home(
    request: Request,
    runtime: RuntimeDep,
    db: DbSession,
    principal: PagePrincipal,
    workspace: str = "",
) -> Response:
    user = principal.user
    mine = await workspaces.workspaces_of(db, user.id)
    status = {
        "database": runtime.db.backend,
        "queue": runtime.settings.queue_backend,
        "carrier": runtime.queue.carrier.name,
        "tasks": await runtime.queue.counts(),
    }
    context: dict[str, Any] = {
        "active": "home",
        "status": status,
        "workspaces": [{"id": w.id, "name": w.name, "role": r.value} for w, r in mine],
        "chosen": None,
    }
    chosen_id = workspace or (mine[0][0].id if mine else "")
    if chosen_id:
        # A workspace named in the link that the person cannot see is a 404, as in the API.
        access = await authz.workspace_access(
            db, principal, chosen_id, Role.viewer, "read", path=request.url.path
        )
        gateway: Gateway = request.app.state.gateway
        await gateway.usage.flush()
        can_admin = access.role.at_least(Role.admin)
        events = (
            await audit.query(db, workspace_ids=[chosen_id], limit=RECENT_EVENTS)
            if can_admin
            else []
        )
        context.update(
            {
                "chosen": access.workspace,
                "role": access.role.value,
                "can_admin": can_admin,
                "can_write": access.role.at_least(Role.member),
                "base": f"/workspaces/{access.workspace.id}",
                "usage": await _usage(db, chosen_id),
                "health": gateway_health(gateway),
                "last_hour": await _last_hour(db, chosen_id),
                "events": events,
                "open_findings": await findings.count_open(db, chosen_id) if can_admin else 0,
                "conversations": await recent_conversations(db, access),
            }
        )
    return render(request, "home.html", context, user=user)


def register_pages(app: FastAPI) -> None:
    """Called by create_app() before the other page routers, so GET / is this page."""
    app.include_router(router)
