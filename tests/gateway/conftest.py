"""A running HexaHub whose models file points at the protocol stand-ins, with a person,
a workspace and a gateway key ready to use."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hexahub.core.db import Database
from hexahub.identity import keys, service, workspaces
from hexahub.settings import Settings
from tests.conftest import make_settings
from tests.gateway.standins.fixtures import (  # noqa: F401  (fixtures)
    anthropic_upstream,
    ollama_upstream,
    openai_upstream,
)
from tests.gateway.standins.server import StandinServer
from tests.support.live import live_hexahub


@dataclass
class Hub:
    url: str
    key: str
    key_id: str
    workspace_id: str
    admin_token: str
    settings: Settings
    clients: list[Any] = field(default_factory=list)
    models: dict = field(default_factory=dict)  # the models file it serves

    def price(self, model: str) -> tuple[float, float]:
        """(input, output) price of `model`'s one deployment, as the models file says."""
        [deployment] = next(m for m in self.models["models"] if m["name"] == model)["deployments"]
        return float(deployment.get("input_price", 0)), float(deployment.get("output_price", 0))

    async def close_clients(self) -> None:
        for client in self.clients:
            await client.close()
        self.clients.clear()

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request with no credentials but those given."""
        return httpx.request(method, self.url + path, timeout=30, **kwargs)

    def usage_records(self) -> list[dict]:
        response = self.api("GET", f"/api/workspaces/{self.workspace_id}/traces")
        assert response.status_code == 200, response.text
        return response.json()


def models_file(openai: StandinServer, anthropic: StandinServer, ollama: StandinServer) -> dict:
    return {
        "providers": [
            {
                "name": "openai",
                "kind": "openai",
                "base_url": openai.url("/v1"),
                "api_key": openai.state.api_key,
                "local": False,
                "timeout_seconds": 2,
            },
            {
                "name": "openai-backup",
                "kind": "openai",
                "base_url": openai.url("/v1"),
                "api_key": openai.state.api_key,
                "local": False,
                "timeout_seconds": 2,
            },
            {
                "name": "claude",
                "kind": "anthropic",
                "base_url": anthropic.base_url,
                "api_key": anthropic.state.api_key,
                "timeout_seconds": 2,
            },
            {"name": "ollama", "kind": "ollama", "base_url": ollama.base_url, "timeout_seconds": 2},
        ],
        "models": [
            {
                "name": "gpt-test",
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "gpt-4o-mini",
                        "input_price": 1.0,
                        "output_price": 2.0,
                    }
                ],
            },
            {
                "name": "claude-test",
                "deployments": [
                    {
                        "provider": "claude",
                        "model": "claude-haiku-4-5",
                        "input_price": 3.0,
                        "output_price": 15.0,
                    }
                ],
            },
            {
                "name": "llama-test",
                "deployments": [{"provider": "ollama", "model": "llama3.2:latest"}],
            },
            {
                "name": "embed-test",
                "deployments": [{"provider": "openai", "model": "text-embedding-3-small"}],
            },
            {
                "name": "with-fallback",
                "deployments": [{"provider": "openai", "model": "gpt-4o-mini"}],
                "fallbacks": ["llama-test"],
            },
        ],
    }


async def seed_owner(settings: Settings) -> tuple[str, str, str]:
    """The first administrator, their workspace and a gateway key in it: (the key's
    secret, its id, the workspace's id)."""
    database = Database(settings)
    try:
        async with database.sessions() as db:
            user = await service.create_first_admin(
                db, email="owner@example.org", password="correct horse battery"
            )
            workspace = (await workspaces.workspaces_of(db, user.id))[0][0]
            created = await keys.create_key(
                db, user, name="sdk", scopes=["gateway"], workspace_id=workspace.id
            )
            await db.commit()
            return created.secret, created.key.id, workspace.id
    finally:
        await database.dispose()


def hub_settings(tmp_path: Path, database_url: str, models: dict, **overrides: Any) -> Settings:
    """Settings for a HexaHub serving `models` (a models file's content), quick to retry
    and to write usage; `overrides` on top."""
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(models))
    values: dict[str, Any] = {
        "database_url": database_url,
        "models_file": path,
        "gateway_retry_base_seconds": 0.01,
        "gateway_health_interval_seconds": 0,
        "gateway_usage_flush_seconds": 0.05,
        "rate_limit_ip_per_minute": 0,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


@contextmanager
def running_hub(settings: Settings) -> Iterator[Hub]:
    """HexaHub served on a real port with `settings`, its owner signed in."""
    secret, key_id, workspace_id = asyncio.run(seed_owner(settings))
    with live_hexahub(settings) as url:
        login = httpx.post(
            f"{url}/api/auth/login",
            json={"email": "owner@example.org", "password": "correct horse battery"},
        )
        assert login.status_code == 200, login.text
        models = yaml.safe_load(Path(str(settings.models_file)).read_text())
        token = login.json()["access_token"]
        yield Hub(url, secret, key_id, workspace_id, token, settings, models=models)


@pytest.fixture
def hub(
    tmp_path: Path,
    database_url: str,
    openai_upstream: StandinServer,  # noqa: F811
    anthropic_upstream: StandinServer,  # noqa: F811
    ollama_upstream: StandinServer,  # noqa: F811
) -> Iterator[Hub]:
    models = models_file(openai_upstream, anthropic_upstream, ollama_upstream)
    with running_hub(hub_settings(tmp_path, database_url, models)) as running:
        yield running


@pytest.fixture
async def sdk(hub: Hub) -> Any:
    """The hub, whose SDK clients are closed on the test's own event loop afterwards."""
    yield hub
    await hub.close_clients()
