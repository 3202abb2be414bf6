"""Code-context tables in the app database: repositories and the state of their index.

The index itself (files, chunks, vectors, symbols) lives in an index store
(hexahub/context/stores/): its own SQLite file by default, or tables beside these when
the database is PostgreSQL. The store can always be rebuilt from the repositories.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
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
