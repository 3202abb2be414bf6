"""Conversations over the API: create, list (pinned first, search), change, share,
delete, export, and who may do what."""

from __future__ import annotations

from pathlib import Path

import httpx

from hexahub.identity.models import Role
from tests.chat.conftest import MODEL, join, new_conversation
from tests.chat.test_repo_scope import add_repo
from tests.identity.conftest import Person, make_person


async def send(
    client: httpx.AsyncClient, who: Person | dict[str, str], conversation_id: str, text: str
):
    headers = who if isinstance(who, dict) else who.headers
    return await client.post(
        f"/api/conversations/{conversation_id}/messages", headers=headers, json={"content": text}
    )


async def test_create_defaults_to_the_only_workspace_and_lists_it(
    app_client: httpx.AsyncClient, alice: Person
):
    response = await app_client.post(
        "/api/conversations", headers=alice.headers, json={"title": "First", "model": MODEL}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["workspace_id"] == alice.workspace_id
    assert created["title"] == "First" and created["model"] == MODEL
    assert created["pinned"] is False and created["shared"] is False

    listed = await app_client.get("/api/conversations", headers=alice.headers)
    assert listed.status_code == 200
    body = listed.json()
    assert body["total"] == 1
    assert body["items"][0]["id"] == created["id"]
    assert body["items"][0]["mine"] is True
    assert body["items"][0]["owner_email"] == alice.email


async def test_bad_input_is_refused_and_changes_nothing(
    app_client: httpx.AsyncClient, alice: Person
):
    unknown = await app_client.post(
        "/api/conversations", headers=alice.headers, json={"model": "no-such-model"}
    )
    assert unknown.status_code == 422
    assert "no-such-model" in unknown.json()["error"]["message"]

    conversation = await new_conversation(app_client, alice)
    cid = conversation["id"]
    empty = await send(app_client, alice, cid, "   ")
    assert empty.status_code == 422
    assert "empty" in empty.json()["error"]["message"]
    too_long = await send(app_client, alice, cid, "x" * 100_001)
    assert too_long.status_code == 422
    bad_model = await app_client.post(
        f"/api/conversations/{cid}/messages",
        headers=alice.headers,
        json={"content": "hi", "model": "nope-model"},
    )
    assert bad_model.status_code == 422
    assert "nope-model" in bad_model.json()["error"]["message"]
    patch = await app_client.patch(
        f"/api/conversations/{cid}", headers=alice.headers, json={"model": "nope-model"}
    )
    assert patch.status_code == 422

    detail = (await app_client.get(f"/api/conversations/{cid}", headers=alice.headers)).json()
    assert detail["messages"] == []
    assert detail["model"] == MODEL
    listed = (await app_client.get("/api/conversations", headers=alice.headers)).json()
    assert listed["total"] == 1


async def test_pinned_first_then_most_recent(app_client: httpx.AsyncClient, alice: Person):
    first = await new_conversation(app_client, alice, title="one")
    second = await new_conversation(app_client, alice, title="two")
    third = await new_conversation(app_client, alice, title="three")
    pinned = await app_client.patch(
        f"/api/conversations/{first['id']}", headers=alice.headers, json={"pinned": True}
    )
    assert pinned.status_code == 200 and pinned.json()["pinned"] is True
    # Activity makes a conversation the most recent.
    answered = await send(app_client, alice, second["id"], "hello there")
    assert answered.status_code == 200, answered.text

    listed = (await app_client.get("/api/conversations", headers=alice.headers)).json()
    assert [c["title"] for c in listed["items"]] == ["one", "two", "three"]

    page = (
        await app_client.get("/api/conversations?limit=1&offset=1", headers=alice.headers)
    ).json()
    assert page["total"] == 3 and [c["title"] for c in page["items"]] == ["two"]
    assert third["id"] not in [c["id"] for c in page["items"]]


async def test_search_matches_titles_and_message_text(app_client: httpx.AsyncClient, alice: Person):
    by_title = await new_conversation(app_client, alice, title="Kubernetes upgrade notes")
    by_text = await new_conversation(app_client, alice, title="misc")
    await new_conversation(app_client, alice, title="unrelated")
    answered = await send(app_client, alice, by_text["id"], "how do I rotate the KUBERNETES certs")
    assert answered.status_code == 200, answered.text

    found = (
        await app_client.get(
            "/api/conversations", params={"q": "kubernetes"}, headers=alice.headers
        )
    ).json()
    assert {c["id"] for c in found["items"]} == {by_title["id"], by_text["id"]}
    assert found["total"] == 2
    # LIKE wildcards are searched for as themselves.
    none = (
        await app_client.get("/api/conversations", params={"q": "%"}, headers=alice.headers)
    ).json()
    assert none["total"] == 0


async def test_the_first_message_names_an_untitled_conversation(
    app_client: httpx.AsyncClient, alice: Person
):
    conversation = await new_conversation(app_client, alice)
    assert conversation["title"] == ""
    answered = await send(app_client, alice, conversation["id"], "Why is the sky blue?")
    assert answered.status_code == 200
    detail = await app_client.get(f"/api/conversations/{conversation['id']}", headers=alice.headers)
    assert detail.json()["title"] == "Why is the sky blue?"


async def test_patch_changes_settings(app_client: httpx.AsyncClient, alice: Person, tmp_path: Path):
    r1 = await add_repo(app_client, alice, tmp_path, "r1")
    r2 = await add_repo(app_client, alice, tmp_path, "r2")
    conversation = await new_conversation(app_client, alice)
    response = await app_client.patch(
        f"/api/conversations/{conversation['id']}",
        headers=alice.headers,
        json={
            "title": "Renamed",
            "system_prompt": "Answer in French.",
            "use_repo_context": True,
            "repo_ids": [r1, r2, r1],
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["title"] == "Renamed" and body["system_prompt"] == "Answer in French."
    assert body["use_repo_context"] is True and body["repo_ids"] == [r1, r2]
    cleared = await app_client.patch(
        f"/api/conversations/{conversation['id']}", headers=alice.headers, json={"repo_ids": None}
    )
    assert cleared.json()["repo_ids"] is None and cleared.json()["title"] == "Renamed"
    unknown_field = await app_client.patch(
        f"/api/conversations/{conversation['id']}", headers=alice.headers, json={"colour": "red"}
    )
    assert unknown_field.status_code == 422


async def test_strangers_get_404_and_unshared_stays_private(
    app_client: httpx.AsyncClient, alice: Person, bob: Person
):
    conversation = await new_conversation(app_client, alice, title="private")
    cid = conversation["id"]
    await send(app_client, alice, cid, "secret plans")
    # Bob has no role in alice's workspace: everything is a 404.
    for method, path in [
        ("GET", f"/api/conversations/{cid}"),
        ("PATCH", f"/api/conversations/{cid}"),
        ("DELETE", f"/api/conversations/{cid}"),
        ("GET", f"/api/conversations/{cid}/export"),
        ("POST", f"/api/conversations/{cid}/messages"),
    ]:
        body = {"content": "x"} if method in ("POST", "PATCH") else None
        response = await app_client.request(method, path, headers=bob.headers, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert "secret" not in response.text
    listed = await app_client.get(
        "/api/conversations", params={"workspace_id": alice.workspace_id}, headers=bob.headers
    )
    assert listed.status_code == 404

    # Another member of the workspace does not see an unshared conversation either.
    dave = await make_person(app_client, "dave@example.org")
    await join(app_client, dave, alice.workspace_id, Role.member)
    hidden = await app_client.get(f"/api/conversations/{cid}", headers=dave.headers)
    assert hidden.status_code == 404
    theirs = await app_client.get(
        "/api/conversations",
        params={"workspace_id": alice.workspace_id, "q": "secret"},
        headers=dave.headers,
    )
    assert theirs.status_code == 200 and theirs.json()["total"] == 0


async def test_shared_is_read_only_for_the_workspace(app_client: httpx.AsyncClient, alice: Person):
    conversation = await new_conversation(app_client, alice, title="shared one")
    cid = conversation["id"]
    await send(app_client, alice, cid, "hello team")
    shared = await app_client.patch(
        f"/api/conversations/{cid}", headers=alice.headers, json={"shared": True}
    )
    assert shared.status_code == 200 and shared.json()["shared"] is True

    carol = await make_person(app_client, "carol@example.org")
    await join(app_client, carol, alice.workspace_id, Role.viewer)
    dave = await make_person(app_client, "dave@example.org")
    await join(app_client, dave, alice.workspace_id, Role.member)

    for reader in (carol, dave):
        seen = await app_client.get(f"/api/conversations/{cid}", headers=reader.headers)
        assert seen.status_code == 200
        body = seen.json()
        assert body["messages"][0]["content"] == "hello team"
        assert body["can_change"] is False and body["can_delete"] is False
        listed = await app_client.get(
            "/api/conversations",
            params={"workspace_id": alice.workspace_id},
            headers=reader.headers,
        )
        assert [(c["id"], c["mine"]) for c in listed.json()["items"]] == [(cid, False)]
        exported = await app_client.get(
            f"/api/conversations/{cid}/export?format=json", headers=reader.headers
        )
        assert exported.status_code == 200
        # ... but may change nothing.
        for method, path, body in [
            ("PATCH", f"/api/conversations/{cid}", {"title": "mine now"}),
            ("POST", f"/api/conversations/{cid}/messages", {"content": "let me in"}),
            ("POST", f"/api/conversations/{cid}/regenerate", {}),
            ("DELETE", f"/api/conversations/{cid}", None),
        ]:
            response = await app_client.request(method, path, headers=reader.headers, json=body)
            assert response.status_code == 403, (reader.email, method, path, response.text)

    # A viewer may not start conversations in the workspace.
    refused = await app_client.post(
        "/api/conversations",
        headers=carol.headers,
        json={"workspace_id": alice.workspace_id},
    )
    assert refused.status_code == 403

    detail = (await app_client.get(f"/api/conversations/{cid}", headers=alice.headers)).json()
    assert detail["title"] == "shared one" and len(detail["messages"]) == 2

    # Unsharing takes it away again; both changes are audited.
    await app_client.patch(
        f"/api/conversations/{cid}", headers=alice.headers, json={"shared": False}
    )
    assert (
        await app_client.get(f"/api/conversations/{cid}", headers=dave.headers)
    ).status_code == 404
    events = await app_client.get(
        f"/api/workspaces/{alice.workspace_id}/audit",
        params={"action": "conversation."},
        headers=alice.headers,
    )
    assert events.status_code == 200, events.text
    actions = [e["action"] for e in events.json()]
    assert "conversation.shared" in actions and "conversation.unshared" in actions


async def test_delete_cascades_and_admins_may_delete_shared(
    app_client: httpx.AsyncClient, alice: Person
):
    dave = await make_person(app_client, "dave@example.org")
    await join(app_client, dave, alice.workspace_id, Role.member)
    conversation = await new_conversation(app_client, dave, workspace_id=alice.workspace_id)
    cid = conversation["id"]
    assert (await send(app_client, dave, cid, "one two")).status_code == 200
    await app_client.patch(f"/api/conversations/{cid}", headers=dave.headers, json={"shared": True})

    # Alice owns the workspace: she may delete it, though it is not hers.
    deleted = await app_client.delete(f"/api/conversations/{cid}", headers=alice.headers)
    assert deleted.status_code == 204
    gone = await app_client.get(f"/api/conversations/{cid}", headers=dave.headers)
    assert gone.status_code == 404

    from sqlalchemy import func, select

    from hexahub.chat.models import Message

    runtime = app_client.app.state.runtime  # type: ignore[attr-defined]
    async with runtime.db.sessions() as db:
        left = await db.scalar(
            select(func.count()).select_from(Message).where(Message.conversation_id == cid)
        )
    assert left == 0


async def test_export_markdown_and_json(app_client: httpx.AsyncClient, alice: Person):
    conversation = await new_conversation(
        app_client, alice, title="Export me", system_prompt="Be brief."
    )
    cid = conversation["id"]
    assert (await send(app_client, alice, cid, "hello world")).status_code == 200

    markdown = await app_client.get(f"/api/conversations/{cid}/export", headers=alice.headers)
    assert markdown.status_code == 200
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert 'filename="Export-me.md"' in markdown.headers["content-disposition"]
    text = markdown.text
    assert text.startswith("# Export me\n")
    assert "## System prompt\n\nBe brief." in text
    assert "## You\n\nhello world" in text
    assert f"## Assistant ({MODEL})\n\necho: hello world" in text

    exported = await app_client.get(
        f"/api/conversations/{cid}/export", params={"format": "json"}, headers=alice.headers
    )
    assert exported.status_code == 200
    data = exported.json()
    assert data["conversation"]["title"] == "Export me"
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("user", "hello world"),
        ("assistant", "echo: hello world"),
    ]
    bad = await app_client.get(
        f"/api/conversations/{cid}/export", params={"format": "pdf"}, headers=alice.headers
    )
    assert bad.status_code == 422


async def test_api_keys_need_write_to_change_and_gateway_to_ask(
    app_client: httpx.AsyncClient, alice: Person
):
    conversation = await new_conversation(app_client, alice)
    cid = conversation["id"]

    async def key(scopes: list[str]) -> dict[str, str]:
        made = await app_client.post(
            "/api/keys",
            headers=alice.headers,
            json={"name": "-".join(scopes), "scopes": scopes, "workspace_id": alice.workspace_id},
        )
        assert made.status_code == 201, made.text
        return {"Authorization": f"Bearer {made.json()['key']}"}

    reader = await key(["read"])
    assert (await app_client.get(f"/api/conversations/{cid}", headers=reader)).status_code == 200
    renamed = await app_client.patch(
        f"/api/conversations/{cid}", headers=reader, json={"title": "x"}
    )
    assert renamed.status_code == 403

    writer = await key(["write"])
    no_gateway = await send(app_client, writer, cid, "hello")
    assert no_gateway.status_code == 403
    assert "gateway" in no_gateway.json()["error"]["message"]
    assert (await app_client.get(f"/api/conversations/{cid}", headers=writer)).json()[
        "messages"
    ] == []

    both = await key(["write", "gateway"])
    answered = await send(app_client, both, cid, "hello")
    assert answered.status_code == 200, answered.text
