"""Accounts: creating, signing in, changing, disabling and deleting people.

Knows nothing of HTTP. Sessions live in sessions.py, API keys in keys.py, organisations
and workspaces in workspaces.py, the audit log in audit.py.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core.errors import Conflict, Forbidden, NotFound, Unauthenticated, ValidationFailed
from hexahub.identity import audit, keys, sessions, workspaces
from hexahub.identity.limits import Limiter
from hexahub.identity.models import InstanceFlag, User

FIRST_ADMIN_FLAG = "first_admin_created"
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
MAX_DISPLAY_NAME = 200
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
_hasher = PasswordHasher()
# Verifying against this when the account does not exist keeps timing uniform.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def setup_token(secret_key: str) -> str:
    """The one-time first-admin setup token; it stops working once any user exists."""
    return hmac.new(secret_key.encode(), b"hexahub-first-admin-setup", "sha256").hexdigest()[:32]


def check_setup_token(secret_key: str, candidate: str) -> bool:
    return hmac.compare_digest(setup_token(secret_key), candidate or "")


def normalise_email(email: str) -> str:
    normalised = email.strip().lower()
    if not _EMAIL.match(normalised):
        raise ValidationFailed("email: enter an address like name@example.org")
    return normalised


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"password: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed(f"password: use at most {MAX_PASSWORD_LENGTH} characters")


def check_display_name(display_name: str) -> str:
    if len(display_name) > MAX_DISPLAY_NAME:
        raise ValidationFailed(f"display_name: use at most {MAX_DISPLAY_NAME} characters")
    return display_name.strip()


def validate_new_account(email: str, password: str | None, display_name: str) -> str:
    """Return the normalised e-mail, or raise ValidationFailed saying what is wrong."""
    normalised = normalise_email(email)
    if password is not None:
        check_password_rules(password)
    check_display_name(display_name)
    return normalised


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    return await asyncio.to_thread(check)


def public_user(user: User) -> dict[str, Any]:
    """The fields of a user that may be shown and audited (never the password hash)."""
    return {
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "is_admin": user.is_admin,
        "is_active": user.is_active,
        "has_password": user.password_hash is not None,
        "created_at": user.created_at.isoformat() if user.created_at else None,
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
    }


async def count_users(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(User)) or 0)


async def get_user(db: AsyncSession, user_id: str) -> User:
    user = await db.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


async def find_user_by_email(db: AsyncSession, email: str) -> User | None:
    return await db.scalar(select(User).where(User.email == email.strip().lower()))


async def list_users(db: AsyncSession) -> list[User]:
    return list((await db.scalars(select(User).order_by(User.email))).all())


async def create_user(
    db: AsyncSession,
    *,
    email: str,
    password: str | None,
    display_name: str = "",
    is_admin: bool = False,
) -> User:
    """Add an account to the caller's transaction. `password=None`: SSO-only account."""
    normalised = validate_new_account(email, password, display_name)
    if await find_user_by_email(db, normalised) is not None:
        raise Conflict(f"an account with the e-mail {normalised} already exists")
    user = User(
        email=normalised,
        display_name=display_name.strip() or normalised.split("@")[0],
        password_hash=await hash_password(password) if password is not None else None,
        is_admin=is_admin,
    )
    db.add(user)
    await db.flush()
    return user


async def create_first_admin(
    db: AsyncSession, *, email: str, password: str, display_name: str = ""
) -> User:
    """Create the first account, an administrator, with a default organisation and
    workspace that they own. Refused once any account exists."""
    validate_new_account(email, password, display_name)
    if await count_users(db) > 0:
        raise Conflict("setup is already done; sign in with an existing account")
    try:
        # Two setups racing with different e-mails both pass the count above; only one
        # can insert this flag, so only one commits.
        db.add(InstanceFlag(name=FIRST_ADMIN_FLAG))
        await db.flush()
        user = await create_user(
            db, email=email, password=password, display_name=display_name, is_admin=True
        )
        await workspaces.create_default_home(db, user)
        audit.record(
            db,
            "instance.setup",
            user=user,
            target_type="user",
            target_id=user.id,
            after=public_user(user),
        )
        await db.commit()
    except IntegrityError as exc:
        await db.rollback()
        raise Conflict("setup is already done; sign in with an existing account") from exc
    return user


async def authenticate(db: AsyncSession, *, email: str, password: str) -> User:
    user = await find_user_by_email(db, email)
    valid = await verify_password(user.password_hash if user else None, password)
    if user is None or not valid:
        raise Unauthenticated("wrong e-mail or password")
    if not user.is_active:
        raise Forbidden("this account is disabled; ask an administrator")
    return user


async def password_sign_in(
    db: AsyncSession, limiter: Limiter, *, email: str, password: str, ip: str
) -> User:
    """Check a password sign-in, slowing repeated failures per account and per IP.

    Failures are audited and committed here; on success the caller starts a session and
    commits the `auth.login` event added here together with it.
    """
    await limiter.check_login_allowed(email, ip)
    try:
        user = await authenticate(db, email=email, password=password)
    except (Unauthenticated, Forbidden) as exc:
        await limiter.login_failed(email, ip)
        await audit.record_now(
            db,
            "auth.login",
            outcome="denied",
            actor_label=email.strip().lower()[:320],
            ip=ip,
            details={"method": "password", "reason": exc.message},
        )
        raise
    await limiter.login_succeeded(email, ip)
    audit.record(
        db,
        "auth.login",
        user=user,
        ip=ip,
        target_type="user",
        target_id=user.id,
        details={"method": "password"},
    )
    return user


async def change_password(
    db: AsyncSession, user: User, *, current: str | None, new: str, keep_session: str | None
) -> None:
    """Set a new password; every other session of the user ends."""
    if user.password_hash is not None and not await verify_password(
        user.password_hash, current or ""
    ):
        raise Forbidden("current_password: that is not your current password")
    check_password_rules(new)
    user.password_hash = await hash_password(new)
    await sessions.revoke_all_for_user(db, user.id, "password changed", keep=keep_session)
    await db.flush()


async def set_active(db: AsyncSession, user: User, active: bool) -> None:
    """Disable or enable an account; disabling ends its sessions and keys at once."""
    user.is_active = active
    if not active:
        await sessions.revoke_all_for_user(db, user.id, "account disabled")
        await keys.revoke_user_keys(db, user.id)
    await db.flush()


async def delete_user(db: AsyncSession, user: User) -> None:
    """Delete an account; refused while they are the only owner of a workspace."""
    sole = await workspaces.workspaces_solely_owned_by(db, user.id)
    if sole:
        names = ", ".join(w.name for w in sole)
        raise Conflict(f"{user.email} is the only owner of: {names}; transfer ownership first")
    await db.delete(user)
    await db.flush()
