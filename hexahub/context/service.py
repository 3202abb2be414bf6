"""Code context: repositories, their indexing, search, symbols and the code view.

Knows nothing of HTTP. Routes and pages authorise first (hexahub.identity.authz) and then
call these functions with the workspace they were allowed into.

Indexing runs on the task queue (tasks.py): `request_index` records the request and
enqueues `context.index`; that task reads the tree into the store (full text works as
soon as it finishes) and enqueues `context.embed`, which fills in the vectors behind it.
The repository row carries the live state and progress that the pages and the CLI show.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.context import findings, indexer
from hexahub.context import search as searching
from hexahub.context.answers import code_url
from hexahub.context.embeddings import Embedder, GatewayEmbedder, gateway_of
from hexahub.context.models import Repository
from hexahub.context.schemas import RepoCreate, RepoUpdate
from hexahub.context.sources import (
    Credential,
    SourceError,
    check_branch,
    check_git_url,
    local_commit,
    sync_git,
)
from hexahub.context.stores import IndexStore, PostgresStore, SqliteStore
from hexahub.context.types import Hit, SearchFilters, SymbolHit
from hexahub.core.crypto import seal, unseal
from hexahub.core.db import new_id, utcnow
from hexahub.core.errors import Conflict, NotFound, ValidationFailed
from hexahub.core.runtime import Runtime
from hexahub.identity import audit
from hexahub.identity.authz import Principal
from hexahub.settings import Settings
from hexahub.vault import service as vault

log = logging.getLogger("hexahub.context")

BUSY_STATES = ("queued", "indexing")
EMBED_SLICE_SECONDS = 600.0  # an embed task yields the worker after this and re-enqueues


# --- the store --------------------------------------------------------------------------


async def store_of(runtime: Runtime) -> IndexStore:
    """The process's index store, opened on first use and closed with the runtime."""
    found = runtime.services.get("context.store")
    if found is not None:
        return found
    lock: asyncio.Lock = runtime.services.setdefault("context.store.lock", asyncio.Lock())
    async with lock:
        found = runtime.services.get("context.store")
        if found is None:
            found = make_store(runtime.settings)
            await found.open()
            runtime.services["context.store"] = found
            runtime.closers.append(found.close)
            if found.rebuilt:
                await _reindex_all(runtime)
    return found


async def _reindex_all(runtime: Runtime) -> None:
    """After the store dropped an index of another format: queue every repository."""
    async with runtime.db.sessions() as db:
        repos = list((await db.execute(select(Repository))).scalars())
        log.warning(
            "the code index was written by another version of HexaHub and starts over; "
            "re-indexing %d repositories",
            len(repos),
        )
        for repo in repos:
            # Conflict: already queued or running, and that run fills the new index.
            with contextlib.suppress(Conflict):
                await request_index(runtime, db, None, repo, actor_label="index format upgrade")


def make_store(settings: Settings) -> IndexStore:
    if settings.is_sqlite:
        return SqliteStore(settings.resolved_context_index_path)
    return PostgresStore(settings.resolved_database_url)


# --- repositories -----------------------------------------------------------------------


def repo_dict(repo: Repository) -> dict[str, Any]:
    """The API's view of a repository (never the credential)."""
    return {
        "id": repo.id,
        "workspace_id": repo.workspace_id,
        "name": repo.name,
        "source": repo.source_kind,
        "location": repo.location,
        "branch": repo.branch,
        "include": list(repo.include or []),
        "exclude": list(repo.exclude or []),
        "has_credential": repo.credential_sealed is not None,
        "state": repo.state,
        "phase": repo.phase,
        "progress_done": repo.progress_done,
        "progress_total": repo.progress_total,
        "last_error": repo.last_error,
        "last_commit": repo.last_commit,
        "indexed_at": repo.indexed_at,
        "files": repo.files_count,
        "skipped": repo.skipped_count,
        "chunks": repo.chunks_count,
        "embedded": repo.embedded_count,
        "symbols": repo.symbols_count,
        "embedding_model": repo.embedding_model,
        "created_at": repo.created_at,
    }


async def list_repos(db: AsyncSession, workspace_id: str) -> list[Repository]:
    rows = await db.scalars(
        select(Repository).where(Repository.workspace_id == workspace_id).order_by(Repository.name)
    )
    return list(rows.all())


async def get_repo(db: AsyncSession, repo_id: str) -> Repository:
    repo = await db.get(Repository, repo_id)
    if repo is None:
        raise NotFound(f"no repository with id {repo_id}")
    return repo


async def find_repo(db: AsyncSession, workspace_id: str, name_or_id: str) -> Repository:
    repo = await db.scalar(
        select(Repository).where(
            Repository.workspace_id == workspace_id,
            (Repository.name == name_or_id) | (Repository.id == name_or_id),
        )
    )
    if repo is None:
        raise NotFound(f"no repository named {name_or_id!r} in this workspace")
    return repo


def _check_globs(field: str, patterns: list[str]) -> list[str]:
    cleaned = []
    for pattern in patterns:
        pattern = pattern.strip()
        if not pattern or len(pattern) > 300 or "\x00" in pattern:
            raise ValidationFailed(f"{field}: {pattern!r} is not a usable glob pattern")
        cleaned.append(pattern)
    return cleaned


def _check_local_path(settings: Settings, principal: Principal | None, location: str) -> str:
    path = Path(location).expanduser()
    if not path.is_absolute():
        raise ValidationFailed("location: a local repository needs an absolute path")
    resolved = path.resolve()
    if principal is not None and not principal.is_instance_admin:
        roots = [root.expanduser().resolve() for root in settings.context_local_roots]
        if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
            raise ValidationFailed(
                "location: only installation administrators may index any server directory; "
                + (
                    "others may use directories under "
                    + ", ".join(str(r) for r in roots)
                    + " (HEXAHUB_CONTEXT_LOCAL_ROOTS)"
                    if roots
                    else "set HEXAHUB_CONTEXT_LOCAL_ROOTS to allow directories for everyone"
                )
            )
    if not resolved.is_dir():
        raise ValidationFailed(f"location: {resolved} is not a directory on the server")
    return str(resolved)


def _seal_credential(settings: Settings, repo_id: str, value: str) -> str:
    if vault.is_reference(value):
        return value  # resolved (and audited) by the vault at each fetch
    return seal(settings.resolved_secret_key(), value, context=f"repo-credential:{repo_id}")


async def create_repo(
    db: AsyncSession,
    settings: Settings,
    principal: Principal | None,
    workspace_id: str,
    spec: RepoCreate,
    *,
    actor_label: str | None = None,
) -> Repository:
    """Add a repository. `principal` None is HexaHub itself (the CLI), named in the audit
    log by `actor_label`."""
    if spec.source == "path":
        location = _check_local_path(settings, principal, spec.location)
        if spec.credential:
            raise ValidationFailed("credential: a local directory needs no credential")
    else:
        location = check_git_url(spec.location)
        if (
            location.startswith("file://")
            and principal is not None
            and not principal.is_instance_admin
        ):
            raise ValidationFailed(
                "location: file:// URLs read the server's disk; only installation "
                "administrators may use them"
            )
    if spec.credential and not spec.credential_kind:
        raise ValidationFailed("credential_kind: say whether the credential is a token or ssh_key")
    existing = await db.scalar(
        select(Repository.id).where(
            Repository.workspace_id == workspace_id, Repository.name == spec.name
        )
    )
    if existing is not None:
        raise Conflict(f"this workspace already has a repository named {spec.name!r}")
    repo = Repository(
        workspace_id=workspace_id,
        name=spec.name,
        source_kind=spec.source,
        location=location,
        branch=check_branch(spec.branch),
        include=_check_globs("include", spec.include),
        exclude=_check_globs("exclude", spec.exclude),
        created_by=principal.user.id if principal else None,
        state="idle",
        phase="",
    )
    repo.id = new_id()
    if spec.credential:
        repo.credential_kind = spec.credential_kind
        repo.credential_sealed = _seal_credential(settings, repo.id, spec.credential)
    db.add(repo)
    audit.record(
        db,
        "repo.created",
        actor=principal,
        actor_label=actor_label,
        workspace_id=workspace_id,
        target_type="repository",
        target_id=repo.id,
        after={"name": repo.name, "source": repo.source_kind, "location": repo.location},
    )
    await db.flush()
    return repo


async def update_repo(
    db: AsyncSession, settings: Settings, principal: Principal, repo: Repository, spec: RepoUpdate
) -> Repository:
    before = {"branch": repo.branch, "include": repo.include, "exclude": repo.exclude}
    fields = spec.model_fields_set
    if "branch" in fields:
        if repo.source_kind != "git" and spec.branch:
            raise ValidationFailed("branch: only git repositories follow a branch")
        repo.branch = check_branch(spec.branch)
    if spec.include is not None:
        repo.include = _check_globs("include", spec.include)
    if spec.exclude is not None:
        repo.exclude = _check_globs("exclude", spec.exclude)
    if spec.clear_credential:
        repo.credential_kind = None
        repo.credential_sealed = None
    elif spec.credential:
        if repo.source_kind != "git":
            raise ValidationFailed("credential: a local directory needs no credential")
        if not spec.credential_kind:
            raise ValidationFailed("credential_kind: say whether it is a token or ssh_key")
        repo.credential_kind = spec.credential_kind
        repo.credential_sealed = _seal_credential(settings, repo.id, spec.credential)
    audit.record(
        db,
        "repo.updated",
        actor=principal,
        workspace_id=repo.workspace_id,
        target_type="repository",
        target_id=repo.id,
        before=before,
        after={
            "branch": repo.branch,
            "include": repo.include,
            "exclude": repo.exclude,
            "credential_changed": bool(spec.credential) or spec.clear_credential,
        },
    )
    await db.flush()
    return repo


async def delete_repo(
    runtime: Runtime,
    db: AsyncSession,
    principal: Principal | None,
    repo: Repository,
    *,
    actor_label: str | None = None,
) -> None:
    audit.record(
        db,
        "repo.deleted",
        actor=principal,
        actor_label=actor_label,
        workspace_id=repo.workspace_id,
        target_type="repository",
        target_id=repo.id,
        before={"name": repo.name, "location": repo.location},
    )
    await db.delete(repo)
    await db.flush()
    store = await store_of(runtime)
    await store.drop_repo(repo.id)
    clone = clone_dir(runtime.settings, repo.id)
    if clone.exists():
        await asyncio.to_thread(shutil.rmtree, clone, True)


def clone_dir(settings: Settings, repo_id: str) -> Path:
    return settings.resolved_context_repos_dir / repo_id


# --- indexing ---------------------------------------------------------------------------


async def request_index(
    runtime: Runtime,
    db: AsyncSession,
    principal: Principal | None,
    repo: Repository,
    *,
    full: bool = False,
    actor_label: str | None = None,
) -> Repository:
    """Queue an index of `repo`. One at a time: a request while one is queued or running
    answers 409 and changes nothing."""
    claimed = await db.execute(
        update(Repository)
        .where(Repository.id == repo.id, Repository.state.not_in(BUSY_STATES))
        .values(
            state="queued",
            phase="waiting for a worker",
            last_error=None,
            progress_done=0,
            progress_total=0,
        )
    )
    if claimed.rowcount == 0:  # type: ignore[attr-defined]
        raise Conflict(f"repository {repo.name!r} is already being indexed; wait for it to finish")
    audit.record(
        db,
        "repo.index_requested",
        actor=principal,
        actor_label=actor_label or (None if principal else "system"),
        workspace_id=repo.workspace_id,
        target_type="repository",
        target_id=repo.id,
        details={"full": full},
    )
    await db.commit()
    task_id = await runtime.queue.enqueue("context.index", {"repo_id": repo.id, "full": full})
    await db.execute(update(Repository).where(Repository.id == repo.id).values(task_id=task_id))
    await db.commit()
    await db.refresh(repo)
    return repo


class _ProgressWriter:
    """Writes a repository's phase and progress, at most every half second."""

    def __init__(self, runtime: Runtime, repo_id: str) -> None:
        self.runtime = runtime
        self.repo_id = repo_id
        self._last = 0.0

    async def __call__(self, phase: str, done: int, total: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.5 and done < total:
            return
        self._last = now
        await self.set(phase=phase, progress_done=done, progress_total=total)

    async def set(self, **values: Any) -> None:
        async with self.runtime.db.sessions() as db:
            await db.execute(
                update(Repository).where(Repository.id == self.repo_id).values(**values)
            )
            await db.commit()


async def repo_credential(
    runtime: Runtime, db: AsyncSession, repo: Repository
) -> Credential | None:
    """The repository's git credential, from its sealed value or the vault (audited)."""
    if not repo.credential_sealed or not repo.credential_kind:
        return None
    if vault.is_reference(repo.credential_sealed):
        resolved = await vault.resolve_reference(
            db,
            runtime.settings,
            repo.credential_sealed,
            purpose=f"repository {repo.name}",
            workspace_id=repo.workspace_id,
        )
        await db.commit()
        return Credential(repo.credential_kind, resolved.get_secret_value())
    secret = runtime.settings.resolved_secret_key()
    value = unseal(secret, repo.credential_sealed, context=f"repo-credential:{repo.id}")
    return Credential(repo.credential_kind, value)


async def working_tree(
    runtime: Runtime, db: AsyncSession, repo: Repository
) -> tuple[Path, str | None]:
    """Where the repository's files are (a git source is fetched first), and the commit."""
    if repo.source_kind == "path":
        root = Path(repo.location)
        if not await asyncio.to_thread(root.is_dir):
            raise SourceError(f"{root} is not a directory on this server (any more)")
        return root, await local_commit(root)
    settings = runtime.settings
    dest = clone_dir(settings, repo.id)
    commit = await sync_git(
        repo.location,
        dest,
        branch=repo.branch,
        credential=await repo_credential(runtime, db, repo),
        limit=settings.context_git_timeout_seconds,
        known_hosts=settings.resolved_context_repos_dir / "known_hosts",
    )
    return dest, commit


async def run_index(
    runtime: Runtime, repo_id: str, *, full: bool = False
) -> indexer.IndexReport | None:
    """The `context.index` task: bring the repository's index up to date with its tree."""
    writer = _ProgressWriter(runtime, repo_id)
    async with runtime.db.sessions() as db:
        repo = await db.get(Repository, repo_id)
        if repo is None:
            return None  # removed meanwhile
        await writer.set(state="indexing", phase="fetching", last_error=None)
        store = await store_of(runtime)
        try:
            root, commit = await working_tree(runtime, db, repo)
        except SourceError as exc:
            await writer.set(state="failed", phase="", last_error=str(exc))
            return None
        if full:
            await store.drop_repo(repo_id)
        include, exclude = list(repo.include or []), list(repo.exclude or [])
        recorder = findings.IndexFindings(runtime, repo_id, repo.workspace_id, commit)
    try:
        await recorder.load()
        report = await indexer.index_tree(
            store,
            repo_id,
            root,
            include=include,
            exclude=exclude,
            max_bytes=runtime.settings.context_max_file_bytes,
            progress=writer,
            findings=recorder,
        )
    except Exception as exc:
        await writer.set(state="failed", phase="", last_error=f"indexing failed: {exc}")
        raise
    model = runtime.settings.context_embedding_model
    counts = await store.counts(repo_id, model)
    needs_vectors = store.has_vectors and counts.embedded < counts.chunks
    await writer.set(
        state="embedding" if needs_vectors else "ready",
        phase="embedding chunks" if needs_vectors else "",
        progress_done=counts.embedded if needs_vectors else 0,
        progress_total=counts.chunks if needs_vectors else 0,
        last_commit=commit,
        indexed_at=utcnow(),
        files_count=counts.files,
        skipped_count=counts.skipped,
        chunks_count=counts.chunks,
        embedded_count=counts.embedded,
        symbols_count=counts.symbols,
        embedding_model=model if store.has_vectors else None,
        last_error=None
        if store.has_vectors
        else "vector search is off: the database has no pgvector extension (full text only)",
    )
    if needs_vectors:
        await runtime.queue.enqueue("context.embed", {"repo_id": repo_id})
    log.info(
        "indexed %s: %d files (%d changed, %d removed, %d skipped), %d chunks, "
        "%d credentials redacted in %.1f s",
        repo_id,
        report.seen,
        report.changed,
        report.removed,
        report.skipped,
        report.chunks,
        report.secrets,
        report.seconds,
    )
    return report


async def embedder_for(
    runtime: Runtime,
    db: AsyncSession,
    workspace_id: str,
    *,
    principal: Principal | None = None,
) -> Embedder:
    from hexahub.gateway import service as gateway_service

    policy = await gateway_service.workspace_policy(db, workspace_id)
    return GatewayEmbedder(
        await gateway_of(runtime),
        runtime.settings.context_embedding_model,
        workspace_id=workspace_id,
        user_id=principal.user.id if principal else None,
        key_id=principal.api_key.id if principal and principal.api_key else None,
        local_only=policy.local_only,
    )


async def run_embed(runtime: Runtime, repo_id: str) -> int:
    """The `context.embed` task: vectors for the chunks that have none, a slice at a time."""
    writer = _ProgressWriter(runtime, repo_id)
    async with runtime.db.sessions() as db:
        repo = await db.get(Repository, repo_id)
        if repo is None:
            return 0
        if repo.state in BUSY_STATES:
            return 0  # a re-index is under way; it enqueues a fresh embed when done
        embedder = await embedder_for(runtime, db, repo.workspace_id)
    store = await store_of(runtime)
    deadline = time.monotonic() + EMBED_SLICE_SECONDS
    try:
        count = await indexer.embed_pending(
            store,
            embedder,
            repo_id,
            batch_size=runtime.settings.context_embed_batch_size,
            progress=writer,
            deadline=deadline,
        )
    except Exception as exc:
        counts = await store.counts(repo_id, embedder.model)
        await writer.set(
            state="ready",
            phase="",
            embedded_count=counts.embedded,
            last_error=f"embedding stopped ({exc}); full-text search works, "
            "vector search covers the chunks embedded so far",
        )
        raise
    counts = await store.counts(repo_id, embedder.model)
    if counts.embedded < counts.chunks and time.monotonic() >= deadline:
        await writer.set(embedded_count=counts.embedded)
        await runtime.queue.enqueue("context.embed", {"repo_id": repo_id})
        return count
    async with runtime.db.sessions() as db:
        # Only settle the state if no re-index started meanwhile.
        await db.execute(
            update(Repository)
            .where(Repository.id == repo_id, Repository.state == "embedding")
            .values(state="ready", phase="", progress_done=0, progress_total=0)
        )
        await db.execute(
            update(Repository)
            .where(Repository.id == repo_id)
            .values(embedded_count=counts.embedded, chunks_count=counts.chunks)
        )
        await db.commit()
    return count


# --- search -----------------------------------------------------------------------------


@dataclass
class Found:
    hit: Hit
    repo: Repository

    @property
    def url(self) -> str:
        h = self.hit
        return code_url(self.repo.workspace_id, self.repo.id, h.path, h.start_line, h.end_line)


async def _scope(
    db: AsyncSession, workspace_id: str, repos: list[str] | None
) -> dict[str, Repository]:
    if repos:
        chosen = [await find_repo(db, workspace_id, name) for name in repos]
    else:
        chosen = await list_repos(db, workspace_id)
    return {repo.id: repo for repo in chosen}


def _check_glob(glob: str | None) -> str | None:
    if glob is None or not glob.strip():
        return None
    glob = glob.strip()
    if len(glob) > 300 or "\x00" in glob:
        raise ValidationFailed("path: not a usable glob pattern")
    fnmatch.translate(glob)
    return glob


async def search_workspace(
    runtime: Runtime,
    db: AsyncSession,
    workspace_id: str,
    query: str,
    *,
    principal: Principal | None = None,
    repos: list[str] | None = None,
    path_glob: str | None = None,
    language: str | None = None,
    mode: str = "hybrid",
    limit: int = 10,
) -> tuple[list[Found], list[str]]:
    """Hits with their repositories, and the names of repositories whose vectors are not
    complete yet (their results lean on full text)."""
    if not query.strip():
        raise ValidationFailed("q: say what to search for")
    if mode not in searching.MODES:
        raise ValidationFailed(f"mode: must be one of {', '.join(searching.MODES)}")
    scope = await _scope(db, workspace_id, repos)
    if not scope:
        return [], []
    store = await store_of(runtime)
    embedder = None
    if mode != "text" and store.has_vectors:
        embedder = await embedder_for(runtime, db, workspace_id, principal=principal)
    filters = SearchFilters(
        repo_ids=tuple(scope), path_glob=_check_glob(path_glob), language=language or None
    )
    chosen = cast(searching.Mode, mode)
    hits = await searching.search(store, embedder, query, filters, mode=chosen, limit=limit)
    partial = [
        repo.name
        for repo in scope.values()
        if store.has_vectors and repo.chunks_count and repo.embedded_count < repo.chunks_count
    ]
    return [Found(hit, scope[hit.repo_id]) for hit in hits], partial


async def find_symbols(
    runtime: Runtime,
    db: AsyncSession,
    workspace_id: str,
    name: str,
    *,
    repos: list[str] | None = None,
    kind: str | None = None,
    limit: int = 20,
) -> list[tuple[SymbolHit, Repository]]:
    if not name.strip():
        raise ValidationFailed("name: say which symbol to look for")
    scope = await _scope(db, workspace_id, repos)
    if not scope:
        return []
    store = await store_of(runtime)
    hits = await store.search_symbols(
        name.strip(), SearchFilters(repo_ids=tuple(scope)), limit, kind=kind or None
    )
    return [(hit, scope[hit.repo_id]) for hit in hits]


async def read_file(runtime: Runtime, repo: Repository, path: str) -> tuple[str, str]:
    """(content, language) of a file as indexed."""
    store = await store_of(runtime)
    found = await store.read_file(repo.id, path)
    if found is None:
        raise NotFound(f"{path} is not in the index of {repo.name}")
    return found


async def list_files(
    runtime: Runtime,
    repo: Repository,
    *,
    skipped: bool | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[tuple[str, str, int, str | None]]:
    store = await store_of(runtime)
    return await store.list_files(repo.id, skipped=skipped, limit=limit, offset=offset)
