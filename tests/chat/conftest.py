"""A HexaHub whose models file points at the OpenAI stand-in (model `gpt-test`, priced),
with helpers to add people to workspaces and read streamed answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hexahub.identity import workspaces
from hexahub.identity.models import Role, User, Workspace
from hexahub.settings import Settings
from tests.conftest import make_settings
from tests.gateway.standins.fixtures import openai_upstream  # noqa: F401  (fixture)
from tests.gateway.standins.server import StandinServer
from tests.identity.conftest import Person, alice, bob, make_person  # noqa: F401  (fixtures)

MODEL = "gpt-test"
INPUT_PRICE = 1.0  # USD per million tokens
OUTPUT_PRICE = 2.0


@pytest.fixture
def settings(
    tmp_path: Path,
    database_url: str,
    openai_upstream: StandinServer,  # noqa: F811
) -> Settings:
    path = tmp_path / "models.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "providers": [
                    {
                        "name": "openai",
                        "kind": "openai",
                        "base_url": openai_upstream.url("/v1"),
                        "api_key": openai_upstream.state.api_key,
                        "local": False,
                        "timeout_seconds": 5,
                    }
                ],
                "models": [
                    {
                        "name": MODEL,
                        "deployments": [
                            {
                                "provider": "openai",
                                "model": "gpt-4o-mini",
                                "input_price": INPUT_PRICE,
                                "output_price": OUTPUT_PRICE,
                            }
                        ],
                    }
                ],
            }
        )
    )
    return make_settings(
        tmp_path,
        database_url=database_url,
        models_file=path,
        gateway_retry_base_seconds=0.01,
        gateway_health_interval_seconds=0,
        gateway_usage_flush_seconds=0.05,
        rate_limit_ip_per_minute=0,
    )


async def join(client: httpx.AsyncClient, person: Person, workspace_id: str, role: Role) -> None:
    """Give `person` a role in a workspace."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    async with runtime.db.sessions() as db:
        workspace = await db.get(Workspace, workspace_id)
        user = await db.get(User, person.user_id)
        assert workspace is not None and user is not None
        await workspaces.add_member(db, workspace, user, role, actor_role=Role.owner)
        await db.commit()


async def new_conversation(
    client: httpx.AsyncClient, person: Person, **fields: Any
) -> dict[str, Any]:
    body = {"workspace_id": person.workspace_id, "model": MODEL, **fields}
    response = await client.post("/api/conversations", headers=person.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.headers["content-type"].startswith("text/event-stream"), response.text
    return [
        json.loads(line[len("data: ") :])
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]


def cost(prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * INPUT_PRICE + completion_tokens * OUTPUT_PRICE) / 1_000_000
