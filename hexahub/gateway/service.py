"""Providers, model names and deployments in the database, and the snapshot the router
serves from. Knows nothing of HTTP."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core import crypto
from hexahub.core.errors import Conflict, HexaHubError, NotFound, ValidationFailed
from hexahub.gateway.config import DeploymentSpec, ModelsFile, ModelSpec, ProviderSpec
from hexahub.gateway.models import (
    Deployment,
    KeyLimits,
    ModelRoute,
    Provider,
    WorkspacePolicy,
)
from hexahub.gateway.providers.base import ProviderConfig
from hexahub.identity import audit
from hexahub.identity.authz import WorkspaceAccess
from hexahub.localmodels import builtin, registry, shipped
from hexahub.settings import Settings
from hexahub.vault import service as vault

log = logging.getLogger("hexahub.gateway")


def _seal_context(provider_name: str) -> str:
    return f"gateway-provider:{provider_name}"


def seal_api_key(secret_key: str, provider_name: str, api_key: str | None) -> str | None:
    if not api_key:
        return None
    if vault.is_reference(api_key):
        return api_key  # resolved when used; the value never lands in this table
    return crypto.seal(secret_key, api_key, context=_seal_context(provider_name))


def open_api_key(secret_key: str, provider: Provider) -> str | None:
    stored = provider.api_key_sealed
    if not stored or vault.is_reference(stored):
        return stored
    return crypto.unseal(secret_key, stored, context=_seal_context(provider.name))


# --- the models file ---------------------------------------------------------------


async def sync_models_file(db: AsyncSession, spec: ModelsFile, secret_key: str) -> None:
    """Make the database's config-sourced rows match the models file."""
    existing = {p.name: p for p in (await db.scalars(select(Provider))).all()}
    for item in spec.providers:
        row = existing.get(item.name)
        if row is not None and row.source != "config":
            raise Conflict(
                f"provider {item.name!r} exists already (made through the API); rename one of them"
            )
        if row is None:
            row = Provider(name=item.name, source="config", kind=item.kind)
            db.add(row)
        _apply_provider(row, item, secret_key)
    declared = {p.name for p in spec.providers}
    for name, row in existing.items():
        if row.source == "config" and name not in declared:
            await db.delete(row)
    await db.flush()

    providers = {p.name: p for p in (await db.scalars(select(Provider))).all()}
    routes = {m.name: m for m in (await db.scalars(select(ModelRoute))).all()}
    for model in spec.models:
        route = routes.get(model.name)
        if route is not None and route.source != "config":
            raise Conflict(f"model {model.name!r} exists already (made through the API)")
        if route is None:
            route = ModelRoute(name=model.name, source="config")
            db.add(route)
        route.description, route.strategy, route.fallbacks = (
            model.description,
            model.strategy,
            list(model.fallbacks),
        )
        await db.flush()
        await db.execute(delete(Deployment).where(Deployment.model_id == route.id))
        for deployment in model.deployments:
            db.add(_deployment_row(route.id, providers[deployment.provider].id, deployment))
    names = {m.name for m in spec.models}
    for name, route in routes.items():
        if route.source == "config" and name not in names:
            await db.delete(route)
    await db.commit()


def _apply_provider(row: Provider, item: ProviderSpec, secret_key: str) -> None:
    row.kind = item.kind
    row.base_url = item.base_url
    row.api_key_sealed = seal_api_key(secret_key, item.name, item.api_key)
    row.is_local = item.is_local
    row.timeout_seconds = item.timeout_seconds
    row.settings = dict(item.settings)


def _deployment_row(model_id: str, provider_id: str, spec: DeploymentSpec) -> Deployment:
    return Deployment(
        model_id=model_id,
        provider_id=provider_id,
        upstream_model=spec.model,
        weight=spec.weight,
        input_price=spec.input_price,
        output_price=spec.output_price,
    )


# --- managing through the API ----------------------------------------------------------


def provider_dict(provider: Provider) -> dict[str, Any]:
    """What may be shown of a provider: never its key, only whether it has one."""
    return {
        "id": provider.id,
        "name": provider.name,
        "kind": provider.kind,
        "base_url": provider.base_url,
        "is_local": provider.is_local,
        "has_api_key": bool(provider.api_key_sealed),
        "api_key_source": (
            "vault"
            if vault.is_reference(provider.api_key_sealed or "")
            else "sealed"
            if provider.api_key_sealed
            else None
        ),
        "timeout_seconds": provider.timeout_seconds,
        "settings": provider.settings,
        "source": provider.source,
    }


async def list_providers(db: AsyncSession) -> list[Provider]:
    return list((await db.scalars(select(Provider).order_by(Provider.name))).all())


async def get_provider(db: AsyncSession, provider_id: str) -> Provider:
    provider = await db.get(Provider, provider_id)
    if provider is None:
        raise NotFound(f"no provider with id {provider_id}")
    return provider


def _editable(row: Provider | ModelRoute, what: str) -> None:
    if row.source == "config":
        raise Conflict(f"{what} {row.name!r} is declared in the models file; change it there")


async def create_provider(db: AsyncSession, spec: ProviderSpec, secret_key: str) -> Provider:
    if await db.scalar(select(Provider).where(Provider.name == spec.name)):
        raise Conflict(f"a provider named {spec.name!r} exists already")
    if spec.kind != "local" and not spec.base_url:
        raise ValidationFailed(f"base_url: a {spec.kind} provider needs its URL")
    row = Provider(name=spec.name, kind=spec.kind, source="api")
    _apply_provider(row, spec, secret_key)
    db.add(row)
    await db.flush()
    return row


async def delete_provider(db: AsyncSession, provider: Provider) -> None:
    _editable(provider, "provider")
    await db.delete(provider)
    await db.flush()


async def list_models(db: AsyncSession) -> list[tuple[ModelRoute, list[tuple[Deployment, str]]]]:
    routes = (await db.scalars(select(ModelRoute).order_by(ModelRoute.name))).all()
    rows = await db.execute(
        select(Deployment, Provider.name).join(Provider, Provider.id == Deployment.provider_id)
    )
    by_route: dict[str, list[tuple[Deployment, str]]] = {}
    for deployment, provider_name in rows.all():
        by_route.setdefault(deployment.model_id, []).append((deployment, provider_name))
    return [(route, by_route.get(route.id, [])) for route in routes]


def model_dict(route: ModelRoute, deployments: list[tuple[Deployment, str]]) -> dict[str, Any]:
    return {
        "id": route.id,
        "name": route.name,
        "description": route.description,
        "strategy": route.strategy,
        "fallbacks": list(route.fallbacks),
        "source": route.source,
        "deployments": [
            {
                "id": d.id,
                "provider": name,
                "model": d.upstream_model,
                "weight": d.weight,
                "input_price": d.input_price,
                "output_price": d.output_price,
                "enabled": d.enabled,
            }
            for d, name in deployments
        ],
    }


async def get_model(db: AsyncSession, model_id: str) -> ModelRoute:
    route = await db.get(ModelRoute, model_id)
    if route is None:
        raise NotFound(f"no model with id {model_id}")
    return route


async def create_model(db: AsyncSession, spec: ModelSpec) -> ModelRoute:
    if await db.scalar(select(ModelRoute).where(ModelRoute.name == spec.name)):
        raise Conflict(f"a model named {spec.name!r} exists already")
    providers = {p.name: p for p in await list_providers(db)}
    for deployment in spec.deployments:
        if deployment.provider not in providers:
            raise ValidationFailed(f"deployments: no provider named {deployment.provider!r}")
    route = ModelRoute(
        name=spec.name,
        description=spec.description,
        strategy=spec.strategy,
        fallbacks=list(spec.fallbacks),
        source="api",
    )
    db.add(route)
    await db.flush()
    for deployment in spec.deployments:
        db.add(_deployment_row(route.id, providers[deployment.provider].id, deployment))
    await db.flush()
    return route


async def delete_model(db: AsyncSession, route: ModelRoute) -> None:
    _editable(route, "model")
    await db.delete(route)
    await db.flush()


async def set_prices(
    db: AsyncSession, deployment_id: str, *, input_price: float, output_price: float
) -> Deployment:
    deployment = await db.get(Deployment, deployment_id)
    if deployment is None:
        raise NotFound(f"no deployment with id {deployment_id}")
    deployment.input_price, deployment.output_price = input_price, output_price
    await db.flush()
    return deployment


# --- per-key limits and workspace policy ----------------------------------------------


async def key_limits(db: AsyncSession, key_id: str) -> KeyLimits | None:
    return await db.get(KeyLimits, key_id)


async def set_key_limits(db: AsyncSession, key_id: str, **values: Any) -> KeyLimits:
    row = await db.get(KeyLimits, key_id)
    if row is None:
        row = KeyLimits(key_id=key_id)
        db.add(row)
    for name, value in values.items():
        setattr(row, name, value)
    await db.flush()
    return row


async def workspace_policy(db: AsyncSession, workspace_id: str) -> WorkspacePolicy:
    row = await db.get(WorkspacePolicy, workspace_id)
    return row or WorkspacePolicy(workspace_id=workspace_id, local_only=False, trace_bodies=False)


async def set_workspace_policy(
    db: AsyncSession, workspace_id: str, *, local_only: bool | None, trace_bodies: bool | None
) -> WorkspacePolicy:
    row = await db.get(WorkspacePolicy, workspace_id)
    if row is None:
        row = WorkspacePolicy(workspace_id=workspace_id, local_only=False, trace_bodies=False)
        db.add(row)
    if local_only is not None:
        row.local_only = local_only
    if trace_bodies is not None:
        row.trace_bodies = trace_bodies
    await db.flush()
    return row


def policy_dict(policy: WorkspacePolicy) -> dict[str, Any]:
    return {"local_only": policy.local_only, "trace_bodies": policy.trace_bodies}


async def change_workspace_policy(
    db: AsyncSession,
    access: WorkspaceAccess,
    *,
    local_only: bool | None,
    trace_bodies: bool | None,
) -> dict[str, Any]:
    """Change a workspace's gateway policy and audit it (API and pages both call this)."""
    before = policy_dict(await workspace_policy(db, access.workspace.id))
    after = policy_dict(
        await set_workspace_policy(
            db, access.workspace.id, local_only=local_only, trace_bodies=trace_bodies
        )
    )
    audit.record(
        db,
        "gateway.policy_changed",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="workspace",
        target_id=access.workspace.id,
        before=before,
        after=after,
    )
    await db.commit()
    return after


# --- the snapshot the router serves from ----------------------------------------------


ModelMode = Literal["chat", "embedding"]
# Marks an embedding model by its upstream name when its provider does not say
# (text-embedding-3-small, nomic-embed-text); others, such as bge-m3, are declared in the
# provider's settings.
_EMBEDDING_WORD = "embed"


def deployment_mode(provider: ProviderConfig | None, upstream_model: str) -> ModelMode:
    """Whether a deployment answers chat or embedding requests, without asking it.

    In this order: the provider's settings may list its embedding models by their upstream
    names (`embedding_models: [nomic-embed-text]`, for any kind of provider); a `local`
    provider knows the kind of each of its models (the shipped embedding model, a
    registered model's `kind`, a sentence-transformers folder); otherwise a name with
    "embed" in it is an embedding model, and anything else a chat model."""
    settings = provider.settings if provider is not None else {}
    declared = settings.get("embedding_models")
    if isinstance(declared, list) and upstream_model in declared:
        return "embedding"
    if provider is not None and provider.kind == "local":
        folder = settings.get("models_dir")
        models_dir = (
            Path(str(folder)).expanduser() if folder else builtin.default_options().models_dir
        )
        return registry.kind_of(upstream_model, models_dir)
    return "embedding" if _EMBEDDING_WORD in upstream_model.lower() else "chat"


@dataclass(frozen=True)
class DeploymentView:
    id: str
    model: str
    provider: str
    upstream_model: str
    weight: int
    input_price: float
    output_price: float
    is_local: bool
    mode: ModelMode = "chat"


@dataclass(frozen=True)
class RouteView:
    name: str
    strategy: str
    fallbacks: tuple[str, ...]
    deployments: tuple[DeploymentView, ...]

    @property
    def mode(self) -> ModelMode:
        """ "embedding" when every deployment is an embedding model; else "chat"."""
        if self.deployments and all(d.mode == "embedding" for d in self.deployments):
            return "embedding"
        return "chat"


@dataclass
class Snapshot:
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    routes: dict[str, RouteView] = field(default_factory=dict)


async def provider_api_key(db: AsyncSession, settings: Settings, provider: Provider) -> str | None:
    """A provider's key in clear, for the router only: unsealed, or read from the vault
    when it is a vault:// reference (each read is audited there)."""
    stored = open_api_key(settings.resolved_secret_key(), provider)
    if not stored or not vault.is_reference(stored):
        return stored

    try:
        value = await vault.resolve_reference(
            db, settings, stored, purpose=f"gateway provider {provider.name}"
        )
    except HexaHubError as exc:
        log.warning(
            "provider %s: its API key %s cannot be read: %s", provider.name, stored, exc.message
        )
        return None
    return value.get_secret_value()


async def load_snapshot(db: AsyncSession, settings: Settings) -> Snapshot:
    providers = {p.id: p for p in await list_providers(db)}
    snapshot = Snapshot()
    for provider in providers.values():
        snapshot.providers[provider.name] = ProviderConfig(
            name=provider.name,
            kind=provider.kind,
            base_url=provider.base_url,
            api_key=await provider_api_key(db, settings, provider),
            timeout_seconds=provider.timeout_seconds,
            is_local=provider.is_local,
            settings=dict(provider.settings),
            default_max_tokens=settings.gateway_default_max_tokens,
        )
    for route, deployments in await list_models(db):
        views = tuple(
            DeploymentView(
                id=d.id,
                model=route.name,
                provider=name,
                upstream_model=d.upstream_model,
                weight=d.weight,
                input_price=d.input_price,
                output_price=d.output_price,
                is_local=providers[d.provider_id].is_local,
                mode=deployment_mode(snapshot.providers.get(name), d.upstream_model),
            )
            for d, name in deployments
            if d.enabled
        )
        snapshot.routes[route.name] = RouteView(
            route.name, route.strategy, tuple(route.fallbacks), views
        )
    return snapshot


# --- context windows -----------------------------------------------------------------

# The window assumed for a model whose provider does not declare one: small enough for
# most hosted models of today, large enough for a long conversation.
DEFAULT_CONTEXT_WINDOW = 16_384
# Ollama's own default (num_ctx) when a model is not configured otherwise: Ollama cuts
# longer prompts silently, so a caller that sizes its prompt should assume this.
OLLAMA_CONTEXT_WINDOW = 2048


def context_window(snapshot: Snapshot, model: str) -> int:
    """The context window (tokens, prompt and answer together) of the model name `model`:
    the smallest of its deployments', so a prompt sized for it fits wherever it is sent.

    A provider may declare it in its settings, for each upstream model
    (`context_windows: {gpt-4o-mini: 128000}`) or for all of them (`context_window: 32768`);
    a `local` provider knows each model's (its registered `context_size`, else the
    provider's); otherwise DEFAULT_CONTEXT_WINDOW (OLLAMA_CONTEXT_WINDOW on Ollama)."""
    route = snapshot.routes.get(model)
    if route is None or not route.deployments:
        return DEFAULT_CONTEXT_WINDOW
    return min(
        _deployment_window(snapshot.providers.get(d.provider), d.upstream_model)
        for d in route.deployments
    )


def _deployment_window(provider: ProviderConfig | None, upstream_model: str) -> int:
    settings = provider.settings if provider is not None else {}
    declared = settings.get("context_windows")
    if isinstance(declared, dict) and _positive(declared.get(upstream_model)):
        return int(declared[upstream_model])
    if _positive(settings.get("context_window")):
        return int(settings["context_window"])
    if provider is None:
        return DEFAULT_CONTEXT_WINDOW
    if provider.kind == "local":
        fallback = builtin.default_options()
        try:
            options = registry.LocalOptions.from_settings(settings, fallback)
        except registry.RegistryError:
            return fallback.context_size
        try:
            return registry.resolve(upstream_model, options).context_size
        except (registry.RegistryError, registry.UnknownModel, shipped.MissingPackage):
            return options.context_size  # its requests say what is missing
    return OLLAMA_CONTEXT_WINDOW if provider.kind == "ollama" else DEFAULT_CONTEXT_WINDOW


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
