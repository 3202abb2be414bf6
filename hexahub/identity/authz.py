"""Who is calling, and what they may do: the one place routes get their permissions from.

Every route states what it needs as a typed parameter, so its signature says it:

    async def list_members(access: WorkspaceAdmin) -> ...      # admin role, `admin` scope
    async def me(principal: Authenticated) -> ...              # anyone signed in
    async def create_user(principal: InstanceAdmin) -> ...     # installation administrator

A caller is identified by (first match wins) an `Authorization: Bearer` API key or access
token, an `x-api-key` header, or the browser session cookie. Cookie-authenticated requests
that change something must repeat the CSRF cookie in an `X-CSRF-Token` header.

Workspace access is the strongest of the caller's own membership role and the roles given
to groups they belong to. Someone with no role in a workspace is told it does not exist
(404), so workspace ids reveal nothing to strangers; a member whose role is too weak gets
403 and the attempt is audited. API keys are further limited by their scopes and, when a
key is bound to a workspace, to that workspace.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core.deps import get_db, get_runtime
from hexahub.core.errors import Forbidden, NotFound, Unauthenticated, ValidationFailed
from hexahub.identity import audit, keys, sessions
from hexahub.identity.models import (
    ApiKey,
    AuthSession,
    GroupMember,
    GroupRole,
    Membership,
    Role,
    User,
    Workspace,
)

SESSION_COOKIE = "hexahub_session"
CSRF_COOKIE = "hexahub_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Principal:
    user: User
    method: str  # "session" (browser cookie), "token" (access token) or "api_key"
    ip: str = ""
    session: AuthSession | None = None
    api_key: ApiKey | None = None

    @property
    def label(self) -> str:
        return f"{self.user.email} ({self.api_key.prefix})" if self.api_key else self.user.email

    @property
    def scopes(self) -> set[str]:
        if self.api_key is None:
            return set(keys.SCOPES)
        return keys.expand_scopes(self.api_key.scopes)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def bound_workspace_id(self) -> str | None:
        """The workspace the caller's API key is bound to, if it is bound to one."""
        return self.api_key.workspace_id if self.api_key is not None else None

    @property
    def is_instance_admin(self) -> bool:
        """An installation administrator acting as one. A key bound to one workspace
        carries none of that power, whoever owns it."""
        return self.user.is_admin and self.bound_workspace_id is None


@dataclass
class WorkspaceAccess:
    principal: Principal
    workspace: Workspace
    role: Role

    @property
    def user(self) -> User:
        return self.principal.user


# The address columns' width. Behind a trusted proxy the address is whatever text the
# proxy forwarded, and a longer one must not make an audit write fail.
MAX_IP_CHARS = 64


def client_ip(request: Request) -> str:
    """The client's address: the peer's, or the one a trusted proxy forwarded (uvicorn
    believes X-Forwarded-For only from HEXAHUB_FORWARDED_ALLOW_IPS, see hexahub.cli)."""
    return request.client.host[:MAX_IP_CHARS] if request.client else ""


def bearer_credential(request: Request) -> str | None:
    """The API key or access token sent with a request, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


async def identify(request: Request, db: AsyncSession) -> Principal | None:
    """The caller, or None when no credentials were sent. Bad credentials raise 401."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    runtime = get_runtime(request)
    settings = runtime.settings
    ip = client_ip(request)
    principal: Principal | None = None
    credential = bearer_credential(request)
    if credential is not None:
        if keys.looks_like_key(credential):
            user, key = await keys.authenticate_key(db, credential)
            principal = Principal(user, "api_key", ip, api_key=key)
        else:
            user, auth_session = await sessions.access_token_user(db, settings, credential)
            principal = Principal(user, "token", ip, session=auth_session)
    else:
        found = await sessions.browser_session(db, settings, request.cookies.get(SESSION_COOKIE))
        if found is not None:
            user, auth_session = found
            principal = Principal(user, "session", ip, session=auth_session)
            if request.method not in SAFE_METHODS:
                _check_csrf_header(request)
    if principal is not None:
        await admit(request, principal)
    return principal


async def admit(request: Request, principal: Principal) -> None:
    """What happens on every request of an identified caller, however it was identified:
    the key's last use is noted, the request is counted against the caller's rate limit."""
    if principal.api_key is not None:
        key_usage = getattr(request.app.state, "key_usage", None)
        if key_usage is not None:
            key_usage.seen(principal.api_key.id)
    request.state.principal = principal
    limiter = getattr(request.app.state, "limiter", None)
    if limiter is not None:
        await limiter.check_principal(principal)


def _check_csrf_header(request: Request) -> None:
    expected = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER, "")
    if not expected or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise Forbidden(
            "requests signed in with the browser cookie must send the X-CSRF-Token header; "
            "API clients should use an API key or access token instead"
        )


def check_scope(principal: Principal, scope: str) -> None:
    if not principal.has_scope(scope):
        raise _scope_error(principal, scope)


def _scope_error(principal: Principal, scope: str) -> Forbidden:
    have = ", ".join(sorted(principal.api_key.scopes)) if principal.api_key else "none"
    return Forbidden(f"this API key lacks the `{scope}` scope (it has: {have})")


# The ways to authenticate, named for the OpenAPI document of each route that needs a
# caller. identify() reads the credentials itself, so these never refuse anything.
_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API key (hh_...) or an access token from POST /api/auth/login",
)
_API_KEY = APIKeyHeader(
    name="x-api-key", auto_error=False, scheme_name="apiKey", description="An API key"
)
_SESSION = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    scheme_name="session",
    description=f"The web UI's sign-in; a request that changes something repeats the "
    f"{CSRF_COOKIE} cookie in the X-CSRF-Token header",
)


async def credentials(
    _bearer: Any = Security(_BEARER),
    _api_key: Any = Security(_API_KEY),
    _session: Any = Security(_SESSION),
) -> None:
    """Depend on this where a route identifies its caller without require_user."""


def require_user(*scopes: str) -> Any:
    """A signed-in caller holding every one of `scopes` (default: `read`)."""
    needed = scopes or ("read",)

    async def dependency(
        request: Request, db: AsyncSession = Depends(get_db), _: None = Depends(credentials)
    ) -> Principal:
        principal = await identify(request, db)
        if principal is None:
            raise Unauthenticated(
                "sign in, or send an API key or access token in the Authorization header",
                headers={"WWW-Authenticate": "Bearer"},
            )
        for scope in needed:
            check_scope(principal, scope)
        return principal

    dependency.__name__ = f"require_user_{'_'.join(needed)}"
    return dependency


def require_instance_admin(scope: str = "admin") -> Any:
    async def dependency(
        request: Request,
        db: AsyncSession = Depends(get_db),
        principal: Principal = Depends(require_user(scope)),
    ) -> Principal:
        if not principal.is_instance_admin:
            await audit.record_now(
                db,
                "access.denied",
                actor=principal,
                outcome="denied",
                details={"needs": "instance admin", "path": request.url.path},
            )
            if principal.user.is_admin:
                raise Forbidden(
                    "this API key is bound to one workspace, so it cannot act on the whole "
                    "installation; use an unbound key or sign in"
                )
            raise Forbidden("only administrators of this HexaHub installation may do this")
        return principal

    return dependency


async def effective_role(db: AsyncSession, workspace_id: str, user_id: str) -> Role | None:
    """The strongest of a user's own role and their groups' roles in a workspace."""
    own = select(Membership.role).where(
        Membership.workspace_id == workspace_id, Membership.user_id == user_id
    )
    via_groups = (
        select(GroupRole.role)
        .join(GroupMember, GroupMember.group_id == GroupRole.group_id)
        .where(GroupRole.workspace_id == workspace_id, GroupMember.user_id == user_id)
    )
    roles = [Role(r) for r in (await db.scalars(own.union_all(via_groups))).all()]
    return max(roles, key=lambda r: r.rank) if roles else None


async def workspace_access(
    db: AsyncSession,
    principal: Principal,
    workspace_id: str,
    minimum: Role,
    scope: str,
    *,
    path: str = "",
) -> WorkspaceAccess:
    """Check `principal` may act in a workspace with at least `minimum` and `scope`."""
    if principal.bound_workspace_id not in (None, workspace_id):
        raise NotFound(f"no workspace with id {workspace_id}")
    workspace = await db.get(Workspace, workspace_id)
    role = await effective_role(db, workspace_id, principal.user.id) if workspace else None
    if workspace is None or role is None:
        raise NotFound(f"no workspace with id {workspace_id}")
    if not principal.has_scope(scope):
        raise _scope_error(principal, scope)
    if not role.at_least(minimum):
        await audit.record_now(
            db,
            "access.denied",
            actor=principal,
            workspace_id=workspace_id,
            outcome="denied",
            details={"needs": minimum.value, "has": role.value, "path": path},
        )
        raise Forbidden(
            f"this needs the {minimum.value} role in this workspace; you are {role.value}"
        )
    return WorkspaceAccess(principal, workspace, role)


async def chosen_workspace(
    db: AsyncSession,
    principal: Principal,
    workspace_id: str | None,
    minimum: Role,
    scope: str,
    *,
    path: str = "",
) -> WorkspaceAccess:
    """Access to the workspace a request names, or, when it names none, to the one the
    caller plainly means: the workspace its API key is bound to, else their only one.
    Routes such as /api/repos and /api/conversations take `workspace_id` this way."""
    if not workspace_id:
        if principal.bound_workspace_id is not None:
            workspace_id = principal.bound_workspace_id
        else:
            own = select(Membership.workspace_id).where(Membership.user_id == principal.user.id)
            via_groups = (
                select(GroupRole.workspace_id)
                .join(GroupMember, GroupMember.group_id == GroupRole.group_id)
                .where(GroupMember.user_id == principal.user.id)
            )
            candidates = set((await db.scalars(own.union(via_groups))).all())
            if len(candidates) != 1:
                raise ValidationFailed(
                    "say which workspace: add workspace_id (you belong to "
                    f"{len(candidates)} workspaces)"
                )
            workspace_id = candidates.pop()
    return await workspace_access(db, principal, workspace_id, minimum, scope, path=path)


def require_workspace(minimum: Role, scope: str) -> Any:
    async def dependency(
        request: Request,
        workspace_id: str,
        db: AsyncSession = Depends(get_db),
        principal: Principal = Depends(require_user(scope)),
    ) -> WorkspaceAccess:
        return await workspace_access(
            db, principal, workspace_id, minimum, scope, path=request.url.path
        )

    dependency.__name__ = f"require_workspace_{minimum.value}"
    return dependency


async def optional_principal(
    request: Request, db: AsyncSession = Depends(get_db)
) -> Principal | None:
    return await identify(request, db)


Authenticated = Annotated[Principal, Depends(require_user("read"))]
AuthenticatedWriter = Annotated[Principal, Depends(require_user("write"))]
InstanceAdmin = Annotated[Principal, Depends(require_instance_admin())]
InstanceAdminReader = Annotated[Principal, Depends(require_instance_admin("read"))]
WorkspaceReader = Annotated[WorkspaceAccess, Depends(require_workspace(Role.viewer, "read"))]
# Any member acting on their own membership (leaving): a change, so `write`.
WorkspaceMember = Annotated[WorkspaceAccess, Depends(require_workspace(Role.viewer, "write"))]
WorkspaceWriter = Annotated[WorkspaceAccess, Depends(require_workspace(Role.member, "write"))]
WorkspaceAdmin = Annotated[WorkspaceAccess, Depends(require_workspace(Role.admin, "admin"))]
WorkspaceAdminReader = Annotated[WorkspaceAccess, Depends(require_workspace(Role.admin, "read"))]
WorkspaceOwner = Annotated[WorkspaceAccess, Depends(require_workspace(Role.owner, "admin"))]
MaybePrincipal = Annotated[Principal | None, Depends(optional_principal)]
