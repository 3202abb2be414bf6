"""Vault tables: secrets by path, their encrypted versions, and path policies.

Nothing here holds a plaintext value or a master key: a version row holds the value
encrypted under its own data key, and that data key wrapped by a master key that lives in a
file or the environment (hexahub/vault/keyring.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from hexahub.core.db import Base, IdMixin, TimestampMixin, UTCDateTime, utcnow

MAX_PATH = 512


class VaultSecret(IdMixin, TimestampMixin, Base):
    """A secret at a path in a workspace: its metadata and which version is current."""

    __tablename__ = "vault_secrets"
    __table_args__ = (UniqueConstraint("workspace_id", "path"),)

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True
    )
    path: Mapped[str] = mapped_column(String(MAX_PATH), nullable=False)
    # Bumped with a compare-and-set UPDATE, so concurrent writers each get their own version.
    current_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Who answers for the secret (an e-mail or a team's name); free text.
    owner: Mapped[str] = mapped_column(String(320), nullable=False, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    # When the value should next be changed at its source (a reminder; reads still work).
    rotate_by: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Soft delete: every version is kept until undeleted or destroyed.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_by: Mapped[str] = mapped_column(String(320), nullable=False, default="")
    updated_by: Mapped[str] = mapped_column(String(320), nullable=False, default="")


class VaultSecretVersion(IdMixin, Base):
    """One version of a secret's value: a small mapping of key -> value, encrypted.

    `ciphertext` is AES-256-GCM under a data key made for this version alone; `wrapped_key`
    is that data key encrypted under master key `master_key_id`. Both bind the workspace,
    path and version number as associated data, so a row copied elsewhere does not open.
    """

    __tablename__ = "vault_secret_versions"
    __table_args__ = (UniqueConstraint("secret_id", "version"),)

    secret_id: Mapped[str] = mapped_column(
        ForeignKey("vault_secrets.id", ondelete="CASCADE"), nullable=False, index=True
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    # The names of the keys (never their values), for lists and `vault://...#key` checks.
    key_names: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    nonce: Mapped[bytes] = mapped_column(LargeBinary(12), nullable=False)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    master_key_id: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary(64), nullable=False)
    # After this moment the version's value is refused (410) everywhere.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    created_by: Mapped[str] = mapped_column(String(320), nullable=False, default="")


class VaultPolicy(IdMixin, TimestampMixin, Base):
    """Grants `capabilities` (read, write, list) under `path_prefix` to a role or an API key.

    Deny by default: members, viewers and API keys get only what policies grant. A role
    grant applies to that role and every stronger one; a key grant applies to that key alone.
    """

    __tablename__ = "vault_policies"
    __table_args__ = (
        CheckConstraint("(role IS NULL) <> (api_key_id IS NULL)", name="one_subject"),
    )

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # "" covers every path; "infra" covers "infra" and everything under "infra/".
    path_prefix: Mapped[str] = mapped_column(String(MAX_PATH), nullable=False, default="")
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=True, index=True
    )
    capabilities: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    description: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    created_by: Mapped[str] = mapped_column(String(320), nullable=False, default="")
