"""Accounts and browser sessions. Knows nothing of HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core.db import utcnow
from hexahub.core.errors import Conflict, Forbidden, Unauthenticated, ValidationFailed
from hexahub.identity.models import InstanceFlag, User, WebSession

SESSION_LIFETIME = timedelta(hours=12)
FIRST_ADMIN_FLAG = "first_admin_created"
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
_hasher = PasswordHasher()
# Verifying against this when the account does not exist keeps timing uniform.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


@dataclass(frozen=True)
class SessionGrant:
    """A new browser session: the raw token goes in the cookie, only its hash is kept."""

    token: str
    user: User


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def setup_token(secret_key: str) -> str:
    """The one-time first-admin setup token; it stops working once any user exists."""
    return hmac.new(secret_key.encode(), b"hexahub-first-admin-setup", "sha256").hexdigest()[:32]


def check_setup_token(secret_key: str, candidate: str) -> bool:
    return hmac.compare_digest(setup_token(secret_key), candidate or "")


def validate_new_account(email: str, password: str, display_name: str) -> str:
    """Return the normalised e-mail, or raise ValidationFailed saying what is wrong."""
    normalised = email.strip().lower()
    if not _EMAIL.match(normalised):
        raise ValidationFailed("email: enter an address like name@example.org")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"password: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed(f"password: use at most {MAX_PASSWORD_LENGTH} characters")
    if len(display_name) > 200:
        raise ValidationFailed("display_name: use at most 200 characters")
    return normalised


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


async def count_users(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(User)) or 0)


async def create_first_admin(
    db: AsyncSession, *, email: str, password: str, display_name: str = ""
) -> User:
    """Create the first account, an administrator. Refused once any account exists."""
    normalised = validate_new_account(email, password, display_name)
    if await count_users(db) > 0:
        raise Conflict("setup is already done; sign in with an existing account")
    user = User(
        email=normalised,
        display_name=display_name.strip() or normalised.split("@")[0],
        password_hash=await hash_password(password),
        is_admin=True,
    )
    # Two setups racing with different e-mails both pass the count above; only one can
    # insert this flag, so only one commits.
    db.add(InstanceFlag(name=FIRST_ADMIN_FLAG))
    db.add(user)
    try:
        await db.commit()
    except IntegrityError as exc:
        await db.rollback()
        raise Conflict("setup is already done; sign in with an existing account") from exc
    return user


async def authenticate(db: AsyncSession, *, email: str, password: str) -> User:
    user = await db.scalar(select(User).where(User.email == email.strip().lower()))
    valid = await verify_password(user.password_hash if user else None, password)
    if user is None or not valid:
        raise Unauthenticated("wrong e-mail or password")
    if not user.is_active:
        raise Forbidden("this account is disabled; ask an administrator")
    return user


async def start_session(
    db: AsyncSession, user: User, *, ip: str = "", user_agent: str = ""
) -> SessionGrant:
    token = secrets.token_urlsafe(32)
    db.add(
        WebSession(
            token_hash=_hash_token(token),
            user_id=user.id,
            expires_at=utcnow() + SESSION_LIFETIME,
            ip=ip[:64],
            user_agent=user_agent[:300],
        )
    )
    await db.commit()
    return SessionGrant(token=token, user=user)


async def session_user(db: AsyncSession, token: str | None) -> User | None:
    """The active user a session cookie belongs to, or None."""
    if not token:
        return None
    row = await db.execute(
        select(User)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.token_hash == _hash_token(token), WebSession.expires_at > utcnow())
    )
    user = row.scalar_one_or_none()
    return user if user is not None and user.is_active else None


async def end_session(db: AsyncSession, token: str | None) -> None:
    if token:
        await db.execute(delete(WebSession).where(WebSession.token_hash == _hash_token(token)))
        await db.commit()
