"""Managing the gateway under /api: providers, models, prices, health, per-key limits,
workspace policies, usage and request traces."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import ConfigDict, Field
from sqlalchemy import select

from hexahub.core.bodies import JsonBody
from hexahub.core.deps import DbSession
from hexahub.core.errors import NotFound
from hexahub.core.timestamps import Timestamp
from hexahub.gateway import service, usage
from hexahub.gateway.config import ModelSpec, ProviderSpec
from hexahub.gateway.engine import Gateway
from hexahub.gateway.models import UsageRecord
from hexahub.identity import audit, keys
from hexahub.identity.authz import (
    InstanceAdmin,
    InstanceAdminReader,
    WorkspaceAdmin,
    WorkspaceAdminReader,
    WorkspaceReader,
)

router = APIRouter(
    prefix="/api",
    tags=["gateway"],
    responses={
        401: {"description": "Not signed in"},
        403: {"description": "Not allowed"},
        404: {"description": "Not found"},
        422: {"description": "Malformed request"},
    },
)


class ProviderCreate(JsonBody, ProviderSpec):
    model_config = ConfigDict(
        # Every kind but the in-process `local` one needs its URL (service.create_provider).
        json_schema_extra={
            "anyOf": [
                {"properties": {"kind": {"const": "local"}}},
                {"required": ["base_url"], "properties": {"base_url": {"minLength": 1}}},
            ]
        }
    )


class ModelCreate(JsonBody, ModelSpec):
    pass


class Prices(JsonBody):
    input_price: float = Field(ge=0, le=10_000, description="USD per million input tokens")
    output_price: float = Field(ge=0, le=10_000, description="USD per million output tokens")


class Policy(JsonBody):
    local_only: bool | None = None
    trace_bodies: bool | None = None


class Limits(JsonBody):
    rpm: int | None = Field(default=None, ge=1, le=1_000_000)
    tpm: int | None = Field(default=None, ge=1, le=1_000_000_000)
    daily_budget_usd: float | None = Field(default=None, ge=0, le=1_000_000)
    monthly_budget_usd: float | None = Field(default=None, ge=0, le=10_000_000)
    cache: bool = False


FROM_MODELS_FILE: dict[int | str, dict[str, Any]] = {
    409: {"description": "It is declared in the models file; change it there"}
}


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


# --- providers and models (installation administrators) -------------------------------


@router.get("/gateway/providers", summary="Model providers (keys are never shown)")
async def list_providers(principal: InstanceAdminReader, db: DbSession) -> list[dict[str, Any]]:
    return [service.provider_dict(p) for p in await service.list_providers(db)]


@router.post(
    "/gateway/providers",
    summary="Add a provider",
    status_code=201,
    responses={409: {"description": "A provider of that name exists already"}},
)
async def create_provider(
    body: ProviderCreate, request: Request, principal: InstanceAdmin, db: DbSession
) -> dict[str, Any]:
    secret = _gateway(request).runtime.settings.resolved_secret_key()
    provider = await service.create_provider(db, body, secret)
    shown = service.provider_dict(provider)
    audit.record(
        db,
        "gateway.provider_created",
        actor=principal,
        target_type="provider",
        target_id=provider.id,
        after=shown,
    )
    await db.commit()
    await _gateway(request).reload()
    return shown


@router.delete(
    "/gateway/providers/{provider_id}",
    summary="Remove a provider",
    status_code=204,
    responses=FROM_MODELS_FILE,
)
async def delete_provider(
    provider_id: str, request: Request, principal: InstanceAdmin, db: DbSession
) -> Response:
    provider = await service.get_provider(db, provider_id)
    shown = service.provider_dict(provider)
    await service.delete_provider(db, provider)
    audit.record(
        db,
        "gateway.provider_deleted",
        actor=principal,
        target_type="provider",
        target_id=provider_id,
        before=shown,
    )
    await db.commit()
    await _gateway(request).reload()
    return Response(status_code=204)


@router.get("/gateway/models", summary="Model names and their deployments")
async def list_models(principal: InstanceAdminReader, db: DbSession) -> list[dict[str, Any]]:
    return [service.model_dict(r, d) for r, d in await service.list_models(db)]


@router.post(
    "/gateway/models",
    summary="Add a model name with its deployments",
    status_code=201,
    responses={409: {"description": "A model of that name exists already"}},
)
async def create_model(
    body: ModelCreate, request: Request, principal: InstanceAdmin, db: DbSession
) -> dict[str, Any]:
    route = await service.create_model(db, body)
    audit.record(
        db,
        "gateway.model_created",
        actor=principal,
        target_type="model",
        target_id=route.id,
        after=body.model_dump(),
    )
    await db.commit()
    await _gateway(request).reload()
    found = [m for m in await service.list_models(db) if m[0].id == route.id]
    return service.model_dict(*found[0])


@router.delete(
    "/gateway/models/{model_id}",
    summary="Remove a model name",
    status_code=204,
    responses=FROM_MODELS_FILE,
)
async def delete_model(
    model_id: str, request: Request, principal: InstanceAdmin, db: DbSession
) -> Response:
    route = await service.get_model(db, model_id)
    name = route.name
    await service.delete_model(db, route)
    audit.record(
        db,
        "gateway.model_deleted",
        actor=principal,
        target_type="model",
        target_id=model_id,
        before={"name": name},
    )
    await db.commit()
    await _gateway(request).reload()
    return Response(status_code=204)


@router.put(
    "/gateway/deployments/{deployment_id}/prices",
    summary="Set a deployment's prices (USD per million tokens)",
)
async def set_prices(
    deployment_id: str, body: Prices, request: Request, principal: InstanceAdmin, db: DbSession
) -> dict[str, Any]:
    deployment = await service.set_prices(
        db, deployment_id, input_price=body.input_price, output_price=body.output_price
    )
    audit.record(
        db,
        "gateway.prices_changed",
        actor=principal,
        target_type="deployment",
        target_id=deployment_id,
        after=body.model_dump(),
    )
    await db.commit()
    await _gateway(request).reload()
    return {"id": deployment.id, **body.model_dump()}


@router.get("/gateway/status", summary="Deployments: health, breaker state, load")
async def status(request: Request, principal: InstanceAdminReader) -> list[dict[str, Any]]:
    return _gateway(request).router.status()


@router.post("/gateway/health-check", summary="Check every provider now")
async def health_check(request: Request, principal: InstanceAdmin) -> dict[str, Any]:
    return await _gateway(request).router.check_health()


# --- per-key limits ------------------------------------------------------------------


def _limits_dict(row: Any) -> dict[str, Any]:
    if row is None:
        return Limits().model_dump()
    return {
        "rpm": row.rpm,
        "tpm": row.tpm,
        "daily_budget_usd": row.daily_budget_usd,
        "monthly_budget_usd": row.monthly_budget_usd,
        "cache": row.cache,
    }


@router.get(
    "/workspaces/{workspace_id}/keys/{key_id}/limits",
    summary="A workspace key's budgets, rates and caching",
)
async def get_key_limits(
    key_id: str, access: WorkspaceAdminReader, db: DbSession
) -> dict[str, Any]:
    key = await keys.get_key(db, key_id)
    if key.workspace_id != access.workspace.id:
        raise NotFound(f"no API key with id {key_id} in this workspace")
    return _limits_dict(await service.key_limits(db, key_id))


@router.put(
    "/workspaces/{workspace_id}/keys/{key_id}/limits",
    summary="Set a workspace key's budgets, rates and caching",
)
async def put_key_limits(
    key_id: str, body: Limits, request: Request, access: WorkspaceAdmin, db: DbSession
) -> dict[str, Any]:
    key = await keys.get_key(db, key_id)
    if key.workspace_id != access.workspace.id:
        raise NotFound(f"no API key with id {key_id} in this workspace")
    before = _limits_dict(await service.key_limits(db, key_id))
    row = await service.set_key_limits(db, key_id, **body.model_dump())
    audit.record(
        db,
        "gateway.key_limits_changed",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="api_key",
        target_id=key_id,
        before=before,
        after=_limits_dict(row),
    )
    await db.commit()
    _gateway(request).forget_callers()
    return _limits_dict(row)


# --- workspace policy, usage, traces --------------------------------------------------


@router.get(
    "/workspaces/{workspace_id}/gateway-policy",
    summary="Whether the workspace is limited to local models and keeps bodies",
)
async def get_policy(access: WorkspaceReader, db: DbSession) -> dict[str, Any]:
    return service.policy_dict(await service.workspace_policy(db, access.workspace.id))


@router.put("/workspaces/{workspace_id}/gateway-policy", summary="Change the gateway policy")
async def put_policy(
    body: Policy, request: Request, access: WorkspaceAdmin, db: DbSession
) -> dict[str, Any]:
    after = await service.change_workspace_policy(
        db, access, local_only=body.local_only, trace_bodies=body.trace_bodies
    )
    _gateway(request).forget_callers()
    return after


GroupBy = Literal["model", "key", "user", "provider"]


@router.get(
    "/workspaces/{workspace_id}/usage",
    summary="Tokens, cost and requests, grouped and optionally bucketed over time",
)
async def workspace_usage(
    access: WorkspaceReader,
    db: DbSession,
    request: Request,
    since: Annotated[Timestamp | None, Query(description="Default: 30 days ago")] = None,
    until: Annotated[Timestamp | None, Query()] = None,
    group_by: GroupBy = "model",
    bucket: Annotated[Literal["hour", "day"] | None, Query()] = None,
) -> list[dict[str, Any]]:
    await _gateway(request).usage.flush()
    return await usage.summary(
        db,
        workspace_ids=[access.workspace.id],
        since=since or usage.default_since(),
        until=until,
        group_by=group_by,
        bucket=bucket,
    )


@router.get(
    "/workspaces/{workspace_id}/traces",
    summary="Recent gateway requests (bodies only when the workspace keeps them)",
)
async def traces(
    access: WorkspaceAdminReader,
    db: DbSession,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    await _gateway(request).usage.flush()
    rows = await db.scalars(
        select(UsageRecord)
        .where(UsageRecord.workspace_id == access.workspace.id)
        .order_by(UsageRecord.created_at.desc())
        .limit(limit)
    )
    return [
        {
            "id": r.id,
            "created_at": r.created_at.isoformat(),
            "request_id": r.request_id,
            "user_id": r.user_id,
            "key_id": r.key_id,
            "endpoint": r.endpoint,
            "model": r.model,
            "provider": r.provider,
            "deployment_id": r.deployment_id,
            "upstream_model": r.upstream_model,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "cost_usd": r.cost_usd,
            "latency_ms": r.latency_ms,
            "ttft_ms": r.ttft_ms,
            "status": r.status,
            "error": r.error,
            "stream": r.stream,
            "cached": r.cached,
            "attempts": r.attempts,
            "request_body": r.request_body,
            "response_body": r.response_body,
        }
        for r in rows
    ]
