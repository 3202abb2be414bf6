"""Secret findings: what scans found where, kept in the app database without the values.

Findings come from three places: every index (the files it reads again, through
`IndexFindings`), a scan of the whole tree, and a scan of the git history (scans.py).
Each is keyed by (repository, path, rule, fingerprint), so seeing a value again, or in
both the tree and the history, updates one row:

- a finding seen again gets its line and `last_seen_at` updated, and one that had gone
  opens again;
- a finding the tree no longer holds (the file changed or left the tree) and that no
  history scan saw is `gone`; one still in the history stays open, since its value is
  still in every clone until the history is rewritten;
- a finding moved into the vault stays `moved`, wherever it is seen again.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.context import files
from hexahub.context.models import FINDING_STATES, SecretFinding
from hexahub.context.scanning import Detection, fingerprint
from hexahub.core.db import new_id, utcnow
from hexahub.core.errors import NotFound, ValidationFailed
from hexahub.core.runtime import Runtime

OPEN, MOVED, GONE = FINDING_STATES
_BFG_TIDY = "cd repo.git && git reflog expire --expire=now --all && git gc --prune=now --aggressive"
# Paths per IN (...) list: well under every database's limit on bound parameters.
_PATHS_PER_QUERY = 500

Key = tuple[str, str, str]  # (path, rule, fingerprint)


@dataclass(frozen=True)
class Seen:
    """A credential a scan saw, as stored: never the value."""

    line: int
    commit: str | None


def seen_in_file(
    secret_key: str, path: str, found: Iterable[Detection], commit: str | None
) -> dict[Key, Seen]:
    """A file's detections keyed the way findings are; the first line of a value wins."""
    out: dict[Key, Seen] = {}
    for item in sorted(found, key=lambda d: d.line):
        out.setdefault(
            (path, item.rule, fingerprint(secret_key, item.value)), Seen(item.line, commit)
        )
    return out


# --- recording ---------------------------------------------------------------------------


async def _rows(
    db: AsyncSession, repo_id: str, paths: Collection[str] | None
) -> list[SecretFinding]:
    query = select(SecretFinding).where(SecretFinding.repo_id == repo_id)
    if paths is None:
        return list((await db.scalars(query)).all())
    ordered = sorted(paths)
    rows: list[SecretFinding] = []
    for start in range(0, len(ordered), _PATHS_PER_QUERY):
        part = ordered[start : start + _PATHS_PER_QUERY]
        rows.extend((await db.scalars(query.where(SecretFinding.path.in_(part)))).all())
    return rows


async def _insert(
    db: AsyncSession,
    workspace_id: str,
    repo_id: str,
    new: Mapping[Key, Seen],
    *,
    in_tree: bool,
    now: datetime,
) -> None:
    """Insert findings; one another scan inserted meanwhile is left as that scan wrote it."""
    if not new:
        return
    values = [
        {
            "id": new_id(),
            "workspace_id": workspace_id,
            "repo_id": repo_id,
            "path": path,
            "line": seen.line,
            "rule": rule,
            "fingerprint": print_,
            "commit": seen.commit,
            "in_tree": in_tree,
            "in_history": not in_tree,
            "status": OPEN,
            "first_seen_at": now,
            "last_seen_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for (path, rule, print_), seen in new.items()
    ]
    dialect = db.get_bind().dialect.name
    insert = postgres_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(SecretFinding).on_conflict_do_nothing(
        index_elements=["repo_id", "path", "rule", "fingerprint"]
    )
    await db.execute(statement, values)


async def record_tree(
    db: AsyncSession,
    workspace_id: str,
    repo_id: str,
    seen: Mapping[Key, Seen],
    *,
    paths: Collection[str] | None,
) -> None:
    """What a scan of the tree saw in `paths` (None: the whole tree). Findings in those
    paths it did not see have left the tree. The caller commits."""
    now = utcnow()
    left = dict(seen)
    for row in await _rows(db, repo_id, paths):
        key = (row.path, row.rule, row.fingerprint)
        found = left.pop(key, None)
        if found is not None:
            row.in_tree = True
            row.line = found.line
            row.last_seen_at = now
            row.commit = row.commit or found.commit
            if row.status == GONE:
                row.status = OPEN
        elif row.in_tree:
            row.in_tree = False
            if row.status == OPEN and not row.in_history:
                row.status = GONE
    await _insert(db, workspace_id, repo_id, left, in_tree=True, now=now)


async def record_history(
    db: AsyncSession, workspace_id: str, repo_id: str, seen: Mapping[Key, Seen]
) -> None:
    """What a scan of the whole history saw; `Seen.commit` is the commit that added the
    value. Findings it did not see are not in the history (any more). The caller commits."""
    now = utcnow()
    left = dict(seen)
    for row in await _rows(db, repo_id, None):
        key = (row.path, row.rule, row.fingerprint)
        found = left.pop(key, None)
        if found is not None:
            row.in_history = True
            row.commit = found.commit
            if not row.in_tree:
                row.line = found.line
            row.last_seen_at = now
            if row.status == GONE:
                row.status = OPEN
        elif row.in_history:
            row.in_history = False
            if row.status == OPEN and not row.in_tree:
                row.status = GONE
    await _insert(db, workspace_id, repo_id, left, in_tree=False, now=now)


class IndexFindings:
    """Records what an index run's scans find (indexer.FindingsSink). A file without
    findings, now or before, costs no database work."""

    def __init__(
        self, runtime: Runtime, repo_id: str, workspace_id: str, commit: str | None
    ) -> None:
        self.runtime = runtime
        self.repo_id = repo_id
        self.workspace_id = workspace_id
        self.commit = commit
        self._paths: set[str] = set()  # paths with findings in the tree

    async def load(self) -> None:
        async with self.runtime.db.sessions() as db:
            rows = await db.scalars(
                select(SecretFinding.path).where(
                    SecretFinding.repo_id == self.repo_id, SecretFinding.in_tree.is_(True)
                )
            )
            self._paths = set(rows.all())

    async def tree_listed(self, paths: Sequence[str]) -> None:
        present = set(paths)
        stale = [path for path in self._paths if path not in present]
        if stale:
            await self._record({}, stale)

    async def file_scanned(self, path: str, found: Sequence[Detection]) -> None:
        if not found and path not in self._paths:
            return
        secret_key = self.runtime.settings.resolved_secret_key()
        await self._record(seen_in_file(secret_key, path, found, self.commit), [path])

    async def _record(self, seen: Mapping[Key, Seen], paths: Sequence[str]) -> None:
        async with self.runtime.db.sessions() as db:
            await record_tree(db, self.workspace_id, self.repo_id, seen, paths=paths)
            await db.commit()
        self._paths.difference_update(paths)
        self._paths.update(path for path, _, _ in seen)


# --- reading -----------------------------------------------------------------------------


async def list_findings(
    db: AsyncSession, repo_id: str, *, status: str | None = None, limit: int = 500, offset: int = 0
) -> list[SecretFinding]:
    """Open findings first, then moved, then gone; by path and line within each."""
    if status is not None and status not in FINDING_STATES:
        raise ValidationFailed(f"status: must be one of {', '.join(FINDING_STATES)}")
    order = case({OPEN: 0, MOVED: 1}, value=SecretFinding.status, else_=2)
    query = select(SecretFinding).where(SecretFinding.repo_id == repo_id)
    if status is not None:
        query = query.where(SecretFinding.status == status)
    query = query.order_by(order, SecretFinding.path, SecretFinding.line, SecretFinding.id)
    return list((await db.scalars(query.limit(limit).offset(offset))).all())


async def count_open(db: AsyncSession, workspace_id: str, repo_id: str | None = None) -> int:
    query = select(func.count()).where(
        SecretFinding.workspace_id == workspace_id, SecretFinding.status == OPEN
    )
    if repo_id is not None:
        query = query.where(SecretFinding.repo_id == repo_id)
    return int(await db.scalar(query) or 0)


async def get_finding(db: AsyncSession, repo_id: str, finding_id: str) -> SecretFinding:
    row = await db.get(SecretFinding, finding_id)
    if row is None or row.repo_id != repo_id:
        raise NotFound(f"no finding with id {finding_id} in this repository")
    return row


def finding_dict(row: SecretFinding) -> dict[str, Any]:
    """The API's view of a finding: where and what kind, never the value or its hash."""
    return {
        "id": row.id,
        "repo_id": row.repo_id,
        "path": row.path,
        "line": row.line,
        "rule": row.rule,
        "commit": row.commit,
        "in_tree": row.in_tree,
        "in_history": row.in_history,
        "status": row.status,
        "first_seen_at": row.first_seen_at,
        "last_seen_at": row.last_seen_at,
        "vault_path": row.vault_path,
        "resolved_at": row.resolved_at,
        "resolved_by": row.resolved_by,
    }


# --- the history -------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryCleanup:
    """How to take a credential out of a repository's git history."""

    steps: list[str]
    filter_repo: list[str]  # commands with git filter-repo
    bfg: list[str]  # the same with the BFG Repo-Cleaner

    def as_dict(self) -> dict[str, list[str]]:
        return {"steps": self.steps, "filter_repo": self.filter_repo, "bfg": self.bfg}


def history_cleanup(path: str) -> HistoryCleanup:
    """What to do after a credential was moved into the vault: the value is still in every
    commit that had it, in every clone. A secrets file goes as a whole; a value in code is
    replaced wherever it occurs."""
    quoted = shlex.quote(path)
    steps = [
        "Rotate the credential where it was issued first: everyone with a clone has the old "
        "value, and rewriting history does not take it back from them.",
        f"Change {path} to read the credential from the vault or the environment instead, "
        "and commit that.",
    ]
    if files.is_secrets_file(path):
        steps.append(f"Remove {path} from every commit (commands below), in a fresh mirror clone.")
        filter_repo = [
            "git clone --mirror <repository URL> repo.git && cd repo.git",
            f"git filter-repo --invert-paths --path {quoted}",
        ]
        bfg = [
            "git clone --mirror <repository URL> repo.git",
            f"bfg --delete-files {shlex.quote(PurePosixPath(path).name)} repo.git",
            _BFG_TIDY,
        ]
    else:
        steps.append(
            "Write the old value (read it from the vault) into a file outside the "
            "repository, replacements.txt, as one line: `literal:<old value>==>REMOVED` for "
            "git filter-repo, `<old value>==>REMOVED` for BFG. Rewrite every commit that has "
            "it (commands below) in a fresh mirror clone, then delete the file."
        )
        filter_repo = [
            "git clone --mirror <repository URL> repo.git && cd repo.git",
            "git filter-repo --replace-text ../replacements.txt",
        ]
        bfg = [
            "git clone --mirror <repository URL> repo.git",
            "bfg --replace-text replacements.txt repo.git",
            _BFG_TIDY,
        ]
    filter_repo.append("git push --force --mirror")
    bfg.append("git push --force --mirror")
    steps.append(
        "Push the rewritten history, ask everyone to clone again, and ask the hosting "
        "service to drop cached views and pull-request references that still show it."
    )
    return HistoryCleanup(steps, filter_repo, bfg)
