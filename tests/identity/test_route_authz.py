"""Walks every route of the OpenAPI document and checks each one refuses whoever must be
refused: a stranger, a member of another workspace, an API key bound to another
workspace, and a key lacking the scope the route needs (docs/identity.md says what each
scope allows). New routes are covered as soon as they exist.

Requests carry a body made from the route's schema (so a route reaches its checks instead
of stopping at a missing field), every required query parameter, and the workspace the
walk aims at as `workspace_id` wherever the route takes one.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.identity.conftest import Person, make_person

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
# data; the walk checks the answer leaks nothing of the workspace it aims at.
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
# Routes of the whole installation: only its administrators, never through a key bound
# to one workspace.
INSTANCE_ADMIN_PREFIXES = ("/api/users", "/api/audit", "/api/gateway/")
# Requests other than GET that change nothing, so a `read` key may send them.
READ_ONLY_WRITES = {
    ("POST", "/api/auth/logout"),  # ends the caller's own session (a key has none)
    ("POST", "/api/templates/{template_id}/render"),  # fills in a template, stores nothing
}
# Changes that need the `admin` scope (docs/identity.md: members, groups, keys, and the
# settings of workspaces and of the installation); the rest of the changes need `write`.
ADMIN_CHANGES = re.compile(
    r"^/api/(users|gateway/)"
    r"|^/api/workspaces/\{workspace_id\}"
    r"($|/(members|groups|transfer-ownership|gateway-policy|keys/\{key_id\}/limits"
    r"|secrets/policies))"
)
REFUSED = {401, 403, 404}


def operations(schema: dict) -> list[tuple[str, str]]:
    found = []
    for path, item in schema["paths"].items():
        for method in item:
            if method in {"get", "post", "put", "patch", "delete"}:
                found.append((method.upper(), path))
    # Deleting a workspace or leaving it comes last: a wrongly allowed one would leave
    # nothing for the routes after it to refuse.
    return sorted(found, key=lambda op: (op[0] == "DELETE" or op[1].endswith("/leave"), op))


def fill(path: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        return values.get(match.group(1), str(uuid.uuid4()))

    return re.sub(r"\{([^}]+)\}", value, path)


def example(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A small value that `schema` accepts: required fields only, the first of choices."""
    if "$ref" in schema:
        return example(components[schema["$ref"].rsplit("/", 1)[1]], components)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"]
            return example(options[0], components) if options else None
    kind = schema.get("type")
    if kind == "object":
        required = schema.get("required", [])
        properties = schema.get("properties", {})
        value = {name: example(properties[name], components) for name in required}
        if isinstance(schema.get("additionalProperties"), dict):  # a mapping: one entry
            value["walk"] = example(schema["additionalProperties"], components)
        return value
    if kind == "array":
        return [example(schema["items"], components) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        if schema.get("format") == "email":
            return "walk@example.org"
        return "walk".ljust(schema.get("minLength", 0), "k")[: schema.get("maxLength", 64)]
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    return None


class Walk:
    """Requests to every operation, each with its body and query parameters."""

    def __init__(self, client: httpx.AsyncClient, schema: dict, targets: dict[str, str]):
        self.client = client
        self.schema = schema
        self.components = schema.get("components", {}).get("schemas", {})
        self.targets = targets
        self.ops = operations(schema)
        self.extra_params: dict[str, str] = {}  # sent with every request, over the others

    def operation(self, method: str, path: str) -> dict[str, Any]:
        op: dict[str, Any] = self.schema["paths"][path][method.lower()]
        return op

    def fields(self, schema: dict[str, Any]) -> set[str]:
        if "$ref" in schema:
            schema = self.components[schema["$ref"].rsplit("/", 1)[1]]
        found = set(schema.get("properties", {}))
        for option in schema.get("anyOf", []):
            found |= self.fields(option)
        return found

    def takes_workspace_query(self, method: str, path: str) -> bool:
        return any(
            p["in"] == "query" and p["name"] == "workspace_id"
            for p in self.operation(method, path).get("parameters", [])
        )

    async def call(self, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
        op = self.operation(method, path)
        params = {}
        for parameter in op.get("parameters", []):
            if parameter["in"] != "query":
                continue
            if parameter["name"] == "workspace_id":
                params["workspace_id"] = self.targets["workspace_id"]
            elif parameter.get("required"):
                params[parameter["name"]] = example(parameter["schema"], self.components)
        params.update(self.extra_params)
        body: Any = None
        content = op.get("requestBody", {}).get("content", {}).get("application/json")
        if content is not None:
            body = example(content["schema"], self.components)
            if isinstance(body, dict) and "workspace_id" in self.fields(content["schema"]):
                body["workspace_id"] = self.targets["workspace_id"]
        elif method not in {"GET", "DELETE"}:
            body = {}
        url = fill(path, self.targets)
        return await self.client.request(method, url, headers=headers, params=params, json=body)

    def leaked(self, response: httpx.Response, hidden: dict[str, str]) -> list[str]:
        """Hidden ids in the answer, but for those the request named itself (an error
        message may quote what it was sent)."""
        sent = str(response.request.url) + response.request.content.decode()
        return [
            name for name, value in hidden.items() if value in response.text and value not in sent
        ]


async def seed(
    client: httpx.AsyncClient, owner: Person, workspace_id: str, tmp_path: Path
) -> dict[str, str]:
    """Something of each kind in `workspace_id`, made by its owner; the targets' ids."""
    h = owner.headers
    key = await client.post(
        "/api/keys",
        headers=h,
        json={"name": "target", "scopes": ["read"], "workspace_id": workspace_id},
    )
    group = await client.post(
        f"/api/workspaces/{workspace_id}/groups", headers=h, json={"name": "g"}
    )
    secret = await client.put(
        f"/api/workspaces/{workspace_id}/secrets/data/route-walk/token",
        headers=h,
        json={"data": {"value": "route-walk-value"}},
    )
    policy = await client.post(
        f"/api/workspaces/{workspace_id}/secrets/policies",
        headers=h,
        json={"role": "member", "path_prefix": "route-walk", "capabilities": ["read"]},
    )
    folder = tmp_path / f"walk-{workspace_id}"
    folder.mkdir()
    repo = await client.post(
        "/api/repos",
        headers=h,
        json={
            "name": "walk",
            "source": "path",
            "location": str(folder),
            "index": False,
            "workspace_id": workspace_id,
        },
    )
    conversation = await client.post(
        "/api/conversations",
        headers=h,
        json={"title": "route walk", "workspace_id": workspace_id},
    )
    template = await client.post(
        "/api/templates",
        headers=h,
        json={"name": "walk", "body": "{{x}}", "workspace_id": workspace_id},
    )
    for response in (key, group, policy, repo, conversation, template):
        assert response.status_code == 201, response.text
    assert secret.status_code == 200, secret.text
    return {
        "repo_id": repo.json()["id"],
        "conversation_id": conversation.json()["id"],
        "message_id": await _add_message(client, conversation.json()["id"]),
        "template_id": template.json()["id"],
        "workspace_id": workspace_id,
        "user_id": owner.user_id,
        "key_id": key.json()["id"],
        "group_id": group.json()["id"],
        "path": "route-walk/token",
        "policy_id": policy.json()["id"],
    }


async def _add_message(client: httpx.AsyncClient, conversation_id: str) -> str:
    """A message in a conversation, written directly (no model call needed)."""
    from hexahub.chat.models import Message

    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    async with runtime.db.sessions() as db:
        message = Message(conversation_id=conversation_id, position=0, role="user", content="x")
        db.add(message)
        await db.commit()
        return message.id


async def walk_of(client: httpx.AsyncClient, targets: dict[str, str]) -> Walk:
    schema = (await client.get("/openapi.json")).json()
    walk = Walk(client, schema, targets)
    assert ("GET", "/api/workspaces/{workspace_id}/members") in walk.ops  # it sees routes
    return walk


async def key_of(client: httpx.AsyncClient, person: Person, **body: Any) -> dict[str, str]:
    response = await client.post("/api/keys", headers=person.headers, json={"name": "k", **body})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


async def test_every_route_refuses_strangers_and_other_workspaces(
    app_client: httpx.AsyncClient, alice: Person, bob: Person, tmp_path: Path
):
    targets = await seed(app_client, alice, alice.workspace_id, tmp_path)
    walk = await walk_of(app_client, targets)
    hidden = {name: value for name, value in targets.items() if name != "user_id"}

    problems = []
    for method, path in walk.ops:
        if (method, path) in PUBLIC:
            continue
        stranger = await walk.call(method, path, {})
        if stranger.status_code != 401:
            problems.append(f"{method} {path}: stranger got {stranger.status_code}")
        outsider = await walk.call(method, path, bob.headers)
        if (method, path) in SELF_SERVICE:
            if leaked := walk.leaked(outsider, hidden):
                problems.append(f"{method} {path}: outsider saw {leaked}")
            if walk.takes_workspace_query(method, path) and outsider.status_code not in REFUSED:
                problems.append(f"{method} {path}?workspace_id=: got {outsider.status_code}")
        elif outsider.status_code not in REFUSED:
            problems.append(f"{method} {path}: outsider got {outsider.status_code}")
    assert not problems, "\n".join(problems)
    # Alice's things are untouched by all that.
    still = await app_client.get(
        f"/api/workspaces/{alice.workspace_id}/members", headers=alice.headers
    )
    assert [m["email"] for m in still.json()] == [alice.email]


async def test_every_route_refuses_a_key_bound_to_another_workspace(
    app_client: httpx.AsyncClient, alice: Person, bob: Person, tmp_path: Path
):
    """Alice owns workspaces A and B and administers the installation; her key bound to A,
    with every scope, must reach nothing of B's and nothing of the installation's."""
    second = await app_client.post("/api/workspaces", headers=alice.headers, json={"name": "B"})
    assert second.status_code == 201, second.text
    targets = await seed(app_client, alice, second.json()["id"], tmp_path)
    targets["user_id"] = bob.user_id  # an account only installation administrators reach
    unbound = await app_client.post(
        "/api/keys", headers=alice.headers, json={"name": "unbound", "scopes": ["admin"]}
    )
    assert unbound.status_code == 201, unbound.text
    hidden = {name: value for name, value in targets.items() if name != "user_id"}
    hidden["unbound_key_id"] = unbound.json()["id"]
    bound = await key_of(
        app_client, alice, scopes=["admin", "gateway"], workspace_id=alice.workspace_id
    )
    walk = await walk_of(app_client, targets)

    problems = []
    for method, path in walk.ops:
        if (method, path) in PUBLIC:
            continue
        response = await walk.call(method, path, bound)
        if path.startswith(INSTANCE_ADMIN_PREFIXES):
            if response.status_code != 403:
                problems.append(f"{method} {path}: bound key got {response.status_code}")
        elif (method, path) in SELF_SERVICE:
            if leaked := walk.leaked(response, hidden):
                problems.append(f"{method} {path}: bound key saw {leaked}")
            if walk.takes_workspace_query(method, path) and response.status_code not in REFUSED:
                problems.append(f"{method} {path}?workspace_id=B: got {response.status_code}")
        elif response.status_code not in REFUSED:
            problems.append(f"{method} {path}: bound key got {response.status_code}")
    assert not problems, "\n".join(problems)
    # B's things and the installation's are untouched.
    members = await app_client.get(
        f"/api/workspaces/{targets['workspace_id']}/members", headers=alice.headers
    )
    assert [m["email"] for m in members.json()] == [alice.email]
    listed = await app_client.get("/api/keys", headers=alice.headers)
    assert all(k["revoked_at"] is None for k in listed.json())
    users = await app_client.get("/api/users", headers=alice.headers)
    assert bob.email in {u["email"] for u in users.json()}


async def test_a_bound_key_of_an_installation_admin_has_no_installation_powers(
    app_client: httpx.AsyncClient, alice: Person, tmp_path: Path
):
    """Indexing any server directory is for installation administrators; a key bound to
    one workspace acts as an ordinary member of it, whoever owns the key."""
    folder = tmp_path / "server-dir"
    folder.mkdir()
    bound = await key_of(app_client, alice, scopes=["admin"], workspace_id=alice.workspace_id)
    body = {"name": "dir", "source": "path", "location": str(folder), "index": False}
    refused = await app_client.post("/api/repos", headers=bound, json=body)
    assert refused.status_code == 422, refused.text
    assert "installation administrators" in refused.json()["error"]["message"]
    file_url = {**body, "source": "git", "location": f"file://{folder}"}
    refused = await app_client.post("/api/repos", headers=bound, json=file_url)
    assert refused.status_code == 422, refused.text
    unbound = await key_of(app_client, alice, scopes=["admin"])
    allowed = await app_client.post("/api/repos", headers=unbound, json=body)
    assert allowed.status_code == 201, allowed.text


@pytest.mark.parametrize("who", ["owner", "admin"])
async def test_every_route_refuses_a_key_without_the_scope_it_needs(
    app_client: httpx.AsyncClient, alice: Person, tmp_path: Path, who: str
):
    """Keys of the workspace's owner (also the installation's administrator) and of one of
    its admins, one key per scope: `read` sends no changes, `write` no admin changes,
    `gateway` reaches nothing under /api, and only `gateway` reaches the model APIs."""
    targets = await seed(app_client, alice, alice.workspace_id, tmp_path)
    person = alice
    if who == "admin":
        person = await make_person(app_client, "carol@example.org")
        added = await app_client.post(
            f"/api/workspaces/{alice.workspace_id}/members",
            headers=alice.headers,
            json={"email": person.email, "role": "admin"},
        )
        assert added.status_code == 201, added.text
    scoped = {scope: await key_of(app_client, person, scopes=[scope]) for scope in SCOPES}
    walk = await walk_of(app_client, targets)

    problems = []
    for method, path in walk.ops:
        if (method, path) in PUBLIC:
            continue
        for scope in refusing_scopes(method, path):
            response = await walk.call(method, path, scoped[scope])
            if response.status_code not in REFUSED:
                problems.append(f"{method} {path}: `{scope}` key got {response.status_code}")
    assert not problems, "\n".join(problems)
    # What the scopes do allow still works.
    models = await app_client.get("/v1/models", headers=scoped["gateway"])
    assert models.status_code == 200, models.text
    members = f"/api/workspaces/{alice.workspace_id}/members"
    assert (await app_client.get(members, headers=scoped["read"])).status_code == 200
    listed = await app_client.get(members, headers=alice.headers)
    assert {m["email"] for m in listed.json()} == {alice.email, person.email}


SCOPES = ("read", "write", "admin", "gateway")


def refusing_scopes(method: str, path: str) -> list[str]:
    """The scopes whose keys `method path` must refuse."""
    if path.startswith("/v1/"):
        return ["read", "write", "admin"]
    refused = ["gateway"]
    if method != "GET" and (method, path) not in READ_ONLY_WRITES:
        refused.append("read")
        if ADMIN_CHANGES.search(path):
            refused.append("write")
    return refused


def test_the_scope_rules_name_real_routes():
    """The tables above follow the routes: each entry names one that exists."""
    from hexahub.app import create_app
    from tests.conftest import make_settings

    schema = create_app(make_settings(Path("."))).openapi()
    ops = set(operations(schema))
    assert not (PUBLIC | SELF_SERVICE | READ_ONLY_WRITES) - ops
    admin_changes = {op for op in ops if op[0] != "GET" and ADMIN_CHANGES.search(op[1])}
    assert ("POST", "/api/workspaces/{workspace_id}/members") in admin_changes
    assert ("PUT", "/api/workspaces/{workspace_id}/secrets/data/{path}") not in admin_changes
    assert ("POST", "/api/workspaces/{workspace_id}/leave") not in admin_changes


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unknown_api_paths_are_404_not_500(app_client: httpx.AsyncClient, method: str):
    response = await app_client.request(method, "/api/does-not-exist")
    assert response.status_code in (404, 405)
