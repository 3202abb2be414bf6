"""Repositories through the API: add, index (incremental), search, symbols, code view,
and the rules around them. Runs on SQLite and PostgreSQL (full text only there unless
the server has pgvector)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.context.helpers import mark_older_format, wait_for_index, write_project
from tests.identity.conftest import Person, make_person


async def add_repo(
    client: httpx.AsyncClient, person: Person, root: Path, name: str = "demo", **extra: object
) -> dict[str, object]:
    body = {"name": name, "source": "path", "location": str(root), **extra}
    response = await client.post("/api/repos", json=body, headers=person.headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_index_a_directory_then_search_it(
    app_client: httpx.AsyncClient, alice: Person, tmp_path: Path
) -> None:
    root = write_project(tmp_path / "project")
    created = await add_repo(app_client, alice, root)
    assert created["state"] == "queued"
    repo = await wait_for_index(app_client, alice.headers, str(created["id"]))
    assert repo["state"] == "ready", repo
    assert repo["chunks"] >= 5 and repo["symbols"] >= 6

    files = (await app_client.get(f"/api/repos/{repo['id']}/files", headers=alice.headers)).json()
    paths = {f["path"]: f["skipped"] for f in files}
    assert "secrets.txt" not in paths and "build/generated.py" not in paths  # .gitignore
    assert not any(p.startswith("node_modules/") for p in paths)
    assert paths["logo.png"] == "binary"
    assert paths["web/app.min.js"] == "minified"
    assert paths["src/billing.py"] is None
    assert repo["files"] == sum(1 for reason in paths.values() if reason is None)
    assert repo["skipped"] == sum(1 for reason in paths.values() if reason is not None)

    # Code-aware full text: words of a camelCase identifier find it.
    found = await app_client.get(
        "/api/search", params={"q": "user name", "mode": "text"}, headers=alice.headers
    )
    assert found.status_code == 200, found.text
    hits = found.json()["hits"]
    assert hits and hits[0]["path"] == "web/session.js"
    first = hits[0]
    assert first["start_line"] == 1 and "getUserName" in first["snippet"]
    assert first["url"].startswith(f"/workspaces/{alice.workspace_id}/repos/{repo['id']}/code/")

    # Filters by language and path glob.
    only_go = await app_client.get(
        "/api/search",
        params={"q": "backoff attempt", "language": "go", "mode": "text"},
        headers=alice.headers,
    )
    assert {h["path"] for h in only_go.json()["hits"]} == {"retry.go"}
    by_glob = await app_client.get(
        "/api/search",
        params={"q": "invoice tax", "path": "web/**", "mode": "text"},
        headers=alice.headers,
    )
    assert by_glob.json()["hits"] == []

    symbols = await app_client.get(
        "/api/symbols", params={"name": "total_with_tax"}, headers=alice.headers
    )
    assert symbols.status_code == 200
    sym = symbols.json()[0]
    assert (sym["path"], sym["kind"], sym["container"]) == (
        "src/billing.py",
        "method",
        "InvoiceCalculator",
    )
    lines = Path(root / "src" / "billing.py").read_text().splitlines()
    assert "def total_with_tax" in lines[sym["start_line"] - 1]

    code = await app_client.get(
        f"/api/repos/{repo['id']}/files/src/billing.py", headers=alice.headers
    )
    assert code.status_code == 200
    assert code.json()["content"] == (root / "src" / "billing.py").read_text()


async def test_reindex_reads_only_what_changed(
    app_client: httpx.AsyncClient, alice: Person, tmp_path: Path
) -> None:
    root = write_project(tmp_path / "project")
    created = await add_repo(app_client, alice, root)
    repo_id = str(created["id"])
    await wait_for_index(app_client, alice.headers, repo_id)

    (root / "retry.go").unlink()
    (root / "src" / "billing.py").write_text(
        (root / "src" / "billing.py").read_text() + "\n\ndef refund_overpayment(amount):\n"
        "    return -amount\n"
    )
    response = await app_client.post(f"/api/repos/{repo_id}/index", headers=alice.headers)
    assert response.status_code == 202, response.text
    repo = await wait_for_index(app_client, alice.headers, repo_id)
    assert repo["state"] == "ready"

    runtime = app_client.app.state.runtime  # type: ignore[attr-defined]
    async with runtime.db.sessions() as db:
        from sqlalchemy import select

        from hexahub.core.queue.models import Task

        task = await db.scalar(
            select(Task)
            .where(Task.name == "context.index")
            .order_by(Task.created_at.desc())
            .limit(1)
        )
        assert task is not None and task.result is not None
        assert task.result["changed"] == 1 and task.result["removed"] == 1

    gone = await app_client.get(
        "/api/search", params={"q": "exponential backoff", "mode": "text"}, headers=alice.headers
    )
    assert all(h["path"] != "retry.go" for h in gone.json()["hits"])
    new = await app_client.get(
        "/api/symbols", params={"name": "refund_overpayment"}, headers=alice.headers
    )
    assert [s["path"] for s in new.json()] == ["src/billing.py"]


async def test_an_index_of_another_format_is_rebuilt_from_the_repositories(
    app_client: httpx.AsyncClient, alice: Person, tmp_path: Path
) -> None:
    from hexahub.context import service

    root = write_project(tmp_path / "project")
    repo_id = str((await add_repo(app_client, alice, root))["id"])
    before = await wait_for_index(app_client, alice.headers, repo_id)
    runtime = app_client.app.state.runtime  # type: ignore[attr-defined]
    store = await service.store_of(runtime)
    await mark_older_format(store)
    await store.close()
    del runtime.services["context.store"]

    # The next use opens the index, finds the old format, starts over and queues every
    # repository, so search comes back without anyone asking.
    reopened = await service.store_of(runtime)
    assert reopened.rebuilt
    repo = await wait_for_index(app_client, alice.headers, repo_id)
    assert repo["state"] == "ready", repo
    assert (repo["files"], repo["chunks"]) == (before["files"], before["chunks"])
    found = await app_client.get(
        "/api/search", params={"q": "user name", "mode": "text"}, headers=alice.headers
    )
    assert found.json()["hits"][0]["path"] == "web/session.js"


async def test_bad_input_is_refused_and_changes_nothing(
    app_client: httpx.AsyncClient, alice: Person, tmp_path: Path
) -> None:
    root = write_project(tmp_path / "project")
    cases = [
        ({"name": "x", "source": "path", "location": "relative/dir"}, 422, "absolute"),
        ({"name": "x", "source": "path", "location": str(tmp_path / "missing")}, 422, "directory"),
        ({"name": "x", "source": "git", "location": "not a url"}, 422, "git URL"),
        (
            {"name": "x", "source": "git", "location": "https://user:pw@example.org/r.git"},
            422,
            "credential",
        ),
        ({"name": "bad name!", "source": "path", "location": str(root)}, 422, "name"),
        ({"name": "x", "source": "svn", "location": str(root)}, 422, "source"),
        (
            {"name": "x", "source": "git", "location": "https://h/r.git", "branch": "--x"},
            422,
            "branch",
        ),
    ]
    for body, status, words in cases:
        response = await app_client.post("/api/repos", json=body, headers=alice.headers)
        assert response.status_code == status, (body, response.text)
        assert words.lower() in response.text.lower(), (body, response.text)
    listed = await app_client.get("/api/repos", headers=alice.headers)
    assert listed.json() == []

    await add_repo(app_client, alice, root, index=False)
    again = await app_client.post(
        "/api/repos",
        json={"name": "demo", "source": "path", "location": str(root)},
        headers=alice.headers,
    )
    assert again.status_code == 409
    empty = await app_client.get("/api/search", params={"q": " "}, headers=alice.headers)
    assert empty.status_code == 422
    bad_mode = await app_client.get(
        "/api/search", params={"q": "x", "mode": "psychic"}, headers=alice.headers
    )
    assert bad_mode.status_code == 422 and "mode" in bad_mode.text


async def test_only_one_index_at_a_time(
    app_client: httpx.AsyncClient, alice: Person, tmp_path: Path
) -> None:
    root = write_project(tmp_path / "project")
    created = await add_repo(app_client, alice, root, index=False)
    repo_id = str(created["id"])
    first = await app_client.post(f"/api/repos/{repo_id}/index", headers=alice.headers)
    second = await app_client.post(f"/api/repos/{repo_id}/index", headers=alice.headers)
    assert first.status_code == 202
    # The first may already have finished on a fast machine; if not, the second is refused.
    if second.status_code == 409:
        assert "already being indexed" in second.text
    else:
        assert second.status_code == 202
    await wait_for_index(app_client, alice.headers, repo_id)


async def test_who_may_do_what(
    app_client: httpx.AsyncClient, alice: Person, bob: Person, tmp_path: Path
) -> None:
    root = write_project(tmp_path / "project")
    created = await add_repo(app_client, alice, root, index=False)
    repo_id = str(created["id"])

    # A stranger learns nothing: 404 on the repository and its files.
    for method, url in [
        ("GET", f"/api/repos/{repo_id}"),
        ("POST", f"/api/repos/{repo_id}/index"),
        ("DELETE", f"/api/repos/{repo_id}"),
        ("GET", f"/api/repos/{repo_id}/files/src/billing.py"),
    ]:
        response = await app_client.request(method, url, headers=bob.headers)
        assert response.status_code == 404, (method, url, response.text)
    search = await app_client.get(
        "/api/search",
        params={"q": "invoice", "workspace_id": alice.workspace_id},
        headers=bob.headers,
    )
    assert search.status_code == 404

    # A viewer of the workspace may read and search, not index or add.
    added = await app_client.post(
        f"/api/workspaces/{alice.workspace_id}/members",
        json={"email": bob.email, "role": "viewer"},
        headers=alice.headers,
    )
    assert added.status_code in (200, 201), added.text
    assert (await app_client.get(f"/api/repos/{repo_id}", headers=bob.headers)).status_code == 200
    refused = await app_client.post(f"/api/repos/{repo_id}/index", headers=bob.headers)
    assert refused.status_code == 403

    # A non-administrator may not index any server directory...
    carol = await make_person(app_client, "carol@example.org")
    mine = await app_client.post(
        "/api/repos",
        json={"name": "etc", "source": "path", "location": "/etc"},
        headers=carol.headers,
    )
    assert mine.status_code == 422 and "administrators" in mine.text


async def test_local_roots_let_workspace_admins_add_directories(
    tmp_path: Path, database_url: str
) -> None:
    from hexahub.app import create_app
    from tests.conftest import make_settings

    allowed = tmp_path / "code"
    root = write_project(allowed / "project")
    settings = make_settings(tmp_path, database_url=database_url, context_local_roots=[allowed])
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hexahub.test") as c:
            c.app = app  # type: ignore[attr-defined]
            await make_person(c, "alice@example.org", first=True)
            carol = await make_person(c, "carol@example.org")
            ok = await c.post(
                "/api/repos",
                json={"name": "p", "source": "path", "location": str(root), "index": False},
                headers=carol.headers,
            )
            assert ok.status_code == 201, ok.text
            outside = await c.post(
                "/api/repos",
                json={"name": "q", "source": "path", "location": str(tmp_path), "index": False},
                headers=carol.headers,
            )
            assert outside.status_code == 422


@pytest.mark.parametrize("stream", [False, True])
async def test_ask_answers_with_citations(
    app_client: httpx.AsyncClient, alice: Person, tmp_path: Path, stream: bool
) -> None:
    root = write_project(tmp_path / "project")
    created = await add_repo(app_client, alice, root)
    await wait_for_index(app_client, alice.headers, str(created["id"]))
    body = {"question": "How is the invoice total with tax computed?", "max_tokens": 24}
    if not stream:
        response = await app_client.post("/api/ask", json=body, headers=alice.headers)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["answer"].strip()
        assert answer["model"] == "local-chat"
        cited = {c["path"] for c in answer["citations"]}
        assert "src/billing.py" in cited
        assert answer["usage"]["completion_tokens"] > 0
        return
    events: list[tuple[str, str]] = []
    async with app_client.stream(
        "POST", "/api/ask", json={**body, "stream": True}, headers=alice.headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((event, line.removeprefix("data: ")))
    kinds = [e for e, _ in events]
    assert kinds[0] == "citations" and kinds[-1] == "done"
    assert "delta" in kinds
    assert "src/billing.py" in events[0][1]


async def test_gateway_requests_can_ask_for_workspace_context(
    app_client: httpx.AsyncClient, alice: Person, tmp_path: Path
) -> None:
    root = write_project(tmp_path / "project")
    created = await add_repo(app_client, alice, root)
    await wait_for_index(app_client, alice.headers, str(created["id"]))
    question = {"role": "user", "content": "How is the invoice total with tax computed?"}
    body = {"model": "local-chat", "messages": [question], "max_tokens": 4}

    plain = await app_client.post("/v1/chat/completions", json=body, headers=alice.headers)
    assert plain.status_code == 200, plain.text
    assert "x-hexahub-context-citations" not in plain.headers

    with_header = await app_client.post(
        "/v1/chat/completions",
        json=body,
        headers={**alice.headers, "X-HexaHub-Context": "demo"},
    )
    assert with_header.status_code == 200, with_header.text
    cited = json.loads(with_header.headers["x-hexahub-context-citations"])
    assert "src/billing.py" in {c["path"] for c in cited}
    # The passages reached the model: the prompt grew.
    grown = with_header.json()["usage"]["prompt_tokens"]
    assert grown > plain.json()["usage"]["prompt_tokens"] + 50

    suffixed = await app_client.post(
        "/v1/messages",
        json={"model": "local-chat+context", "max_tokens": 4, "messages": [question]},
        headers=alice.headers,
    )
    assert suffixed.status_code == 200, suffixed.text
    assert suffixed.json()["model"] == "local-chat"
    assert "src/billing.py" in suffixed.headers["x-hexahub-context-citations"]

    unknown = await app_client.post(
        "/v1/chat/completions",
        json=body,
        headers={**alice.headers, "X-HexaHub-Context": "no-such-repo"},
    )
    assert unknown.status_code == 404
    assert "no-such-repo" in unknown.json()["error"]["message"]
