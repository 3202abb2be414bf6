"""The user's own local models and how an upstream model name becomes a file to load.

`hexahub models add ./qwen.gguf --name qwen-coder --context-size 8192` records the model in
`<models_dir>/registry.yaml` (plain YAML, fine to edit by hand):

    models:
      - name: qwen-coder
        path: /home/me/models/qwen2.5-coder-1.5b-q4_k_m.gguf
        kind: chat                 # chat: a GGUF file; embedding: a sentence-transformers folder
        context_size: 8192         # optional; else HEXAHUB_LOCAL_CONTEXT_SIZE
        threads: 4                 # optional; else HEXAHUB_LOCAL_THREADS
        gpu_layers: 0              # optional; else HEXAHUB_LOCAL_GPU_LAYERS (-1: all)

A `local` provider resolves the model name of a deployment, in this order: the shipped
models (`smollm2-135m-instruct`, `all-minilm-l6-v2`), a registered name, a `NAME.gguf` file
dropped into the models directory, a path to a GGUF file or sentence-transformers folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hexahub.localmodels import shipped

Kind = Literal["chat", "embedding"]
REGISTRY_FILE = "registry.yaml"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"
GGUF_MAGIC = b"GGUF"


class RegistryError(ValueError):
    """The registry cannot be read or changed as asked; the message says why."""


class BadModelFile(ValueError):
    """A model file is missing or cannot be used; the message names it and says what to do."""


class UnknownModel(LookupError):
    pass


class RegisteredModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    path: str
    kind: Kind = "chat"
    description: str = Field("", max_length=1000)
    context_size: int | None = Field(None, ge=128, le=1_048_576)
    threads: int | None = Field(None, ge=1, le=1024)
    gpu_layers: int | None = Field(None, ge=-1, le=100_000)


class RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[RegisteredModel] = Field(default_factory=list)


@dataclass(frozen=True)
class LocalOptions:
    """A `local` provider's settings: defaults for its models and how its workers behave."""

    models_dir: Path
    context_size: int = 2048
    threads: int = 0  # 0: one per physical core (physical_cores), as llama.cpp advises
    gpu_layers: int = 0
    queue_size: int = 64
    idle_unload_seconds: float = 600.0
    embedding_batch_size: int = 64

    @classmethod
    def from_settings(cls, values: dict[str, Any], fallback: LocalOptions) -> LocalOptions:
        """Options from a provider's settings mapping; missing keys come from `fallback`.
        Raises RegistryError naming a value of the wrong kind."""
        merged: dict[str, Any] = dict(fallback.__dict__)
        minimum = {
            "context_size": 128,
            "gpu_layers": -1,
            "queue_size": 1,
            "embedding_batch_size": 1,
        }
        for name, default in fallback.__dict__.items():
            value = values.get(name)
            if value is None:
                continue
            try:
                if name == "models_dir":
                    merged[name] = Path(str(value)).expanduser()
                    continue
                kind = type(default)
                if isinstance(value, bool) or float(value) != kind(value):
                    raise ValueError
                merged[name] = kind(value)
            except (TypeError, ValueError) as exc:
                raise RegistryError(
                    f"local provider setting {name}: {value!r} is not a "
                    f"{'whole number' if kind is int else 'number'}"
                ) from exc
            if merged[name] < minimum.get(name, 0):
                raise RegistryError(f"local provider setting {name}: {value!r} is too small")
        return cls(**merged)


def resolved_threads(threads: int) -> int:
    """The threads a local model runs on: `threads`, or with 0 one per physical core."""
    if threads > 0:
        return threads
    return physical_cores()


def physical_cores(sys_root: Path = Path("/sys"), cpus: set[int] | None = None) -> int:
    """The physical cores this process may run on: the distinct (package, core) pairs of
    the CPUs in its affinity mask, capped by a cgroup CPU quota (a container's `--cpus`).
    Hyperthreads of one core share its arithmetic units, so inference gains nothing from
    both; where the topology cannot be read, half the logical CPUs."""
    if cpus is None:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        cpus = cpus or set(range(os.cpu_count() or 2))
    cores: set[tuple[str, str]] = set()
    try:
        for cpu in cpus:
            topology = sys_root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "topology"
            package = (topology / "physical_package_id").read_text().strip()
            cores.add((package, (topology / "core_id").read_text().strip()))
        count = len(cores)
    except OSError:
        count = len(cpus) // 2
    quota = _cgroup_cpu_quota(sys_root)
    if quota is not None:
        count = min(count, quota)
    return max(1, count)


def _cgroup_cpu_quota(sys_root: Path) -> int | None:
    """Whole CPUs allowed by the cgroup v2 quota (`cpu.max`, e.g. "200000 100000" → 2,
    rounded up), or None without one."""
    try:
        quota, period = (sys_root / "fs" / "cgroup" / "cpu.max").read_text().split()[:2]
        return -(-int(quota) // int(period))
    except (OSError, ValueError):
        return None  # no cgroup v2 file, or "max": no quota


@dataclass(frozen=True)
class LocalModel:
    """One model to load, with everything that decides how it is loaded."""

    name: str
    path: Path
    kind: Kind
    context_size: int
    threads: int
    gpu_layers: int

    @property
    def key(self) -> tuple[str, str, int, int, int]:
        """Two requests share a loaded model when this is equal."""
        return (str(self.path), self.kind, self.context_size, self.threads, self.gpu_layers)


# --- the registry file ------------------------------------------------------------------

_cache: dict[Path, tuple[tuple[int, int], list[RegisteredModel]]] = {}


def registry_path(models_dir: Path) -> Path:
    return models_dir / REGISTRY_FILE


def load_registry(models_dir: Path) -> list[RegisteredModel]:
    path = registry_path(models_dir)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return []
    signature = (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[0] == signature:
        return list(cached[1])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        models = RegistryFile.model_validate(raw).models
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"{path} cannot be read: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise RegistryError(f"{path}: {problems}") from exc
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise RegistryError(f"{path}: two models have the same name")
    _cache[path] = (signature, models)
    return list(models)


def save_registry(models_dir: Path, models: list[RegisteredModel]) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    path = registry_path(models_dir)
    data = {"models": [m.model_dump(exclude_none=True, exclude_defaults=False) for m in models]}
    for item in data["models"]:
        if not item.get("description"):
            item.pop("description", None)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    draft.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    os.replace(draft, path)


def detect_kind(path: Path) -> Kind:
    """chat for a GGUF file, embedding for a sentence-transformers folder; checks either."""
    if path.is_dir():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise BadModelFile(
                f"{path} is a folder but not a sentence-transformers model "
                "(no modules.json or config.json in it)"
            )
        return "embedding"
    check_gguf(path)
    return "chat"


def check_gguf(path: Path) -> None:
    """Fail early, in words, on a missing, truncated or non-GGUF file."""
    if not path.exists():
        raise BadModelFile(f"the model file {path} does not exist")
    if not path.is_file():
        raise BadModelFile(f"{path} is not a file")
    try:
        with path.open("rb") as handle:
            header = handle.read(24)
    except OSError as exc:
        raise BadModelFile(f"the model file {path} cannot be read: {exc.strerror}") from exc
    if len(header) < 24 or header[:4] != GGUF_MAGIC:
        raise BadModelFile(
            f"{path} is not a GGUF model file (it does not start with the GGUF signature); "
            "download the .gguf file again or choose another"
        )
    version = int.from_bytes(header[4:8], "little")
    if version not in (1, 2, 3):
        raise BadModelFile(f"{path} is GGUF version {version}, which llama.cpp cannot read")


_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """The scalar and string key/values of a GGUF file's header (arrays are skipped), read
    without llama.cpp, for estimates before a model is loaded."""
    import struct

    check_gguf(path)
    found: dict[str, Any] = {}
    with path.open("rb") as handle:

        def unpack(fmt: str) -> Any:
            size = struct.calcsize(fmt)
            data = handle.read(size)
            if len(data) != size:
                raise BadModelFile(f"{path} ends inside its header (truncated?)")
            return struct.unpack(fmt, data)[0]

        def string() -> str:
            return handle.read(unpack("<Q")).decode("utf-8", errors="replace")

        def value(kind: int) -> Any:
            if kind in _SCALARS:
                return unpack(_SCALARS[kind])
            if kind == _STRING:
                return string()
            if kind == _ARRAY:
                item_kind, count = unpack("<I"), unpack("<Q")
                for _ in range(count):
                    value(item_kind)
                return None
            raise BadModelFile(f"{path} has a header value of unknown type {kind}")

        handle.seek(8)
        _tensors, entries = unpack("<Q"), unpack("<Q")
        for _ in range(entries):
            key = string()
            item = value(unpack("<I"))
            if item is not None:
                found[key] = item
    return found


def kv_cache_bytes(metadata: dict[str, Any], context_size: int) -> int:
    """The f16 KV cache of a llama.cpp model at `context_size` tokens, from its metadata
    (values may be numbers or, as llama-cpp-python reports them, strings)."""
    arch = str(metadata.get("general.architecture", "llama"))

    def number(key: str, default: int) -> int:
        try:
            return int(float(metadata.get(f"{arch}.{key}", default)))
        except (TypeError, ValueError):
            return default

    layers = number("block_count", 0)
    embedding = number("embedding_length", 0)
    heads = number("attention.head_count", 1) or 1
    heads_kv = number("attention.head_count_kv", heads)
    head_dim = number("attention.key_length", embedding // heads)
    return context_size * layers * 2 * heads_kv * head_dim * 2


def estimated_memory(model: LocalModel) -> int:
    """What loading `model` will take: its weights and, for chat models, the KV cache at
    its context size (llama.cpp's compute buffers and the libraries come on top)."""
    if model.kind == "embedding":
        return sum(p.stat().st_size for p in model.path.rglob("*.safetensors")) or sum(
            p.stat().st_size for p in model.path.rglob("*.bin")
        )
    return model.path.stat().st_size + kv_cache_bytes(
        read_gguf_metadata(model.path), model.context_size
    )


def add_model(
    models_dir: Path,
    source: Path,
    name: str,
    *,
    context_size: int | None = None,
    threads: int | None = None,
    gpu_layers: int | None = None,
    description: str = "",
    copy: bool = False,
    replace: bool = False,
) -> RegisteredModel:
    source = source.expanduser().resolve()
    if not source.exists():
        raise BadModelFile(f"{source} does not exist")
    kind = detect_kind(source)
    if name in (shipped.DEFAULT_CHAT_MODEL, shipped.DEFAULT_EMBEDDING_MODEL):
        raise RegistryError(f"{name!r} is the name of a shipped model; choose another name")
    models = load_registry(models_dir)
    if any(m.name == name for m in models) and not replace:
        raise RegistryError(
            f"a local model named {name!r} is registered already; remove it first or use --replace"
        )
    path = source
    if copy:
        models_dir.mkdir(parents=True, exist_ok=True)
        path = models_dir / source.name
        if path != source:
            if source.is_dir():
                shutil.copytree(source, path, dirs_exist_ok=True)
            else:
                shutil.copy2(source, path)
    try:
        entry = RegisteredModel(
            name=name,
            path=str(path),
            kind=kind,
            description=description,
            context_size=context_size,
            threads=threads,
            gpu_layers=gpu_layers,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise RegistryError(problems) from exc
    save_registry(models_dir, [m for m in models if m.name != name] + [entry])
    return entry


def remove_model(models_dir: Path, name: str, *, delete_file: bool = False) -> RegisteredModel:
    models = load_registry(models_dir)
    found = next((m for m in models if m.name == name), None)
    if found is None:
        known = ", ".join(m.name for m in models) or "none"
        raise RegistryError(
            f"no local model named {name!r} is registered (registered: {known}); models "
            "declared in the models file are removed there"
        )
    save_registry(models_dir, [m for m in models if m.name != name])
    if delete_file:
        target = Path(found.path)
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    return found


def dropped_in(models_dir: Path) -> list[Path]:
    """GGUF files put straight into the models directory (served under their stem)."""
    return sorted(models_dir.glob("*.gguf")) if models_dir.is_dir() else []


# --- resolving a deployment's model name --------------------------------------------------


def resolve(name: str, options: LocalOptions) -> LocalModel:
    """The model to load for an upstream model name, or UnknownModel / MissingPackage."""

    def model(
        path: Path, kind: Kind, entry: RegisteredModel | None = None, label: str = name
    ) -> LocalModel:
        return LocalModel(
            name=label,
            path=path,
            kind=kind,
            context_size=(entry.context_size if entry and entry.context_size else None)
            or options.context_size,
            threads=resolved_threads(entry.threads if entry and entry.threads else options.threads),
            gpu_layers=entry.gpu_layers
            if entry and entry.gpu_layers is not None
            else options.gpu_layers,
        )

    if name == shipped.DEFAULT_CHAT_MODEL:
        return model(shipped.require_default_chat_gguf(), "chat")
    if name == shipped.DEFAULT_EMBEDDING_MODEL:
        return model(shipped.require_default_embedding_dir(), "embedding")
    for entry in load_registry(options.models_dir):
        if entry.name == name:
            return model(Path(entry.path), entry.kind, entry)
    dropped = options.models_dir / f"{name}.gguf"
    if dropped.is_file():
        return model(dropped, "chat")
    candidate = Path(name).expanduser()
    if candidate.is_absolute() and candidate.exists():
        kind: Kind = "embedding" if candidate.is_dir() else "chat"
        return model(candidate, kind, label=candidate.stem)
    raise UnknownModel(
        f"there is no local model named {name!r}; register a GGUF file with "
        f"`hexahub models add ./model.gguf --name {name}` or put {name}.gguf into "
        f"{options.models_dir}"
    )


def kind_of(name: str, models_dir: Path) -> Kind:
    """Whether an upstream model name is a chat or an embedding model, as `resolve` would
    load it, without loading or checking any file (a name it cannot place is chat)."""
    if name == shipped.DEFAULT_EMBEDDING_MODEL:
        return "embedding"
    if name == shipped.DEFAULT_CHAT_MODEL:
        return "chat"
    with contextlib.suppress(RegistryError):
        for entry in load_registry(models_dir):
            if entry.name == name:
                return entry.kind
    candidate = Path(name).expanduser()
    if candidate.is_absolute() and candidate.is_dir():
        return "embedding"
    return "chat"


def local_names(options: LocalOptions) -> list[str]:
    """Every upstream model name a `local` provider with these options can serve now."""
    names: list[str] = []
    if shipped.default_chat_gguf() is not None:
        names.append(shipped.DEFAULT_CHAT_MODEL)
    if shipped.default_embedding_dir() is not None:
        names.append(shipped.DEFAULT_EMBEDDING_MODEL)
    with contextlib.suppress(RegistryError):  # the provider's requests say what is wrong
        names.extend(m.name for m in load_registry(options.models_dir))
    names.extend(p.stem for p in dropped_in(options.models_dir) if p.stem not in names)
    return names
