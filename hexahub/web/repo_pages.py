"""The code-context pages: repositories, search and the code view.

- /workspaces/{workspace_id}/repos lists the workspace's repositories with their live
  index status. While one is queued, indexing or embedding, the status block polls its
  fragment every second (HTMX) and stops once nothing is in progress.
- /workspaces/{workspace_id}/repos/{repo_id} shows one repository, its settings form, the
  credentials secret scanning found in it (admins move one into the vault from there,
  and read how to take it out of the git history) and the files the index skipped.
- /workspaces/{workspace_id}/search searches code (hybrid, full text or vectors) or
  definitions; as a plain GET (bookmarkable) or through HTMX, which swaps only the results.
- /workspaces/{workspace_id}/repos/{repo_id}/code/{path} is the code view that search hits
  and answer citations link to (`answers.code_url`); static/repos.js highlights the line
  range named in the fragment (#L10-L20).

Authorisation is the JSON API's (context/api.py): viewers read and search, members start
indexing, workspace admins add, change and remove. Every change goes through the same
service functions, so the audit log reads the same whichever way it was made.
Registered by create_app() through register_pages().
"""

from __future__ import annotations

import asyncio
import html
import re
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from markupsafe import Markup
from pydantic import ValidationError
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.lexers.special import TextLexer
from pygments.util import ClassNotFound
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from hexahub.context import findings, scans, service
from hexahub.context.models import Repository, SecretFinding
from hexahub.context.schemas import RepoCreate, RepoUpdate
from hexahub.core.deps import DbSession, RuntimeDep
from hexahub.core.errors import Conflict, HexaHubError, NotFound, ValidationFailed
from hexahub.core.runtime import Runtime
from hexahub.identity import workspaces
from hexahub.identity.authz import WorkspaceAccess
from hexahub.identity.models import Role
from hexahub.web.access import (
    PagePrincipal,
    PageRoute,
    WorkspaceAdminPage,
    WorkspaceReaderPage,
    page_workspace,
    workspace_context,
)
from hexahub.web.csrf import require_csrf
from hexahub.web.rendering import redirect, render

router = APIRouter(include_in_schema=False, route_class=PageRoute)
CsrfChecked = Depends(require_csrf)

# As the API's POST /api/repos/{id}/index: members (write scope) start indexing.
WorkspaceMemberPage = Annotated[WorkspaceAccess, Depends(page_workspace(Role.member, "write"))]

ShortField = Annotated[str, Form(max_length=200)]
LocationField = Annotated[str, Form(max_length=1000)]
GlobsField = Annotated[str, Form(max_length=40_000)]
CredentialField = Annotated[str, Form(max_length=20_000)]
VaultPathField = Annotated[str, Form(max_length=512)]
Checkbox = Annotated[str, Form(max_length=10)]

BUSY = ("queued", "indexing", "embedding")
SEARCH_MODES = ("hybrid", "text", "vector")
SEARCH_LIMIT = 20
SYMBOL_LIMIT = 50
FILES_SHOWN = 500
# Highlighting costs about 2.5 s per MB (a quarter second at this size, then cached);
# above it the code view shows escaped plain text, which takes milliseconds even for 1 MB.
HIGHLIGHT_MAX_BYTES = 100_000


# --- shared helpers ------------------------------------------------------------------


def _problem(exc: ValidationError | HexaHubError) -> HexaHubError:
    if isinstance(exc, HexaHubError):
        return exc
    parts = []
    for item in exc.errors():
        where = ".".join(str(p) for p in item["loc"] if not isinstance(p, int))
        parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
    return ValidationFailed("; ".join(parts))


async def _recover(db: AsyncSession, access: WorkspaceAccess) -> None:
    """After a refused change the session was rolled back; reload what the page shows."""
    await db.rollback()
    await db.refresh(access.workspace)
    await db.refresh(access.user)


async def _repo_in(db: AsyncSession, access: WorkspaceAccess, repo_id: str) -> Repository:
    """The repository, only when it belongs to the workspace in the address."""
    repo = await db.get(Repository, repo_id)
    if repo is None or repo.workspace_id != access.workspace.id:
        raise NotFound(f"no repository with id {repo_id} in this workspace")
    return repo


def _lines_of(text: str) -> list[str]:
    """One globs-per-line textarea as a list (blank lines dropped)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


_PEM = re.compile(r"^(-----BEGIN [A-Z0-9 ]+-----)\s*(.+?)\s*(-----END [A-Z0-9 ]+-----)$", re.S)


def _credential_value(kind: str, value: str) -> str:
    """A password field drops line breaks; put an SSH key's back so it parses again."""
    value = value.strip()
    if kind != "ssh_key" or "\n" in value:
        return value
    found = _PEM.match(value)
    if found is None:
        return value
    body = re.sub(r"\s+", "", found.group(2))
    wrapped = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"{found.group(1)}\n{wrapped}\n{found.group(3)}\n"


def repo_view(repo: Repository) -> dict[str, Any]:
    """What the templates show of a repository: the API's view plus a few derived values."""
    shown = service.repo_dict(repo)
    done, total = shown["progress_done"], shown["progress_total"]
    shown["busy"] = repo.state in BUSY
    shown["percent"] = min(100, round(100 * done / total)) if total else 0
    shown["short_commit"] = (repo.last_commit or "")[:12]
    return shown


def _code_href(workspace_id: str, repo_id: str, path: str) -> str:
    return f"/workspaces/{workspace_id}/repos/{repo_id}/code/{quote(path)}"


# --- code rendering -------------------------------------------------------------------

_FORMATTER = HtmlFormatter(nowrap=True)


def _lexer(language: str, path: str) -> Lexer | None:
    options = {"stripnl": False, "ensurenl": True}
    try:
        return get_lexer_by_name(language, **options)
    except ClassNotFound:
        pass
    try:
        return get_lexer_for_filename(path, **options)
    except ClassNotFound:
        return None


def _split(content: str) -> list[str]:
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


@lru_cache(maxsize=64)
def highlighted_lines(content: str, language: str, path: str) -> tuple[str, ...]:
    """Each line of `content` as safe HTML: pygments' CSS classes, no inline styles.

    The formatter closes and reopens its spans at every line break, so each line's HTML
    stands on its own. Falls back to escaped text when no lexer fits, the file is too big
    to colour quickly, or the lexer changed the number of lines.
    """
    lines = _split(content)
    plain = tuple(html.escape(line, quote=False) for line in lines)
    if len(content) > HIGHLIGHT_MAX_BYTES:
        return plain
    lexer = _lexer(language, path)
    if lexer is None or isinstance(lexer, TextLexer):
        return plain
    coloured = highlight(content, lexer, _FORMATTER).split("\n")
    if coloured and coloured[-1] == "":
        coloured.pop()
    return tuple(coloured) if len(coloured) == len(lines) else plain


def lines_markup(
    lines: tuple[str, ...] | list[str], first: int, *, href: str = "", anchors: bool = True
) -> Markup:
    """Numbered lines; with `anchors` each line has the id L{n} the fragment points at.

    Built here rather than in a template loop: a 1 MB file has tens of thousands of lines.
    """
    parts = []
    for offset, code in enumerate(lines):
        n = first + offset
        line_id = f' id="L{n}"' if anchors else ""
        parts.append(
            f'<div class="cl"{line_id}><a class="ln" href="{href}#L{n}">{n}</a>'
            f'<span class="lc">{code}</span></div>'
        )
    # Safe: every line was escaped or came from the formatter, which escapes.
    return Markup("".join(parts))


# --- the navigation's entry ----------------------------------------------------------


@router.get("/repositories")
async def repositories_index(db: DbSession, principal: PagePrincipal) -> Response:
    """The navigation's Repositories entry: those of my first workspace."""
    mine = await workspaces.workspaces_of(db, principal.user.id)
    if not mine:
        return redirect("/workspaces")
    return redirect(f"/workspaces/{mine[0][0].id}/repos")


# --- the repositories page -----------------------------------------------------------

EMPTY_FORM: dict[str, Any] = {
    "name": "",
    "source": "path",
    "location": "",
    "branch": "",
    "include": "",
    "exclude": "",
    "credential_kind": "",
    "index": True,
}


def _status_context(
    access: WorkspaceAccess, repos: list[Repository], *, notice: str = ""
) -> dict[str, Any]:
    shown = [repo_view(r) for r in repos]
    return {
        **workspace_context(access, "repos"),
        "repos": shown,
        "polling": any(r["busy"] for r in shown),
        "can_index": access.role.at_least(Role.member),
        "notice": notice,
    }


async def _repos_page(
    request: Request,
    db: AsyncSession,
    access: WorkspaceAccess,
    *,
    error: HexaHubError | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    repos = await service.list_repos(db, access.workspace.id)
    return render(
        request,
        "repos.html",
        {
            **_status_context(access, repos),
            "active": "repositories",
            "form": form or EMPTY_FORM,
            "page_error": error.message if error else "",
        },
        status_code=error.status_code if error else 200,
        user=access.user,
    )


@router.get("/workspaces/{workspace_id}/repos")
async def repos_page(request: Request, access: WorkspaceReaderPage, db: DbSession) -> Response:
    return await _repos_page(request, db, access)


@router.get("/workspaces/{workspace_id}/repos/status")
async def repos_status(request: Request, access: WorkspaceReaderPage, db: DbSession) -> Response:
    """The live status block alone; it keeps polling only while work is in progress."""
    repos = await service.list_repos(db, access.workspace.id)
    return render(request, "repos_status.html", _status_context(access, repos), user=access.user)


@router.post("/workspaces/{workspace_id}/repos", dependencies=[CsrfChecked])
async def add_repo(
    request: Request,
    access: WorkspaceAdminPage,
    db: DbSession,
    runtime: RuntimeDep,
    name: ShortField = "",
    source: ShortField = "path",
    location: LocationField = "",
    branch: ShortField = "",
    include: GlobsField = "",
    exclude: GlobsField = "",
    credential_kind: ShortField = "",
    credential: CredentialField = "",
    index: Checkbox = "",
) -> Response:
    # Everything but the credential goes back into the form when it is refused.
    form = {
        "name": name,
        "source": source,
        "location": location,
        "branch": branch,
        "include": include,
        "exclude": exclude,
        "credential_kind": credential_kind,
        "index": index == "true",
    }
    try:
        # Validated as the API validates a body: a form's strings become its literals.
        spec = RepoCreate.model_validate(
            {
                "name": name.strip(),
                "source": source,
                "location": location.strip(),
                "branch": branch.strip() or None,
                "include": _lines_of(include),
                "exclude": _lines_of(exclude),
                "credential_kind": (credential_kind or None) if credential else None,
                "credential": _credential_value(credential_kind, credential) or None,
                "index": index == "true",
            }
        )
        repo = await service.create_repo(
            db, runtime.settings, access.principal, access.workspace.id, spec
        )
        await db.commit()
    except (ValidationError, HexaHubError) as exc:
        await _recover(db, access)
        return await _repos_page(request, db, access, error=_problem(exc), form=form)
    if not spec.index:
        return redirect(f"/workspaces/{access.workspace.id}/repos?ok=repo_added_unindexed")
    await service.request_index(runtime, db, access.principal, repo)
    return redirect(f"/workspaces/{access.workspace.id}/repos?ok=repo_added")


@router.post("/workspaces/{workspace_id}/repos/{repo_id}/index", dependencies=[CsrfChecked])
async def index_repo(
    request: Request,
    access: WorkspaceMemberPage,
    db: DbSession,
    runtime: RuntimeDep,
    repo_id: str,
    full: Checkbox = "",
    back: ShortField = "",
) -> Response:
    repo = await _repo_in(db, access, repo_id)
    name = repo.name  # the rollback after a refusal expires the row
    try:
        await service.request_index(runtime, db, access.principal, repo, full=full == "true")
    except Conflict:
        await _recover(db, access)
        friendly = Conflict(
            f"{name} is already being indexed. Its status below updates by itself; "
            "start another index once this one has finished."
        )
        if back == "repo":
            return await _repo_page(request, db, runtime, access, repo_id, error=friendly)
        return await _repos_page(request, db, access, error=friendly)
    target = f"/workspaces/{access.workspace.id}/repos"
    if back == "repo":
        target += f"/{repo_id}"
    return redirect(f"{target}?ok=index_started")


# --- one repository ------------------------------------------------------------------

FINDINGS_SHOWN = 500


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "secret"


def finding_view(repo: Repository, row: SecretFinding) -> dict[str, Any]:
    """A finding as the page shows it: the API's view, where it was seen, a vault path to
    suggest for a move, and (once moved) how to clean the history."""
    shown = findings.finding_dict(row)
    places = [name for name, on in (("tree", row.in_tree), ("history", row.in_history)) if on]
    shown["where"] = " and ".join(places) or "no longer seen"
    name = row.path.rsplit("/", 1)[-1]
    shown["suggested_path"] = f"{_slug(repo.name)}/{_slug(name)}-{_slug(row.rule)}"
    shown["cleanup"] = findings.history_cleanup(row.path) if row.status == "moved" else None
    return shown


async def _repo_page(
    request: Request,
    db: AsyncSession,
    runtime: Runtime,
    access: WorkspaceAccess,
    repo_id: str,
    *,
    error: HexaHubError | None = None,
) -> Response:
    repo = await _repo_in(db, access, repo_id)
    skipped = await service.list_files(runtime, repo, skipped=True, limit=FILES_SHOWN)
    indexed = await service.list_files(runtime, repo, skipped=False, limit=FILES_SHOWN)
    found = await findings.list_findings(db, repo.id, limit=FINDINGS_SHOWN)
    base = f"/workspaces/{access.workspace.id}"
    return render(
        request,
        "repo_detail.html",
        {
            **_status_context(access, [repo]),
            "active": "repositories",
            "repo": repo_view(repo),
            "skipped_files": [
                {"path": path, "size": size, "reason": reason}
                for path, _language, size, reason in skipped
            ],
            "indexed_files": [
                {
                    "path": path,
                    "language": language,
                    "size": size,
                    "href": _code_href(access.workspace.id, repo.id, path),
                }
                for path, language, size, _reason in indexed
            ],
            "files_shown": FILES_SHOWN,
            "findings": [finding_view(repo, row) for row in found],
            "open_findings": sum(1 for row in found if row.status == "open"),
            "findings_shown": FINDINGS_SHOWN,
            "search_href": f"{base}/search?" + urlencode({"repo": repo.id}),
            "page_error": error.message if error else "",
        },
        status_code=error.status_code if error else 200,
        user=access.user,
    )


@router.get("/workspaces/{workspace_id}/repos/{repo_id}")
async def repo_page(
    request: Request,
    access: WorkspaceReaderPage,
    db: DbSession,
    runtime: RuntimeDep,
    repo_id: str,
) -> Response:
    return await _repo_page(request, db, runtime, access, repo_id)


@router.get("/workspaces/{workspace_id}/repos/{repo_id}/status")
async def repo_status(
    request: Request, access: WorkspaceReaderPage, db: DbSession, repo_id: str
) -> Response:
    repo = await _repo_in(db, access, repo_id)
    context = {**_status_context(access, [repo]), "repo": repo_view(repo)}
    return render(request, "repo_status.html", context, user=access.user)


@router.post("/workspaces/{workspace_id}/repos/{repo_id}/settings", dependencies=[CsrfChecked])
async def update_repo(
    request: Request,
    access: WorkspaceAdminPage,
    db: DbSession,
    runtime: RuntimeDep,
    repo_id: str,
    branch: ShortField = "",
    include: GlobsField = "",
    exclude: GlobsField = "",
    credential_kind: ShortField = "",
    credential: CredentialField = "",
    clear_credential: Checkbox = "",
) -> Response:
    repo = await _repo_in(db, access, repo_id)
    try:
        values: dict[str, Any] = {"include": _lines_of(include), "exclude": _lines_of(exclude)}
        if repo.source_kind == "git":
            values["branch"] = branch.strip() or None
        if clear_credential == "true":
            values["clear_credential"] = True
        elif credential:
            values["credential_kind"] = credential_kind or None
            values["credential"] = _credential_value(credential_kind, credential)
        spec = RepoUpdate(**values)
        await service.update_repo(db, runtime.settings, access.principal, repo, spec)
        await db.commit()
    except (ValidationError, HexaHubError) as exc:
        await _recover(db, access)
        return await _repo_page(request, db, runtime, access, repo_id, error=_problem(exc))
    return redirect(f"/workspaces/{access.workspace.id}/repos/{repo.id}?ok=repo_saved")


@router.post(
    "/workspaces/{workspace_id}/repos/{repo_id}/findings/{finding_id}/move-to-vault",
    dependencies=[CsrfChecked],
)
async def move_finding(
    request: Request,
    access: WorkspaceAdminPage,
    db: DbSession,
    runtime: RuntimeDep,
    repo_id: str,
    finding_id: str,
    vault_path: VaultPathField = "",
) -> Response:
    """As POST /api/repos/{id}/findings/{finding_id}/move-to-vault: workspace admins."""
    repo = await _repo_in(db, access, repo_id)
    try:
        await scans.move_to_vault(
            runtime, db, access, repo, finding_id, vault_path=vault_path.strip()
        )
    except HexaHubError as exc:
        if isinstance(exc, NotFound):
            raise
        await _recover(db, access)
        return await _repo_page(request, db, runtime, access, repo_id, error=exc)
    target = f"/workspaces/{access.workspace.id}/repos/{repo_id}"
    return redirect(f"{target}?ok=finding_moved#finding-{finding_id}")


@router.get("/workspaces/{workspace_id}/repos/{repo_id}/remove")
async def confirm_remove(
    request: Request, access: WorkspaceAdminPage, db: DbSession, repo_id: str
) -> Response:
    repo = await _repo_in(db, access, repo_id)
    return render(
        request,
        "repo_remove.html",
        {**workspace_context(access, "repos"), "active": "repositories", "repo": repo_view(repo)},
        user=access.user,
    )


@router.post("/workspaces/{workspace_id}/repos/{repo_id}/remove", dependencies=[CsrfChecked])
async def remove_repo(
    access: WorkspaceAdminPage, db: DbSession, runtime: RuntimeDep, repo_id: str
) -> Response:
    repo = await _repo_in(db, access, repo_id)
    await service.delete_repo(runtime, db, access.principal, repo)
    await db.commit()
    return redirect(f"/workspaces/{access.workspace.id}/repos?ok=repo_removed")


# --- search --------------------------------------------------------------------------


def _snippet(
    workspace_id: str, repo_id: str, path: str, language: str, first: int, text: str
) -> Markup:
    lines = highlighted_lines(text, language, path)
    return lines_markup(lines, first, href=_code_href(workspace_id, repo_id, path), anchors=False)


async def _search(
    runtime: Runtime,
    db: AsyncSession,
    access: WorkspaceAccess,
    query: dict[str, str],
) -> dict[str, Any]:
    """Results of the search the query string describes (nothing when q is empty)."""
    ws = access.workspace.id
    out: dict[str, Any] = {"hits": [], "symbols": [], "partial": [], "error": "", "ran": False}
    q = query["q"].strip()
    if not q:
        return out
    repos = [query["repo"]] if query["repo"] else None
    try:
        if query["find"] == "symbols":
            found = await service.find_symbols(
                runtime, db, ws, q, repos=repos, kind=query["kind"] or None, limit=SYMBOL_LIMIT
            )
            out["symbols"] = [
                {
                    "repo": repo.name,
                    "repo_id": repo.id,
                    "name": s.name,
                    "kind": s.kind,
                    "container": s.container,
                    "signature": s.signature,
                    "path": s.path,
                    "start_line": s.start_line,
                    "end_line": s.end_line,
                    "url": f"{_code_href(ws, repo.id, s.path)}#L{s.start_line}-L{s.end_line}",
                }
                for s, repo in found
            ]
        else:
            hits, partial = await service.search_workspace(
                runtime,
                db,
                ws,
                q,
                principal=access.principal,
                repos=repos,
                path_glob=query["path"] or None,
                language=query["language"] or None,
                mode=query["mode"],
                limit=SEARCH_LIMIT,
            )
            # Without a vector store (PostgreSQL lacking pgvector) nothing is being filled
            # in: those repositories carry no embedding model, and their note says so.
            vectored = {r.name for r in await service.list_repos(db, ws) if r.embedding_model}
            out["partial"] = [name for name in partial if name in vectored]
            out["hits"] = [
                {
                    "repo": item.repo.name,
                    "repo_id": item.repo.id,
                    "path": item.hit.path,
                    "start_line": item.hit.start_line,
                    "end_line": item.hit.end_line,
                    "language": item.hit.language,
                    "kind": item.hit.kind,
                    "symbol": item.hit.symbol,
                    "url": item.url,
                    "lines": _snippet(
                        ws,
                        item.repo.id,
                        item.hit.path,
                        item.hit.language,
                        item.hit.start_line,
                        item.hit.text,
                    ),
                }
                for item in hits
            ]
    except HexaHubError as exc:
        out["error"] = exc.message
    out["ran"] = True
    return out


@router.get("/workspaces/{workspace_id}/search")
async def search_page(
    request: Request,
    access: WorkspaceReaderPage,
    db: DbSession,
    runtime: RuntimeDep,
    q: str = "",
    repo: str = "",
    path: str = "",
    language: str = "",
    mode: str = "hybrid",
    find: str = "code",
    kind: str = "",
) -> Response:
    query = {
        "q": q[:1000],
        "repo": repo[:100],
        "path": path[:300],
        "language": language[:40],
        "mode": mode if mode in SEARCH_MODES else "hybrid",
        "find": "symbols" if find == "symbols" else "code",
        "kind": kind[:40],
    }
    results = await _search(runtime, db, access, query)
    context = {
        **workspace_context(access, "search"),
        "active": "repositories",
        "query": query,
        "modes": SEARCH_MODES,
        "repos": [repo_view(r) for r in await service.list_repos(db, access.workspace.id)],
        **results,
    }
    # HTMX asks for the results block only; a plain GET (or a boosted link) gets the page.
    partial = request.headers.get("HX-Request") == "true" and not request.headers.get("HX-Boosted")
    template = "repo_search_results.html" if partial else "search.html"
    response = render(request, template, context, user=access.user)
    response.headers["Vary"] = "HX-Request"
    return response


# --- the code view -------------------------------------------------------------------


@router.get("/workspaces/{workspace_id}/repos/{repo_id}/code/{path:path}")
async def code_view(
    request: Request,
    access: WorkspaceReaderPage,
    db: DbSession,
    runtime: RuntimeDep,
    repo_id: str,
    path: str,
) -> Response:
    repo = await _repo_in(db, access, repo_id)
    crumbs = []
    parts = path.split("/")
    for depth, part in enumerate(parts):
        crumbs.append({"name": part, "prefix": "/".join(parts[: depth + 1])})
    context: dict[str, Any] = {
        **workspace_context(access, "repos"),
        "active": "repositories",
        "repo": repo_view(repo),
        "path": path,
        "crumbs": crumbs,
        "search_href": f"/workspaces/{access.workspace.id}/search?" + urlencode({"repo": repo.id}),
    }
    try:
        content, language = await service.read_file(runtime, repo, path)
    except NotFound as exc:
        context.update(missing=exc.message, language="", lines=Markup(""), line_count=0)
        context.update(size=0, plain_note=False)
        return render(request, "code_view.html", context, status_code=404, user=access.user)
    if len(content) > 20_000:
        lines = await asyncio.to_thread(highlighted_lines, content, language, path)
    else:
        lines = highlighted_lines(content, language, path)
    context.update(
        missing="",
        language=language,
        lines=lines_markup(lines, 1),
        line_count=len(lines),
        size=len(content.encode()),
        plain_note=len(content) > HIGHLIGHT_MAX_BYTES,
    )
    return render(request, "code_view.html", context, user=access.user)


def register_pages(app: FastAPI) -> None:
    """Called by create_app() after the other page modules."""
    app.include_router(router)
