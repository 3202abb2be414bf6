"""Settings: environment, YAML config file, .env, validation, derived values, docs.

The autouse fixture in conftest.py clears every HEXAHUB_* variable and runs each test
in its own empty working directory, so `./data` and `./.env` here belong to the test.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import ValidationError

from hexahub.settings import ConfigFileError, Settings, get_settings, redact_url

REPO_ROOT = Path(__file__).resolve().parents[2]


def _yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- sources -------------------------------------------------------------------------------


def test_defaults() -> None:
    settings = Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.queue_backend == "inprocess"
    assert settings.cors_origins == []
    assert settings.is_sqlite


def test_environment_variables_with_the_hexahub_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEXAHUB_PORT", "9090")
    monkeypatch.setenv("HEXAHUB_DATABASE_ECHO", "true")
    monkeypatch.setenv("HEXAHUB_LOG_FORMAT", "json")
    monkeypatch.setenv("HEXAHUB_QUEUE_RETRY_BASE_SECONDS", "0.5")
    monkeypatch.setenv("PORT", "1")  # unprefixed variables are not ours

    settings = Settings()

    assert settings.port == 9090
    assert settings.database_echo is True
    assert settings.log_format == "json"
    assert settings.queue_retry_base_seconds == 0.5


def test_cors_origins_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEXAHUB_CORS_ORIGINS", "https://a.example, https://b.example,")
    assert Settings().cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("HEXAHUB_CORS_ORIGINS", '["https://c.example"]')
    assert Settings().cors_origins == ["https://c.example"]


def test_yaml_config_file_named_by_hexahub_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _yaml(
        tmp_path / "conf" / "hub.yaml",
        "port: 7000\npublic_url: https://hub.example.org\ncors_origins:\n  - https://a.example\n",
    )
    monkeypatch.setenv("HEXAHUB_CONFIG_FILE", str(config))

    settings = Settings()

    assert settings.port == 7000
    assert settings.behind_tls
    assert settings.cors_origins == ["https://a.example"]


def test_yaml_config_file_in_the_data_dir_is_read_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _yaml(tmp_path / "data" / "hexahub.yaml", "port: 7001\n")  # ./data is the default
    assert Settings().port == 7001

    _yaml(tmp_path / "elsewhere" / "hexahub.yaml", "port: 7002\n")
    monkeypatch.setenv("HEXAHUB_DATA_DIR", str(tmp_path / "elsewhere"))
    assert Settings().port == 7002
    monkeypatch.delenv("HEXAHUB_DATA_DIR")
    assert Settings(data_dir=tmp_path / "elsewhere").port == 7002


def test_config_file_given_as_a_keyword_argument_is_read(tmp_path: Path) -> None:
    config = _yaml(tmp_path / "kw.yaml", "port: 7003\n")
    assert Settings(config_file=config).port == 7003


def test_empty_yaml_file_means_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEXAHUB_CONFIG_FILE", str(_yaml(tmp_path / "empty.yaml", "")))
    assert Settings().port == 8080


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "port: 7000\nbogus_setting: 1\nalso_wrong: 2\n",
            "unknown settings: also_wrong, bogus_setting",
        ),
        ("- port\n- 7000\n", "must hold a mapping"),
        ("just a string\n", "must hold a mapping"),
        ("port: [unclosed\n", "is not valid YAML"),
    ],
)
def test_bad_yaml_config_files_are_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, problem: str
) -> None:
    config = _yaml(tmp_path / "bad.yaml", text)
    monkeypatch.setenv("HEXAHUB_CONFIG_FILE", str(config))
    with pytest.raises(ConfigFileError, match=problem) as caught:
        Settings()
    assert str(config) in str(caught.value)


def test_missing_config_file_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HEXAHUB_CONFIG_FILE", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigFileError, match=r"nope\.yaml does not exist.*HEXAHUB_CONFIG_FILE"):
        Settings()


def test_unreadable_config_file_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    directory = tmp_path / "a-directory.yaml"
    directory.mkdir()
    monkeypatch.setenv("HEXAHUB_CONFIG_FILE", str(directory))
    with pytest.raises(ConfigFileError, match="cannot be read"):
        Settings()


def test_priority_keyword_then_env_then_dotenv_then_yaml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _yaml(
        tmp_path / "hub.yaml", "port: 1111\nhost: 10.0.0.1\nworkers: 3\nlog_level: ERROR\n"
    )
    monkeypatch.setenv("HEXAHUB_CONFIG_FILE", str(config))
    (tmp_path / ".env").write_text("HEXAHUB_PORT=3333\nHEXAHUB_HOST=10.0.0.3\n")
    monkeypatch.setenv("HEXAHUB_PORT", "2222")

    settings = Settings(log_level="DEBUG")

    assert settings.port == 2222  # env beats .env and YAML
    assert settings.host == "10.0.0.3"  # .env beats YAML
    assert settings.workers == 3  # YAML beats defaults
    assert settings.log_level == "DEBUG"  # keyword arguments beat YAML


def test_get_settings_reads_once() -> None:
    assert get_settings() is get_settings()


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("postgres://u:p@db:5432/hub", "postgresql+asyncpg://u:p@db:5432/hub"),
        ("postgresql://u:p@db/hub", "postgresql+asyncpg://u:p@db/hub"),
        ("postgresql+asyncpg://db/hub", "postgresql+asyncpg://db/hub"),
        ("sqlite:////var/lib/hub.db", "sqlite+aiosqlite:////var/lib/hub.db"),
        ("sqlite+aiosqlite:///hub.db", "sqlite+aiosqlite:///hub.db"),
    ],
)
def test_database_url_gets_an_async_driver(url: str, resolved: str) -> None:
    assert Settings(database_url=url).resolved_database_url == resolved


def test_empty_database_url_means_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    expected = f"sqlite+aiosqlite:///{(tmp_path / 'd' / 'hexahub.db').resolve()}"
    assert settings.resolved_database_url == expected
    assert settings.is_sqlite


@pytest.mark.parametrize(
    "url", ["mysql://u:hunter2@db/hub", "sqlitex:///a.db", "postgresfoo://db", "db.example:5432"]
)
def test_bad_database_url_is_refused_clearly(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("HEXAHUB_DATABASE_URL", url)
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert "HEXAHUB_DATABASE_URL must start with sqlite:// or postgresql://" in message
    assert "hunter2" not in message


def test_broker_backend_without_a_broker_url_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEXAHUB_QUEUE_BACKEND", "broker")
    with pytest.raises(
        ValidationError, match="HEXAHUB_QUEUE_BACKEND=broker needs HEXAHUB_BROKER_URL"
    ):
        Settings()
    monkeypatch.setenv("HEXAHUB_BROKER_URL", "nats://127.0.0.1:4222")
    assert Settings().broker_url == "nats://127.0.0.1:4222"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("HEXAHUB_BROKER_URL", "amqp://rabbit", "HEXAHUB_BROKER_URL must start with"),
        ("HEXAHUB_REDIS_URL", "http://redis", "HEXAHUB_REDIS_URL must start with"),
        ("HEXAHUB_QUEUE_BACKEND", "kafka", "queue_backend"),
        ("HEXAHUB_PORT", "0", "port"),
        ("HEXAHUB_MAX_REQUEST_BODY_BYTES", "10", "max_request_body_bytes"),
        ("HEXAHUB_LOG_LEVEL", "LOUD", "log_level"),
    ],
)
def test_invalid_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=problem):
        Settings()


# --- derived values ------------------------------------------------------------------------


def test_redacted_hides_passwords_and_the_secret_key() -> None:
    settings = Settings(
        database_url="postgresql://hub:db-pass-1@db:5432/hub",
        redis_url="redis://:redis-pass-2@cache:6379/0",
        queue_backend="broker",
        broker_url="nats://worker:nats-pass-3@broker:4222",
        secret_key="signing-secret-4",
    )

    shown = settings.redacted()

    text = json.dumps(shown)
    for secret in ("db-pass-1", "redis-pass-2", "nats-pass-3", "signing-secret-4"):
        assert secret not in text
    assert shown["database_url"] == "postgresql://hub:********@db:5432/hub"
    assert shown["redis_url"] == "redis://:********@cache:6379/0"
    assert shown["broker_url"] == "nats://worker:********@broker:4222"
    assert shown["secret_key"] == "********"
    assert shown["port"] == 8080
    assert set(shown) == set(Settings.model_fields)


def test_redact_url_leaves_urls_without_a_password_alone() -> None:
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"
    assert redact_url("postgresql://hub@db/hub") == "postgresql://hub@db/hub"
    assert redact_url("not a url") == "not a url"


def test_secret_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    settings = Settings(data_dir=data_dir)

    key = settings.resolved_secret_key()

    key_file = data_dir / "secret_key"
    assert len(key) >= 32
    assert key_file.read_text(encoding="utf-8") == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert settings.resolved_secret_key() == key
    assert Settings(data_dir=data_dir).resolved_secret_key() == key  # the next start
    assert [p.name for p in data_dir.iterdir()] == ["secret_key"]  # no leftovers


def test_processes_starting_at_once_share_one_secret_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "race"
    starters = 8
    barrier = threading.Barrier(starters)

    def start(_: int) -> str:
        settings = Settings(data_dir=data_dir)
        barrier.wait(timeout=10)
        return settings.resolved_secret_key()

    with ThreadPoolExecutor(starters) as pool:
        keys = list(pool.map(start, range(starters)))

    assert len(set(keys)) == 1
    assert keys[0] == (data_dir / "secret_key").read_text(encoding="utf-8")
    assert [p.name for p in data_dir.iterdir()] == ["secret_key"]


def test_configured_secret_key_wins_and_writes_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", secret_key="configured-" + "k" * 32)
    assert settings.resolved_secret_key() == "configured-" + "k" * 32
    assert not (tmp_path / "d").exists()


def test_blank_secret_key_counts_as_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEXAHUB_SECRET_KEY", "")
    key = Settings(data_dir=tmp_path / "d").resolved_secret_key()
    assert key and key == (tmp_path / "d" / "secret_key").read_text(encoding="utf-8")


def test_empty_secret_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "secret_key").write_text("\n")
    with pytest.raises(ValueError, match="secret_key is empty"):
        Settings(data_dir=tmp_path / "d").resolved_secret_key()


# --- documentation -------------------------------------------------------------------------


def test_no_stray_hexahub_variables_leak_into_tests() -> None:
    # Guards the conftest isolation every test above relies on.
    assert not [
        name
        for name in os.environ
        if name.startswith("HEXAHUB_") and not name.startswith("HEXAHUB_TEST_")
    ]
