"""code context: repositories

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hexahub.core.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "context_repositories",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("source_kind", sa.String(length=8), nullable=False),
        sa.Column("location", sa.String(length=1000), nullable=False),
        sa.Column("branch", sa.String(length=200), nullable=True),
        sa.Column("include", sa.JSON(), nullable=False),
        sa.Column("exclude", sa.JSON(), nullable=False),
        sa.Column("credential_kind", sa.String(length=16), nullable=True),
        sa.Column("credential_sealed", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=200), nullable=False),
        sa.Column("progress_done", sa.Integer(), nullable=False),
        sa.Column("progress_total", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_commit", sa.String(length=64), nullable=True),
        sa.Column("indexed_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("files_count", sa.Integer(), nullable=False),
        sa.Column("skipped_count", sa.Integer(), nullable=False),
        sa.Column("chunks_count", sa.Integer(), nullable=False),
        sa.Column("embedded_count", sa.Integer(), nullable=False),
        sa.Column("symbols_count", sa.Integer(), nullable=False),
        sa.Column("embedding_model", sa.String(length=200), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_context_repositories_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_repositories")),
        sa.UniqueConstraint(
            "workspace_id", "name", name=op.f("uq_context_repositories_workspace_id")
        ),
    )
    with op.batch_alter_table("context_repositories", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_context_repositories_workspace_id"), ["workspace_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("context_repositories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_context_repositories_workspace_id"))
    op.drop_table("context_repositories")
