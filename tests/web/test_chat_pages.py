"""The chat pages: conversations, streamed answers, settings, sharing and templates.

Driven like a browser (session cookie, CSRF field) through the real app on SQLite and
PostgreSQL, with the shipped local model answering. The pages must allow exactly what
/api/conversations and /api/templates allow: strangers get 404, a viewer reads shared
conversations but cannot post, and everything a person or a model wrote is escaped.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hexahub.chat.models import Conversation, Message
from hexahub.identity.models import Role
from hexahub.settings import Settings
from tests.conftest import make_settings
from tests.identity.conftest import make_person
from tests.web.test_identity_pages import (
    Browser,
    add_directly,
    browser_sign_in,
    new_browser,
    runtime_of,
    text_of,
)
from tests.web.test_pages import _INLINE_SCRIPT, _INLINE_STYLE


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # A small context keeps the shipped model's answers short and quick.
    return make_settings(tmp_path, database_url=database_url, local_context_size=512)


@pytest.fixture
async def alice(app_client: httpx.AsyncClient) -> Browser:
    person = await make_person(app_client, "alice@example.org", first=True)
    await browser_sign_in(app_client, person.email)
    return Browser(app_client, person)


@pytest.fixture
async def bob(app_client: httpx.AsyncClient, alice: Browser) -> AsyncIterator[Browser]:
    person = await make_person(app_client, "bob@example.org")
    async with new_browser(app_client, person) as browser:
        yield browser


async def new_conversation(
    browser: Browser, title: str = "", *, shared: bool = False, **fields: object
) -> str:
    """A conversation made through the API (no model call), as the browser's person."""
    created = await browser.client.post(
        "/api/conversations",
        json={"workspace_id": browser.person.workspace_id, "title": title, **fields},
        headers=browser.person.headers,
    )
    assert created.status_code == 201, created.text
    conversation_id: str = created.json()["id"]
    if shared:
        changed = await browser.client.patch(
            f"/api/conversations/{conversation_id}",
            json={"shared": True},
            headers=browser.person.headers,
        )
        assert changed.status_code == 200, changed.text
    return conversation_id


async def add_messages(client: httpx.AsyncClient, conversation_id: str, *texts: str) -> None:
    """Stored messages, user and assistant in turn, without asking a model."""
    async with runtime_of(client).db.sessions() as db:
        for position, text in enumerate(texts):
            db.add(
                Message(
                    conversation_id=conversation_id,
                    position=position,
                    role="user" if position % 2 == 0 else "assistant",
                    content=text,
                    model="" if position % 2 == 0 else "local-chat",
                    prompt_tokens=0 if position % 2 == 0 else 12,
                    completion_tokens=0 if position % 2 == 0 else 34,
                    cost_usd=0.0,
                )
            )
        await db.commit()


async def conversations_in(client: httpx.AsyncClient, workspace_id: str) -> list[Conversation]:
    from sqlalchemy import select

    async with runtime_of(client).db.sessions() as db:
        found = await db.scalars(
            select(Conversation).where(Conversation.workspace_id == workspace_id)
        )
        return list(found.all())


def assert_csp_clean(page: httpx.Response) -> None:
    assert not _INLINE_SCRIPT.search(page.text)
    assert not _INLINE_STYLE.search(page.text)


# --- pages render ------------------------------------------------------------------------


async def test_chat_link_opens_the_workspace_chat(alice: Browser) -> None:
    ws = alice.person.workspace_id
    moved = await alice.get("/chat")
    assert moved.status_code == 303 and moved.headers["location"] == f"/workspaces/{ws}/chat"
    page = await alice.get(f"/workspaces/{ws}/chat")
    assert page.status_code == 200, page.text
    assert_csp_clean(page)
    assert 'href="/chat" aria-current="page"' in page.text
    assert '<h1 id="chat-title">New chat</h1>' in page.text
    assert 'id="composer"' in page.text and f'action="/workspaces/{ws}/chat/new"' in page.text
    assert '<option value="local-chat" selected>local-chat</option>' in page.text
    assert 'aria-live="polite"' in page.text and "Keyboard shortcuts" in page.text
    for control in ("composer-text", "composer-model", "chat-search"):
        assert f'<label for="{control}">' in page.text, control


async def test_a_new_chat_without_javascript_waits_for_the_answer(alice: Browser) -> None:
    ws = alice.person.workspace_id
    await alice.get(f"/workspaces/{ws}/chat")
    sent = await alice.submit(f"/workspaces/{ws}/chat/new", {"content": "Say hello in one word."})
    assert sent.status_code == 303, sent.text
    found = await conversations_in(alice.client, ws)
    assert len(found) == 1
    assert sent.headers["location"] == f"/workspaces/{ws}/chat/{found[0].id}"

    page = await alice.get(sent.headers["location"])
    assert page.status_code == 200
    assert_csp_clean(page)
    assert "Say hello in one word." in page.text
    answer = page.text.split('class="message message-assistant"', 1)[1].split("</li>", 1)[0]
    assert (
        '<span class="message-model"><span class="visually-hidden">Model: </span>local-chat'
        in answer
    )
    assert re.search(r"[1-9][\d,]* tokens \(\d+ in, \d+ out\) · \$0\.0000", answer), answer
    # The sidebar lists it, titled after the first message, and marks it as current.
    assert f'href="/workspaces/{ws}/chat/{found[0].id}" aria-current="page"' in page.text
    assert "Say hello in one word." in page.text.split('id="conversation-list"', 1)[1]
    assert "Regenerate" in answer and 'name="action" value="regenerate"' in answer

    # The dashboard lists it among the recent conversations.
    home = await alice.get("/")
    recent = home.text.split('id="recent-conversations"', 1)[1].split("</section>", 1)[0]
    assert f'href="/workspaces/{ws}/chat/{found[0].id}"' in recent


async def test_the_answer_streams_as_server_sent_events(alice: Browser) -> None:
    ws = alice.person.workspace_id
    conversation_id = await new_conversation(alice, "Streaming")
    await alice.get(f"/workspaces/{ws}/chat/{conversation_id}")
    response = await alice.client.post(
        f"/workspaces/{ws}/chat/{conversation_id}/send",
        data={"csrf_token": alice.client.cookies["hexahub_csrf"], "content": "Count to three."},
        headers={"Accept": "text/event-stream"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        json.loads(line[len("data: ") :])
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    kinds = [event["type"] for event in events]
    assert kinds[0] == "conversation" and kinds[1] == "start" and kinds[-1] == "done"
    assert events[0]["url"] == f"/workspaces/{ws}/chat/{conversation_id}"
    deltas = "".join(event["text"] for event in events if event["type"] == "delta")
    assert deltas and events[-1]["message"]["content"] == deltas
    assert events[-1]["message"]["model"] == "local-chat"

    # Regenerate replaces the answer; it streams the same way.
    again = await alice.client.post(
        f"/workspaces/{ws}/chat/{conversation_id}/send",
        data={"csrf_token": alice.client.cookies["hexahub_csrf"], "action": "regenerate"},
        headers={"Accept": "text/event-stream"},
    )
    assert again.status_code == 200 and '"type":"done"' in again.text
    page = await alice.get(f"/workspaces/{ws}/chat/{conversation_id}")
    assert page.text.count('class="message message-assistant"') == 1


async def test_edit_a_message_and_send_it_again(alice: Browser) -> None:
    ws = alice.person.workspace_id
    conversation_id = await new_conversation(alice, "Edits")
    await add_messages(alice.client, conversation_id, "First question", "First answer")
    base = f"/workspaces/{ws}/chat/{conversation_id}"
    page = await alice.get(base)
    user_id = re.search(
        r'id="message-([0-9a-f-]{36})" data-message-id="[^"]+">\s*<h2 class="visually-hidden">You',
        page.text,
    )
    assert user_id, page.text
    assert f'<label for="edit-{user_id.group(1)}">Edited message</label>' in page.text
    sent = await alice.submit(
        f"{base}/send",
        {"action": "edit", "message_id": user_id.group(1), "content": "Say yes."},
    )
    assert sent.status_code == 303 and sent.headers["location"] == base
    page = await alice.get(base)
    assert "First question" not in page.text and "First answer" not in page.text
    assert "Say yes." in page.text and '<span class="badge badge-muted">edited</span>' in page.text
    assert page.text.count('class="message message-assistant"') == 1

    # Nothing is being written now: stopping says so and changes nothing.
    stop = await alice.client.post(
        f"{base}/stop",
        data={"csrf_token": alice.client.cookies["hexahub_csrf"]},
        headers={"Accept": "application/json"},
    )
    assert stop.status_code == 200 and stop.json() == {"stopped": False}


async def test_an_empty_message_is_refused_and_creates_nothing(alice: Browser) -> None:
    ws = alice.person.workspace_id
    await alice.get(f"/workspaces/{ws}/chat")
    refused = await alice.submit(f"/workspaces/{ws}/chat/new", {"content": "   "})
    assert refused.status_code == 422
    assert "the message is empty" in refused.text
    streamed = await alice.client.post(
        f"/workspaces/{ws}/chat/new",
        data={"csrf_token": alice.client.cookies["hexahub_csrf"], "content": ""},
        headers={"Accept": "text/event-stream"},
    )
    assert streamed.status_code == 422 and streamed.json()["error"]["code"]
    unknown = await alice.submit(
        f"/workspaces/{ws}/chat/new", {"content": "hi", "model": "no-such-model"}
    )
    assert unknown.status_code == 422 and "unknown model" in unknown.text
    assert await conversations_in(alice.client, ws) == []
    no_token = await alice.client.post(f"/workspaces/{ws}/chat/new", data={"content": "hi"})
    assert no_token.status_code == 403 and await conversations_in(alice.client, ws) == []


async def test_settings_pin_share_and_delete(alice: Browser) -> None:
    ws = alice.person.workspace_id
    first = await new_conversation(alice, "First")
    second = await new_conversation(alice, "Second")
    base = f"/workspaces/{ws}/chat/{first}"
    await alice.get(base)

    saved = await alice.submit(
        f"{base}/settings",
        {
            "title": "Renamed",
            "model": "local-chat",
            "system_prompt": "Answer briefly.",
            "use_repo_context": "true",
        },
    )
    assert saved.status_code == 303 and saved.headers["location"] == f"{base}?ok=conversation_saved"
    page = await alice.get(saved.headers["location"])
    assert "Conversation settings saved." in page.text
    assert '<h1 id="chat-title">Renamed</h1>' in page.text
    assert ">Answer briefly.</textarea>" in page.text
    assert (
        'id="settings-context" name="use_repo_context" type="checkbox" value="true" checked'
        in page.text
    )

    # Pinned first in the sidebar, although the other one is newer.
    assert (await alice.submit(f"{base}/pin", {"pinned": "true"})).status_code == 303
    page = await alice.get(f"/workspaces/{ws}/chat/{second}")
    listing = page.text.split('id="conversation-list"', 1)[1]
    assert listing.index(f"/chat/{first}") < listing.index(f"/chat/{second}")
    assert '<span class="tag">Pinned</span>' in listing

    shared = await alice.submit(f"{base}/share", {"shared": "true"})
    assert shared.headers["location"] == f"{base}?ok=conversation_shared"
    assert "Shared read-only with everyone" in (await alice.get(base)).text

    links = await alice.get(base)
    for fmt in ("markdown", "json"):
        assert f'href="/api/conversations/{first}/export?format={fmt}"' in links.text
        export = await alice.get(f"/api/conversations/{first}/export?format={fmt}")
        assert export.status_code == 200 and "Renamed" in export.text

    deleted = await alice.submit(f"{base}/delete")
    assert deleted.headers["location"] == f"/workspaces/{ws}/chat?ok=conversation_deleted"
    assert (await alice.get(base)).status_code == 404
    assert [c.id for c in await conversations_in(alice.client, ws)] == [second]


async def test_search_filters_the_sidebar(alice: Browser) -> None:
    ws = alice.person.workspace_id
    about_dogs = await new_conversation(alice, "Dogs")
    other = await new_conversation(alice, "Cats")
    await add_messages(alice.client, other, "What do parrots eat?", "Seeds and fruit.")
    found = await alice.get(f"/workspaces/{ws}/chat/conversations?q=parrots")
    assert found.status_code == 200
    assert found.text.lstrip().startswith('<nav id="conversation-list"')
    assert f"/chat/{other}" in found.text and f"/chat/{about_dogs}" not in found.text
    assert "1 matching “parrots”" in found.text
    by_title = await alice.get(f"/workspaces/{ws}/chat?q=dog")
    listing = by_title.text.split('id="conversation-list"', 1)[1].split("</nav>", 1)[0]
    assert f"/chat/{about_dogs}" in listing and f"/chat/{other}" not in listing
    assert 'hx-get="/workspaces/' + ws + '/chat/conversations"' in by_title.text


# --- who may do what ------------------------------------------------------------------------


async def test_strangers_get_not_found(
    app_client: httpx.AsyncClient, alice: Browser, bob: Browser
) -> None:
    ws = alice.person.workspace_id
    conversation_id = await new_conversation(alice, "Private")
    for path in (
        f"/workspaces/{ws}/chat",
        f"/workspaces/{ws}/chat/{conversation_id}",
        f"/workspaces/{ws}/chat/conversations",
        f"/workspaces/{ws}/templates",
        f"/?workspace={ws}",
    ):
        page = await bob.get(path)
        assert page.status_code == 404, path
        assert "Private" not in page.text
    # Bob's own workspace does not open Alice's conversation either.
    own = bob.person.workspace_id
    assert (await bob.get(f"/workspaces/{own}/chat/{conversation_id}")).status_code == 404
    await bob.get(f"/workspaces/{own}/chat")
    send = await bob.submit(f"/workspaces/{own}/chat/{conversation_id}/send", {"content": "hi"})
    assert send.status_code == 404
    delete = await bob.submit(f"/workspaces/{ws}/chat/{conversation_id}/delete")
    assert delete.status_code == 404
    assert len(await conversations_in(app_client, ws)) == 1

    app_client.cookies.clear()
    signed_out = await app_client.get(f"/workspaces/{ws}/chat/{conversation_id}")
    assert signed_out.status_code == 303 and signed_out.headers["location"].startswith("/login")


async def test_a_viewer_reads_shared_conversations_but_cannot_post(
    app_client: httpx.AsyncClient, alice: Browser, bob: Browser
) -> None:
    ws = alice.person.workspace_id
    await add_directly(app_client, ws, bob.person, Role.viewer)
    private = await new_conversation(alice, "Not shared")
    shared = await new_conversation(alice, "Team notes", shared=True)
    await add_messages(app_client, shared, "Question?", "An answer.")

    listing = await bob.get(f"/workspaces/{ws}/chat")
    assert listing.status_code == 200
    assert f"/chat/{shared}" in listing.text and f"/chat/{private}" not in listing.text
    assert "Shared by alice@example.org" in listing.text
    assert 'id="composer"' not in listing.text and "can read shared conversations" in listing.text
    assert (await bob.get(f"/workspaces/{ws}/chat/{private}")).status_code == 404

    view = await bob.get(f"/workspaces/{ws}/chat/{shared}")
    assert view.status_code == 200
    assert "Shared by alice@example.org" in view.text and "An answer." in view.text
    assert 'id="composer"' not in view.text and "/settings" not in view.text
    assert "Regenerate" not in view.text and 'class="message-edit"' not in view.text

    for action, data in (
        ("send", {"content": "mine now"}),
        ("settings", {"title": "Taken"}),
        ("pin", {"pinned": "true"}),
        ("share", {"shared": ""}),
        ("delete", {}),
        ("stop", {}),
    ):
        refused = await bob.submit(f"/workspaces/{ws}/chat/{shared}/{action}", data)
        assert refused.status_code == 403, action
    started = await bob.submit(f"/workspaces/{ws}/chat/new", {"content": "hello"})
    assert started.status_code == 403
    template = await bob.submit(f"/workspaces/{ws}/templates", {"name": "x", "body": "y"})
    assert template.status_code == 403
    assert len(await conversations_in(app_client, ws)) == 2
    async with runtime_of(app_client).db.sessions() as db:
        still = await db.get(Conversation, shared)
        assert still is not None and still.title == "Team notes" and still.shared


# --- escaping -------------------------------------------------------------------------------


async def test_what_people_and_models_write_is_escaped(alice: Browser) -> None:
    ws = alice.person.workspace_id
    evil = '<img src=x onerror="alert(1)">'
    conversation_id = await new_conversation(alice, evil, system_prompt=evil)
    await add_messages(
        alice.client,
        conversation_id,
        evil,
        f"Here: {evil}\n\n```python\nprint('<b>hi</b>')\n```\n\n[link](javascript:alert(1))",
    )
    page = await alice.get(f"/workspaces/{ws}/chat/{conversation_id}")
    assert page.status_code == 200
    # Shown as text: no element, no attribute, no link (the escaped text itself still reads
    # " onerror=", so the inline-handler check of the other pages does not apply here).
    assert "<img src=x" not in page.text and 'href="javascript:' not in page.text
    assert not _INLINE_SCRIPT.search(page.text)
    assert "&lt;img src=x onerror=" in page.text
    assert evil in text_of(page)
    # The answer is rendered Markdown: a highlighted code block the copy button attaches to.
    answer = page.text.split('class="message message-assistant"', 1)[1].split("</li>", 1)[0]
    assert '<div class="codeblock" data-lang="python">' in answer
    assert "12 in, 34 out" in answer


# --- templates ------------------------------------------------------------------------------


async def test_templates_are_created_edited_used_and_deleted(alice: Browser) -> None:
    ws = alice.person.workspace_id
    page = await alice.get(f"/workspaces/{ws}/templates")
    assert page.status_code == 200 and "No templates yet." in page.text
    assert_csp_clean(page)
    body = "Review this {{language}} code: {{code}} <script>"
    created = await alice.submit(
        f"/workspaces/{ws}/templates", {"name": "Review", "description": "A review", "body": body}
    )
    assert created.status_code == 303
    assert created.headers["location"] == f"/workspaces/{ws}/templates?ok=template_created"
    listing = await alice.get(created.headers["location"])
    assert "Template created." in listing.text
    assert '<span class="chip">language</span><span class="chip">code</span>' in listing.text
    assert "&lt;script&gt;" in listing.text and "<script>" not in listing.text.split("<body>", 1)[1]

    duplicate = await alice.submit(f"/workspaces/{ws}/templates", {"name": "Review", "body": "x"})
    assert duplicate.status_code == 409 and "already exists" in duplicate.text

    template_id = re.search(r'id="template-([0-9a-f-]+)"', listing.text)
    assert template_id
    edit_url = f"/workspaces/{ws}/templates/{template_id.group(1)}"
    form = await alice.get(edit_url)
    assert form.status_code == 200 and "Edit “Review”" in text_of(form)
    saved = await alice.submit(edit_url, {"name": "Code review", "description": "", "body": body})
    assert saved.headers["location"] == f"/workspaces/{ws}/templates?ok=template_saved"

    # The composer offers it, its text in a data attribute (escaped) for chat.js.
    chat = await alice.get(f"/workspaces/{ws}/chat")
    option = re.search(r'<option value="[^"]+" data-body="([^"]*)">Code review</option>', chat.text)
    assert option and option.group(1) == ("Review this {{language}} code: {{code}} &lt;script&gt;")

    deleted = await alice.submit(f"{edit_url}/delete")
    assert deleted.headers["location"] == f"/workspaces/{ws}/templates?ok=template_deleted"
    assert "No templates yet." in (await alice.get(f"/workspaces/{ws}/templates")).text


# --- models, a refused first message, repository context ----------------------------------


async def add_remote_models(browser: Browser) -> None:
    """A cloud-like provider (not local) with a chat model `remote-chat` and a model it
    declares an embedding model, `remote-vectors` (installation admin only)."""
    headers = browser.person.headers
    created = await browser.client.post(
        "/api/gateway/providers",
        headers=headers,
        json={
            "name": "remote",
            "kind": "openai_compatible",
            "base_url": "http://127.0.0.1:9/v1",
            "local": False,
            "settings": {"embedding_models": ["vectors-large"]},
        },
    )
    assert created.status_code == 201, created.text
    for name, upstream in (("remote-chat", "chat-large"), ("remote-vectors", "vectors-large")):
        model = await browser.client.post(
            "/api/gateway/models",
            headers=headers,
            json={"name": name, "deployments": [{"provider": "remote", "model": upstream}]},
        )
        assert model.status_code == 201, model.text


def options_of(page: httpx.Response, select_id: str) -> list[str]:
    found = page.text.split(f'<select id="{select_id}"', 1)[1].split("</select>", 1)[0]
    return re.findall(r'<option value="([^"]*)"', found)


async def test_the_model_picker_offers_chat_models_only(alice: Browser) -> None:
    ws = alice.person.workspace_id
    await add_remote_models(alice)
    page = await alice.get(f"/workspaces/{ws}/chat")
    offered = options_of(page, "composer-model")
    assert "local-chat" in offered and "remote-chat" in offered
    assert "local-embed" not in offered and "remote-vectors" not in offered
    conversation_id = await new_conversation(alice, "Models")
    settings = await alice.get(f"/workspaces/{ws}/chat/{conversation_id}")
    assert options_of(settings, "settings-model") == ["", *sorted(offered)]

    refused = await alice.submit(
        f"/workspaces/{ws}/chat/{conversation_id}/settings", {"model": "remote-vectors"}
    )
    assert refused.status_code == 422 and "is an embedding model" in refused.text


async def test_a_refused_first_message_leaves_no_conversation(
    app_client: httpx.AsyncClient, alice: Browser
) -> None:
    ws = alice.person.workspace_id
    await add_remote_models(alice)
    policy = await app_client.put(
        f"/api/workspaces/{ws}/gateway-policy",
        headers=alice.person.headers,
        json={"local_only": True},
    )
    assert policy.status_code == 200, policy.text
    await alice.get(f"/workspaces/{ws}/chat")
    # Local models only: the cloud-like model is refused, with the message kept as a draft.
    refused = await alice.submit(
        f"/workspaces/{ws}/chat/new", {"content": "Keep me", "model": "remote-chat"}
    )
    assert refused.status_code in (403, 422), refused.text
    assert ">Keep me</textarea>" in refused.text
    streamed = await app_client.post(
        f"/workspaces/{ws}/chat/new",
        data={
            "csrf_token": app_client.cookies["hexahub_csrf"],
            "content": "hi",
            "model": "remote-chat",
        },
        headers={"Accept": "text/event-stream"},
    )
    assert streamed.status_code == refused.status_code and streamed.json()["error"]["message"]
    for form, status, why in (
        ({"content": "hi", "model": "remote-vectors"}, 422, "is an embedding model"),
        ({"content": "hi", "repo_ids": "no-such-repo"}, 404, "no repository"),
    ):
        page = await alice.submit(f"/workspaces/{ws}/chat/new", form)
        assert page.status_code == status and why in page.text, page.text
    assert await conversations_in(app_client, ws) == []


async def add_repository(browser: Browser, root: Path, name: str) -> str:
    folder = root / name
    folder.mkdir()
    (folder / "main.py").write_text("def answer() -> int:\n    return 42\n")
    created = await browser.client.post(
        "/api/repos",
        headers=browser.person.headers,
        json={"name": name, "source": "path", "location": str(folder), "index": False},
    )
    assert created.status_code == 201, created.text
    repo_id: str = created.json()["id"]
    return repo_id


async def test_conversation_settings_choose_its_repositories(
    app_client: httpx.AsyncClient, alice: Browser, tmp_path: Path
) -> None:
    ws = alice.person.workspace_id
    conversation_id = await new_conversation(alice, "Context")
    base = f"/workspaces/{ws}/chat/{conversation_id}"
    empty = await alice.get(base)
    assert (
        "has no repositories yet" in empty.text and f'href="/workspaces/{ws}/repos"' in empty.text
    )

    first = await add_repository(alice, tmp_path, "alpha")
    second = await add_repository(alice, tmp_path, "beta")
    page = await alice.get(base)
    assert_csp_clean(page)
    picker = page.text.split('id="settings-repos"', 1)[1].split("</fieldset>", 1)[0]
    assert "None checked: all of" in picker
    for repo_id, name in ((first, "alpha"), (second, "beta")):
        assert f'<label for="settings-repo-{repo_id}">{name}' in picker
        assert f'value="{repo_id}">' in picker  # not checked: all of them
    new_chat = await alice.get(f"/workspaces/{ws}/chat")
    assert f'id="composer-repo-{first}" name="repo_ids"' in new_chat.text

    async def stored() -> tuple[bool, list[str] | None]:
        async with runtime_of(app_client).db.sessions() as db:
            row = await db.get(Conversation, conversation_id)
            assert row is not None
            return row.use_repo_context, row.repo_ids

    saved = await alice.submit(
        f"{base}/settings", {"title": "Context", "use_repo_context": "true", "repo_ids": [second]}
    )
    assert saved.status_code == 303, saved.text
    assert await stored() == (True, [second])
    page = await alice.get(base)
    assert (
        f'value="{second}" checked>' in page.text and f'value="{first}" checked>' not in page.text
    )

    refused = await alice.submit(
        f"{base}/settings", {"title": "Context", "repo_ids": [first, "not-a-repo"]}
    )
    assert refused.status_code == 404 and "no repository" in refused.text
    assert await stored() == (True, [second])

    # None checked: every repository of the workspace.
    cleared = await alice.submit(
        f"{base}/settings", {"title": "Context", "use_repo_context": "true"}
    )
    assert cleared.status_code == 303
    assert await stored() == (True, None)

    # A new chat keeps the repositories chosen in its options.
    started = await alice.submit(
        f"/workspaces/{ws}/chat/new",
        {"content": "Say yes.", "use_repo_context": "true", "repo_ids": [first]},
    )
    assert started.status_code == 303, started.text
    new_id = started.headers["location"].rsplit("/", 1)[1]
    async with runtime_of(app_client).db.sessions() as db:
        row = await db.get(Conversation, new_id)
        assert row is not None and row.use_repo_context and row.repo_ids == [first]


# --- long conversations and other workspaces' repositories ---------------------------------


LONG_TURN = "The quick brown fox jumps over the lazy dog beside the quiet river bank. " * 8


async def test_a_long_conversation_is_answered_with_a_note_of_what_was_left_out(
    alice: Browser, settings: Settings
) -> None:
    ws = alice.person.workspace_id
    conversation_id = await new_conversation(alice, "Long")
    # Long notes and short answers: a conversation the small model answers briefly.
    turns = [
        f"Note {n}, reply with one word. {LONG_TURN}" if n % 2 == 0 else "Noted." for n in range(40)
    ]
    # Far more than the shipped model's window (this module's HEXAHUB_LOCAL_CONTEXT_SIZE).
    assert sum(len(t) for t in turns) // 4 > 4 * settings.local_context_size
    await add_messages(alice.client, conversation_id, *turns)
    base = f"/workspaces/{ws}/chat/{conversation_id}"
    await alice.get(base)

    # chat.js asks for the answer's events; the last one carries the count.
    streamed = await alice.client.post(
        f"{base}/send",
        data={"csrf_token": alice.client.cookies["hexahub_csrf"], "content": "Say yes."},
        headers={"Accept": "text/event-stream"},
    )
    assert streamed.status_code == 200, streamed.text
    done = [
        json.loads(line[len("data: ") :])
        for line in streamed.text.splitlines()
        if line.startswith("data: ")
    ][-1]
    assert done["type"] == "done", done
    answered = done["message"]
    assert answered["status"] == "complete" and answered["content"]
    assert 0 < answered["left_out"] < len(turns)

    # The page chat.js then loads shows the answer with the note beside it.
    page = await alice.get(base)
    assert_csp_clean(page)
    answer = page.text.split('class="message message-assistant"')[-1].split("</li>", 1)[0]
    assert "The model failed" not in answer and "badge-danger" not in answer, answer
    note = f"{answered['left_out']} earlier messages were not sent to the model"
    assert note in answer
    # Only the answer that was sized down carries the note.
    assert page.text.count("earlier message") == 1


async def test_another_workspaces_repositories_are_not_found(
    app_client: httpx.AsyncClient, alice: Browser, tmp_path: Path
) -> None:
    ws = alice.person.workspace_id
    carol = await make_person(app_client, "carol@example.org", admin=True)
    folder = tmp_path / "theirs"
    folder.mkdir()
    created = await app_client.post(
        "/api/repos",
        headers=carol.headers,
        json={
            "workspace_id": carol.workspace_id,
            "name": "theirs",
            "source": "path",
            "location": str(folder),
            "index": False,
        },
    )
    assert created.status_code == 201, created.text
    theirs = created.json()["id"]
    mine = await add_repository(alice, tmp_path, "mine")

    await alice.get(f"/workspaces/{ws}/chat")
    started = await alice.submit(
        f"/workspaces/{ws}/chat/new", {"content": "hi", "repo_ids": [mine, theirs]}
    )
    assert started.status_code == 404 and "no repository" in started.text
    streamed = await app_client.post(
        f"/workspaces/{ws}/chat/new",
        data={
            "csrf_token": app_client.cookies["hexahub_csrf"],
            "content": "hi",
            "repo_ids": [theirs],
        },
        headers={"Accept": "text/event-stream"},
    )
    assert streamed.status_code == 404 and streamed.json()["error"]["code"] == "not_found"
    assert await conversations_in(app_client, ws) == []

    conversation_id = await new_conversation(alice, "Mine", repo_ids=[mine])
    base = f"/workspaces/{ws}/chat/{conversation_id}"
    refused = await alice.submit(f"{base}/settings", {"title": "Changed", "repo_ids": [theirs]})
    assert refused.status_code == 404 and "no repository" in refused.text
    async with runtime_of(app_client).db.sessions() as db:
        row = await db.get(Conversation, conversation_id)
        assert row is not None and (row.title, row.repo_ids) == ("Mine", [mine])
