"""Code-context tables in the app database: repositories, the state of their index, and
the credentials secret scanning found in them.

The index itself (files, chunks, vectors, symbols) lives in an index store
(hexahub/context/stores/): its own SQLite file by default, or tables beside these when
the database is PostgreSQL. The store can always be rebuilt from the repositories.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hexahub.core.db import Base, IdMixin, TimestampMixin, UTCDateTime

SOURCE_KINDS = ("path", "git")
# idle: never indexed; queued/indexing: reading files; embedding: full text works, vectors
# fill in; ready: done; failed: the last run failed (`last_error` says why).
INDEX_STATES = ("idle", "queued", "indexing", "embedding", "ready", "failed")


class Repository(IdMixin, TimestampMixin, Base):
    __tablename__ = "context_repositories"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    source_kind: Mapped[str] = mapped_column(String(8), nullable=False)
    # A directory on the server (source "path") or a git URL (HTTPS or SSH).
    location: Mapped[str] = mapped_column(String(1000), nullable=False)
    branch: Mapped[str | None] = mapped_column(String(200), nullable=True)
    include: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    exclude: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    # "token" (HTTPS) or "ssh_key"; the value sealed with the secret key, or a vault://
    # reference resolved at each fetch. Never returned by the API.
    credential_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    credential_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(36), nullable=True)

    state: Mapped[str] = mapped_column(String(16), nullable=False, default="idle")
    phase: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    progress_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    indexed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    files_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    skipped_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    chunks_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    embedded_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    symbols_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    embedding_model: Mapped[str | None] = mapped_column(String(200), nullable=True)


# open: to be dealt with; moved: its value was moved into the vault; gone: no scan finds it
# any more (removed from the tree, and not seen in the history).
FINDING_STATES = ("open", "moved", "gone")


class SecretFinding(IdMixin, TimestampMixin, Base):
    """A credential found in a repository: where, by which rule, never its value.

    One row per (repository, path, rule, fingerprint): the fingerprint is a keyed hash of
    the value (hexahub.context.scanning.fingerprint), so a value seen again by a later
    scan, or in both the tree and the history, is the same finding.
    """

    __tablename__ = "context_secret_findings"
    __table_args__ = (
        UniqueConstraint("repo_id", "path", "rule", "fingerprint"),
        Index("ix_context_secret_findings_open", "workspace_id", "status"),
    )

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    repo_id: Mapped[str] = mapped_column(
        ForeignKey("context_repositories.id", ondelete="CASCADE"), nullable=False, index=True
    )
    path: Mapped[str] = mapped_column(String(1000), nullable=False)
    line: Mapped[int] = mapped_column(Integer, nullable=False)
    rule: Mapped[str] = mapped_column(String(100), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    # The commit that added it (history scan), else the commit the tree was at when seen.
    commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    in_tree: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    in_history: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # Set when it was moved into the vault: where, when and by whom.
    vault_path: Mapped[str | None] = mapped_column(String(512), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(320), nullable=True)
