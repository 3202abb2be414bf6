"""code context: secret findings (where credentials were found, never their values)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hexahub.core.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "context_secret_findings",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("repo_id", sa.String(length=36), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("commit", sa.String(length=64), nullable=True),
        sa.Column("in_tree", sa.Boolean(), nullable=False),
        sa.Column("in_history", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first_seen_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("vault_path", sa.String(length=512), nullable=True),
        sa.Column("resolved_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=320), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["context_repositories.id"],
            name=op.f("fk_context_secret_findings_repo_id_context_repositories"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_context_secret_findings_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_secret_findings")),
        sa.UniqueConstraint(
            "repo_id",
            "path",
            "rule",
            "fingerprint",
            name=op.f("uq_context_secret_findings_repo_id"),
        ),
    )
    with op.batch_alter_table("context_secret_findings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_context_secret_findings_open", ["workspace_id", "status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_context_secret_findings_repo_id"), ["repo_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("context_secret_findings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_context_secret_findings_repo_id"))
        batch_op.drop_index("ix_context_secret_findings_open")
    op.drop_table("context_secret_findings")
