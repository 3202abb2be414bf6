"""A conversation's repositories are its workspace's: an id of another workspace's
repository, or of none, is refused like any unknown object (404, the API's error shape)
on every path that sets them, and nothing changes."""

from __future__ import annotations

from pathlib import Path

import httpx

from hexahub.chat.models import Conversation
from tests.chat.conftest import MODEL, new_conversation
from tests.identity.conftest import Person, make_person


async def add_repo(client: httpx.AsyncClient, person: Person, root: Path, name: str) -> str:
    folder = root / name
    folder.mkdir()
    (folder / "main.py").write_text("def answer() -> int:\n    return 42\n")
    created = await client.post(
        "/api/repos",
        headers=person.headers,
        json={
            "workspace_id": person.workspace_id,
            "name": name,
            "source": "path",
            "location": str(folder),
            "index": False,
        },
    )
    assert created.status_code == 201, created.text
    repo_id: str = created.json()["id"]
    return repo_id


def assert_not_found(response: httpx.Response, repo_id: str) -> None:
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "not_found" and repo_id in error["message"], error


async def conversation_rows(client: httpx.AsyncClient, workspace_id: str) -> list[Conversation]:
    from sqlalchemy import select

    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    async with runtime.db.sessions() as db:
        found = await db.scalars(
            select(Conversation).where(Conversation.workspace_id == workspace_id)
        )
        return list(found.all())


async def test_create_refuses_repositories_of_other_workspaces_and_unknown_ones(
    app_client: httpx.AsyncClient, alice: Person, tmp_path: Path
) -> None:
    carol = await make_person(app_client, "carol@example.org", admin=True)
    mine = await add_repo(app_client, alice, tmp_path, "mine")
    theirs = await add_repo(app_client, carol, tmp_path, "theirs")
    for repo_ids, refused in (([theirs], theirs), ([mine, "no-such-repo"], "no-such-repo")):
        response = await app_client.post(
            "/api/conversations",
            headers=alice.headers,
            json={"workspace_id": alice.workspace_id, "model": MODEL, "repo_ids": repo_ids},
        )
        assert_not_found(response, refused)
    assert await conversation_rows(app_client, alice.workspace_id) == []

    created = await new_conversation(app_client, alice, repo_ids=[mine, mine])
    assert created["repo_ids"] == [mine]


async def test_update_refuses_them_and_changes_nothing(
    app_client: httpx.AsyncClient, alice: Person, tmp_path: Path
) -> None:
    carol = await make_person(app_client, "carol@example.org", admin=True)
    mine = await add_repo(app_client, alice, tmp_path, "mine")
    theirs = await add_repo(app_client, carol, tmp_path, "theirs")
    conversation = await new_conversation(app_client, alice, title="Before", repo_ids=[mine])
    url = f"/api/conversations/{conversation['id']}"
    for repo_ids, refused in (([mine, theirs], theirs), (["0" * 36], "0" * 36)):
        response = await app_client.patch(
            url,
            headers=alice.headers,
            json={"title": "After", "use_repo_context": True, "repo_ids": repo_ids},
        )
        assert_not_found(response, refused)
    detail = (await app_client.get(url, headers=alice.headers)).json()
    assert (detail["title"], detail["use_repo_context"], detail["repo_ids"]) == (
        "Before",
        False,
        [mine],
    )
    # Carol's own conversation may of course name her repository.
    hers = await new_conversation(app_client, carol, repo_ids=[theirs])
    assert hers["repo_ids"] == [theirs]
