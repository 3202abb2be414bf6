"""Git repositories over HTTPS-style token auth: clone, follow new commits, keep the
token encrypted and out of every message."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import text

from tests.context.git_server import commit_all, git, serve_git
from tests.context.helpers import wait_for_index, write_project
from tests.identity.conftest import Person

TOKEN = "glpat-s3cret-token-0123456789"


def make_remote(tmp_path: Path) -> tuple[Path, Path]:
    work = write_project(tmp_path / "work")
    git("init", "-q", "-b", "main", cwd=work)
    commit_all(work, "first")
    projects = tmp_path / "served"
    projects.mkdir()
    git("clone", "-q", "--bare", str(work), str(projects / "demo.git"), cwd=tmp_path)
    git("remote", "add", "origin", str(projects / "demo.git"), cwd=work)
    return work, projects


async def test_clone_with_token_and_follow_new_commits(
    app_client: httpx.AsyncClient, alice: Person, tmp_path: Path
) -> None:
    work, projects = make_remote(tmp_path)
    with serve_git(projects, TOKEN) as base:
        created = await app_client.post(
            "/api/repos",
            json={
                "name": "demo",
                "source": "git",
                "location": f"{base}/demo.git",
                "branch": "main",
                "credential_kind": "token",
                "credential": TOKEN,
            },
            headers=alice.headers,
        )
        assert created.status_code == 201, created.text
        assert TOKEN not in created.text and created.json()["has_credential"] is True
        repo_id = created.json()["id"]
        repo = await wait_for_index(app_client, alice.headers, repo_id)
        assert repo["state"] == "ready", repo
        assert repo["last_commit"] == git("rev-parse", "HEAD", cwd=work)

        # The token is stored sealed, not as plain text.
        runtime = app_client.app.state.runtime  # type: ignore[attr-defined]
        async with runtime.db.sessions() as db:
            stored = await db.scalar(
                text("SELECT credential_sealed FROM context_repositories WHERE id = :id"),
                {"id": repo_id},
            )
        assert stored and TOKEN not in stored

        # A new commit upstream: the next index follows the branch.
        (work / "src" / "shipping.py").write_text("def shipping_cost(weight):\n    return 4\n")
        new_head = commit_all(work, "shipping")
        git("push", "-q", "origin", "main", cwd=work)
        assert (
            await app_client.post(f"/api/repos/{repo_id}/index", headers=alice.headers)
        ).status_code == 202
        repo = await wait_for_index(app_client, alice.headers, repo_id)
        assert repo["last_commit"] == new_head
        found = await app_client.get(
            "/api/symbols", params={"name": "shipping_cost"}, headers=alice.headers
        )
        assert [s["path"] for s in found.json()] == ["src/shipping.py"]

        # A wrong token fails the index with git's reason, never echoing the token.
        wrong = "wrong-token-value-987"
        patched = await app_client.patch(
            f"/api/repos/{repo_id}",
            json={"credential_kind": "token", "credential": wrong},
            headers=alice.headers,
        )
        assert patched.status_code == 200, patched.text
        # A fresh clone, so the old objects cannot hide the refusal.
        import shutil

        shutil.rmtree(runtime.settings.resolved_context_repos_dir / repo_id)
        await app_client.post(f"/api/repos/{repo_id}/index", headers=alice.headers)
        failed = await wait_for_index(app_client, alice.headers, repo_id)
        assert failed["state"] == "failed"
        assert "git clone failed" in failed["last_error"]
        assert wrong not in failed["last_error"]
        # The index of the last good commit is still searchable.
        still = await app_client.get(
            "/api/symbols", params={"name": "shipping_cost"}, headers=alice.headers
        )
        assert len(still.json()) == 1


async def test_token_from_the_vault(
    app_client: httpx.AsyncClient, alice: Person, tmp_path: Path
) -> None:
    _, projects = make_remote(tmp_path)
    ws = alice.workspace_id
    stored = await app_client.put(
        f"/api/workspaces/{ws}/secrets/data/git/demo",
        json={"data": {"token": TOKEN}},
        headers=alice.headers,
    )
    assert stored.status_code in (200, 201), stored.text
    slug = (await app_client.get(f"/api/workspaces/{ws}", headers=alice.headers)).json()["slug"]
    with serve_git(projects, TOKEN) as base:
        created = await app_client.post(
            "/api/repos",
            json={
                "name": "demo",
                "source": "git",
                "location": f"{base}/demo.git",
                "credential_kind": "token",
                "credential": f"vault://{slug}/git/demo#token",
            },
            headers=alice.headers,
        )
        assert created.status_code == 201, created.text
        repo = await wait_for_index(app_client, alice.headers, created.json()["id"])
        assert repo["state"] == "ready", repo
    events = await app_client.get(
        f"/api/workspaces/{ws}/audit", params={"action": "secret.resolved"}, headers=alice.headers
    )
    assert events.status_code == 200, events.text
    assert any("repository demo" in str(e) for e in events.json())
