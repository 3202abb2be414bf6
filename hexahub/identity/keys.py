"""API keys: scoped, optionally expiring, shown once, stored as a SHA-256 hash.

A key looks like `hh_<8 hex>_<43 url-safe chars>`; `hh_<8 hex>` is its prefix, shown in
lists so people can tell keys apart. Keys carry 256 bits of randomness, so a plain
SHA-256 is enough to store them (no slow hash needed, and look-up stays one index probe).

Last-used times are kept in memory and written in batches by `KeyUsage.flush`, so
authenticating with a key never writes to the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hexahub.core.db import utcnow
from hexahub.core.errors import NotFound, Unauthenticated, ValidationFailed
from hexahub.identity.models import ApiKey, User

log = logging.getLogger("hexahub.identity.keys")

KEY_PREFIX = "hh_"
# What each scope allows. `admin` includes `write`, which includes `read`.
SCOPES = {
    "read": "read anything the owner may read (GET requests)",
    "write": "create and change resources the owner may change",
    "admin": "manage members, keys and settings where the owner is an admin",
    "gateway": "call the model APIs under /v1",
}
SCOPE_IMPLIES = {"admin": {"admin", "write", "read"}, "write": {"write", "read"}}
MAX_KEY_NAME = 200


def expand_scopes(scopes: list[str] | set[str]) -> set[str]:
    granted: set[str] = set()
    for scope in scopes:
        granted |= SCOPE_IMPLIES.get(scope, {scope})
    return granted


def within_reach(key: ApiKey, of: ApiKey) -> bool:
    """Whether `key` reaches no further than `of`: no scope `of` lacks, and, when `of` is
    bound to a workspace, bound to that same workspace. A key sees and manages only keys
    within its reach, so a key cannot be used to look up or revoke stronger ones."""
    if of.workspace_id is not None and key.workspace_id != of.workspace_id:
        return False
    return expand_scopes(key.scopes) <= expand_scopes(of.scopes)


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def looks_like_key(raw: str) -> bool:
    return raw.startswith(KEY_PREFIX) and raw.count("_") >= 2


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str  # shown once, never stored


def validate_scopes(scopes: list[str]) -> list[str]:
    if not scopes:
        raise ValidationFailed(f"scopes: give at least one of {', '.join(SCOPES)}")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValidationFailed(
            f"scopes: unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}"
        )
    return sorted(set(scopes))


async def create_key(
    db: AsyncSession,
    user: User,
    *,
    name: str,
    scopes: list[str],
    workspace_id: str | None = None,
    expires_in_days: int | None = None,
) -> NewKey:
    """Create a key for `user`. The caller checks the user may act in `workspace_id`."""
    name = name.strip()
    if not name or len(name) > MAX_KEY_NAME:
        raise ValidationFailed(f"name: give a name of 1 to {MAX_KEY_NAME} characters")
    scopes = validate_scopes(scopes)
    if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
        raise ValidationFailed("expires_in_days: use a number of days from 1 to 3650")
    prefix = f"{KEY_PREFIX}{secrets.token_hex(4)}"
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        user_id=user.id,
        workspace_id=workspace_id,
        name=name,
        prefix=prefix,
        key_hash=hash_key(secret),
        scopes=scopes,
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    db.add(key)
    await db.flush()
    return NewKey(key=key, secret=secret)


async def authenticate_key(db: AsyncSession, raw: str) -> tuple[User, ApiKey]:
    row = (
        await db.execute(
            select(User, ApiKey)
            .join(ApiKey, ApiKey.user_id == User.id)
            .where(ApiKey.key_hash == hash_key(raw))
        )
    ).one_or_none()
    if row is None:
        raise Unauthenticated("API key is not valid")
    user, key = row
    check_usable(user, key)
    return user, key


def check_usable(user: User, key: ApiKey) -> None:
    """Refuse a key that is revoked or expired, or whose owner is disabled."""
    if key.revoked_at is not None:
        raise Unauthenticated(f"API key {key.prefix} has been revoked")
    if key.expires_at is not None and key.expires_at <= utcnow():
        raise Unauthenticated(f"API key {key.prefix} expired on {key.expires_at:%Y-%m-%d}")
    if not user.is_active:
        raise Unauthenticated("the account that owns this API key is disabled")


async def list_keys(
    db: AsyncSession, *, user_id: str | None = None, workspace_id: str | None = None
) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at.desc())
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    if workspace_id is not None:
        query = query.where(ApiKey.workspace_id == workspace_id)
    return list((await db.scalars(query)).all())


async def get_key(db: AsyncSession, key_id: str) -> ApiKey:
    key = await db.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key with id {key_id}")
    return key


async def revoke_key(db: AsyncSession, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    await db.flush()


async def revoke_user_keys(db: AsyncSession, user_id: str) -> None:
    await db.execute(
        update(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


class KeyUsage:
    """Remembers when each key was last used and writes it in batches."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], interval: float = 30.0):
        self.sessions = sessions
        self.interval = interval
        self._seen: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def seen(self, key_id: str) -> None:
        self._seen[key_id] = utcnow()

    async def flush(self) -> int:
        pending, self._seen = self._seen, {}
        if not pending:
            return 0
        async with self.sessions() as db:
            for key_id, when in pending.items():
                await db.execute(
                    update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when)
                )
            await db.commit()
        return len(pending)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("could not record API key use: %s", exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()
