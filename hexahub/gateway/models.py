"""Gateway tables: providers, public model names and their deployments, per-key limits,
workspace policies, and the usage record of every request."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hexahub.core.db import Base, IdMixin, TimestampMixin, UTCDateTime, utcnow

PROVIDER_KINDS = ("openai", "openai_compatible", "anthropic", "ollama", "local")


class Provider(IdMixin, TimestampMixin, Base):
    """Somewhere models run: a cloud API, an Ollama host, a vLLM server, the local model."""

    __tablename__ = "gateway_providers"

    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    base_url: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    # Sealed with hexahub.core.crypto, or a vault:// reference; never returned by the API.
    api_key_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Runs on the owner's own machines (counts as local for "local models only").
    is_local: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    timeout_seconds: Mapped[float] = mapped_column(Float, nullable=False, default=120.0)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    # "config" rows mirror the models file and are changed there; "api" rows by the API.
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="api")


class ModelRoute(IdMixin, TimestampMixin, Base):
    """A model name clients ask for, served by one or more deployments."""

    __tablename__ = "gateway_models"

    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(String(1000), nullable=False, default="")
    # "weighted" (random by weight) or "least_busy" (fewest requests in flight).
    strategy: Mapped[str] = mapped_column(String(16), nullable=False, default="weighted")
    # Other model names to try, in order, when every deployment of this one fails.
    fallbacks: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="api")


class Deployment(IdMixin, Base):
    __tablename__ = "gateway_deployments"

    model_id: Mapped[str] = mapped_column(
        ForeignKey("gateway_models.id", ondelete="CASCADE"), nullable=False, index=True
    )
    provider_id: Mapped[str] = mapped_column(
        ForeignKey("gateway_providers.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # The model's name at the provider (e.g. "gpt-4o-mini", "llama3.1:8b").
    upstream_model: Mapped[str] = mapped_column(String(200), nullable=False)
    weight: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # US dollars per million tokens.
    input_price: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    output_price: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)


class KeyLimits(Base):
    """Budgets, request/token rates and caching for one API key."""

    __tablename__ = "gateway_key_limits"

    key_id: Mapped[str] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    daily_budget_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    monthly_budget_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    cache: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class WorkspacePolicy(Base):
    __tablename__ = "gateway_workspace_policies"

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    local_only: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Keep prompt and response bodies in the request traces (off by default).
    trace_bodies: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class UsageRecord(IdMixin, Base):
    """One gateway request: who, which model and deployment, tokens, cost, timing."""

    __tablename__ = "gateway_usage"
    __table_args__ = (
        Index("ix_gateway_usage_workspace_created", "workspace_id", "created_at"),
        Index("ix_gateway_usage_key_created", "key_id", "created_at"),
        Index("ix_gateway_usage_created", "created_at"),
    )

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    request_id: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    workspace_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    endpoint: Mapped[str] = mapped_column(String(32), nullable=False)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    provider: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    deployment_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    upstream_model: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[int] = mapped_column(Integer, nullable=False, default=200)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    stream: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    cached: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # Only when the workspace opted in to keeping bodies.
    request_body: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
