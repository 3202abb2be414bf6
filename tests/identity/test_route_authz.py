"""Walks every route of the OpenAPI document as a stranger and as a member of another
workspace, and checks each one refuses. New routes are covered as soon as they exist."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest

from tests.identity.conftest import Person

# Routes anyone may call: signing in needs no credentials by nature.
PUBLIC = {
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/refresh"),
    ("GET", "/api/auth/oidc/login"),
    ("GET", "/api/auth/oidc/callback"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
}
# Routes that act only on the caller's own things, so an outsider succeeds on their own
# data; the test checks the answer leaks nothing of the other workspace.
SELF_SERVICE = {
    ("GET", "/api/me"),
    ("PATCH", "/api/me"),
    ("POST", "/api/me/password"),
    ("POST", "/api/auth/logout"),
    ("GET", "/api/keys"),
    ("POST", "/api/keys"),
    ("GET", "/api/workspaces"),
    ("POST", "/api/workspaces"),
    # The model APIs count a request against the caller's own workspace.
    ("GET", "/v1/models"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    # Code context: without `workspace_id` these act in the caller's own workspace.
    ("GET", "/api/repos"),
    ("POST", "/api/repos"),
    ("GET", "/api/search"),
    ("GET", "/api/symbols"),
    ("POST", "/api/ask"),
    # Chat: likewise, in the caller's own workspace.
    ("GET", "/api/conversations"),
    ("POST", "/api/conversations"),
    ("GET", "/api/templates"),
    ("POST", "/api/templates"),
}
REFUSED = {401, 403, 404}


def operations(schema: dict) -> list[tuple[str, str]]:
    found = []
    for path, item in schema["paths"].items():
        for method in item:
            if method in {"get", "post", "put", "patch", "delete"}:
                found.append((method.upper(), path))
    return sorted(found)


def fill(path: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        return values.get(match.group(1), str(uuid.uuid4()))

    return re.sub(r"\{([^}]+)\}", value, path)


async def call(client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str]):
    body = None if method in {"GET", "DELETE"} else {}
    return await client.request(method, url, headers=headers, json=body)


async def test_every_route_refuses_strangers_and_other_workspaces(
    app_client: httpx.AsyncClient, alice: Person, bob: Person, tmp_path: Path
):
    # Give alice's workspace something of each kind to aim at.
    key = await app_client.post(
        "/api/keys",
        headers=alice.headers,
        json={"name": "target", "scopes": ["read"], "workspace_id": alice.workspace_id},
    )
    group = await app_client.post(
        f"/api/workspaces/{alice.workspace_id}/groups", headers=alice.headers, json={"name": "g"}
    )
    secret = await app_client.put(
        f"/api/workspaces/{alice.workspace_id}/secrets/data/route-walk/token",
        headers=alice.headers,
        json={"data": {"value": "route-walk-value"}},
    )
    policy = await app_client.post(
        f"/api/workspaces/{alice.workspace_id}/secrets/policies",
        headers=alice.headers,
        json={"role": "member", "path_prefix": "route-walk", "capabilities": ["read"]},
    )
    repo = await app_client.post(
        "/api/repos",
        headers=alice.headers,
        json={"name": "walk", "source": "path", "location": str(tmp_path), "index": False},
    )
    assert secret.status_code == 200 and policy.status_code == 201
    assert repo.status_code == 201, repo.text
    conversation = await app_client.post(
        "/api/conversations", headers=alice.headers, json={"title": "route walk"}
    )
    template = await app_client.post(
        "/api/templates", headers=alice.headers, json={"name": "walk", "body": "{{x}}"}
    )
    assert conversation.status_code == 201 and template.status_code == 201
    message_id = await _add_message(app_client, conversation.json()["id"])
    targets = {
        "repo_id": repo.json()["id"],
        "conversation_id": conversation.json()["id"],
        "message_id": message_id,
        "template_id": template.json()["id"],
        "workspace_id": alice.workspace_id,
        "user_id": alice.user_id,
        "key_id": key.json()["id"],
        "group_id": group.json()["id"],
        "path": "route-walk/token",
        "policy_id": policy.json()["id"],
    }
    schema = (await app_client.get("/openapi.json")).json()
    ops = operations(schema)
    assert ("GET", "/api/workspaces/{workspace_id}/members") in ops  # the walk sees routes

    problems = []
    for method, path in ops:
        if (method, path) in PUBLIC:
            continue
        url = fill(path, targets)
        stranger = await call(app_client, method, url, {})
        if stranger.status_code != 401:
            problems.append(f"{method} {path}: stranger got {stranger.status_code}")
        outsider = await call(app_client, method, url, bob.headers)
        if (method, path) in SELF_SERVICE:
            leaked = [
                name
                for name, value in targets.items()
                if name != "user_id" and value in outsider.text
            ]
            if leaked:
                problems.append(f"{method} {path}: outsider saw {leaked}")
        elif outsider.status_code not in REFUSED:
            problems.append(f"{method} {path}: outsider got {outsider.status_code}")
    assert not problems, "\n".join(problems)
    # Alice's things are untouched by all that.
    still = await app_client.get(
        f"/api/workspaces/{alice.workspace_id}/members", headers=alice.headers
    )
    assert [m["email"] for m in still.json()] == [alice.email]


async def _add_message(client: httpx.AsyncClient, conversation_id: str) -> str:
    """A message in a conversation, written directly (no model call needed)."""
    from hexahub.chat.models import Message

    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    async with runtime.db.sessions() as db:
        message = Message(conversation_id=conversation_id, position=0, role="user", content="x")
        db.add(message)
        await db.commit()
        return message.id


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unknown_api_paths_are_404_not_500(app_client: httpx.AsyncClient, method: str):
    response = await app_client.request(method, "/api/does-not-exist")
    assert response.status_code in (404, 405)
