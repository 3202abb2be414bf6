"""Every HexaHub setting, in one place.

Settings come from (highest priority first): keyword arguments, `HEXAHUB_*` environment
variables, a `.env` file in the working directory, the YAML config file named by
`HEXAHUB_CONFIG_FILE` (default `<data_dir>/hexahub.yaml` when it exists), then defaults.
docs/configuration.md lists each one; tests/core/test_settings.py checks that list is complete.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from hexahub.core.files import private_directory

ENV_PREFIX = "HEXAHUB_"


class ConfigFileError(ValueError):
    """The YAML config file cannot be read or is not a mapping."""


def _config_file_path(overrides: Mapping[str, Any] | None = None) -> Path | None:
    """The YAML file to read: keyword arguments beat the environment, as for settings."""
    overrides = overrides or {}
    explicit = overrides.get("config_file") or os.environ.get(f"{ENV_PREFIX}CONFIG_FILE")
    if explicit:
        return Path(explicit).expanduser()
    data_dir = overrides.get("data_dir") or os.environ.get(f"{ENV_PREFIX}DATA_DIR", "./data")
    candidate = Path(data_dir).expanduser() / "hexahub.yaml"
    return candidate if candidate.exists() else None


class YamlConfigSource(PydanticBaseSettingsSource):
    """Reads settings from a YAML mapping whose keys are the setting names (lower case)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path
        self.data: dict[str, Any] = self._load()

    def _load(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        if not self.path.exists():
            raise ConfigFileError(
                f"config file {self.path} does not exist; create it or unset "
                f"{ENV_PREFIX}CONFIG_FILE"
            )
        try:
            loaded = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigFileError(f"config file {self.path} cannot be read: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigFileError(f"config file {self.path} is not valid YAML: {exc}") from exc
        if loaded is None:
            return {}
        if not isinstance(loaded, dict):
            raise ConfigFileError(f"config file {self.path} must hold a mapping of settings")
        unknown = sorted(set(loaded) - set(self.settings_cls.model_fields))
        if unknown:
            raise ConfigFileError(
                f"config file {self.path} has unknown settings: {', '.join(unknown)}"
            )
        return loaded

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {key: value for key, value in self.data.items() if value is not None}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        # A refused value may be a URL with a password in it: keep it out of the message.
        hide_input_in_errors=True,
    )

    # --- server
    host: str = Field("127.0.0.1", description="Address `hexahub serve` binds to.")
    port: int = Field(8080, ge=1, le=65535, description="Port `hexahub serve` listens on.")
    workers: int = Field(1, ge=1, description="Number of uvicorn worker processes.")
    public_url: str = Field(
        "",
        description="Externally visible base URL (e.g. https://hub.example.org). Used in "
        "links HexaHub prints and to turn on HSTS when it starts with https://.",
    )
    data_dir: Path = Field(
        Path("./data"),
        description="Directory for the SQLite database, config file and other local state.",
    )
    config_file: Path | None = Field(
        None,
        description="YAML file with settings (keys are the names below in lower case). "
        "Defaults to <data_dir>/hexahub.yaml when that file exists.",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Key for signing session tokens. Generated and stored in "
        "<data_dir>/secret_key on first start when unset; set it explicitly when running "
        "several replicas.",
    )

    # --- database
    database_url: str = Field(
        "",
        description="SQLAlchemy URL. Empty means SQLite at <data_dir>/hexahub.db. "
        "PostgreSQL: postgresql://user:pass@host/db (the asyncpg driver is chosen for you).",
    )
    database_pool_size: int = Field(10, ge=1, description="Connection pool size (PostgreSQL).")
    database_echo: bool = Field(False, description="Log every SQL statement (debugging only).")

    # --- shared state and queue
    redis_url: str = Field(
        "",
        description="Redis URL (redis://host:6379/0). When set, counters, caches and rate "
        "limits are shared through Redis; otherwise they live in the process.",
    )
    queue_backend: Literal["inprocess", "broker"] = Field(
        "inprocess",
        description="`inprocess` runs background work inside the server process; `broker` "
        "sends it over HEXAHUB_BROKER_URL to `hexahub worker` processes.",
    )
    broker_url: str = Field(
        "",
        description="Task broker for queue_backend=broker: redis://host:6379/1 (Redis "
        "streams) or nats://host:4222 (NATS JetStream).",
    )
    queue_concurrency: int = Field(
        4, ge=1, description="Tasks one server or worker process runs at the same time."
    )
    queue_max_attempts: int = Field(
        5, ge=1, description="Attempts before a failing task is moved to the dead-letter list."
    )
    queue_retry_base_seconds: float = Field(
        2.0, gt=0, description="First retry delay; each further retry doubles it."
    )
    queue_retry_max_seconds: float = Field(
        300.0, gt=0, description="Upper bound on a single retry delay."
    )
    queue_task_timeout_seconds: float = Field(
        3600.0, gt=0, description="A task running longer than this is failed and retried."
    )

    # --- HTTP behaviour
    max_request_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Requests with a larger body get 413."
    )
    # NoDecode: the env value is "a, b" (split below), not JSON.
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser (comma separated in env).",
    )
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Reverse proxies trusted to say who the client is: IPs or CIDR ranges "
        "(comma separated in env), or `*` for any peer. Only requests from these addresses "
        "have their X-Forwarded-For and X-Forwarded-Proto headers believed; the client IP "
        "they give is what rate limits, sign-in lockouts and the audit log use. Empty: no "
        "forwarded header is believed (see docs/operations.md).",
    )

    # --- logging and metrics
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level that is logged."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="`json` writes one JSON object per line (for log shippers)."
    )
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at /metrics.")

    # --- AI gateway
    models_file: Path | None = Field(
        None,
        description="YAML file declaring providers and models (see docs/gateway.md). "
        "Defaults to <data_dir>/models.yaml when that file exists.",
    )
    gateway_retries: int = Field(
        2, ge=0, le=10, description="Extra tries on one deployment after a retryable error."
    )
    gateway_retry_base_seconds: float = Field(
        0.25, ge=0, description="First retry delay; each further retry doubles it."
    )
    gateway_breaker_failures: int = Field(
        3, ge=1, description="Consecutive failures that open a deployment's circuit breaker."
    )
    gateway_breaker_cooldown_seconds: float = Field(
        30.0, gt=0, description="How long an open breaker keeps a deployment out of rotation."
    )
    gateway_health_interval_seconds: float = Field(
        30.0, ge=0, description="How often providers are health-checked (0: never)."
    )
    gateway_default_max_tokens: int = Field(
        4096,
        ge=1,
        description="max_tokens sent to providers that require one (Anthropic) when a request "
        "has none; also what such a request reserves against its key's budget and token rate.",
    )
    gateway_cache_ttl_seconds: int = Field(
        3600, ge=1, description="Lifetime of an exact-match cached response."
    )
    gateway_usage_flush_seconds: float = Field(
        1.0, gt=0, description="Usage records are written in batches this often."
    )

    # --- identity: sessions, tokens, limits
    access_token_ttl_seconds: int = Field(
        900, ge=30, le=86400, description="Lifetime of an API access token (JWT)."
    )
    session_idle_timeout_minutes: int = Field(
        720, ge=1, description="A session (browser or refresh-token family) unused this long ends."
    )
    session_absolute_timeout_hours: int = Field(
        168, ge=1, description="A session ends this long after sign-in, however much it is used."
    )
    rate_limit_ip_per_minute: int = Field(
        600, ge=0, description="Requests per minute from one client IP (0 turns the limit off)."
    )
    rate_limit_user_per_minute: int = Field(
        1200, ge=0, description="Requests per minute by one signed-in user (0: off)."
    )
    rate_limit_key_per_minute: int = Field(
        1200, ge=0, description="Requests per minute with one API key (0: off)."
    )
    login_max_failures: int = Field(
        5,
        ge=1,
        description="Failed sign-ins per account within login_lockout_minutes before "
        "further attempts are refused with 429.",
    )
    login_max_failures_per_ip: int = Field(
        20,
        ge=1,
        description="Failed sign-ins from one IP within login_lockout_minutes before "
        "further attempts are refused with 429.",
    )
    login_lockout_minutes: int = Field(
        15, ge=1, description="Window over which failed sign-ins are counted."
    )

    # --- single sign-on (OIDC)
    oidc_issuer: str = Field(
        "", description="OIDC issuer URL (Authentik, Keycloak, ...). Empty turns SSO off."
    )
    oidc_client_id: str = Field("", description="Client id registered at the OIDC issuer.")
    oidc_client_secret: SecretStr | None = Field(
        None, description="Client secret registered at the OIDC issuer."
    )
    oidc_scopes: str = Field("openid email profile", description="Scopes asked of the OIDC issuer.")
    oidc_display_name: str = Field("SSO", description="Name of the SSO button on the sign-in page.")
    oidc_groups_claim: str = Field(
        "groups", description="ID-token/userinfo claim holding the user's groups."
    )
    oidc_role_mapping: dict[str, str] = Field(
        default_factory=dict,
        description="SSO group -> workspace role, as JSON or YAML: "
        '{"hexahub-admins": "default/admin"} gives members of that group the admin role in the '
        "workspace with slug `default`.",
    )
    oidc_create_users: bool = Field(
        True, description="Create an account on first SSO sign-in (else only linked e-mails)."
    )

    # --- vault
    vault_master_key: SecretStr | None = Field(
        None,
        description="Vault master key(s) as base64-encoded 32-byte keys, comma separated: the "
        "first wraps new data keys, the others are older keys still accepted for reading. "
        "When set, vault_master_key_file is not read. `hexahub vault init --print` makes one.",
    )
    vault_master_key_file: Path | None = Field(
        None,
        description="File holding the vault master key(s), one per line, the first in use. "
        "Defaults to <data_dir>/vault.key, created (mode 0600) on first use while the vault "
        "is empty. Back it up: without it the secrets cannot be read.",
    )
    vault_keep_versions: int = Field(
        10, ge=1, le=1000, description="Versions kept per secret; older ones are destroyed."
    )
    vault_max_value_bytes: int = Field(
        65536,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest secret version (all its keys and values, as JSON) in bytes.",
    )

    # --- local models (see docs/local-models.md; checked by `hexahub doctor`)
    models_dir: Path | None = Field(
        None,
        description="Directory of your own local models: `registry.yaml` (written by "
        "`hexahub models add`) and GGUF files dropped in, served under their file name. "
        "Defaults to <data_dir>/models.",
    )
    local_models_enabled: bool = Field(
        True,
        description="Offer the built-in local models: a `local` provider (in-process llama.cpp "
        "and sentence-transformers) when the models file declares none, and the models added "
        "with `hexahub models add`.",
    )
    local_chat_model: str = Field(
        "local-chat",
        description="Model name clients use for the shipped chat model (SmolLM2-135M-Instruct).",
    )
    local_embedding_model: str = Field(
        "local-embed",
        description="Model name clients use for the shipped embedding model (all-MiniLM-L6-v2).",
    )
    local_context_size: int = Field(
        2048,
        ge=128,
        le=1_048_576,
        description="Context window (tokens) of a local chat model, unless the model sets its own.",
    )
    local_threads: int = Field(
        0,
        ge=0,
        le=1024,
        description="CPU threads per local model. 0: one per physical core this process may "
        "use (hyperthreads counted once, a container's CPU quota respected), as llama.cpp "
        "advises.",
    )
    local_gpu_layers: int = Field(
        0,
        ge=-1,
        description="Layers of a local chat model offloaded to a GPU (needs a GPU build of "
        "llama-cpp-python); -1: all. 0 runs on the CPU.",
    )
    local_queue_size: int = Field(
        64,
        ge=1,
        le=10_000,
        description="Requests that may wait for one local model; more are refused with 503 "
        "(and a caller holding half of the places gets 429).",
    )
    local_idle_unload_seconds: float = Field(
        600.0,
        ge=0,
        description="A local model nobody used for this long is unloaded (0: never). Models "
        "load on their first request.",
    )
    local_embedding_batch_size: int = Field(
        64,
        ge=1,
        le=4096,
        description="Texts a local embedding model encodes at once; requests waiting together "
        "are batched up to this size.",
    )

    # --- code context (see docs/code-context.md)
    context_index_path: Path | None = Field(
        None,
        description="SQLite file of the code index (chunks, full text, vectors, symbols) when "
        "the database is SQLite. Defaults to <data_dir>/code-index.db. With PostgreSQL the index "
        "lives in the same database (pgvector for vectors; without it, full text only).",
    )
    context_repos_dir: Path | None = Field(
        None,
        description="Where git repositories are cloned for indexing. Defaults to <data_dir>/repos.",
    )
    context_local_roots: list[Path] = Field(
        default_factory=list,
        description="Server directories under which workspace admins may add local-path "
        "repositories (comma separated). Installation administrators may add any readable "
        "directory.",
    )
    context_embedding_model: str = Field(
        "local-embed",
        description="Gateway model that embeds code chunks and search queries. Changing it "
        "re-embeds every repository on its next index.",
    )
    context_answer_model: str = Field(
        "local-chat",
        description="Gateway model POST /api/ask uses when the request names none.",
    )
    context_max_file_bytes: int = Field(
        1_000_000,
        ge=1024,
        le=100_000_000,
        description="Files larger than this are skipped (the reason is recorded).",
    )
    context_embed_batch_size: int = Field(
        64, ge=1, le=4096, description="Chunks sent to the embedding model per request."
    )
    context_git_timeout_seconds: float = Field(
        600.0, gt=0, description="Longest a git clone or fetch may take."
    )

    @field_validator("cors_origins", "forwarded_allow_ips", "context_local_roots", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_forwarded_allow_ips(cls, value: list[str]) -> list[str]:
        if "*" in value and len(value) > 1:
            raise ValueError("HEXAHUB_FORWARDED_ALLOW_IPS: `*` trusts every peer; give it alone")
        for entry in value:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry)
            except ValueError:
                raise ValueError(
                    f"HEXAHUB_FORWARDED_ALLOW_IPS: {entry!r} is not an IP address or CIDR "
                    "range (e.g. 10.0.0.5 or 172.16.0.0/12)"
                ) from None
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        schemes = ("sqlite://", "sqlite+", "postgresql://", "postgresql+", "postgres://")
        if value and not value.startswith(schemes):
            raise ValueError(
                "HEXAHUB_DATABASE_URL must start with sqlite:// or postgresql:// "
                f"(got {value.split(':', 1)[0]}://...)"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("HEXAHUB_REDIS_URL must start with redis://, rediss:// or unix://")
        return value

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "nats://", "tls://")):
            raise ValueError("HEXAHUB_BROKER_URL must start with redis:// or nats://")
        return value

    @model_validator(mode="after")
    def _check_broker(self) -> Settings:
        if self.queue_backend == "broker" and not self.broker_url:
            raise ValueError(
                "HEXAHUB_QUEUE_BACKEND=broker needs HEXAHUB_BROKER_URL "
                "(redis://host:6379/1 or nats://host:4222)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init_kwargs: Mapping[str, Any] = getattr(init_settings, "init_kwargs", {})
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            YamlConfigSource(settings_cls, _config_file_path(init_kwargs)),
        )

    # --- derived values
    @property
    def resolved_database_url(self) -> str:
        """The async SQLAlchemy URL actually used."""
        url = self.database_url
        if not url:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'hexahub.db').resolve()}"
        if url.startswith("postgres://"):
            url = "postgresql://" + url.removeprefix("postgres://")
        if url.startswith("postgresql://"):
            return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
        if url.startswith("sqlite://") and not url.startswith("sqlite+"):
            return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def resolved_context_index_path(self) -> Path:
        return self.context_index_path or self.data_dir / "code-index.db"

    @property
    def resolved_context_repos_dir(self) -> Path:
        return self.context_repos_dir or self.data_dir / "repos"

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @property
    def resolved_models_file(self) -> Path | None:
        if self.models_file is not None:
            return self.models_file
        candidate = self.data_dir / "models.yaml"
        return candidate if candidate.exists() else None

    @property
    def external_base_url(self) -> str:
        """The URL people and identity providers reach HexaHub at (no trailing slash)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def behind_tls(self) -> bool:
        return self.public_url.startswith("https://")

    def resolved_secret_key(self) -> str:
        """The signing key: configured, or generated once and kept in the data directory."""
        # An empty HEXAHUB_SECRET_KEY= (a blank line in a compose file) counts as unset.
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value()
        key_file = self.data_dir / "secret_key"
        if not key_file.exists():
            _create_secret_key(key_file)
        key = key_file.read_text(encoding="utf-8").strip()
        if not key:
            raise ValueError(
                f"{key_file} is empty; delete it to have a new key generated, or set "
                f"{ENV_PREFIX}SECRET_KEY"
            )
        return key

    def redacted(self) -> dict[str, Any]:
        """Every setting as plain values, with secrets and URL passwords hidden."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown[name] = "********" if value.get_secret_value() else ""
            elif isinstance(value, str) and "://" in value:
                shown[name] = redact_url(value)
            elif isinstance(value, Path):
                shown[name] = str(value)
            else:
                shown[name] = value
        return shown


def _create_secret_key(key_file: Path) -> None:
    """Write a new key so that no process ever reads a half-written file, and several
    processes starting at once (uvicorn workers) all end up with the same key."""
    import secrets

    def write_new(path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(48))

    private_directory(key_file.parent)
    draft = key_file.with_name(f".{key_file.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        write_new(draft)
        try:
            os.link(draft, key_file)  # atomic, and fails if another process got there first
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links
            with contextlib.suppress(FileExistsError):
                write_new(key_file)
    finally:
        draft.unlink(missing_ok=True)


def redact_url(url: str) -> str:
    """Hide the password in a URL like scheme://user:password@host/..."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:********@{host}" if ":" in creds else url


def settings_reference() -> str:
    """docs/configuration.md's table of settings, made from the fields above."""
    lines = [
        "| environment variable | YAML key | default | what it does |",
        "|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, Path):
            default = str(default)
        shown = "(empty)" if default in ("", None, []) else f"`{default}`"
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{ENV_PREFIX}{name.upper()}` | `{name}` | {shown} | {description} |")
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
