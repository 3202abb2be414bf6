"""The code-context pages: repositories with their live index status, search and the code
view.

Driven like a browser (session cookie, CSRF cookie + hidden field, 303 redirects, HTMX
request headers) through the real app on SQLite and PostgreSQL, indexing real files on
disk with the in-process queue. The pages must authorise like context/api.py: viewers
read and search, members index, workspace admins add, change and remove; strangers get
404.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from hexahub.context import service
from hexahub.context.answers import code_url
from hexahub.context.models import Repository
from hexahub.identity.models import Membership, Role
from hexahub.web import rendering, repo_pages
from tests.context.helpers import LEAKY_VALUES, write_leaky_project, write_project
from tests.identity.conftest import make_person
from tests.web.test_identity_pages import (
    Browser,
    add_directly,
    browser_sign_in,
    events,
    new_browser,
    runtime_of,
    text_of,
)

HTMX = {"HX-Request": "true"}


@pytest.fixture
async def admin(app_client: httpx.AsyncClient) -> Browser:
    """The first administrator of the installation, owner of the Default workspace."""
    person = await make_person(app_client, "alice@example.org", first=True)
    await browser_sign_in(app_client, person.email)
    return Browser(app_client, person)


@pytest.fixture
async def other(app_client: httpx.AsyncClient, admin: Browser) -> AsyncIterator[Browser]:
    """An ordinary user with a workspace of his own, in a second browser."""
    person = await make_person(app_client, "bob@example.org")
    async with new_browser(app_client, person) as browser:
        yield browser


def repos_url(browser: Browser) -> str:
    return f"/workspaces/{browser.person.workspace_id}/repos"


async def add_through_form(admin: Browser, root: Path, name: str = "demo") -> httpx.Response:
    await admin.get(repos_url(admin))  # the form's page hands out the CSRF cookie
    return await admin.submit(
        repos_url(admin),
        {
            "name": name,
            "source": "path",
            "location": str(root),
            "branch": "",
            "include": "",
            "exclude": "",
            "credential_kind": "",
            "credential": "",
            "index": "true",
        },
    )


async def the_repo(client: httpx.AsyncClient, workspace_id: str, name: str) -> Repository:
    async with runtime_of(client).db.sessions() as db:
        return await service.find_repo(db, workspace_id, name)


async def wait_until_settled(browser: Browser, limit: float = 180.0) -> str:
    """Poll the live fragment as the page does, until it stops asking to be polled."""
    deadline = time.monotonic() + limit
    while True:
        fragment = await browser.client.get(f"{repos_url(browser)}/status", headers=HTMX)
        assert fragment.status_code == 200, fragment.text
        if "hx-trigger" not in fragment.text:
            return fragment.text
        assert time.monotonic() < deadline, f"indexing did not settle in time: {fragment.text}"
        await asyncio.sleep(0.05)


async def indexed(admin: Browser, tmp_path: Path, name: str = "demo") -> Repository:
    root = write_project(tmp_path / name)
    added = await add_through_form(admin, root, name)
    assert added.status_code == 303, added.text
    await wait_until_settled(admin)
    return await the_repo(admin.client, admin.person.workspace_id, name)


def count_of(fragment: str, label: str) -> int:
    found = re.search(rf"<dt>{label}</dt><dd>(\d+)</dd>", fragment)
    assert found, (label, fragment)
    return int(found.group(1))


def no_inline_code(page: httpx.Response) -> None:
    """The CSP allows no inline script or style: none may appear."""
    assert 'style="' not in page.text and "<script>" not in page.text
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)


# --- pages render, and only for the right people -------------------------------------


async def test_pages_render_and_the_navigation_leads_there(admin: Browser) -> None:
    ws = admin.person.workspace_id
    entry = await admin.get("/repositories")
    assert entry.status_code == 303 and entry.headers["location"] == f"/workspaces/{ws}/repos"
    assert "repositories" in {area.slug for area in rendering.READY_AREAS}
    assert "repositories" not in {area.slug for area in rendering.PRODUCT_AREAS}

    page = await admin.get(f"/workspaces/{ws}/repos")
    assert page.status_code == 200
    assert 'href="/repositories" aria-current="page"' in page.text
    assert f'href="/workspaces/{ws}/repos" aria-current="page"' in page.text
    assert "No repositories in this workspace yet." in page.text
    assert f'action="/workspaces/{ws}/repos"' in page.text  # the add form, for admins
    assert 'name="credential" type="password"' in page.text
    assert 'aria-live="polite"' in page.text and "hx-trigger" not in page.text
    no_inline_code(page)

    search = await admin.get(f"/workspaces/{ws}/search")
    assert search.status_code == 200 and 'role="search"' in search.text
    assert f'hx-get="/workspaces/{ws}/search"' in search.text
    for control in ("search-q", "search-repo", "search-path", "search-language", "search-mode"):
        assert f'<label for="{control}"' in search.text, control
    no_inline_code(search)


async def test_strangers_get_404_and_viewers_cannot_add_or_index(
    app_client: httpx.AsyncClient, admin: Browser, other: Browser, tmp_path: Path
) -> None:
    repo = await indexed(admin, tmp_path)
    ws = admin.person.workspace_id
    base = f"/workspaces/{ws}"
    pages = (
        f"{base}/repos",
        f"{base}/repos/status",
        f"{base}/repos/{repo.id}",
        f"{base}/repos/{repo.id}/status",
        f"{base}/search?q=invoice&mode=text",
        f"{base}/repos/{repo.id}/code/src/billing.py",
    )
    for path in pages:
        assert (await other.get(path)).status_code == 404, path
    # Nor can a stranger reach the repository through their own workspace's address.
    own = f"/workspaces/{other.person.workspace_id}"
    assert (await other.get(f"{own}/repos/{repo.id}")).status_code == 404
    assert (await other.get(f"{own}/repos/{repo.id}/code/src/billing.py")).status_code == 404
    await other.get(f"{own}/repos")
    refused = await other.submit(f"{own}/repos/{repo.id}/index")
    assert refused.status_code == 404

    await add_directly(app_client, ws, other.person, Role.viewer)
    for path in pages:
        assert (await other.get(path)).status_code == 200, path
    page = await other.get(f"{base}/repos")
    assert "demo" in page.text
    assert f'action="{base}/repos"' not in page.text  # no add form
    assert "Index now" not in page.text and f"{base}/repos/{repo.id}/index" not in page.text
    detail = await other.get(f"{base}/repos/{repo.id}")
    assert "/settings" not in detail.text and "/remove" not in detail.text
    assert (await other.submit(f"{base}/repos/{repo.id}/index")).status_code == 403
    forged = await other.submit(
        f"{base}/repos", {"name": "sneaky", "source": "path", "location": str(tmp_path)}
    )
    assert forged.status_code == 403
    assert (await other.get(f"{base}/repos/{repo.id}/remove")).status_code == 403
    assert (await other.submit(f"{base}/repos/{repo.id}/remove")).status_code == 403
    assert (await other.submit(f"{base}/repos/{repo.id}/settings")).status_code == 403
    async with runtime_of(app_client).db.sessions() as db:
        assert [r.name for r in await service.list_repos(db, ws)] == ["demo"]
    assert len(await events(app_client, "repo.index_requested")) == 1

    # Members index (and see the button), but still cannot add or remove.
    async with runtime_of(app_client).db.sessions() as db:
        await db.execute(
            update(Membership)
            .where(Membership.workspace_id == ws, Membership.user_id == other.person.user_id)
            .values(role=Role.member.value)
        )
        await db.commit()
    page = await other.get(f"{base}/repos")
    assert "Index now" in page.text and f'action="{base}/repos"' not in page.text
    started = await other.submit(f"{base}/repos/{repo.id}/index")
    assert started.status_code == 303
    assert started.headers["location"] == f"{base}/repos?ok=index_started"
    assert len(await events(app_client, "repo.index_requested")) == 2
    await wait_until_settled(admin)
    assert (await other.submit(f"{base}/repos/{repo.id}/remove")).status_code == 403


# --- adding, live status, index again -------------------------------------------------


async def test_adding_a_directory_indexes_it_and_the_live_status_shows_it_ready(
    app_client: httpx.AsyncClient, admin: Browser, tmp_path: Path
) -> None:
    root = write_project(tmp_path / "project")
    added = await add_through_form(admin, root)
    ws = admin.person.workspace_id
    assert added.status_code == 303
    assert added.headers["location"] == f"/workspaces/{ws}/repos?ok=repo_added"

    page = await admin.get(added.headers["location"])
    assert page.status_code == 200 and "Repository added." in page.text
    repo = await the_repo(app_client, ws, "demo")
    if repo.state in repo_pages.BUSY:  # still running: the block polls its fragment
        assert f'hx-get="/workspaces/{ws}/repos/status" hx-trigger="every 1s"' in page.text

    fragment = await wait_until_settled(admin)
    assert "<html" not in fragment and 'id="repo-status"' in fragment
    assert "hx-get" not in fragment  # settled: no more polling
    assert '<span class="badge badge-ok">ready</span>' in fragment
    assert count_of(fragment, "Files") >= 4  # billing.py, session.js, retry.go, README.md
    assert count_of(fragment, "Chunks") >= 5 and count_of(fragment, "Symbols") >= 6
    assert count_of(fragment, "Skipped") >= 2
    assert "Last indexed" in fragment

    created = await events(app_client, "repo.created")
    assert len(created) == 1 and created[0].actor == "alice@example.org"
    assert created[0].after["location"] == str(root.resolve())
    assert len(await events(app_client, "repo.index_requested")) == 1

    # The repository's page: details, the skipped files with why, files linking to code.
    repo = await the_repo(app_client, ws, "demo")
    detail = await admin.get(f"/workspaces/{ws}/repos/{repo.id}")
    assert detail.status_code == 200
    skipped = detail.text.split('id="skipped-table"', 1)[1].split("</table>", 1)[0]
    assert re.search(r"logo\.png</code></th><td>binary</td>", skipped)
    assert re.search(r"web/app\.min\.js</code></th><td>minified</td>", skipped)
    assert f'href="/workspaces/{ws}/repos/{repo.id}/code/src/billing.py"' in detail.text
    no_inline_code(detail)

    # "Index now" while an index runs: a friendly 409 that changes nothing.
    async with runtime_of(app_client).db.sessions() as db:
        await db.execute(
            update(Repository).where(Repository.id == repo.id).values(state="indexing")
        )
        await db.commit()
    busy = await admin.get(f"/workspaces/{ws}/repos")
    assert 'hx-trigger="every 1s"' in busy.text and 'aria-live="polite"' in busy.text
    again = await admin.submit(f"/workspaces/{ws}/repos/{repo.id}/index", {"back": "repo"})
    assert again.status_code == 409
    assert "demo is already being indexed" in text_of(again) and 'id="page-error"' in again.text
    assert len(await events(app_client, "repo.index_requested")) == 1
    async with runtime_of(app_client).db.sessions() as db:
        await db.execute(update(Repository).where(Repository.id == repo.id).values(state="ready"))
        await db.commit()

    # "Rebuild index" on the repository's page asks for a full index.
    assert "Rebuild index" in (await admin.get(f"/workspaces/{ws}/repos/{repo.id}")).text
    rebuilt = await admin.submit(
        f"/workspaces/{ws}/repos/{repo.id}/index", {"back": "repo", "full": "true"}
    )
    assert rebuilt.status_code in (200, 303), rebuilt.text
    requested = await events(app_client, "repo.index_requested")
    assert len(requested) == 2 and requested[-1].details == {"full": True}


async def test_form_errors_keep_the_fields_but_never_the_credential(
    app_client: httpx.AsyncClient, admin: Browser, tmp_path: Path
) -> None:
    ws = admin.person.workspace_id
    await admin.get(f"/workspaces/{ws}/repos")
    canary = "ghp_canary_" + "z" * 30
    refused = await admin.submit(
        f"/workspaces/{ws}/repos",
        {
            "name": "with-token",
            "source": "path",
            "location": str(tmp_path),
            "include": "src/**\nlib/**",
            "credential_kind": "token",
            "credential": canary,
        },
    )
    assert refused.status_code == 422 and 'id="page-error"' in refused.text
    assert "credential" in text_of(refused)
    assert 'value="with-token"' in refused.text and "src/**\nlib/**" in refused.text
    assert canary not in refused.text
    not_a_dir = await admin.submit(
        f"/workspaces/{ws}/repos",
        {"name": "nowhere", "source": "path", "location": str(tmp_path / "missing")},
    )
    assert not_a_dir.status_code == 422 and "not a directory" in text_of(not_a_dir)
    bad_name = await admin.submit(
        f"/workspaces/{ws}/repos", {"name": "no spaces", "source": "path", "location": "/"}
    )
    assert bad_name.status_code == 422 and "name" in text_of(bad_name)
    async with runtime_of(app_client).db.sessions() as db:
        assert await service.list_repos(db, ws) == []
    assert await events(app_client, "repo.created") == []

    # Without "Start indexing at once" the repository waits for "Index now".
    later = await admin.submit(
        f"/workspaces/{ws}/repos", {"name": "later", "source": "path", "location": str(tmp_path)}
    )
    assert later.headers["location"] == f"/workspaces/{ws}/repos?ok=repo_added_unindexed"
    page = await admin.get(later.headers["location"])
    assert "Press Index now" in page.text and "Not indexed yet" in page.text
    assert "hx-trigger" not in page.text
    assert await events(app_client, "repo.index_requested") == []


async def test_settings_form_and_remove_with_a_confirm_step(
    app_client: httpx.AsyncClient, admin: Browser, tmp_path: Path
) -> None:
    repo = await indexed(admin, tmp_path)
    base = f"/workspaces/{admin.person.workspace_id}/repos/{repo.id}"
    saved = await admin.submit(f"{base}/settings", {"include": "", "exclude": "*.go\n\n*.md\n"})
    assert saved.status_code == 303 and saved.headers["location"] == f"{base}?ok=repo_saved"
    detail = await admin.get(saved.headers["location"])
    assert "<code>*.go</code> <code>*.md</code>" in detail.text
    assert "*.go\n*.md</textarea>" in detail.text
    updated = await events(app_client, "repo.updated")
    assert len(updated) == 1 and updated[0].after["exclude"] == ["*.go", "*.md"]
    # A directory has no branch or credential to set.
    refused = await admin.submit(
        f"{base}/settings", {"credential_kind": "token", "credential": "secret-token"}
    )
    assert refused.status_code == 422 and "secret-token" not in refused.text

    confirm = await admin.get(f"{base}/remove")
    assert confirm.status_code == 200 and "Remove demo?" in text_of(confirm)
    assert f'action="{base}/remove"' in confirm.text
    removed = await admin.submit(f"{base}/remove")
    assert removed.status_code == 303
    assert removed.headers["location"].endswith("/repos?ok=repo_removed")
    page = await admin.get(removed.headers["location"])
    assert (
        "Repository removed" in page.text and "No repositories in this workspace yet." in page.text
    )
    assert (await admin.get(base)).status_code == 404
    assert len(await events(app_client, "repo.deleted")) == 1


async def test_form_posts_need_the_csrf_field(
    app_client: httpx.AsyncClient, admin: Browser, tmp_path: Path
) -> None:
    repo = await indexed(admin, tmp_path)
    ws = admin.person.workspace_id
    for path, data in (
        (f"/workspaces/{ws}/repos", {"name": "x", "source": "path", "location": str(tmp_path)}),
        (f"/workspaces/{ws}/repos/{repo.id}/index", {}),
        (f"/workspaces/{ws}/repos/{repo.id}/settings", {"exclude": "*"}),
        (f"/workspaces/{ws}/repos/{repo.id}/remove", {}),
    ):
        missing = await admin.client.post(path, data=data)
        assert missing.status_code == 403 and "This form has expired" in missing.text, path
        wrong = await admin.client.post(path, data={**data, "csrf_token": "x" * 43})
        assert wrong.status_code == 403, path
    async with runtime_of(app_client).db.sessions() as db:
        repos = await service.list_repos(db, ws)
    assert [(r.name, r.exclude) for r in repos] == [("demo", [])]
    assert len(await events(app_client, "repo.index_requested")) == 1


# --- search and the code view ----------------------------------------------------------


async def test_search_finds_a_function_and_links_to_its_lines(
    admin: Browser, tmp_path: Path
) -> None:
    repo = await indexed(admin, tmp_path)
    ws = admin.person.workspace_id
    search = f"/workspaces/{ws}/search"
    page = await admin.get(f"{search}?q=parse_money_amount&mode=text")
    assert page.status_code == 200 and "<html" in page.text
    hits = re.findall(r'<a class="hit-link" href="([^"]+)">', page.text)
    assert hits, page.text
    first = html.unescape(hits[0])
    assert first.startswith(f"/workspaces/{ws}/repos/{repo.id}/code/src/billing.py#L")
    start, end = map(int, re.findall(r"#L(\d+)-L(\d+)$", first)[0])
    assert first == code_url(ws, repo.id, "src/billing.py", start, end)
    assert start <= 21 <= end
    # The snippet is numbered, and each number links to its line in the code view.
    assert f'href="/workspaces/{ws}/repos/{repo.id}/code/src/billing.py#L21">21</a>' in page.text
    assert '<span class="nf">parse_money_amount</span>' in page.text  # coloured
    no_inline_code(page)

    # Through HTMX only the results block comes back; the same URL stays bookmarkable.
    fragment = await admin.client.get(f"{search}?q=parse_money_amount&mode=text", headers=HTMX)
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert fragment.text.lstrip().startswith('<div id="search-results"')
    assert 'hx-swap-oob="true"' in fragment.text and first in html.unescape(fragment.text)

    # Filters: path glob and repository.
    none = await admin.get(f"{search}?q=parse_money_amount&mode=text&path=web/**")
    assert "0 results" in text_of(none)
    scoped = await admin.get(f"{search}?q=getUserName&mode=text&repo={repo.id}")
    assert "web/session.js" in scoped.text
    bad = await admin.get(f"{search}?q=x&mode=text&repo=no-such-repo")
    assert bad.status_code == 200 and "no repository named" in text_of(bad)

    # While vectors are still being filled in, the results say so.
    assert "still being filled in" not in page.text
    store = await service.store_of(runtime_of(admin.client))
    async with runtime_of(admin.client).db.sessions() as db:
        await db.execute(
            update(Repository).where(Repository.id == repo.id).values(embedded_count=0)
        )
        await db.commit()
    partial = await admin.get(f"{search}?q=parse_money_amount&mode=text")
    assert ("Vectors are still being filled in for demo" in text_of(partial)) is store.has_vectors

    # Definitions by name link to their lines.
    symbols = await admin.get(f"{search}?q=InvoiceCalculator&find=symbols")
    links = re.findall(r'<a class="symbol-link" href="([^"]+)">', symbols.text)
    assert links and links[0].startswith(
        f"/workspaces/{ws}/repos/{repo.id}/code/src/billing.py#L8-L"
    ), symbols.text

    # Follow the hit: the code view has an anchor per line.
    view = await admin.get(first.split("#", 1)[0])
    assert view.status_code == 200
    assert '<div class="cl" id="L1">' in view.text and '<div class="cl" id="L21">' in view.text
    assert '<a class="ln" href="#L21">21</a>' in view.text
    assert "data-code-view" in view.text and "/static/repos.js" in view.text
    assert f'href="/workspaces/{ws}/repos/{repo.id}">demo</a>' in view.text  # breadcrumb
    assert '<span aria-current="page">billing.py</span>' in view.text
    no_inline_code(view)


async def test_code_view_escapes_code_and_answers_404_for_unknown_files(
    admin: Browser, tmp_path: Path
) -> None:
    root = tmp_path / "web-demo"
    root.mkdir()
    (root / "page.py").write_text(
        'TEMPLATE = "<script>alert(1)</script>"\n\n\ndef render():\n    return TEMPLATE\n'
    )
    (root / "notes.txt").write_text("a < b && c > d\n<img src=x onerror=alert(2)>\n")
    (root / "dir with space").mkdir()
    (root / "dir with space" / "odd name.py").write_text("def odd():\n    return '&amp;'\n")
    added = await add_through_form(admin, root, "web-demo")
    assert added.status_code == 303
    await wait_until_settled(admin)
    ws = admin.person.workspace_id
    repo = await the_repo(admin.client, ws, "web-demo")
    base = f"/workspaces/{ws}/repos/{repo.id}/code"

    view = await admin.get(f"{base}/page.py")
    assert view.status_code == 200
    assert "<script>alert(1)" not in view.text and "&lt;script&gt;alert(1)" in view.text
    plain = await admin.get(f"{base}/notes.txt")
    assert plain.status_code == 200
    assert "<img src=x" not in plain.text and "&lt;img src=x onerror=alert(2)&gt;" in plain.text
    assert "a &lt; b &amp;&amp; c &gt; d" in plain.text
    odd = await admin.get(code_url(ws, repo.id, "dir with space/odd name.py", 1, 2).split("#")[0])
    assert odd.status_code == 200 and "&amp;amp;" in odd.text
    assert '<span aria-current="page">odd name.py</span>' in odd.text

    missing = await admin.get(f"{base}/no/such/file.py")
    assert missing.status_code == 404 and "Not in the index" in missing.text
    assert "web-demo" in missing.text


def test_large_files_render_as_plain_numbered_lines() -> None:
    """Over the colouring limit the lines are escaped text, still one anchor per line."""
    line = "value = '<tag>'  # a comment\n"
    content = line * (repo_pages.HIGHLIGHT_MAX_BYTES // len(line) + 10)
    lines = repo_pages.highlighted_lines(content, "python", "big.py")
    assert len(lines) == content.count("\n")
    assert lines[0] == "value = '&lt;tag&gt;'  # a comment"
    markup = repo_pages.lines_markup(lines, 1)
    assert f'id="L{len(lines)}"' in markup and 'class="c1"' not in markup
    small = repo_pages.highlighted_lines('"""doc\nstring"""\nx = 1\n', "python", "s.py")
    assert len(small) == 3 and all(s.count("<span") == s.count("</span>") for s in small)


# --- vectors, with the real local embedding model ----------------------------------------


async def test_hybrid_search_with_the_local_embedding_model(admin: Browser, tmp_path: Path) -> None:
    if not (await service.store_of(runtime_of(admin.client))).has_vectors:
        pytest.skip("this PostgreSQL has no pgvector: full-text search only")
    repo = await indexed(admin, tmp_path)
    assert repo.state == "ready" and repo.embedded_count == repo.chunks_count > 0, (
        repo.state,
        repo.last_error,
    )
    ws = admin.person.workspace_id
    page = await admin.get(f"/workspaces/{ws}/search?q=add+up+invoice+lines+with+tax")
    assert page.status_code == 200
    assert "still being filled in" not in page.text  # every vector is there
    hits = re.findall(r'<a class="hit-link" href="([^"]+)">', page.text)
    assert hits and any("src/billing.py" in h for h in hits), page.text


async def test_an_expired_session_sends_htmx_requests_to_the_login_page(
    app_client: httpx.AsyncClient,
) -> None:
    await make_person(app_client, "alice@example.org", first=True)
    response = await app_client.get(
        "/workspaces/some-workspace/repos/status",
        headers={"HX-Request": "true", "Referer": "http://hexahub.test/workspaces/w/repos"},
    )
    assert response.status_code == 200
    assert response.headers["hx-redirect"] == "/login?next=%2Fworkspaces%2Fw%2Frepos"
    assert response.text == ""


# --- secret findings -----------------------------------------------------------------


async def test_findings_show_on_the_repository_page_and_an_admin_moves_one_to_the_vault(
    app_client: httpx.AsyncClient, admin: Browser, other: Browser, tmp_path: Path
) -> None:
    root = write_leaky_project(tmp_path / "shop")
    added = await add_through_form(admin, root, "shop")
    assert added.status_code == 303, added.text
    await wait_until_settled(admin)
    ws = admin.person.workspace_id
    repo = await the_repo(app_client, ws, "shop")
    page_url = f"/workspaces/{ws}/repos/{repo.id}"

    page = await admin.get(page_url)
    assert page.status_code == 200
    no_inline_code(page)
    for value in LEAKY_VALUES:
        assert value not in page.text
    table = page.text[page.text.index('id="findings-table"') :]
    table = table[: table.index("</table>")]
    assert "(4 open)" in page.text
    for where in (".env:1", "app/payments.py:3", "app/payments.py:11", "deploy/id_ed25519:1"):
        assert where in table, where
    assert "Stripe Access Key" in table and "AWS Access Key" in table
    assert table.count("Move to vault") == 4
    skipped = page.text[page.text.index('id="skipped-table"') :]
    assert "secrets file" in skipped[: skipped.index("</table>")]

    # The code view shows the marker where the key was.
    code = await admin.get(f"{page_url}/code/app/payments.py")
    assert code.status_code == 200
    assert "[secret redacted: Stripe Access Key]" in html.unescape(code.text)
    for value in LEAKY_VALUES:
        assert value not in code.text
    assert (await admin.get(f"{page_url}/code/.env")).status_code == 404

    # A viewer sees where, never a form to move.
    await add_directly(app_client, ws, other.person, Role.viewer)
    seen = await other.get(page_url)
    assert seen.status_code == 200 and "app/payments.py:11" in seen.text
    assert "move-to-vault" not in seen.text
    async with runtime_of(app_client).db.sessions() as db:
        from hexahub.context import findings

        rows = await findings.list_findings(db, repo.id)
    env_finding = next(row for row in rows if row.path == ".env")
    move_url = f"{page_url}/findings/{env_finding.id}/move-to-vault"
    assert (await other.submit(move_url, {"vault_path": "x/y"})).status_code == 403

    # A path the vault refuses keeps the page, with why.
    refused = await admin.submit(move_url, {"vault_path": "no//good"})
    assert refused.status_code == 422 and "vault_path" in html.unescape(refused.text)
    assert "(4 open)" in refused.text

    moved = await admin.submit(move_url, {"vault_path": "shop/stripe-env"})
    assert moved.status_code == 303
    assert moved.headers["location"] == f"{page_url}?ok=finding_moved#finding-{env_finding.id}"
    after = await admin.get(moved.headers["location"])
    text = html.unescape(after.text)
    assert "(3 open)" in text and "shop/stripe-env" in text
    assert "git filter-repo --invert-paths --path .env" in text
    assert "bfg --delete-files .env" in text
    assert after.text.count("Move to vault") == 3
    for value in LEAKY_VALUES:
        assert value not in after.text

    # The dashboard counts open findings for the workspace's admins only.
    home = await admin.get(f"/?workspace={ws}")
    assert home.status_code == 200 and 'id="secret-findings"' in home.text
    assert "3 open" in home.text
    viewer_home = await other.get(f"/?workspace={ws}")
    assert viewer_home.status_code == 200 and 'id="secret-findings"' not in viewer_home.text
