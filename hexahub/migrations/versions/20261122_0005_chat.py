"""chat: conversations, messages, prompt templates

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 06:34:04.307164
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hexahub.core.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("system_prompt", sa.Text(), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("use_repo_context", sa.Boolean(), nullable=False),
        sa.Column("repo_ids", sa.JSON(), nullable=True),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_conversations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_conversations_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_conversations_owner_recent", ["workspace_id", "user_id", "updated_at"], unique=False
        )
        batch_op.create_index(
            "ix_conversations_shared_recent", ["workspace_id", "shared", "updated_at"], unique=False
        )
        batch_op.create_index("ix_conversations_title", ["workspace_id", "title"], unique=False)
        batch_op.create_index(batch_op.f("ix_conversations_user_id"), ["user_id"], unique=False)

    op.create_table(
        "prompt_templates",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_prompt_templates_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_prompt_templates_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_templates")),
        sa.UniqueConstraint("workspace_id", "name", name=op.f("uq_prompt_templates_workspace_id")),
    )
    with op.batch_alter_table("prompt_templates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_prompt_templates_created_by"), ["created_by"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_prompt_templates_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "messages",
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("citations", sa.JSON(), nullable=False),
        sa.Column("replaces_id", sa.String(length=36), nullable=True),
        sa.Column("edited_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_messages_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint(
            "conversation_id", "position", name=op.f("uq_messages_conversation_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("messages")
    with op.batch_alter_table("prompt_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prompt_templates_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_prompt_templates_created_by"))

    op.drop_table("prompt_templates")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversations_user_id"))
        batch_op.drop_index("ix_conversations_title")
        batch_op.drop_index("ix_conversations_shared_recent")
        batch_op.drop_index("ix_conversations_owner_recent")

    op.drop_table("conversations")
