"""The audit log: an append-only record of every change and every sensitive read.

`record()` adds an event to the caller's database session, so the change and its audit
entry commit together (or not at all). Denied attempts, which change nothing, are
recorded with `record_now()`. Values of secrets never go into an event: callers pass
names, ids and before/after snapshots of ordinary fields only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core.db import utcnow
from hexahub.core.errors import ValidationFailed
from hexahub.identity.models import AuditEvent, User

if TYPE_CHECKING:
    from hexahub.identity.authz import Principal

MAX_PAGE = 500


def _actor_fields(actor: Principal | None, user: User | None, ip: str) -> dict[str, Any]:
    if actor is None:
        if user is not None:
            return {"actor": user.email, "actor_user_id": user.id, "ip": ip}
        return {"actor": "system", "ip": ip}
    return {
        "actor": actor.label,
        "actor_user_id": actor.user.id,
        "actor_key_id": actor.api_key.id if actor.api_key else None,
        "ip": actor.ip or ip,
    }


def record(
    db: AsyncSession,
    action: str,
    *,
    actor: Principal | None = None,
    workspace_id: str | None = None,
    target_type: str = "",
    target_id: str = "",
    outcome: str = "ok",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    ip: str = "",
    user: User | None = None,
    actor_label: str | None = None,
) -> AuditEvent:
    """Add an event to `db`'s transaction; it is written when the caller commits.

    The actor is `actor` (a signed-in principal), else `user` (e.g. someone signing in),
    else `actor_label` alone (e.g. an unknown e-mail), else "system".
    """
    fields = _actor_fields(actor, user, ip)
    if actor_label is not None:
        fields["actor"] = actor_label
    event = AuditEvent(
        created_at=utcnow(),
        workspace_id=workspace_id,
        action=action,
        outcome=outcome,
        target_type=target_type,
        target_id=str(target_id)[:100],
        before=before,
        after=after,
        details=details,
        **fields,
    )
    db.add(event)
    return event


async def record_now(db: AsyncSession, action: str, **kwargs: Any) -> None:
    """Record and commit at once (for denied or failed attempts that change nothing)."""
    record(db, action, **kwargs)
    await db.commit()


def _filters(
    *,
    workspace_ids: list[str] | None,
    action: str | None,
    actor: str | None,
    outcome: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[Any]:
    conditions: list[Any] = []
    if workspace_ids is not None:
        conditions.append(AuditEvent.workspace_id.in_(workspace_ids))
    if action:
        # `member.` matches every member action; `member.added` exactly that one.
        if action.endswith("."):
            conditions.append(AuditEvent.action.startswith(action))
        else:
            conditions.append(AuditEvent.action == action)
    if actor:
        conditions.append(AuditEvent.actor == actor)
    if outcome:
        if outcome not in ("ok", "denied", "failed"):
            raise ValidationFailed("outcome: use ok, denied or failed")
        conditions.append(AuditEvent.outcome == outcome)
    if since is not None:
        conditions.append(AuditEvent.created_at >= since)
    if until is not None:
        conditions.append(AuditEvent.created_at < until)
    return conditions


async def query(
    db: AsyncSession,
    *,
    workspace_ids: list[str] | None = None,
    action: str | None = None,
    actor: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    before_id: str | None = None,
) -> list[AuditEvent]:
    """Newest first. `workspace_ids=None` means every event (instance administrators)."""
    conditions = _filters(
        workspace_ids=workspace_ids,
        action=action,
        actor=actor,
        outcome=outcome,
        since=since,
        until=until,
    )
    if before_id is not None:
        anchor = await db.get(AuditEvent, before_id)
        if anchor is not None:
            # (created_at, id) order, so events sharing the anchor's instant are not skipped.
            conditions.append(
                (AuditEvent.created_at < anchor.created_at)
                | ((AuditEvent.created_at == anchor.created_at) & (AuditEvent.id < anchor.id))
            )
    statement = (
        select(AuditEvent)
        .where(*conditions)
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .limit(max(1, min(limit, MAX_PAGE)))
    )
    return list((await db.scalars(statement)).all())


def as_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "created_at": event.created_at.isoformat(),
        "workspace_id": event.workspace_id,
        "actor": event.actor,
        "actor_user_id": event.actor_user_id,
        "actor_key_id": event.actor_key_id,
        "ip": event.ip,
        "action": event.action,
        "outcome": event.outcome,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "before": event.before,
        "after": event.after,
        "details": event.details,
    }


async def export_lines(
    db: AsyncSession,
    *,
    workspace_ids: list[str] | None = None,
    action: str | None = None,
    actor: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    batch: int = 1000,
) -> AsyncIterator[str]:
    """Every matching event, oldest first, as JSON lines, read in batches."""
    conditions = _filters(
        workspace_ids=workspace_ids,
        action=action,
        actor=actor,
        outcome=outcome,
        since=since,
        until=until,
    )
    last: tuple[datetime, str] | None = None
    while True:
        statement = select(AuditEvent).where(*conditions)
        if last is not None:
            statement = statement.where(
                (AuditEvent.created_at > last[0])
                | ((AuditEvent.created_at == last[0]) & (AuditEvent.id > last[1]))
            )
        rows = list(
            (
                await db.scalars(
                    statement.order_by(AuditEvent.created_at, AuditEvent.id).limit(batch)
                )
            ).all()
        )
        for event in rows:
            yield json.dumps(as_dict(event), default=str) + "\n"
        if len(rows) < batch:
            return
        last = (rows[-1].created_at, rows[-1].id)
