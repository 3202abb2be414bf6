"""Prompt templates: {{variables}}, rendering, names unique per workspace, and who may
read, create, change and delete them."""

from __future__ import annotations

import httpx
import pytest

from hexahub.chat import templates
from hexahub.core.errors import ValidationFailed
from hexahub.identity.models import Role
from tests.chat.conftest import join
from tests.identity.conftest import Person, make_person

BODY = "Review {{ language }} code for {{topic}}. Again: {{language}}."


def test_variables_and_rendering():
    assert templates.template_variables(BODY) == ["language", "topic"]
    assert templates.template_variables("no {{ }} or {{1x}} here") == []
    text = templates.render_template(BODY, {"language": "Go", "topic": "{{language}}"})
    # A value is inserted as it is, never expanded again.
    assert text == "Review Go code for {{language}}. Again: Go."
    with pytest.raises(ValidationFailed) as missing:
        templates.render_template(BODY, {"language": "Go"})
    assert "topic" in missing.value.message


async def test_template_lifecycle(app_client: httpx.AsyncClient, alice: Person):
    created = await app_client.post(
        "/api/templates",
        headers=alice.headers,
        json={"name": "Code review", "body": BODY, "description": "for PRs"},
    )
    assert created.status_code == 201, created.text
    template = created.json()
    assert template["variables"] == ["language", "topic"]
    assert template["workspace_id"] == alice.workspace_id
    tid = template["id"]

    duplicate = await app_client.post(
        "/api/templates", headers=alice.headers, json={"name": "Code review", "body": "x"}
    )
    assert duplicate.status_code == 409
    empty = await app_client.post(
        "/api/templates", headers=alice.headers, json={"name": "Empty", "body": "  "}
    )
    assert empty.status_code == 422

    rendered = await app_client.post(
        f"/api/templates/{tid}/render",
        headers=alice.headers,
        json={"variables": {"language": "Python", "topic": "races"}},
    )
    assert rendered.status_code == 200
    assert rendered.json()["text"] == "Review Python code for races. Again: Python."
    missing = await app_client.post(
        f"/api/templates/{tid}/render", headers=alice.headers, json={"variables": {}}
    )
    assert missing.status_code == 422
    assert "language" in missing.json()["error"]["message"]
    assert missing.json()["error"]["details"] == {"missing": ["language", "topic"]}

    changed = await app_client.patch(
        f"/api/templates/{tid}", headers=alice.headers, json={"body": "Summarise {{text}}"}
    )
    assert changed.status_code == 200 and changed.json()["variables"] == ["text"]
    assert changed.json()["name"] == "Code review"
    listed = await app_client.get("/api/templates", headers=alice.headers)
    assert [t["name"] for t in listed.json()] == ["Code review"]

    deleted = await app_client.delete(f"/api/templates/{tid}", headers=alice.headers)
    assert deleted.status_code == 204
    assert (await app_client.get(f"/api/templates/{tid}", headers=alice.headers)).status_code == 404

    events = await app_client.get(
        f"/api/workspaces/{alice.workspace_id}/audit",
        params={"action": "template."},
        headers=alice.headers,
    )
    assert {e["action"] for e in events.json()} == {
        "template.created",
        "template.updated",
        "template.deleted",
    }


async def test_who_may_do_what_with_templates(
    app_client: httpx.AsyncClient, alice: Person, bob: Person
):
    carol = await make_person(app_client, "carol@example.org")
    await join(app_client, carol, alice.workspace_id, Role.viewer)
    dave = await make_person(app_client, "dave@example.org")
    await join(app_client, dave, alice.workspace_id, Role.member)
    erin = await make_person(app_client, "erin@example.org")
    await join(app_client, erin, alice.workspace_id, Role.member)

    made = await app_client.post(
        "/api/templates",
        headers=dave.headers,
        json={"workspace_id": alice.workspace_id, "name": "Dave's", "body": "Hi {{name}}"},
    )
    assert made.status_code == 201
    tid = made.json()["id"]

    # Everyone in the workspace reads and renders it.
    for reader in (alice, carol, erin):
        seen = await app_client.get(f"/api/templates/{tid}", headers=reader.headers)
        assert seen.status_code == 200
        rendered = await app_client.post(
            f"/api/templates/{tid}/render",
            headers=reader.headers,
            json={"variables": {"name": "x"}},
        )
        assert rendered.json()["text"] == "Hi x"
    # A viewer creates nothing; another member changes nothing of Dave's.
    refused = await app_client.post(
        "/api/templates",
        headers=carol.headers,
        json={"workspace_id": alice.workspace_id, "name": "Carol's", "body": "b"},
    )
    assert refused.status_code == 403
    for person in (carol, erin):
        patch = await app_client.patch(
            f"/api/templates/{tid}", headers=person.headers, json={"name": "taken over"}
        )
        assert patch.status_code == 403
        delete = await app_client.delete(f"/api/templates/{tid}", headers=person.headers)
        assert delete.status_code == 403
    # Strangers learn nothing.
    assert (await app_client.get(f"/api/templates/{tid}", headers=bob.headers)).status_code == 404
    listed = await app_client.get(
        "/api/templates", params={"workspace_id": alice.workspace_id}, headers=bob.headers
    )
    assert listed.status_code == 404
    # The creator and the workspace's admins may.
    renamed = await app_client.patch(
        f"/api/templates/{tid}", headers=dave.headers, json={"name": "Greeting"}
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "Greeting"
    removed = await app_client.delete(f"/api/templates/{tid}", headers=alice.headers)
    assert removed.status_code == 204
