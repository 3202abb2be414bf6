"""The vault's logic: secrets by path, versions, policies, references, import and export,
master-key rotation. Knows nothing of HTTP; the API, the CLI and the web pages call it.

Every function takes a `Caller` (a person or key acting in a workspace, or HexaHub itself),
checks the path policy first (so a refusal says nothing about whether a path exists),
audits what it did - every value read, every change, every refusal - and commits. A value
never goes into an audit event, a log line or an error message: only paths, key names,
version numbers and ids do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from pydantic import SecretStr
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hexahub.core.db import utcnow
from hexahub.core.errors import (
    Conflict,
    Forbidden,
    HexaHubError,
    NotFound,
    ValidationFailed,
)
from hexahub.identity import audit, keys, workspaces
from hexahub.identity.authz import Principal, WorkspaceAccess, effective_role
from hexahub.identity.models import ApiKey, Role, User
from hexahub.settings import Settings
from hexahub.vault import dotenv, envelope, keyring, policies
from hexahub.vault.envelope import Location, Sealed
from hexahub.vault.keyring import Keyring, MasterKey, VaultIntegrityError, VaultLocked
from hexahub.vault.models import VaultPolicy, VaultSecret, VaultSecretVersion

log = logging.getLogger("hexahub.vault")

DEFAULT_KEY = "value"
MAX_KEYS = 100
MAX_TAGS = 20
KEY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
TAG = re.compile(r"^[A-Za-z0-9_.:/=+-]{1,64}$")
REFERENCE_SCHEME = "vault://"
# Writes without check-and-set retry this often when another writer got the version first.
WRITE_ATTEMPTS = 8


class SecretExpired(HexaHubError):
    status_code = 410
    code = "secret_expired"


class _Raced(Exception):
    """Another writer took the version this write wanted."""


# --- who is calling ------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """A person or API key acting in a workspace, or HexaHub itself (`principal` None)."""

    principal: Principal | None = None
    role: Role | None = None
    # The audit actor: for HexaHub itself (e.g. `cli:root`, `system:gateway`), or to say
    # how a person acted (`alice@example.org via cli:root`).
    label: str | None = None

    @classmethod
    def system(cls, label: str) -> Caller:
        return cls(label=label)

    @classmethod
    def of(cls, access: WorkspaceAccess, *, label: str | None = None) -> Caller:
        return cls(principal=detached(access.principal), role=access.role, label=label)

    @property
    def is_system(self) -> bool:
        return self.principal is None

    @property
    def name(self) -> str:
        if self.label is not None:
            return self.label
        return self.principal.label if self.principal is not None else "system"

    @property
    def subject(self) -> policies.Subject:
        if self.principal is None:
            return policies.Subject(system=True)
        key = self.principal.api_key
        return policies.Subject(
            role=self.role,
            api_key_id=key.id if key is not None else None,
            scopes=frozenset(self.principal.scopes),
        )


def detached(principal: Principal) -> Principal:
    """A copy of a principal that a rollback of the request's session cannot expire: a
    write that loses a race rolls back and tries again, and must still name its actor."""
    user = User(
        id=principal.user.id,
        email=principal.user.email,
        is_admin=principal.user.is_admin,
        is_active=principal.user.is_active,
    )
    key = principal.api_key
    copy = (
        ApiKey(
            id=key.id,
            user_id=key.user_id,
            workspace_id=key.workspace_id,
            prefix=key.prefix,
            scopes=list(key.scopes),
        )
        if key is not None
        else None
    )
    return Principal(user=user, method=principal.method, ip=principal.ip, api_key=copy)


def _record(
    db: AsyncSession,
    caller: Caller,
    action: str,
    workspace_id: str | None,
    *,
    path: str = "",
    secret_id: str = "",
    outcome: str = "ok",
    target_type: str = "secret",
    details: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    shown = {"path": path} if path else {}
    shown.update(details or {})
    audit.record(
        db,
        action,
        actor=caller.principal,
        actor_label=caller.label,
        workspace_id=workspace_id,
        target_type=target_type,
        target_id=secret_id,
        outcome=outcome,
        details=shown or None,
        before=before,
        after=after,
    )


async def record_denied(
    db: AsyncSession,
    caller: Caller,
    workspace_id: str | None,
    *,
    reason: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Audit a refused attempt (commits at once: nothing else happens)."""
    _record(
        db,
        caller,
        "secret.denied",
        workspace_id,
        outcome="denied",
        details={"reason": reason, **(details or {})},
    )
    await db.commit()


async def _deny(
    db: AsyncSession, caller: Caller, workspace_id: str, capability: str, path: str
) -> NoReturn:
    scope = policies.missing_scope(caller.subject, capability)
    await record_denied(
        db,
        caller,
        workspace_id,
        reason=f"API key lacks the {scope} scope" if scope else "no policy grants it",
        details={"capability": capability, "path": path},
    )
    if scope:
        raise Forbidden(f"this API key lacks the `{scope}` scope needed to {capability} secrets")
    where = f"at {path}" if path else "in this workspace"
    if caller.principal is not None and caller.principal.api_key is not None:
        raise Forbidden(
            f"no vault policy lets this API key {capability} secrets {where}; a workspace "
            "owner or admin can grant it one (API keys get nothing by default)"
        )
    raise Forbidden(
        f"no vault policy lets you {capability} secrets {where}; a workspace owner or admin "
        "can grant it"
    )


async def _grants(db: AsyncSession, workspace_id: str) -> list[policies.Grant]:
    rows = await db.scalars(select(VaultPolicy).where(VaultPolicy.workspace_id == workspace_id))
    return [
        policies.Grant(
            path_prefix=p.path_prefix,
            capabilities=frozenset(p.capabilities),
            role=Role(p.role) if p.role else None,
            api_key_id=p.api_key_id,
        )
        for p in rows
    ]


async def authorize(
    db: AsyncSession, caller: Caller, workspace_id: str, capability: str, path: str
) -> None:
    """Raise Forbidden (audited) unless `caller` may `capability` the secret at `path`."""
    if caller.is_system:
        return
    if not policies.allows(caller.subject, await _grants(db, workspace_id), capability, path):
        await _deny(db, caller, workspace_id, capability, path)


async def _require_manager(db: AsyncSession, caller: Caller, workspace_id: str) -> None:
    if caller.subject.manages and (caller.principal is None or caller.principal.has_scope("admin")):
        return
    await record_denied(
        db, caller, workspace_id, reason="only owners and admins manage vault policies"
    )
    raise Forbidden("only owners and admins of this workspace (with the admin scope) may do this")


# --- validation ----------------------------------------------------------------------


def check_key_name(name: str) -> str:
    if not KEY_NAME.fullmatch(name):
        raise ValidationFailed(
            "key names are 1 to 128 letters, digits, _ . or - (like password or API_TOKEN)"
        )
    return name


def check_data(
    data: Mapping[str, str | None], *, allow_removal: bool = False
) -> dict[str, str | None]:
    if not data:
        raise ValidationFailed("data: give at least one key and value")
    if len(data) > MAX_KEYS:
        raise ValidationFailed(f"data: at most {MAX_KEYS} keys per secret")
    checked: dict[str, str | None] = {}
    for name, value in data.items():
        check_key_name(name)
        if value is None and not allow_removal:
            raise ValidationFailed(f"data.{name}: give a value (null only removes keys in a patch)")
        checked[name] = value
    return checked


def _check_size(data: dict[str, str], settings: Settings) -> None:
    size = len(envelope.encode_data(data))
    if size > settings.vault_max_value_bytes:
        raise ValidationFailed(
            f"data: this version is {size} bytes; the limit is {settings.vault_max_value_bytes} "
            "(HEXAHUB_VAULT_MAX_VALUE_BYTES)"
        )


def check_tags(tags: list[str]) -> list[str]:
    if len(tags) > MAX_TAGS or any(not TAG.fullmatch(t) for t in tags):
        raise ValidationFailed(
            f"tags: at most {MAX_TAGS} tags of 1 to 64 letters, digits or _ . : / = + -"
        )
    return sorted(set(tags))


def _check_future(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValidationFailed(f"{name}: give a time zone, e.g. 2026-01-31T00:00:00Z")
    return value


# --- reading -------------------------------------------------------------------------


@dataclass
class SecretRead:
    secret: VaultSecret
    version: VaultSecretVersion
    data: dict[str, str] = field(repr=False)


def _sealed(row: VaultSecretVersion) -> Sealed:
    return Sealed(row.nonce, row.ciphertext, row.master_key_id, row.wrapped_key)


def _location(secret: VaultSecret, version: int) -> Location:
    return Location(secret.workspace_id, secret.path, version)


async def find_secret(db: AsyncSession, workspace_id: str, path: str) -> VaultSecret | None:
    return await db.scalar(
        select(VaultSecret)
        .where(VaultSecret.workspace_id == workspace_id, VaultSecret.path == path)
        .execution_options(populate_existing=True)
    )


async def _live_secret(db: AsyncSession, workspace_id: str, path: str) -> VaultSecret:
    secret = await find_secret(db, workspace_id, path)
    if secret is None or secret.current_version == 0:
        raise NotFound(f"no secret at {path}")
    if secret.deleted_at is not None:
        raise NotFound(f"the secret at {path} is deleted; undelete it to use it again")
    return secret


async def _version_row(db: AsyncSession, secret: VaultSecret, version: int) -> VaultSecretVersion:
    row = await db.scalar(
        select(VaultSecretVersion).where(
            VaultSecretVersion.secret_id == secret.id, VaultSecretVersion.version == version
        )
    )
    if row is None:
        raise NotFound(
            f"version {version} of {secret.path} does not exist or was not kept "
            f"(the current version is {secret.current_version})"
        )
    return row


def is_expired(row: VaultSecretVersion | None) -> bool:
    return row is not None and row.expires_at is not None and row.expires_at <= utcnow()


async def _decrypt(
    db: AsyncSession,
    settings: Settings,
    caller: Caller,
    secret: VaultSecret,
    row: VaultSecretVersion,
    action: str,
) -> dict[str, str]:
    """The plaintext of a version; a failure is audited (and never garbage)."""
    try:
        ring = await keyring.open_keyring(db, settings)
        return envelope.unseal(ring, _sealed(row), _location(secret, row.version))
    except (VaultLocked, VaultIntegrityError) as exc:
        _record(
            db,
            caller,
            action,
            secret.workspace_id,
            path=secret.path,
            secret_id=secret.id,
            outcome="failed",
            details={"version": row.version, "error": exc.code},
        )
        await db.commit()
        log.error("vault: %s", exc.message)
        raise


async def read_secret(
    db: AsyncSession,
    settings: Settings,
    caller: Caller,
    workspace_id: str,
    path: str,
    *,
    version: int | None = None,
    action: str = "secret.read",
    details: dict[str, Any] | None = None,
) -> SecretRead:
    """Decrypt a version (the current one by default). Audited as `action`."""
    path = policies.check_path(path)
    await authorize(db, caller, workspace_id, "read", path)
    secret = await _live_secret(db, workspace_id, path)
    row = await _version_row(db, secret, version or secret.current_version)
    if is_expired(row):
        assert row.expires_at is not None
        _record(
            db,
            caller,
            action,
            workspace_id,
            path=path,
            secret_id=secret.id,
            outcome="failed",
            details={"version": row.version, "error": "expired"},
        )
        await db.commit()
        raise SecretExpired(
            f"version {row.version} of {path} expired at {row.expires_at:%Y-%m-%d %H:%M} UTC; "
            "write a new version"
        )
    data = await _decrypt(db, settings, caller, secret, row, action)
    _record(
        db,
        caller,
        action,
        workspace_id,
        path=path,
        secret_id=secret.id,
        details={"version": row.version, "keys": sorted(data), **(details or {})},
    )
    await db.commit()
    return SecretRead(secret, row, data)


# --- listing and metadata ------------------------------------------------------------


@dataclass
class SecretInfo:
    secret: VaultSecret
    current: VaultSecretVersion | None


async def list_secrets(
    db: AsyncSession,
    caller: Caller,
    workspace_id: str,
    *,
    prefix: str = "",
    include_deleted: bool = False,
) -> list[SecretInfo]:
    """Secrets at or under `prefix` that the caller may list, with their current version."""
    prefix = policies.check_path(prefix, field="prefix", allow_empty=True)
    grants = await _grants(db, workspace_id)
    subject = caller.subject
    if not policies.allows_somewhere(subject, grants, "list", prefix):
        await _deny(db, caller, workspace_id, "list", prefix)
    query = (
        select(VaultSecret, VaultSecretVersion)
        .outerjoin(
            VaultSecretVersion,
            (VaultSecretVersion.secret_id == VaultSecret.id)
            & (VaultSecretVersion.version == VaultSecret.current_version),
        )
        .where(VaultSecret.workspace_id == workspace_id, VaultSecret.current_version > 0)
        .order_by(VaultSecret.path)
    )
    if prefix:
        query = query.where(
            or_(
                VaultSecret.path == prefix,
                VaultSecret.path.startswith(prefix + "/", autoescape=True),
            )
        )
    if not include_deleted:
        query = query.where(VaultSecret.deleted_at.is_(None))
    rows = (await db.execute(query)).all()
    return [
        SecretInfo(secret, current)
        for secret, current in rows
        if policies.allows(subject, grants, "list", secret.path)
    ]


async def describe_secret(
    db: AsyncSession, caller: Caller, workspace_id: str, path: str
) -> tuple[VaultSecret, list[VaultSecretVersion]]:
    """A secret's metadata and its kept versions, newest first (deleted ones too)."""
    path = policies.check_path(path)
    await authorize(db, caller, workspace_id, "list", path)
    secret = await find_secret(db, workspace_id, path)
    if secret is None or secret.current_version == 0:
        raise NotFound(f"no secret at {path}")
    versions = await db.scalars(
        select(VaultSecretVersion)
        .where(VaultSecretVersion.secret_id == secret.id)
        .order_by(VaultSecretVersion.version.desc())
    )
    return secret, list(versions)


def metadata_dict(secret: VaultSecret) -> dict[str, Any]:
    return {
        "owner": secret.owner,
        "tags": list(secret.tags),
        "rotate_by": secret.rotate_by.isoformat() if secret.rotate_by else None,
    }


def summary_dict(secret: VaultSecret, current: VaultSecretVersion | None) -> dict[str, Any]:
    """A secret's metadata as the API and the page show it (names, never values)."""
    return {
        "path": secret.path,
        "current_version": secret.current_version,
        "key_names": list(current.key_names) if current else [],
        "owner": secret.owner,
        "tags": list(secret.tags),
        "rotate_by": secret.rotate_by,
        "rotation_due": secret.rotate_by is not None and secret.rotate_by <= utcnow(),
        "expires_at": current.expires_at if current else None,
        "expired": is_expired(current),
        "deleted": secret.deleted_at is not None,
        "deleted_at": secret.deleted_at,
        "created_at": secret.created_at,
        "updated_at": secret.updated_at,
        "created_by": secret.created_by,
        "updated_by": secret.updated_by,
    }


_UNSET: Any = object()


async def update_metadata(
    db: AsyncSession,
    caller: Caller,
    workspace_id: str,
    path: str,
    *,
    owner: str | None = None,
    tags: list[str] | None = None,
    rotate_by: datetime | None = _UNSET,
) -> VaultSecret:
    path = policies.check_path(path)
    await authorize(db, caller, workspace_id, "write", path)
    secret = await find_secret(db, workspace_id, path)
    if secret is None or secret.current_version == 0:
        raise NotFound(f"no secret at {path}")
    before = metadata_dict(secret)
    if owner is not None:
        secret.owner = owner.strip()[:320]
    if tags is not None:
        secret.tags = check_tags(tags)
    if rotate_by is not _UNSET:
        secret.rotate_by = _check_future(rotate_by, "rotate_by")
    secret.updated_by = caller.name
    _record(
        db,
        caller,
        "secret.metadata_changed",
        workspace_id,
        path=path,
        secret_id=secret.id,
        before=before,
        after=metadata_dict(secret),
    )
    await db.commit()
    return secret


# --- writing -------------------------------------------------------------------------


async def write_secret(
    db: AsyncSession,
    settings: Settings,
    caller: Caller,
    workspace_id: str,
    path: str,
    data: Mapping[str, str | None],
    *,
    cas: int | None = None,
    merge: bool = False,
    expires_at: datetime | None = None,
    owner: str | None = None,
    tags: list[str] | None = None,
    rotate_by: datetime | None = None,
    action: str = "secret.written",
    details: dict[str, Any] | None = None,
) -> VaultSecretVersion:
    """Store a new version. `cas`: only if the current version is this number (0: only if
    the secret does not exist yet). `merge`: keep the current version's other keys (a None
    value removes a key). Without `cas`, a write that loses a race tries again on top of
    the winner, so no write is ever lost; with `cas`, exactly one writer per version wins
    and the others get 409."""
    path = policies.check_path(path)
    updates = check_data(data, allow_removal=merge)
    if cas is not None and cas < 0:
        raise ValidationFailed("cas: use 0 (only create) or the version you last read")
    expires_at = _check_future(expires_at, "expires_at")
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationFailed("expires_at: give a time in the future")
    rotate_by = _check_future(rotate_by, "rotate_by")
    tags = check_tags(tags) if tags is not None else None
    await authorize(db, caller, workspace_id, "write", path)
    ring = await keyring.open_keyring(db, settings)
    for _ in range(WRITE_ATTEMPTS):
        try:
            row = await _try_write(
                db,
                settings,
                ring,
                caller,
                workspace_id,
                path,
                updates,
                cas=cas,
                merge=merge,
                expires_at=expires_at,
                metadata={"owner": owner, "tags": tags, "rotate_by": rotate_by},
                action=action,
                details=details,
            )
        except _Raced:
            await db.rollback()
            if cas is not None:
                current = await find_secret(db, workspace_id, path)
                raise Conflict(
                    f"check-and-set failed: {path} is now at version "
                    f"{current.current_version if current else 0}, not {cas}; read it again "
                    "and retry"
                ) from None
            continue
        except BaseException:
            await db.rollback()
            raise
        return row
    raise Conflict(f"{path} is being written by many clients at once; try again")


async def _try_write(
    db: AsyncSession,
    settings: Settings,
    ring: Keyring,
    caller: Caller,
    workspace_id: str,
    path: str,
    updates: dict[str, str | None],
    *,
    cas: int | None,
    merge: bool,
    expires_at: datetime | None,
    metadata: dict[str, Any],
    action: str,
    details: dict[str, Any] | None,
) -> VaultSecretVersion:
    secret = await find_secret(db, workspace_id, path)
    current = secret.current_version if secret is not None else 0
    if cas is not None and cas != current:
        raise _Raced()
    data: dict[str, str] = {}
    if merge and secret is not None and current > 0:
        row = await _version_row(db, secret, current)
        data = await _decrypt(db, settings, caller, secret, row, "secret.written")
    for name, value in updates.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    if not data:
        raise ValidationFailed("data: a secret keeps at least one key")
    _check_size(data, settings)
    version = current + 1
    changes: dict[str, Any] = {k: v for k, v in metadata.items() if v is not None}
    now = utcnow()
    if secret is None:
        secret = VaultSecret(
            workspace_id=workspace_id,
            path=path,
            current_version=version,
            owner=(changes.pop("owner", None) or _default_owner(caller))[:320],
            tags=changes.pop("tags", []),
            rotate_by=changes.pop("rotate_by", None),
            created_by=caller.name,
            updated_by=caller.name,
        )
        db.add(secret)
        try:
            await db.flush()
        except IntegrityError:
            raise _Raced() from None
    else:
        bumped = await db.execute(
            update(VaultSecret)
            .where(VaultSecret.id == secret.id, VaultSecret.current_version == current)
            .values(
                current_version=version,
                deleted_at=None,
                updated_at=now,
                updated_by=caller.name,
                **changes,
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(bumped, "rowcount", 0) != 1:
            raise _Raced()
    sealed = envelope.seal(ring, data, Location(workspace_id, path, version))
    row = VaultSecretVersion(
        secret_id=secret.id,
        version=version,
        key_names=sorted(data),
        nonce=sealed.nonce,
        ciphertext=sealed.ciphertext,
        master_key_id=sealed.master_key_id,
        wrapped_key=sealed.wrapped_key,
        expires_at=expires_at,
        created_at=now,
        created_by=caller.name,
    )
    db.add(row)
    try:
        await db.flush()
    except IntegrityError:
        raise _Raced() from None
    await db.execute(
        delete(VaultSecretVersion).where(
            VaultSecretVersion.secret_id == secret.id,
            VaultSecretVersion.version <= version - settings.vault_keep_versions,
        )
    )
    _record(
        db,
        caller,
        action,
        workspace_id,
        path=path,
        secret_id=secret.id,
        details={
            "version": version,
            "keys": sorted(data),
            "cas": cas,
            "merge": merge,
            **(details or {}),
        },
    )
    await db.commit()
    return row


def _default_owner(caller: Caller) -> str:
    return caller.principal.user.email if caller.principal is not None else ""


async def delete_secret(db: AsyncSession, caller: Caller, workspace_id: str, path: str) -> None:
    """Soft delete: the secret stops resolving; every version stays until undeleted."""
    path = policies.check_path(path)
    await authorize(db, caller, workspace_id, "write", path)
    secret = await _live_secret(db, workspace_id, path)
    secret.deleted_at = utcnow()
    secret.updated_by = caller.name
    _record(db, caller, "secret.deleted", workspace_id, path=path, secret_id=secret.id)
    await db.commit()


async def undelete_secret(
    db: AsyncSession, caller: Caller, workspace_id: str, path: str
) -> VaultSecret:
    path = policies.check_path(path)
    await authorize(db, caller, workspace_id, "write", path)
    secret = await find_secret(db, workspace_id, path)
    if secret is None or secret.current_version == 0:
        raise NotFound(f"no secret at {path}")
    if secret.deleted_at is None:
        raise Conflict(f"the secret at {path} is not deleted")
    secret.deleted_at = None
    secret.updated_by = caller.name
    _record(db, caller, "secret.undeleted", workspace_id, path=path, secret_id=secret.id)
    await db.commit()
    return secret


async def destroy_secret(db: AsyncSession, caller: Caller, workspace_id: str, path: str) -> None:
    """Remove a secret and every version for good (owners and admins only)."""
    path = policies.check_path(path)
    await _require_manager(db, caller, workspace_id)
    secret = await find_secret(db, workspace_id, path)
    if secret is None:
        raise NotFound(f"no secret at {path}")
    secret_id = secret.id
    await db.execute(delete(VaultSecretVersion).where(VaultSecretVersion.secret_id == secret_id))
    await db.execute(delete(VaultSecret).where(VaultSecret.id == secret_id))
    _record(db, caller, "secret.destroyed", workspace_id, path=path, secret_id=secret_id)
    await db.commit()


# --- .env import and export ----------------------------------------------------------


@dataclass
class Imported:
    version: VaultSecretVersion
    warnings: list[dict[str, Any]]


async def import_env(
    db: AsyncSession,
    settings: Settings,
    caller: Caller,
    workspace_id: str,
    path: str,
    text: str,
    *,
    source: str = "",
    committed_to_git: bool = False,
    cas: int | None = None,
    merge: bool = False,
) -> Imported:
    """Store a .env file's variables as the keys of one secret (a new version)."""
    path = policies.check_path(path)
    await authorize(db, caller, workspace_id, "write", path)
    data = dotenv.parse_env(text)
    if not data:
        raise ValidationFailed("the .env file holds no NAME=value line")
    warnings = dotenv.import_warnings(data, source=source, committed_to_git=committed_to_git)
    row = await write_secret(
        db,
        settings,
        caller,
        workspace_id,
        path,
        dict(data),
        cas=cas,
        merge=merge,
        action="secret.imported",
        details={"source": source[:200], "warnings": sorted({w["kind"] for w in warnings})},
    )
    return Imported(row, warnings)


async def export_env(
    db: AsyncSession, settings: Settings, caller: Caller, workspace_id: str, prefix: str
) -> str:
    """Every live secret at or under `prefix` as one .env file (keys become variables).
    Needs read access to each of them; each is audited as read."""
    prefix = policies.check_path(prefix, field="prefix")
    grants = await _grants(db, workspace_id)
    subject = caller.subject
    if not policies.allows_somewhere(subject, grants, "read", prefix):
        await _deny(db, caller, workspace_id, "read", prefix)
    found = await list_secrets(db, Caller.system("export"), workspace_id, prefix=prefix)
    if not found:
        raise NotFound(f"no secret at or under {prefix}")
    if not all(policies.allows(subject, grants, "read", i.secret.path) for i in found):
        await record_denied(
            db,
            caller,
            workspace_id,
            reason="export needs read access to every secret under the prefix",
            details={"capability": "read", "path": prefix},
        )
        raise Forbidden(
            f"exporting {prefix} needs read access to every secret under it, and you lack it "
            "for at least one; export a narrower path"
        )
    merged: dict[str, str] = {}
    origin: dict[str, str] = {}
    for info in found:
        read = await read_secret(
            db, settings, caller, workspace_id, info.secret.path, action="secret.exported"
        )
        for name, value in read.data.items():
            if name in merged:
                raise Conflict(
                    f"both {origin[name]} and {info.secret.path} have a key {name}; "
                    "export them one at a time"
                )
            merged[name], origin[name] = value, info.secret.path
    return dotenv.render_env(merged)


# --- vault:// references -------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    workspace: str
    path: str
    key: str | None

    @classmethod
    def parse(cls, text: str) -> Reference:
        # The message never repeats `text`: a raw secret may have been given by mistake.
        rule = "a vault reference looks like vault://<workspace slug or id>/<path>#<key>"
        if not text.startswith(REFERENCE_SCHEME):
            raise ValidationFailed(rule)
        rest = text[len(REFERENCE_SCHEME) :]
        location, _, key = rest.partition("#")
        workspace, _, path = location.partition("/")
        if not workspace or not path:
            raise ValidationFailed(rule)
        if key:
            check_key_name(key)
        return cls(workspace, policies.check_path(path), key or None)

    def __str__(self) -> str:
        return f"{REFERENCE_SCHEME}{self.workspace}/{self.path}" + (
            f"#{self.key}" if self.key else ""
        )


def is_reference(text: str) -> bool:
    return text.startswith(REFERENCE_SCHEME)


async def resolve_reference(
    db: AsyncSession,
    settings: Settings,
    reference: str,
    *,
    purpose: str,
    workspace_id: str | None = None,
    caller: Caller | None = None,
) -> SecretStr:
    """The value a `vault://workspace/path#key` reference points at, for HexaHub's own use
    (provider keys, repository credentials, job environments). Returned as a SecretStr so
    that printing or logging it shows stars; call `.get_secret_value()` where it is used.

    `workspace_id`: the workspace the reference was configured in; a reference to another
    workspace's secrets is refused. Audited as `secret.resolved` with the purpose.
    """
    ref = Reference.parse(reference)
    workspace = await workspaces.find_workspace(db, ref.workspace)
    caller = caller or Caller.system(f"system:{purpose}")
    if workspace_id is not None and workspace.id != workspace_id:
        await record_denied(
            db,
            caller,
            workspace_id,
            reason="reference to another workspace",
            details={"reference": str(ref), "purpose": purpose},
        )
        raise Forbidden(
            f"{ref} names a secret of another workspace; references may only use secrets of "
            "the workspace they are configured in"
        )
    read = await read_secret(
        db,
        settings,
        caller,
        workspace.id,
        ref.path,
        action="secret.resolved",
        details={"purpose": purpose, "key": ref.key},
    )
    names = sorted(read.data)
    if ref.key is None:
        if len(names) != 1:
            raise ValidationFailed(
                f"{ref} must name a key: the secret has {', '.join(names)} (add #<key>)"
            )
        return SecretStr(read.data[names[0]])
    if ref.key not in read.data:
        raise NotFound(f"{ref}: the secret has no key {ref.key} (it has {', '.join(names)})")
    return SecretStr(read.data[ref.key])


# --- policies ------------------------------------------------------------------------


def policy_dict(policy: VaultPolicy) -> dict[str, Any]:
    return {
        "id": policy.id,
        "path_prefix": policy.path_prefix,
        "role": policy.role,
        "api_key_id": policy.api_key_id,
        "capabilities": list(policy.capabilities),
        "description": policy.description,
        "created_by": policy.created_by,
        "created_at": policy.created_at.isoformat() if policy.created_at else None,
    }


async def list_policies(db: AsyncSession, caller: Caller, workspace_id: str) -> list[VaultPolicy]:
    await _require_manager(db, caller, workspace_id)
    rows = await db.scalars(
        select(VaultPolicy)
        .where(VaultPolicy.workspace_id == workspace_id)
        .order_by(VaultPolicy.path_prefix, VaultPolicy.created_at)
    )
    return list(rows)


async def create_policy(
    db: AsyncSession,
    caller: Caller,
    workspace_id: str,
    *,
    path_prefix: str,
    capabilities: list[str],
    role: str | None = None,
    api_key_id: str | None = None,
    description: str = "",
) -> VaultPolicy:
    await _require_manager(db, caller, workspace_id)
    prefix = policies.check_path(path_prefix, field="path_prefix", allow_empty=True)
    wanted = sorted(set(capabilities))
    if not wanted or any(c not in policies.CAPABILITIES for c in wanted):
        raise ValidationFailed(
            f"capabilities: choose one or more of {', '.join(policies.CAPABILITIES)}"
        )
    if (role is None) == (api_key_id is None):
        raise ValidationFailed("give either role or api_key_id, not both")
    if role is not None and role not in (Role.viewer.value, Role.member.value):
        raise ValidationFailed(
            "role: viewer or member (admins and owners can already do everything)"
        )
    if api_key_id is not None:
        try:
            key = await keys.get_key(db, api_key_id)
        except NotFound:
            raise NotFound(f"no API key with id {api_key_id} in this workspace") from None
        usable = key.workspace_id in (None, workspace_id) and (
            await effective_role(db, workspace_id, key.user_id) is not None
        )
        if not usable:
            raise NotFound(f"no API key with id {api_key_id} in this workspace")
    policy = VaultPolicy(
        workspace_id=workspace_id,
        path_prefix=prefix,
        role=role,
        api_key_id=api_key_id,
        capabilities=wanted,
        description=description.strip()[:500],
        created_by=caller.name,
    )
    db.add(policy)
    await db.flush()
    _record(
        db,
        caller,
        "secret.policy_created",
        workspace_id,
        target_type="vault_policy",
        secret_id=policy.id,
        after=policy_dict(policy),
    )
    await db.commit()
    return policy


async def delete_policy(
    db: AsyncSession, caller: Caller, workspace_id: str, policy_id: str
) -> None:
    await _require_manager(db, caller, workspace_id)
    policy = await db.get(VaultPolicy, policy_id)
    if policy is None or policy.workspace_id != workspace_id:
        raise NotFound(f"no vault policy with id {policy_id}")
    before = policy_dict(policy)
    await db.delete(policy)
    _record(
        db,
        caller,
        "secret.policy_deleted",
        workspace_id,
        target_type="vault_policy",
        secret_id=policy_id,
        before=before,
    )
    await db.commit()


# --- the CLI's helpers: acting as a person -------------------------------------------


async def caller_for_user(db: AsyncSession, user: User, workspace_id: str, *, via: str) -> Caller:
    """A person acting through the CLI, with their role in the workspace."""
    role = await effective_role(db, workspace_id, user.id)
    if role is None or not user.is_active:
        raise NotFound(f"{user.email} has no role in this workspace")
    return Caller(
        principal=detached(Principal(user, "cli")), role=role, label=f"{user.email} via {via}"
    )


# --- master keys: status and rotation ------------------------------------------------


@dataclass
class VaultStatus:
    source: str
    key_ids: list[str]
    active_id: str
    file_private: bool | None
    secrets: int
    versions_by_key: dict[str, int]

    @property
    def missing(self) -> list[str]:
        return sorted(set(self.versions_by_key) - set(self.key_ids))


async def status(db: AsyncSession, settings: Settings) -> VaultStatus:
    ring = await keyring.open_keyring(db, settings)
    rows = await db.execute(
        select(VaultSecretVersion.master_key_id, func.count()).group_by(
            VaultSecretVersion.master_key_id
        )
    )
    counts = {str(key_id): int(count) for key_id, count in rows.all()}
    secrets = await db.scalar(select(func.count()).select_from(VaultSecret))
    return VaultStatus(
        source=ring.source,
        key_ids=ring.ids,
        active_id=ring.active.id,
        file_private=keyring.file_is_private(ring.path) if ring.path else None,
        secrets=int(secrets or 0),
        versions_by_key=counts,
    )


def add_master_key(settings: Settings, ring: Keyring) -> MasterKey:
    """Put a new key first in the key file (older keys stay, still able to unwrap)."""
    if ring.path is None:
        raise ValidationFailed(
            f"the master keys come from {keyring.ENV_NAME}: put a new key first in it (make "
            "one with `hexahub vault init --print`) on every HexaHub process, then run "
            "`hexahub vault rotate-master` to re-wrap the data keys"
        )
    new = MasterKey.generate()
    notes = {new.id: f"added {utcnow():%Y-%m-%d} by rotate-master"}
    keyring.replace_key_file(ring.path, [new, *ring.keys], notes)
    ring.refresh()
    if ring.active.id != new.id:  # pragma: no cover - the file was just written
        raise VaultLocked(f"{ring.path} was rewritten but does not start with the new key")
    return new


@dataclass
class RewrapReport:
    rewrapped: int = 0
    failed: list[str] = field(default_factory=list)


async def count_to_rewrap(db: AsyncSession, ring: Keyring) -> int:
    count = await db.scalar(
        select(func.count())
        .select_from(VaultSecretVersion)
        .where(VaultSecretVersion.master_key_id != ring.active.id)
    )
    return int(count or 0)


async def rewrap_all(
    sessions: async_sessionmaker[AsyncSession],
    ring: Keyring,
    *,
    batch: int = 500,
    on_batch: Callable[[int], Awaitable[None] | None] | None = None,
) -> RewrapReport:
    """Re-wrap every data key not under the active master key, one committed batch at a
    time. Readers keep working throughout: each row is either still under an old key
    (which stays in the keyring) or already under the new one. Passes repeat until a pass
    finds nothing, so versions written meanwhile under an old key are caught too."""
    report = RewrapReport()
    failed_ids: set[str] = set()
    while True:
        done_this_pass = 0
        last_id = ""
        while True:
            async with sessions() as db:
                rows = (
                    await db.execute(
                        select(VaultSecretVersion, VaultSecret.workspace_id, VaultSecret.path)
                        .join(VaultSecret, VaultSecret.id == VaultSecretVersion.secret_id)
                        .where(
                            VaultSecretVersion.master_key_id != ring.active.id,
                            VaultSecretVersion.id > last_id,
                        )
                        .order_by(VaultSecretVersion.id)
                        .limit(batch)
                    )
                ).all()
                if not rows:
                    break
                for row, workspace_id, path in rows:
                    last_id = row.id
                    where = Location(workspace_id, path, row.version)
                    try:
                        new_id, wrapped = envelope.rewrap(ring, _sealed(row), where)
                    except (VaultLocked, VaultIntegrityError) as exc:
                        if row.id not in failed_ids:
                            failed_ids.add(row.id)
                            report.failed.append(f"{path} v{row.version}: {exc.code}")
                        continue
                    await db.execute(
                        update(VaultSecretVersion)
                        .where(
                            VaultSecretVersion.id == row.id,
                            VaultSecretVersion.master_key_id == row.master_key_id,
                        )
                        .values(master_key_id=new_id, wrapped_key=wrapped)
                    )
                    done_this_pass += 1
                await db.commit()
            if on_batch is not None:
                result = on_batch(len(rows))
                if result is not None:
                    await result
        report.rewrapped += done_this_pass
        if done_this_pass == 0:
            return report


async def retire_old_keys(db: AsyncSession, ring: Keyring) -> list[str]:
    """Drop keys no stored data key needs any more from the key file; their ids."""
    if ring.path is None:
        raise ValidationFailed(
            f"the master keys come from {keyring.ENV_NAME}: remove old keys from it yourself"
        )
    used = set((await db.scalars(select(VaultSecretVersion.master_key_id).distinct())).all())
    current = ring.keys
    keep = [current[0], *(k for k in current[1:] if k.id in used)]
    dropped = [k.id for k in current if k not in keep]
    if dropped:
        keyring.replace_key_file(ring.path, keep, {})
        ring.refresh()
    return dropped
