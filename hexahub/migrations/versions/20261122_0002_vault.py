"""vault: secrets, their encrypted versions, path policies

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:46:12.327514
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hexahub.core.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vault_secrets",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=320), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("rotate_by", hexahub.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("updated_by", sa.String(length=320), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_vault_secrets_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_secrets")),
        sa.UniqueConstraint("workspace_id", "path", name=op.f("uq_vault_secrets_workspace_id")),
    )
    with op.batch_alter_table("vault_secrets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_vault_secrets_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "vault_policies",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("path_prefix", sa.String(length=512), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("api_key_id", sa.String(length=36), nullable=True),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(role IS NULL) <> (api_key_id IS NULL)", name=op.f("ck_vault_policies_one_subject")
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_vault_policies_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_vault_policies_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_policies")),
    )
    with op.batch_alter_table("vault_policies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_vault_policies_api_key_id"), ["api_key_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_vault_policies_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "vault_secret_versions",
        sa.Column("secret_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key_names", sa.JSON(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(length=12), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("master_key_id", sa.String(length=16), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(length=64), nullable=False),
        sa.Column("expires_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", hexahub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["secret_id"],
            ["vault_secrets.id"],
            name=op.f("fk_vault_secret_versions_secret_id_vault_secrets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_secret_versions")),
        sa.UniqueConstraint(
            "secret_id", "version", name=op.f("uq_vault_secret_versions_secret_id")
        ),
    )
    with op.batch_alter_table("vault_secret_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_vault_secret_versions_master_key_id"), ["master_key_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_vault_secret_versions_secret_id"), ["secret_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("vault_secret_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vault_secret_versions_secret_id"))
        batch_op.drop_index(batch_op.f("ix_vault_secret_versions_master_key_id"))

    op.drop_table("vault_secret_versions")
    with op.batch_alter_table("vault_policies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vault_policies_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_vault_policies_api_key_id"))

    op.drop_table("vault_policies")
    with op.batch_alter_table("vault_secrets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vault_secrets_workspace_id"))

    op.drop_table("vault_secrets")
