"""Sessions: browser cookies, and access + rotating refresh tokens for API clients.

Both kinds are an `AuthSession` row with an idle and an absolute timeout. API clients get
a short-lived JWT access token naming the session (`sid`) and a one-use refresh token;
refreshing spends the old refresh token and issues a new pair. Presenting a spent refresh
token again means it was copied: the whole session (every token of the family) is revoked.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core.db import utcnow
from hexahub.core.errors import Unauthenticated
from hexahub.identity.models import AuthSession, RefreshToken, User
from hexahub.settings import Settings

JWT_ALGORITHM = "HS256"
JWT_AUDIENCE = "hexahub-api"
ACCESS_TOKEN_TYPE = "access"
# Writing last_used_at at most this often keeps idle tracking off the per-request path.
TOUCH_INTERVAL = timedelta(seconds=60)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str

    def as_response(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


@dataclass(frozen=True)
class BrowserGrant:
    token: str
    session: AuthSession


def _timeouts(settings: Settings) -> tuple[timedelta, timedelta]:
    return (
        timedelta(minutes=settings.session_idle_timeout_minutes),
        timedelta(hours=settings.session_absolute_timeout_hours),
    )


def _new_session(
    user: User, settings: Settings, kind: str, *, method: str, ip: str, user_agent: str
) -> AuthSession:
    _, absolute = _timeouts(settings)
    now = utcnow()
    return AuthSession(
        user_id=user.id,
        kind=kind,
        method=method,
        created_at=now,
        last_used_at=now,
        expires_at=now + absolute,
        ip=ip[:64],
        user_agent=user_agent[:300],
    )


def session_is_live(session: AuthSession, settings: Settings, now: datetime | None = None) -> bool:
    now = now or utcnow()
    idle, _ = _timeouts(settings)
    return (
        session.revoked_at is None
        and session.expires_at > now
        and session.last_used_at + idle > now
    )


async def touch(db: AsyncSession, session: AuthSession) -> None:
    """Record use for the idle timeout, at most once per TOUCH_INTERVAL."""
    now = utcnow()
    if now - session.last_used_at >= TOUCH_INTERVAL:
        await db.execute(
            update(AuthSession).where(AuthSession.id == session.id).values(last_used_at=now)
        )
        await db.commit()


async def revoke(db: AsyncSession, session_id: str, reason: str) -> None:
    await db.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason[:100])
    )


async def revoke_all_for_user(
    db: AsyncSession, user_id: str, reason: str, *, keep: str | None = None
) -> None:
    """End every session of a user, except `keep` (the session making the change)."""
    statement = update(AuthSession).where(
        AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)
    )
    if keep is not None:
        statement = statement.where(AuthSession.id != keep)
    await db.execute(statement.values(revoked_at=utcnow(), revoked_reason=reason[:100]))


# --- browser sessions ----------------------------------------------------------------


async def start_browser_session(
    db: AsyncSession,
    user: User,
    settings: Settings,
    *,
    method: str = "password",
    ip: str = "",
    user_agent: str = "",
) -> BrowserGrant:
    token = secrets.token_urlsafe(32)
    session = _new_session(user, settings, "browser", method=method, ip=ip, user_agent=user_agent)
    session.token_hash = hash_token(token)
    user.last_login_at = utcnow()
    db.add(session)
    await db.commit()
    return BrowserGrant(token=token, session=session)


async def browser_session(
    db: AsyncSession, settings: Settings, token: str | None
) -> tuple[User, AuthSession] | None:
    """The live session and active user a session cookie belongs to, or None."""
    if not token:
        return None
    row = (
        await db.execute(
            select(User, AuthSession)
            .join(AuthSession, AuthSession.user_id == User.id)
            .where(AuthSession.token_hash == hash_token(token), AuthSession.kind == "browser")
        )
    ).one_or_none()
    if row is None:
        return None
    user, session = row
    if not user.is_active or not session_is_live(session, settings):
        return None
    await touch(db, session)
    return user, session


async def end_browser_session(db: AsyncSession, token: str | None) -> None:
    if not token:
        return
    await db.execute(
        update(AuthSession)
        .where(AuthSession.token_hash == hash_token(token), AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason="signed out")
    )
    await db.commit()


# --- API tokens ----------------------------------------------------------------------


def _access_token(user: User, session: AuthSession, settings: Settings) -> tuple[str, int]:
    ttl = settings.access_token_ttl_seconds
    now = utcnow()
    claims = {
        "sub": user.id,
        "sid": session.id,
        "typ": ACCESS_TOKEN_TYPE,
        "aud": JWT_AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + ttl,
        "jti": secrets.token_hex(8),
    }
    token = jwt.encode(claims, settings.resolved_secret_key(), algorithm=JWT_ALGORITHM)
    return token, ttl


def _issue_refresh(db: AsyncSession, session: AuthSession, settings: Settings) -> str:
    idle, _ = _timeouts(settings)
    token = "hhr_" + secrets.token_urlsafe(32)
    db.add(
        RefreshToken(
            session_id=session.id,
            token_hash=hash_token(token),
            expires_at=min(session.expires_at, utcnow() + idle),
        )
    )
    return token


async def start_api_session(
    db: AsyncSession,
    user: User,
    settings: Settings,
    *,
    method: str = "password",
    ip: str = "",
    user_agent: str = "",
) -> TokenPair:
    session = _new_session(user, settings, "api", method=method, ip=ip, user_agent=user_agent)
    db.add(session)
    await db.flush()
    refresh = _issue_refresh(db, session, settings)
    user.last_login_at = utcnow()
    await db.commit()
    access, ttl = _access_token(user, session, settings)
    return TokenPair(access, refresh, ttl, session.id)


class RefreshReused(Unauthenticated):
    code = "refresh_token_reused"


async def refresh(db: AsyncSession, settings: Settings, refresh_token: str) -> TokenPair:
    """Spend a refresh token for a new pair. A token spent twice revokes its session."""
    row = (
        await db.execute(
            select(RefreshToken, AuthSession, User)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)
            .join(User, User.id == AuthSession.user_id)
            .where(RefreshToken.token_hash == hash_token(refresh_token or ""))
        )
    ).one_or_none()
    if row is None:
        raise Unauthenticated("refresh token is not valid; sign in again")
    token, session, user = row
    now = utcnow()
    if token.used_at is not None:
        await revoke(db, session.id, "refresh token reused")
        await db.commit()
        raise RefreshReused(
            "refresh token was already used; the session is revoked, sign in again",
            details={"session_id": session.id, "user_id": user.id},
        )
    if not user.is_active or not session_is_live(session, settings, now) or token.expires_at <= now:
        raise Unauthenticated("session has ended; sign in again")
    # Spend it with a conditional update so two racing refreshes cannot both succeed.
    spent = await db.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        await revoke(db, session.id, "refresh token reused")
        await db.commit()
        raise RefreshReused("refresh token was already used; the session is revoked")
    new_refresh = _issue_refresh(db, session, settings)
    session.last_used_at = now
    await db.commit()
    access, ttl = _access_token(user, session, settings)
    return TokenPair(access, new_refresh, ttl, session.id)


async def session_of_refresh_token(db: AsyncSession, refresh_token: str) -> AuthSession | None:
    return await db.scalar(
        select(AuthSession)
        .join(RefreshToken, RefreshToken.session_id == AuthSession.id)
        .where(RefreshToken.token_hash == hash_token(refresh_token))
    )


def decode_access_token(token: str, settings: Settings) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.resolved_secret_key(),
            algorithms=[JWT_ALGORITHM],
            audience=JWT_AUDIENCE,
            options={"require": ["sub", "sid", "exp", "typ"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("access token has expired; refresh it") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("access token is not valid") from exc
    if claims.get("typ") != ACCESS_TOKEN_TYPE:
        raise Unauthenticated("access token is not valid")
    return claims


async def access_token_user(
    db: AsyncSession, settings: Settings, token: str
) -> tuple[User, AuthSession]:
    claims = decode_access_token(token, settings)
    row = (
        await db.execute(
            select(User, AuthSession)
            .join(AuthSession, AuthSession.user_id == User.id)
            .where(AuthSession.id == claims["sid"], User.id == claims["sub"])
        )
    ).one_or_none()
    if row is None:
        raise Unauthenticated("access token is not valid")
    user, session = row
    if not user.is_active:
        raise Unauthenticated("this account is disabled")
    if not session_is_live(session, settings):
        raise Unauthenticated("session has ended; sign in again")
    await touch(db, session)
    return user, session
