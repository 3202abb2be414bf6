"""Code-context routes: /api/repos, /api/search, /api/symbols, /api/ask.

Collections take an optional `workspace_id` (query or body); without it the workspace is
the one the caller's API key is bound to, or their only workspace. Routes on one
repository find its workspace from the repository. Viewers search and read; members
start indexing and ask; workspace admins add, change and remove repositories. Secret
findings are read like the repository; moving one into the vault takes a workspace admin.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from hexahub.context import answers, findings, scans, service
from hexahub.context.models import Repository
from hexahub.context.schemas import (
    AskOut,
    AskRequest,
    CitationOut,
    FileOut,
    FindingOut,
    HistoryCleanupOut,
    HitOut,
    IndexRequest,
    MoveToVaultIn,
    MoveToVaultOut,
    RepoCreate,
    RepoOut,
    RepoUpdate,
    SearchOut,
    SymbolOut,
)
from hexahub.core.deps import DbSession, RuntimeDep
from hexahub.core.errors import NotFound
from hexahub.core.openapi import SSE_EVENT
from hexahub.gateway.engine import Gateway, TextStreamEnd, call_context_for
from hexahub.identity.authz import (
    Authenticated,
    AuthenticatedWriter,
    Principal,
    WorkspaceAccess,
    chosen_workspace,
    require_user,
    workspace_access,
)
from hexahub.identity.models import Role

router = APIRouter(prefix="/api", tags=["code context"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in, or the credentials are not valid"},
    403: {"description": "The role or API-key scope is too weak; the attempt is audited"},
    404: {"description": "No such workspace or repository, or not visible to the caller"},
    409: {"description": "A repository of that name exists, or an index is already running"},
    422: {"description": "The request is malformed; the message names the field"},
}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Asking reads the code (`read`) and calls a model (`gateway`): a key needs both.
GatewayCaller = Annotated[Principal, Depends(require_user("read", "gateway"))]
WorkspaceParam = Annotated[
    str | None, Query(max_length=36, description="Workspace id (default: yours)")
]
RepoParam = Annotated[list[str] | None, Query(description="Repository names or ids (default: all)")]


async def repo_access(
    request: Request,
    db: AsyncSession,
    principal: Principal,
    repo_id: str,
    minimum: Role,
    scope: str,
) -> tuple[Repository, WorkspaceAccess]:
    """The repository and the caller's access to its workspace; strangers get 404."""
    repo = await db.get(Repository, repo_id)
    if repo is None:
        raise NotFound(f"no repository with id {repo_id}")
    try:
        access = await workspace_access(
            db, principal, repo.workspace_id, minimum, scope, path=request.url.path
        )
    except NotFound:
        raise NotFound(f"no repository with id {repo_id}") from None
    return repo, access


def _repo_out(repo: Repository) -> RepoOut:
    return RepoOut(**service.repo_dict(repo))


@router.get(
    "/repos", summary="Repositories of a workspace, with their index status", responses=ERRORS
)
async def list_repositories(
    request: Request, db: DbSession, principal: Authenticated, workspace_id: WorkspaceParam = None
) -> list[RepoOut]:
    access = await chosen_workspace(
        db, principal, workspace_id, Role.viewer, "read", path=request.url.path
    )
    return [_repo_out(repo) for repo in await service.list_repos(db, access.workspace.id)]


class RepoCreateIn(RepoCreate):
    workspace_id: str | None = None


@router.post(
    "/repos",
    summary="Add a repository (a server directory or a git URL)",
    status_code=201,
    responses=ERRORS,
)
async def create_repository(
    request: Request,
    runtime: RuntimeDep,
    db: DbSession,
    principal: AuthenticatedWriter,
    body: RepoCreateIn,
) -> RepoOut:
    access = await chosen_workspace(
        db, principal, body.workspace_id, Role.admin, "admin", path=request.url.path
    )
    spec = RepoCreate(**body.model_dump(exclude={"workspace_id"}))
    repo = await service.create_repo(db, runtime.settings, principal, access.workspace.id, spec)
    await db.commit()
    if spec.index:
        repo = await service.request_index(runtime, db, principal, repo)
    return _repo_out(repo)


@router.get("/repos/{repo_id}", summary="A repository and its index status", responses=ERRORS)
async def get_repository(
    request: Request, db: DbSession, principal: Authenticated, repo_id: str
) -> RepoOut:
    repo, _ = await repo_access(request, db, principal, repo_id, Role.viewer, "read")
    return _repo_out(repo)


@router.patch(
    "/repos/{repo_id}",
    summary="Change a repository's branch, globs or credential",
    responses=ERRORS,
)
async def update_repository(
    request: Request,
    runtime: RuntimeDep,
    db: DbSession,
    principal: AuthenticatedWriter,
    repo_id: str,
    body: RepoUpdate,
) -> RepoOut:
    repo, _ = await repo_access(request, db, principal, repo_id, Role.admin, "admin")
    repo = await service.update_repo(db, runtime.settings, principal, repo, body)
    await db.commit()
    return _repo_out(repo)


@router.delete(
    "/repos/{repo_id}",
    summary="Remove a repository and its index",
    status_code=204,
    responses=ERRORS,
)
async def delete_repository(
    request: Request,
    runtime: RuntimeDep,
    db: DbSession,
    principal: AuthenticatedWriter,
    repo_id: str,
) -> Response:
    repo, _ = await repo_access(request, db, principal, repo_id, Role.admin, "admin")
    await service.delete_repo(runtime, db, principal, repo)
    await db.commit()
    return Response(status_code=204)


@router.post(
    "/repos/{repo_id}/index",
    summary="Index now (only changed files are re-read)",
    status_code=202,
    responses=ERRORS,
)
async def index_repository(
    request: Request,
    runtime: RuntimeDep,
    db: DbSession,
    principal: AuthenticatedWriter,
    repo_id: str,
    body: IndexRequest | None = None,
) -> RepoOut:
    repo, _ = await repo_access(request, db, principal, repo_id, Role.member, "write")
    full = bool(body and body.full)
    return _repo_out(await service.request_index(runtime, db, principal, repo, full=full))


@router.get(
    "/repos/{repo_id}/files",
    summary="Files seen by the index, skipped ones with why",
    responses=ERRORS,
)
async def list_repository_files(
    request: Request,
    runtime: RuntimeDep,
    db: DbSession,
    principal: Authenticated,
    repo_id: str,
    skipped: Annotated[
        bool | None, Query(description="Only skipped (true) or indexed (false)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[dict[str, Any]]:
    repo, _ = await repo_access(request, db, principal, repo_id, Role.viewer, "read")
    rows = await service.list_files(runtime, repo, skipped=skipped, limit=limit, offset=offset)
    return [
        {"path": path, "language": language, "size": size, "skipped": reason}
        for path, language, size, reason in rows
    ]


@router.get(
    "/repos/{repo_id}/files/{path:path}",
    summary="A file's text as indexed (the code view)",
    responses=ERRORS,
)
async def read_repository_file(
    request: Request,
    runtime: RuntimeDep,
    db: DbSession,
    principal: Authenticated,
    repo_id: str,
    path: str,
) -> FileOut:
    repo, _ = await repo_access(request, db, principal, repo_id, Role.viewer, "read")
    content, language = await service.read_file(runtime, repo, path)
    return FileOut(
        repo_id=repo.id,
        path=path,
        language=language,
        content=content,
        lines=content.count("\n") + (0 if content.endswith("\n") or not content else 1),
    )


FINDING_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"description": "No such repository or finding, or not visible to the caller"},
    409: {
        "description": "The finding was moved already, the vault has a secret at that path, "
        "or the file no longer holds the credential"
    },
}


@router.get(
    "/repos/{repo_id}/findings",
    summary="Credentials secret scanning found in a repository (never their values)",
    responses=FINDING_ERRORS,
)
async def list_repository_findings(
    request: Request,
    db: DbSession,
    principal: Authenticated,
    repo_id: str,
    status: Annotated[
        Literal["open", "moved", "gone"] | None, Query(description="Only findings in this state")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[FindingOut]:
    repo, _ = await repo_access(request, db, principal, repo_id, Role.viewer, "read")
    rows = await findings.list_findings(db, repo.id, status=status, limit=limit, offset=offset)
    return [FindingOut(**findings.finding_dict(row)) for row in rows]


@router.post(
    "/repos/{repo_id}/findings/{finding_id}/move-to-vault",
    summary="Move a finding's value into the vault as a new secret; says how to clean history",
    responses=FINDING_ERRORS,
)
async def move_finding_to_vault(
    request: Request,
    runtime: RuntimeDep,
    db: DbSession,
    principal: AuthenticatedWriter,
    repo_id: str,
    finding_id: str,
    body: MoveToVaultIn,
) -> MoveToVaultOut:
    repo, access = await repo_access(request, db, principal, repo_id, Role.admin, "admin")
    moved = await scans.move_to_vault(
        runtime, db, access, repo, finding_id, vault_path=body.vault_path, key=body.key
    )
    return MoveToVaultOut(
        finding=FindingOut(**findings.finding_dict(moved.finding)),
        vault_path=moved.vault_path,
        key=moved.key,
        version=moved.version,
        reference=moved.reference,
        history_cleanup=HistoryCleanupOut(**moved.cleanup.as_dict()),
    )


@router.get("/search", summary="Search code: full text and vectors, fused", responses=ERRORS)
async def search_code(
    request: Request,
    runtime: RuntimeDep,
    db: DbSession,
    principal: Authenticated,
    q: Annotated[str, Query(min_length=1, max_length=1000, description="What to look for")],
    workspace_id: WorkspaceParam = None,
    repo: RepoParam = None,
    path: Annotated[
        str | None, Query(max_length=300, description="Path glob, e.g. src/**/*.py")
    ] = None,
    language: Annotated[str | None, Query(max_length=40)] = None,
    mode: Annotated[str, Query(description="hybrid, text or vector")] = "hybrid",
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> SearchOut:
    access = await chosen_workspace(
        db, principal, workspace_id, Role.viewer, "read", path=request.url.path
    )
    found, partial = await service.search_workspace(
        runtime,
        db,
        access.workspace.id,
        q,
        principal=principal,
        repos=repo,
        path_glob=path,
        language=language,
        mode=mode,
        limit=limit,
    )
    hits = [
        HitOut(
            repo_id=item.repo.id,
            repo=item.repo.name,
            path=item.hit.path,
            start_line=item.hit.start_line,
            end_line=item.hit.end_line,
            language=item.hit.language,
            kind=item.hit.kind,
            symbol=item.hit.symbol,
            score=item.hit.score,
            snippet=item.hit.text,
            url=item.url,
        )
        for item in found
    ]
    return SearchOut(query=q, mode=mode, hits=hits, partial=partial)


@router.get("/symbols", summary="Find definitions by name", responses=ERRORS)
async def search_symbols(
    request: Request,
    runtime: RuntimeDep,
    db: DbSession,
    principal: Authenticated,
    name: Annotated[str, Query(min_length=1, max_length=200)],
    workspace_id: WorkspaceParam = None,
    repo: RepoParam = None,
    kind: Annotated[str | None, Query(max_length=40, description="function, class, ...")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[SymbolOut]:
    access = await chosen_workspace(
        db, principal, workspace_id, Role.viewer, "read", path=request.url.path
    )
    found = await service.find_symbols(
        runtime, db, access.workspace.id, name, repos=repo, kind=kind, limit=limit
    )
    return [
        SymbolOut(
            repo_id=r.id,
            repo=r.name,
            path=s.path,
            name=s.name,
            kind=s.kind,
            start_line=s.start_line,
            end_line=s.end_line,
            container=s.container,
            signature=s.signature,
            language=s.language,
            url=answers.code_url(r.workspace_id, r.id, s.path, s.start_line, s.end_line),
        )
        for s, r in found
    ]


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@router.post(
    "/ask",
    summary="Ask the codebase: an answer with citations (streamed on request)",
    response_model=AskOut,
    responses={
        **ERRORS,
        200: {
            "description": "The answer (JSON), or with `stream: true` its events: "
            "`citations`, `delta`s, then `done`",
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        },
    },
)
async def ask(
    request: Request,
    runtime: RuntimeDep,
    db: DbSession,
    principal: GatewayCaller,
    body: AskRequest,
) -> Response:
    access = await chosen_workspace(
        db, principal, body.workspace_id, Role.member, "gateway", path=request.url.path
    )
    workspace_id = access.workspace.id
    retrieved = await answers.retrieve(
        runtime,
        db,
        workspace_id,
        body.question,
        repo_ids=body.repos,
        limit=body.limit,
        principal=principal,
    )
    gateway: Gateway = request.app.state.gateway
    ctx = await call_context_for(gateway, db, principal, workspace_id)
    await db.commit()  # nothing of this session is needed while the model answers
    model = body.model or runtime.settings.context_answer_model
    citations = [c.as_dict() for c in retrieved.citations]
    pieces = answers.ask_stream(
        runtime, gateway, ctx, model, retrieved, body.question, max_tokens=body.max_tokens
    )
    if body.stream:
        first = await anext(pieces)  # errors before the first token answer as HTTP errors

        async def events() -> AsyncIterator[bytes]:
            yield _sse("citations", citations)
            item: Any = first
            while True:
                if isinstance(item, TextStreamEnd):
                    yield _sse(
                        "done",
                        {
                            "model": item.model,
                            "usage": {
                                "prompt_tokens": item.prompt_tokens,
                                "completion_tokens": item.completion_tokens,
                            },
                            "cost_usd": item.cost_usd,
                            "error": item.error,
                        },
                    )
                    return
                yield _sse("delta", {"text": item})
                try:
                    item = await anext(pieces)
                except StopAsyncIteration:
                    return

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)
    end: TextStreamEnd | None = None
    async for item in pieces:
        if isinstance(item, TextStreamEnd):
            end = item
    assert end is not None
    out = AskOut(
        answer=end.text,
        model=end.model,
        citations=[CitationOut(**c) for c in citations],
        usage={"prompt_tokens": end.prompt_tokens, "completion_tokens": end.completion_tokens},
    )
    return JSONResponse(out.model_dump(mode="json"))
