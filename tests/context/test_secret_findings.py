"""Secret scanning through the API, on SQLite and PostgreSQL: a repository that committed
credentials is indexed without them (full text, vectors, symbols, the code view, answers
and gateway context all see markers), its findings are listed without values to whoever
may read it, and a workspace admin moves one into the vault.

Embeddings and answers go to the OpenAI stand-in, so the tests read exactly what left
HexaHub for a model."""

# ruff: noqa: F811

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hexahub.app import create_app
from hexahub.context import service
from hexahub.context.scanning import marker
from hexahub.context.types import SearchFilters
from hexahub.identity.models import Role
from tests.conftest import make_settings
from tests.context.helpers import (
    AWS_KEY_ID,
    LEAKY_VALUES,
    PRIVATE_KEY,
    STRIPE_ENV_KEY,
    STRIPE_KEY,
    wait_for_index,
    write_leaky_project,
)
from tests.gateway.standins.fixtures import openai_upstream  # noqa: F401
from tests.gateway.standins.server import StandinServer
from tests.identity.conftest import Person, make_person
from tests.web.test_identity_pages import add_directly

STRIPE_MARKER = marker("Stripe Access Key")
SECRET_PARTS = [*LEAKY_VALUES, STRIPE_KEY[8:30], "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU"]


def no_secret_in(text: str) -> None:
    for value in SECRET_PARTS:
        assert value not in text, f"a credential leaked: ...{value[-6:]}"


@pytest.fixture
async def client(
    tmp_path: Path, database_url: str, openai_upstream: StandinServer
) -> AsyncIterator[httpx.AsyncClient]:
    """HexaHub whose embedding and answer models are the OpenAI stand-in's."""
    models = {
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
            {"name": "gpt-test", "deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]},
            {
                "name": "embed-test",
                "deployments": [{"provider": "openai", "model": "text-embedding-3-small"}],
            },
        ],
    }
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(models))
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        models_file=path,
        context_embedding_model="embed-test",
        context_answer_model="gpt-test",
        gateway_health_interval_seconds=0,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hexahub.test") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> Person:
    return await make_person(client, "alice@example.org", first=True)


async def add_leaky_repo(client: httpx.AsyncClient, owner: Person, root: Path) -> dict[str, Any]:
    body = {"name": "shop", "source": "path", "location": str(root)}
    created = await client.post("/api/repos", json=body, headers=owner.headers)
    assert created.status_code == 201, created.text
    repo = await wait_for_index(client, owner.headers, created.json()["id"])
    assert repo["state"] == "ready", repo
    return repo


async def findings_of(
    client: httpx.AsyncClient, person: Person, repo_id: str, **params: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/api/repos/{repo_id}/findings", params=params, headers=person.headers
    )
    assert response.status_code == 200, response.text
    no_secret_in(response.text)
    return response.json()  # type: ignore[no-any-return]


async def test_credentials_never_reach_the_index_search_or_the_models(
    client: httpx.AsyncClient, owner: Person, tmp_path: Path, openai_upstream: StandinServer
) -> None:
    root = write_leaky_project(tmp_path / "shop")
    repo = await add_leaky_repo(client, owner, root)
    repo_id = repo["id"]
    headers = owner.headers

    # The .env file and the SSH key are skipped, with why.
    files = await client.get(f"/api/repos/{repo_id}/files", headers=headers)
    reasons = {f["path"]: f["skipped"] for f in files.json()}
    assert reasons[".env"] == "secrets file"
    assert reasons["deploy/id_ed25519"] == "secrets file"
    assert reasons["app/payments.py"] is None
    assert (
        await client.get(f"/api/repos/{repo_id}/files/.env", headers=headers)
    ).status_code == 404

    # The store holds markers: in the file's text, its chunks and what gets embedded.
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    store = await service.store_of(runtime)
    content, _ = await store.read_file(repo_id, "app/payments.py") or ("", "")
    assert content.count(STRIPE_MARKER) == 2 and marker("AWS Access Key") in content
    no_secret_in(content)
    chunks = await store.search_text("charge customer", SearchFilters((repo_id,)), 50)
    assert chunks and any(STRIPE_MARKER in hit.text for hit in chunks)
    for hit in chunks:
        no_secret_in(hit.text)
    if store.has_vectors:  # PostgreSQL without pgvector keeps full text only
        to_embed = await store.pending_embeddings(repo_id, "another-model", 1000)
        assert any(STRIPE_MARKER in text for _, text in to_embed)
        no_secret_in("\n".join(text for _, text in to_embed))
        embedded = [r for r in openai_upstream.state.requests if r.path.endswith("/embeddings")]
        assert embedded, "the chunks were embedded by the stand-in"
        assert any(STRIPE_MARKER.encode() in r.raw_body for r in embedded)
        for request in embedded:
            no_secret_in(request.raw_body.decode())

    # Search for the value (words and vectors) finds nothing of it.
    for value in (STRIPE_KEY, AWS_KEY_ID, STRIPE_ENV_KEY):
        for mode in ("text", "hybrid"):
            found = await client.get(
                "/api/search", params={"q": value, "mode": mode}, headers=headers
            )
            assert found.status_code == 200, found.text
            hits = found.json()["hits"]
            no_secret_in(json.dumps(hits))
            if mode == "text":
                assert hits == []  # vectors always return their nearest chunks
            assert all(h["path"] != ".env" for h in hits)
    by_words = await client.get(
        "/api/search", params={"q": "charge customer card", "mode": "text"}, headers=headers
    )
    hit = by_words.json()["hits"][0]
    assert hit["path"] == "app/payments.py" and STRIPE_MARKER in hit["snippet"]

    # Symbols and the code view read the redacted text.
    symbols = await client.get("/api/symbols", params={"name": "charge_customer"}, headers=headers)
    assert STRIPE_MARKER in symbols.json()[0]["signature"]
    no_secret_in(symbols.text)
    code = await client.get(f"/api/repos/{repo_id}/files/app/payments.py", headers=headers)
    assert code.status_code == 200 and STRIPE_MARKER in code.json()["content"]
    no_secret_in(code.text)

    # Ask the codebase: the citations and the prompt the model got hold markers only.
    openai_upstream.state.requests.clear()
    asked = await client.post(
        "/api/ask",
        json={"question": "Which key does charge_customer use for the card?", "max_tokens": 8},
        headers=headers,
    )
    assert asked.status_code == 200, asked.text
    assert "app/payments.py" in {c["path"] for c in asked.json()["citations"]}
    no_secret_in(asked.text)
    chats = [r for r in openai_upstream.state.requests if r.path.endswith("/chat/completions")]
    assert chats and STRIPE_MARKER.encode() in chats[-1].raw_body
    no_secret_in(chats[-1].raw_body.decode())

    # Workspace context added to a gateway request: the same.
    openai_upstream.state.requests.clear()
    question = {"role": "user", "content": "How does charge_customer charge a card?"}
    with_context = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-test", "messages": [question], "max_tokens": 4},
        headers={**headers, "X-HexaHub-Context": "shop"},
    )
    assert with_context.status_code == 200, with_context.text
    assert "app/payments.py" in with_context.headers["x-hexahub-context-citations"]
    chats = [r for r in openai_upstream.state.requests if r.path.endswith("/chat/completions")]
    assert chats and STRIPE_MARKER.encode() in chats[-1].raw_body
    no_secret_in(chats[-1].raw_body.decode())


async def test_findings_are_listed_without_values_to_those_who_may_read_the_repository(
    client: httpx.AsyncClient, owner: Person, tmp_path: Path
) -> None:
    repo = await add_leaky_repo(client, owner, write_leaky_project(tmp_path / "shop"))
    repo_id = repo["id"]
    found = await findings_of(client, owner, repo_id)
    assert [(f["path"], f["line"], f["rule"], f["status"]) for f in found] == [
        (".env", 1, "Stripe Access Key", "open"),
        ("app/payments.py", 3, "Stripe Access Key", "open"),
        ("app/payments.py", 11, "AWS Access Key", "open"),
        ("deploy/id_ed25519", 1, "Private Key", "open"),
    ]
    first = found[0]
    assert first["in_tree"] is True and first["in_history"] is False
    assert first["commit"] is None  # a plain directory: no commit to name
    assert "fingerprint" not in first and "value" not in first
    assert first["first_seen_at"] and first["last_seen_at"]

    # Indexing again (nothing changed) keeps the same findings; a fixed file's go.
    (root := Path(repo["location"]))
    (root / "app" / "payments.py").write_text(
        (root / "app" / "payments.py").read_text().replace(AWS_KEY_ID, "from-the-vault")
    )
    again = await client.post(f"/api/repos/{repo_id}/index", headers=owner.headers)
    assert again.status_code == 202
    await wait_for_index(client, owner.headers, repo_id)
    after = await findings_of(client, owner, repo_id)
    assert {f["id"] for f in after} == {f["id"] for f in found}
    gone = [f for f in after if f["status"] == "gone"]
    assert [(f["rule"], f["in_tree"]) for f in gone] == [("AWS Access Key", False)]
    only_open = await findings_of(client, owner, repo_id, status="open")
    assert len(only_open) == 3
    bad = await client.get(
        f"/api/repos/{repo_id}/findings", params={"status": "fixed"}, headers=owner.headers
    )
    assert bad.status_code == 422

    # A viewer reads them; a stranger learns nothing.
    bob = await make_person(client, "bob@example.org")
    stranger = await client.get(f"/api/repos/{repo_id}/findings", headers=bob.headers)
    assert stranger.status_code == 404
    await add_directly(client, owner.workspace_id, bob, Role.viewer)
    assert len(await findings_of(client, bob, repo_id)) == 4


async def test_an_admin_moves_a_finding_into_the_vault(
    client: httpx.AsyncClient, owner: Person, tmp_path: Path
) -> None:
    repo = await add_leaky_repo(client, owner, write_leaky_project(tmp_path / "shop"))
    repo_id = repo["id"]
    found = {(f["path"], f["rule"]): f for f in await findings_of(client, owner, repo_id)}
    env_finding = found[(".env", "Stripe Access Key")]
    key_finding = found[("deploy/id_ed25519", "Private Key")]
    url = f"/api/repos/{repo_id}/findings/{env_finding['id']}/move-to-vault"

    # Viewers and members may not; the finding stays open and no secret is written.
    bob = await make_person(client, "bob@example.org")
    await add_directly(client, owner.workspace_id, bob, Role.member)
    refused = await client.post(url, json={"vault_path": "shop/stripe"}, headers=bob.headers)
    assert refused.status_code == 403
    bad_path = await client.post(url, json={"vault_path": "../escape"}, headers=owner.headers)
    assert bad_path.status_code == 422 and "vault_path" in bad_path.json()["error"]["message"]
    unknown = await client.post(
        f"/api/repos/{repo_id}/findings/nope/move-to-vault",
        json={"vault_path": "shop/stripe"},
        headers=owner.headers,
    )
    assert unknown.status_code == 404
    assert (await findings_of(client, owner, repo_id, status="open")).__len__() == 4

    moved = await client.post(url, json={"vault_path": "shop/stripe-live"}, headers=owner.headers)
    assert moved.status_code == 200, moved.text
    answer = moved.json()
    no_secret_in(moved.text)
    assert answer["finding"]["status"] == "moved"
    assert answer["finding"]["vault_path"] == "shop/stripe-live"
    assert answer["version"] == 1 and answer["reference"].endswith("/shop/stripe-live#value")
    cleanup = answer["history_cleanup"]
    assert any("filter-repo" in line and ".env" in line for line in cleanup["filter_repo"])
    assert any(line.startswith("bfg --delete-files .env") for line in cleanup["bfg"])
    assert any("Rotate" in step for step in cleanup["steps"])

    # The vault holds the value, read from the file at that moment.
    secret = await client.get(
        f"/api/workspaces/{owner.workspace_id}/secrets/data/shop/stripe-live",
        headers=owner.headers,
    )
    assert secret.status_code == 200, secret.text
    assert secret.json()["data"] == {"value": STRIPE_ENV_KEY}

    listed = {f["id"]: f for f in await findings_of(client, owner, repo_id)}
    assert listed[env_finding["id"]]["status"] == "moved"
    assert listed[env_finding["id"]]["resolved_by"] == owner.email

    # Moving it again, or anything onto an existing secret, is refused and changes nothing.
    again = await client.post(url, json={"vault_path": "shop/other"}, headers=owner.headers)
    assert again.status_code == 409 and "already moved" in again.text
    onto = await client.post(
        f"/api/repos/{repo_id}/findings/{key_finding['id']}/move-to-vault",
        json={"vault_path": "shop/stripe-live"},
        headers=owner.headers,
    )
    assert onto.status_code == 409 and "choose a new path" in onto.text
    still = await client.get(
        f"/api/workspaces/{owner.workspace_id}/secrets/data/shop/stripe-live",
        headers=owner.headers,
    )
    assert still.json()["version"] == 1 and still.json()["data"] == {"value": STRIPE_ENV_KEY}

    # A private key moves whole, under a key name of the admin's choosing.
    whole = await client.post(
        f"/api/repos/{repo_id}/findings/{key_finding['id']}/move-to-vault",
        json={"vault_path": "shop/deploy-key", "key": "private_key"},
        headers=owner.headers,
    )
    assert whole.status_code == 200, whole.text
    stored = await client.get(
        f"/api/workspaces/{owner.workspace_id}/secrets/data/shop/deploy-key",
        headers=owner.headers,
    )
    assert stored.json()["data"] == {"private_key": PRIVATE_KEY.strip()}

    # Audited without the value.
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    from hexahub.identity import audit

    async with runtime.db.sessions() as db:
        events = await audit.query(db, workspace_ids=[owner.workspace_id], limit=100)
    actions = [e.action for e in events]
    assert actions.count("repo.finding_moved") == 2
    assert "secret.written" in actions
    no_secret_in(repr([audit.as_dict(e) for e in events]))


async def test_a_credential_gone_from_the_file_cannot_be_moved(
    client: httpx.AsyncClient, owner: Person, tmp_path: Path
) -> None:
    root = write_leaky_project(tmp_path / "shop")
    repo = await add_leaky_repo(client, owner, root)
    found = await findings_of(client, owner, repo["id"])
    aws = next(f for f in found if f["rule"] == "AWS Access Key")
    (root / "app" / "payments.py").write_text("AWS_ACCESS_KEY_ID = None\n")
    moved = await client.post(
        f"/api/repos/{repo['id']}/findings/{aws['id']}/move-to-vault",
        json={"vault_path": "shop/aws"},
        headers=owner.headers,
    )
    assert moved.status_code == 409 and "no longer holds" in moved.text
    listed = await client.get(
        f"/api/workspaces/{owner.workspace_id}/secrets", headers=owner.headers
    )
    assert listed.status_code == 200 and listed.json() == []
