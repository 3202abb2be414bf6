"""The models file: providers and model names declared in YAML, kept in git if you like.

    providers:
      - name: openai
        kind: openai                    # openai, openai_compatible, anthropic, ollama, local
        base_url: https://api.openai.com/v1
        api_key: ${OPENAI_API_KEY}      # from the environment, or vault://ws/path#key
      - name: gpu-box
        kind: ollama
        base_url: http://gpu-box:11434
        local: true
    models:
      - name: smart
        strategy: weighted              # or least_busy
        deployments:
          - {provider: openai, model: gpt-4o-mini, weight: 1, input_price: 0.15, output_price: 0.6}
        fallbacks: [local-chat]

At start the file is mirrored into the database (rows marked source="config"); models and
providers made through the API live beside them. Validation errors name the entry.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$"


class ModelsFileError(ValueError):
    """The models file cannot be used; the message says where and why."""


class ProviderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    kind: Literal["openai", "openai_compatible", "anthropic", "ollama", "local"]
    base_url: str = Field("", json_schema_extra={"pattern": r"^(https?://|$)"})
    api_key: str | None = None
    local: bool | None = None
    timeout_seconds: float = Field(120.0, gt=0, le=3600)
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @property
    def is_local(self) -> bool:
        if self.local is not None:
            return self.local
        return self.kind in ("ollama", "local", "openai_compatible")


class DeploymentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str
    model: str = Field(min_length=1, max_length=200)
    weight: int = Field(1, ge=0, le=1000)
    input_price: float = Field(0.0, ge=0, description="USD per million input tokens")
    output_price: float = Field(0.0, ge=0, description="USD per million output tokens")


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    description: str = Field("", max_length=1000)
    strategy: Literal["weighted", "least_busy"] = "weighted"
    deployments: list[DeploymentSpec] = Field(min_length=1)
    fallbacks: list[str] = Field(default_factory=list)


class ModelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    providers: list[ProviderSpec] = Field(default_factory=list)
    models: list[ModelSpec] = Field(default_factory=list)

    def check_references(self) -> None:
        providers = {p.name for p in self.providers}
        if len(providers) != len(self.providers):
            raise ModelsFileError("providers: two providers have the same name")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ModelsFileError("models: two models have the same name")
        for model in self.models:
            for deployment in model.deployments:
                if deployment.provider not in providers:
                    raise ModelsFileError(
                        f"models.{model.name}: provider {deployment.provider!r} is not declared "
                        "under providers"
                    )


def _interpolate(value: Any) -> Any:
    if isinstance(value, str):

        def env(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ModelsFileError(f"environment variable {name} is not set")
            return os.environ[name]

        return _ENV_REF.sub(env, value)
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


def parse_models_file(text: str, *, source: str = "models file") -> ModelsFile:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ModelsFileError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelsFileError(f"{source} must be a mapping with providers: and models:")
    try:
        parsed = ModelsFile.model_validate(_interpolate(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ModelsFileError(f"{source}: {problems}") from exc
    parsed.check_references()
    return parsed


def load_models_file(path: Path | None) -> ModelsFile:
    if path is None:
        return ModelsFile()
    if not path.exists():
        raise ModelsFileError(f"models file {path} does not exist (HEXAHUB_MODELS_FILE)")
    return parse_models_file(path.read_text(encoding="utf-8"), source=str(path))
