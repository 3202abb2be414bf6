"""What HexaHub offers on its own, with no models file: the built-in `local` provider.

`with_builtin_models(spec, settings)` is applied to the models file before it is mirrored
into the database (at start, and by `hexahub models ...`). It

- fills every `local` provider's settings with the HEXAHUB_LOCAL_* defaults it does not set;
- when the file declares no `local` provider, adds one named `local` and, if the packages
  are installed, the model names `local-chat` (SmolLM2-135M-Instruct) and `local-embed`
  (all-MiniLM-L6-v2) on it (HEXAHUB_LOCAL_CHAT_MODEL, HEXAHUB_LOCAL_EMBEDDING_MODEL);
- adds a model name for each model registered with `hexahub models add` and each GGUF file
  dropped into the models directory, on the file's first `local` provider or the built-in one.

A name the file declares itself always wins. The rows this adds are marked like the file's
own (source "config"): they are changed here, not through the API.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict

from hexahub.gateway.config import (
    DeploymentSpec,
    ModelsFile,
    ModelsFileError,
    ModelSpec,
    ProviderSpec,
    load_models_file,
)
from hexahub.localmodels import shipped
from hexahub.localmodels.registry import (
    LocalOptions,
    RegistryError,
    dropped_in,
    load_registry,
)
from hexahub.settings import Settings, get_settings

log = logging.getLogger("hexahub.localmodels")

BUILTIN_PROVIDER = "local"
_ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")


def options_from_settings(settings: Settings) -> LocalOptions:
    return LocalOptions(
        models_dir=settings.resolved_models_dir,
        context_size=settings.local_context_size,
        threads=settings.local_threads,
        gpu_layers=settings.local_gpu_layers,
        queue_size=settings.local_queue_size,
        idle_unload_seconds=settings.local_idle_unload_seconds,
        embedding_batch_size=settings.local_embedding_batch_size,
    )


def default_options() -> LocalOptions:
    """For `local` providers made through the API, whose settings may leave options out."""
    return options_from_settings(get_settings())


def provider_settings(options: LocalOptions) -> dict[str, object]:
    values = asdict(options)
    values["models_dir"] = str(options.models_dir)
    return values


def with_builtin_models(spec: ModelsFile, settings: Settings) -> ModelsFile:
    options = options_from_settings(settings)
    defaults = provider_settings(options)
    providers = []
    for provider in spec.providers:
        if provider.kind == "local":
            try:
                LocalOptions.from_settings(provider.settings, options)
            except RegistryError as exc:
                raise ModelsFileError(f"providers.{provider.name}: {exc}") from exc
            provider = provider.model_copy(update={"settings": {**defaults, **provider.settings}})
        providers.append(provider)
    models = list(spec.models)
    declared = {m.name for m in models}
    local = next((p for p in providers if p.kind == "local"), None)
    if not settings.local_models_enabled:
        return ModelsFile(providers=providers, models=models)

    extra: list[ModelSpec] = []

    def offer(name: str, upstream: str, description: str, provider: str) -> None:
        if name in declared or not _ROUTE_NAME.match(name):
            return
        declared.add(name)
        extra.append(
            ModelSpec(
                name=name,
                description=description,
                deployments=[DeploymentSpec(provider=provider, model=upstream)],
            )
        )

    provider_name = local.name if local is not None else BUILTIN_PROVIDER
    if local is None:
        if any(p.name == BUILTIN_PROVIDER for p in providers):
            log.warning(
                "the models file has a provider named %r that is not of kind local, so the "
                "built-in local models are not offered",
                BUILTIN_PROVIDER,
            )
            return ModelsFile(providers=providers, models=models)
        if shipped.chat_available():
            offer(
                settings.local_chat_model,
                shipped.DEFAULT_CHAT_MODEL,
                "SmolLM2-135M-Instruct, running inside HexaHub (llama.cpp, CPU)",
                provider_name,
            )
        else:
            log.info(
                "no local chat model: %s to have %r", shipped.INSTALL_ALL, settings.local_chat_model
            )
        if shipped.embeddings_available():
            offer(
                settings.local_embedding_model,
                shipped.DEFAULT_EMBEDDING_MODEL,
                "all-MiniLM-L6-v2 embeddings (384 dimensions), running inside HexaHub",
                provider_name,
            )

    models_dir = settings.resolved_models_dir
    try:
        registered = load_registry(models_dir)
    except RegistryError as exc:
        log.error("local models registry ignored: %s", exc)
        registered = []
    for entry in registered:
        offer(
            entry.name, entry.name, entry.description or f"local model {entry.path}", provider_name
        )
    registered_paths = {entry.path for entry in registered}
    for path in dropped_in(models_dir):
        if str(path.resolve()) not in registered_paths:
            offer(path.stem, path.stem, f"local model {path}", provider_name)

    if local is None and extra:
        providers.append(ProviderSpec(name=BUILTIN_PROVIDER, kind="local", settings=defaults))
    return ModelsFile(providers=providers, models=models + extra)


def configured_models(settings: Settings) -> ModelsFile:
    """The models file (HEXAHUB_MODELS_FILE) with the built-in local models added: what the
    gateway mirrors into the database at start and `hexahub models ...` shows and changes."""
    return with_builtin_models(load_models_file(settings.resolved_models_file), settings)
