"""Secret scanning that reads a repository's files: the whole tree, the git history, and
moving one finding's value into the vault.

Indexing already scans every file it reads again (indexer.py); `scan_tree` reads every
file regardless, e.g. after the rules changed, and `scan_history` reads every commit
reachable from HEAD (`hexahub repo scan`). A finding's value is never stored, so
`move_to_vault` reads it again from the file (or from the commit that added it) and
knows it by its fingerprint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.context import files, findings, history, scanning, service
from hexahub.context.indexer import Progress
from hexahub.context.models import Repository, SecretFinding
from hexahub.context.sources import SourceError, unshallow
from hexahub.core.db import utcnow
from hexahub.core.errors import Conflict, ValidationFailed
from hexahub.core.runtime import Runtime
from hexahub.identity import audit
from hexahub.identity.authz import WorkspaceAccess
from hexahub.identity.models import Workspace
from hexahub.vault import policies as vault_policies
from hexahub.vault import service as vault

_BATCH = 16  # files read and scanned per trip to a worker thread


@dataclass(frozen=True)
class ScanReport:
    scanned: int  # files (tree) or commits (history)
    found: int  # distinct credentials seen
    open: int  # open findings of the repository afterwards


class ScanFailed(ValidationFailed):
    """The repository cannot be scanned (no longer there, not a git repository, ...)."""


# --- the tree ----------------------------------------------------------------------------


def _scan_file(root: Path, path: str, max_bytes: int) -> list[scanning.Detection]:
    try:
        data = (root / path).read_bytes()
    except OSError:
        return []
    if len(data) > max_bytes:
        return []
    text, reason = files.check_content(path, data, max_bytes=max_bytes)
    if text is None and reason == files.SECRETS_FILE:
        text = files.decode_text(data)
    return list(scanning.scan_text(path, text).detections) if text is not None else []


async def _tree(runtime: Runtime, repo: Repository) -> tuple[Path, str | None]:
    async with runtime.db.sessions() as db:
        fresh = await service.get_repo(db, repo.id)
        try:
            return await service.working_tree(runtime, db, fresh)
        except SourceError as exc:
            raise ScanFailed(str(exc)) from None


async def scan_tree(
    runtime: Runtime,
    repo: Repository,
    *,
    progress: Progress | None = None,
    actor_label: str | None = None,
) -> ScanReport:
    """Scan every file of the repository's tree (as indexing sees it: the same ignores and
    include/exclude globs, secrets files included) and bring its findings up to date."""
    root, commit = await _tree(runtime, repo)
    include, exclude = list(repo.include or []), list(repo.exclude or [])
    paths = await asyncio.to_thread(
        lambda: list(files.walk(root, include=include, exclude=exclude))
    )
    secret_key = runtime.settings.resolved_secret_key()
    max_bytes = runtime.settings.context_max_file_bytes
    seen: dict[findings.Key, findings.Seen] = {}
    for start in range(0, len(paths), _BATCH):
        part = paths[start : start + _BATCH]

        def work(part: list[str] = part) -> list[tuple[str, list[scanning.Detection]]]:
            return [(path, _scan_file(root, path, max_bytes)) for path in part]

        for path, found in await asyncio.to_thread(work):
            seen.update(findings.seen_in_file(secret_key, path, found, commit))
        if progress is not None:
            await progress("scanning files", min(start + _BATCH, len(paths)), len(paths))
    async with runtime.db.sessions() as db:
        await findings.record_tree(db, repo.workspace_id, repo.id, seen, paths=None)
        return await _finish(db, repo, "tree", len(paths), len(seen), actor_label)


async def _finish(
    db: AsyncSession,
    repo: Repository,
    kind: str,
    scanned: int,
    found: int,
    actor_label: str | None,
) -> ScanReport:
    still_open = await findings.count_open(db, repo.workspace_id, repo.id)
    audit.record(
        db,
        "repo.scanned",
        actor_label=actor_label or "system",
        workspace_id=repo.workspace_id,
        target_type="repository",
        target_id=repo.id,
        details={"scope": kind, "scanned": scanned, "found": found, "open": still_open},
    )
    await db.commit()
    return ScanReport(scanned, found, still_open)


# --- the history -------------------------------------------------------------------------


async def _history_root(runtime: Runtime, repo: Repository) -> Path:
    """A work tree with the whole history of the repository's branch."""
    if repo.source_kind == "path":
        root = Path(repo.location)
        if not await asyncio.to_thread(history.is_git_repository, root):
            raise ScanFailed(f"{root} is not a git repository: it has no history to scan")
        return root
    root, _ = await _tree(runtime, repo)
    settings = runtime.settings
    async with runtime.db.sessions() as db:
        fresh = await service.get_repo(db, repo.id)
        credential = await service.repo_credential(runtime, db, fresh)
    try:
        await unshallow(
            repo.location,
            root,
            branch=repo.branch,
            credential=credential,
            limit=settings.context_git_timeout_seconds,
            known_hosts=settings.resolved_context_repos_dir / "known_hosts",
        )
    except SourceError as exc:
        raise ScanFailed(str(exc)) from None
    return root


def _scan_history(
    root: Path,
    keep: Callable[[str], bool],
    secret_key: str,
    on_commit: Callable[[int], None],
) -> tuple[int, dict[findings.Key, findings.Seen]]:
    seen: dict[findings.Key, findings.Seen] = {}
    commits = 0

    def started(_: str) -> None:
        nonlocal commits
        commits += 1
        on_commit(commits)

    for added in history.added_lines(root, keep=keep, on_commit=started):
        for found in scanning.detect_lines(added.path, added.lines, added.first_line):
            key = (added.path, found.rule, scanning.fingerprint(secret_key, found.value))
            # Oldest commit first: the first sighting is the commit that added it.
            seen.setdefault(key, findings.Seen(found.line, added.commit))
    return commits, seen


async def scan_history(
    runtime: Runtime,
    repo: Repository,
    *,
    on_commit: Callable[[int, int], None] | None = None,
    actor_label: str | None = None,
) -> ScanReport:
    """Scan every commit reachable from HEAD for credentials it added (also those deleted
    since). `on_commit(done, total)` is called from a worker thread as commits go by."""
    root = await _history_root(runtime, repo)
    try:
        total = await asyncio.to_thread(history.count_commits, root)
    except history.HistoryError as exc:
        raise ScanFailed(str(exc)) from None
    keep_path = files.path_filter(
        include=list(repo.include or []), exclude=list(repo.exclude or [])
    )

    def keep(path: str) -> bool:
        return keep_path(path) and not files.noise_by_name(path)

    def tick(done: int) -> None:
        if on_commit is not None:
            on_commit(done, total)

    secret_key = runtime.settings.resolved_secret_key()
    try:
        commits, seen = await asyncio.to_thread(_scan_history, root, keep, secret_key, tick)
    except history.HistoryError as exc:
        raise ScanFailed(str(exc)) from None
    async with runtime.db.sessions() as db:
        await findings.record_history(db, repo.workspace_id, repo.id, seen)
        return await _finish(db, repo, "history", commits, len(seen), actor_label)


# --- into the vault ----------------------------------------------------------------------


@dataclass(frozen=True)
class Moved:
    finding: SecretFinding
    vault_path: str
    key: str
    version: int
    reference: str  # vault://<workspace>/<path>#<key>, for the code that needs the value
    cleanup: findings.HistoryCleanup


def _read_inside(root: Path, path: str) -> bytes | None:
    target = (root / path).resolve()
    if not target.is_relative_to(root.resolve()):
        return None  # never follow a path out of the repository
    try:
        return target.read_bytes()
    except OSError:
        return None


def _value_of(root: Path, finding: SecretFinding, secret_key: str) -> str | None:
    """The finding's value as the file holds it now, else as the commit that added it."""
    sources = []
    if finding.in_tree:
        sources.append(lambda: _read_inside(root, finding.path))
    if finding.commit and history.is_git_repository(root):
        commit = finding.commit
        sources.append(lambda: history.file_at(root, commit, finding.path))
    for read in sources:
        data = read()
        text = files.decode_text(data) if data is not None else None
        if text is None:
            continue
        for found in scanning.scan_text(finding.path, text).detections:
            if found.rule == finding.rule and (
                scanning.fingerprint(secret_key, found.value) == finding.fingerprint
            ):
                return found.value
    return None


async def move_to_vault(
    runtime: Runtime,
    db: AsyncSession,
    access: WorkspaceAccess,
    repo: Repository,
    finding_id: str,
    *,
    vault_path: str,
    key: str = vault.DEFAULT_KEY,
) -> Moved:
    """Store the finding's value as a new vault secret at `vault_path` (never over an
    existing one) and mark the finding moved; commits. The vault audits the write of the
    value; this audits the move."""
    settings = runtime.settings
    vault_path = vault_policies.check_path(vault_path, field="vault_path")
    key = vault.check_key_name(key)
    finding = await findings.get_finding(db, repo.id, finding_id)
    if finding.status == findings.MOVED:
        raise Conflict(f"this finding was already moved into the vault at {finding.vault_path}")
    repo_name, workspace_id = repo.name, repo.workspace_id
    root = (
        Path(repo.location) if repo.source_kind == "path" else service.clone_dir(settings, repo.id)
    )
    value = await asyncio.to_thread(_value_of, root, finding, settings.resolved_secret_key())
    if value is None:
        raise Conflict(
            f"{finding.path} no longer holds this credential (nor does the commit that added "
            "it, where known); index or scan the repository again"
        )
    try:
        row = await vault.write_secret(
            db,
            settings,
            vault.Caller.of(access),
            workspace_id,
            vault_path,
            {key: value},
            cas=0,
            details={"from_finding": finding_id, "repository": repo_name},
        )
    except Conflict:
        raise Conflict(
            f"the vault already has a secret at {vault_path}; choose a new path (a move never "
            "overwrites a secret)"
        ) from None
    finding = await findings.get_finding(db, repo.id, finding_id)
    finding.status = findings.MOVED
    finding.vault_path = vault_path
    finding.resolved_at = utcnow()
    finding.resolved_by = access.principal.label
    audit.record(
        db,
        "repo.finding_moved",
        actor=access.principal,
        workspace_id=workspace_id,
        target_type="secret_finding",
        target_id=finding.id,
        details={
            "repository": repo_name,
            "path": finding.path,
            "line": finding.line,
            "rule": finding.rule,
            "vault_path": vault_path,
            "version": row.version,
        },
    )
    await db.commit()
    workspace = await db.get(Workspace, workspace_id)
    slug = workspace.slug if workspace is not None else workspace_id
    return Moved(
        finding=finding,
        vault_path=vault_path,
        key=key,
        version=row.version,
        reference=f"{vault.REFERENCE_SCHEME}{slug}/{vault_path}#{key}",
        cleanup=findings.history_cleanup(finding.path),
    )
