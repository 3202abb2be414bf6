"""Audit pages: where I can read audit logs, and one workspace's log with filters.

The log page reads through `audit.query` with the API's filters and needs what
GET /api/workspaces/{id}/audit needs (admin role, `read` scope). Its "Export JSON lines"
link is that API's export route with the same filters: the browser's session cookie
authenticates a GET there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from hexahub.core.deps import DbSession
from hexahub.core.errors import HexaHubError, ValidationFailed
from hexahub.identity import audit, workspaces
from hexahub.identity.models import AuditEvent, Role
from hexahub.web.access import (
    PagePrincipal,
    PageRoute,
    WorkspaceAdminReaderPage,
    workspace_context,
)
from hexahub.web.rendering import render

router = APIRouter(include_in_schema=False, route_class=PageRoute)
PAGE_SIZE = 50
SUMMARY_ITEMS = 6
VALUE_CHARS = 80
OUTCOMES = ("ok", "denied", "failed")


@dataclass(frozen=True)
class AuditFilters:
    """The filter form's values, as typed (dates as YYYY-MM-DD)."""

    action: str = ""
    actor: str = ""
    outcome: str = ""
    since: str = ""
    until: str = ""

    def _day(self, name: str, value: str) -> datetime | None:
        if not value:
            return None
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValidationFailed(f"{name}: give a date like 2026-01-31") from None
        return datetime(day.year, day.month, day.day, tzinfo=UTC)

    def query(self) -> dict[str, Any]:
        """Keyword arguments for audit.query and audit.export_lines."""
        if len(self.action) > 100:
            raise ValidationFailed("action: use at most 100 characters")
        if len(self.actor) > 320:
            raise ValidationFailed("actor: use at most 320 characters")
        if self.outcome and self.outcome not in OUTCOMES:
            raise ValidationFailed("outcome: use ok, denied or failed")
        since = self._day("since", self.since)
        last_day = self._day("until", self.until)
        # The form's "to" date is inclusive: the API's `until` is the moment after it.
        until = last_day + timedelta(days=1) if last_day else None
        return {
            "action": self.action or None,
            "actor": self.actor or None,
            "outcome": self.outcome or None,
            "since": since,
            "until": until,
        }

    def api_params(self) -> dict[str, str]:
        """The same filters for the API's export route (times in ISO 8601)."""
        params: dict[str, str] = {}
        for name, value in self.query().items():
            if value is not None:
                params[name] = value.isoformat() if isinstance(value, datetime) else value
        return params

    def page_params(self) -> dict[str, str]:
        shown = {
            "action": self.action,
            "actor": self.actor,
            "outcome": self.outcome,
            "since": self.since,
            "until": self.until,
        }
        return {name: value for name, value in shown.items() if value}


def _short(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    text = str(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def change_summary(event: AuditEvent) -> list[str]:
    """The event's before → after as short lines: what changed, or what was there."""
    before, after = event.before or {}, event.after or {}
    names = list(dict.fromkeys([*before, *after]))
    lines: list[str] = []
    for name in names:
        if name in before and name in after:
            if before[name] != after[name]:
                lines.append(f"{name}: {_short(before[name])} → {_short(after[name])}")
        elif name in after:
            lines.append(f"{name}: {_short(after[name])}")
        else:
            lines.append(f"{name}: {_short(before[name])} → —")
    for name, value in (event.details or {}).items():
        lines.append(f"{name}: {_short(value)}")
    if len(lines) > SUMMARY_ITEMS:
        lines = [*lines[:SUMMARY_ITEMS], f"… and {len(lines) - SUMMARY_ITEMS} more"]
    return lines


@router.get("/audit")
async def audit_index(request: Request, db: DbSession, principal: PagePrincipal) -> Response:
    """Every workspace whose log I may read (I administer it)."""
    readable = [
        (workspace, role)
        for workspace, role in await workspaces.workspaces_of(db, principal.user.id)
        if role.at_least(Role.admin)
    ]
    return render(
        request,
        "audit_index.html",
        {"readable": readable, "active": "audit"},
        user=principal.user,
    )


@router.get("/workspaces/{workspace_id}/audit")
async def workspace_audit_page(
    request: Request,
    db: DbSession,
    access: WorkspaceAdminReaderPage,
    action: str = "",
    actor: str = "",
    outcome: str = "",
    since: str = "",
    until: str = "",
    before: str = "",
) -> Response:
    filters = AuditFilters(
        action=action.strip(),
        actor=actor.strip(),
        outcome=outcome,
        since=since,
        until=until,
    )
    base = f"/workspaces/{access.workspace.id}"
    rows: list[dict[str, Any]] = []
    older = ""
    export = ""
    error: HexaHubError | None = None
    try:
        events = await audit.query(
            db,
            workspace_ids=[access.workspace.id],
            limit=PAGE_SIZE + 1,
            before_id=before[:36] or None,
            **filters.query(),
        )
        export = f"/api{base}/audit/export"
        if filters.api_params():
            export += "?" + urlencode(filters.api_params())
    except ValidationFailed as exc:
        events, error = [], exc
    if len(events) > PAGE_SIZE:
        events = events[:PAGE_SIZE]
        older = f"{base}/audit?" + urlencode({**filters.page_params(), "before": events[-1].id})
    for event in events:
        rows.append({"event": event, "changes": change_summary(event)})
    newest = f"{base}/audit"
    if filters.page_params():
        newest += "?" + urlencode(filters.page_params())
    context = workspace_context(access, "audit")
    context.update(
        {
            "active": "audit",
            "rows": rows,
            "filters": filters,
            "outcomes": OUTCOMES,
            "older": older,
            "newest": newest if before else "",
            "export": export,
            "page_error": error.message if error else "",
        }
    )
    return render(
        request,
        "audit.html",
        context,
        status_code=error.status_code if error else 200,
        user=access.user,
    )
