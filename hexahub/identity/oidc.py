"""Single sign-on with OpenID Connect: the authorization-code flow with PKCE (S256).

`GET /api/auth/oidc/login` sends the browser to the issuer with a fresh state, nonce and
PKCE challenge, kept in a short-lived signed cookie scoped to these two routes.
`GET /api/auth/oidc/callback` checks the state, exchanges the code (with the verifier and
the client secret), verifies the ID token against the issuer's published keys (JWKS) and
its iss/aud/exp/iat/nonce claims, then signs the person in: found by their SSO identity,
else by verified e-mail (and linked), else created when `oidc_create_users` allows it.
Their group claim becomes `oidc` groups of the default organisation, and
`oidc_role_mapping` gives those groups roles in workspaces.

Every outcome of the callback is audited as `auth.oidc_login` (ok / denied / failed) with
the issuer and subject; tokens never leave this module. A problem at the issuer answers
4xx or 502 with a message saying what went wrong, never a 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from hexahub.core.db import utcnow
from hexahub.core.deps import DbSession, RuntimeDep
from hexahub.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    HexaHubError,
    NotFound,
    Unauthenticated,
    ValidationFailed,
    error_body,
)
from hexahub.identity import audit, service, sessions, workspaces
from hexahub.identity.authz import SESSION_COOKIE, client_ip
from hexahub.identity.models import Role, User, UserIdentity, Workspace
from hexahub.settings import Settings
from hexahub.web.rendering import safe_next

log = logging.getLogger("hexahub.identity.oidc")

router = APIRouter(prefix="/api/auth/oidc", tags=["auth"])

CALLBACK_PATH = "/api/auth/oidc/callback"
FLOW_COOKIE = "hexahub_oidc_flow"
FLOW_COOKIE_PATH = "/api/auth/oidc"
FLOW_TTL_SECONDS = 600
FLOW_AUDIENCE = "hexahub-oidc-flow"
# Discovery documents and key sets change rarely; an unknown `kid` refetches the keys.
METADATA_TTL_SECONDS = 300.0
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# Allowed clock difference between HexaHub and the issuer.
CLOCK_LEEWAY_SECONDS = 60
# Asymmetric algorithms only: an HMAC-signed ID token would be keyed with our own secret.
ID_TOKEN_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
AUDIT_ACTION = "auth.oidc_login"
MAX_GROUPS = 200


class IssuerUnavailable(HexaHubError):
    """The identity provider could not be reached or answered something unusable."""

    status_code = 502
    code = "issuer_unavailable"


def sso_enabled(settings: Settings) -> bool:
    return bool(settings.oidc_issuer.strip() and settings.oidc_client_id.strip())


def sso_display_name(settings: Settings) -> str:
    """The SSO button's label, or "" when single sign-on is not configured."""
    return (settings.oidc_display_name.strip() or "SSO") if sso_enabled(settings) else ""


def _require_enabled(settings: Settings) -> None:
    if not sso_enabled(settings):
        raise NotFound(
            "single sign-on is not configured; set oidc_issuer and oidc_client_id "
            "(see docs/identity.md)"
        )


def redirect_uri(settings: Settings) -> str:
    """Where the issuer sends the browser back: register exactly this URI there."""
    return settings.external_base_url + CALLBACK_PATH


# --- issuer metadata and keys --------------------------------------------------------


@dataclass
class _Cached:
    value: dict[str, Any]
    fetched_at: float


@dataclass
class IssuerCache:
    """Discovery documents and JWKS per URL, kept in memory for `ttl` seconds."""

    ttl: float = METADATA_TTL_SECONDS
    entries: dict[str, _Cached] = field(default_factory=dict)

    def get(self, url: str) -> dict[str, Any] | None:
        cached = self.entries.get(url)
        if cached is None or time.monotonic() - cached.fetched_at > self.ttl:
            return None
        return cached.value

    def put(self, url: str, value: dict[str, Any]) -> None:
        self.entries[url] = _Cached(value, time.monotonic())

    def clear(self) -> None:
        self.entries.clear()


cache = IssuerCache()


def _describe(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__


async def _get_json(client: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
    try:
        response = await client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise IssuerUnavailable(
            f"could not reach the identity provider for its {what} at {url}: {_describe(exc)}"
        ) from exc
    if response.status_code != 200:
        raise IssuerUnavailable(
            f"the identity provider answered HTTP {response.status_code} for its {what} at {url}"
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise IssuerUnavailable(f"the identity provider's {what} at {url} is not a JSON object")
    return body


async def discover(client: httpx.AsyncClient, settings: Settings) -> dict[str, Any]:
    """The issuer's discovery document, checked for what the code flow needs."""
    configured = settings.oidc_issuer.strip()
    url = configured.rstrip("/") + "/.well-known/openid-configuration"
    found = cache.get(url)
    if found is not None:
        return found
    metadata = await _get_json(client, url, "discovery document")
    issuer = metadata.get("issuer")
    # The spec wants an exact match; a trailing slash is a common slip in configuration.
    if not isinstance(issuer, str) or issuer.rstrip("/") != configured.rstrip("/"):
        raise IssuerUnavailable(
            f"the discovery document at {url} names the issuer {issuer!r}, "
            f"not the configured oidc_issuer {configured!r}"
        )
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(metadata.get(name), str) or not metadata[name]:
            raise IssuerUnavailable(f"the discovery document at {url} has no {name}")
    cache.put(url, metadata)
    return metadata


async def _jwks(client: httpx.AsyncClient, jwks_uri: str, *, refresh: bool) -> list[Any]:
    found = None if refresh else cache.get(jwks_uri)
    if found is None:
        found = await _get_json(client, jwks_uri, "signing keys (JWKS)")
        cache.put(jwks_uri, found)
    keys = found.get("keys")
    return keys if isinstance(keys, list) else []


def _matching_key(keys: list[Any], kid: str | None, alg: str) -> jwt.PyJWK | None:
    candidates = [
        k
        for k in keys
        if isinstance(k, dict)
        and k.get("use", "sig") == "sig"
        and (kid is None or k.get("kid") == kid)
        and k.get("alg", alg) == alg
    ]
    # Without a kid in the token the key must be unambiguous.
    if len(candidates) != 1 and kid is None:
        return None
    for candidate in candidates:
        try:
            return jwt.PyJWK(candidate, algorithm=alg)
        except jwt.PyJWTError:
            continue
    return None


async def _signing_key(
    client: httpx.AsyncClient, metadata: dict[str, Any], kid: str | None, alg: str
) -> jwt.PyJWK:
    jwks_uri = metadata["jwks_uri"]
    key = _matching_key(await _jwks(client, jwks_uri, refresh=False), kid, alg)
    if key is None:
        # The issuer may have rotated its keys since we cached them.
        key = _matching_key(await _jwks(client, jwks_uri, refresh=True), kid, alg)
    if key is None:
        raise Unauthenticated(
            f"the ID token is signed with a key the identity provider does not publish "
            f"(kid {kid!r}, {alg})"
        )
    return key


# --- the flow cookie -----------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    state: str
    nonce: str
    verifier: str
    next: str


def _flow_key(settings: Settings) -> bytes:
    # A key of its own, so a flow cookie can never pass for any other HexaHub token.
    return hmac.new(
        settings.resolved_secret_key().encode(), b"hexahub-oidc-flow", hashlib.sha256
    ).digest()


def seal_flow(flow: Flow, settings: Settings) -> str:
    now = int(time.time())
    claims = {
        "aud": FLOW_AUDIENCE,
        "iat": now,
        "exp": now + FLOW_TTL_SECONDS,
        "state": flow.state,
        "nonce": flow.nonce,
        "verifier": flow.verifier,
        "next": flow.next,
    }
    return jwt.encode(claims, _flow_key(settings), algorithm="HS256")


def open_flow(sealed: str | None, settings: Settings) -> Flow:
    if not sealed:
        raise BadRequest(
            "no single sign-on is in progress in this browser (or it took longer than "
            f"{FLOW_TTL_SECONDS // 60} minutes); start again from the sign-in page"
        )
    try:
        claims = jwt.decode(
            sealed,
            _flow_key(settings),
            algorithms=["HS256"],
            audience=FLOW_AUDIENCE,
            options={"require": ["exp", "state", "nonce", "verifier", "next"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise BadRequest(
            f"the single sign-on took longer than {FLOW_TTL_SECONDS // 60} minutes; start again"
        ) from exc
    except jwt.PyJWTError as exc:
        raise BadRequest("the single sign-on cookie is not valid; start again") from exc
    return Flow(
        state=str(claims["state"]),
        nonce=str(claims["nonce"]),
        verifier=str(claims["verifier"]),
        next=str(claims["next"]),
    )


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(metadata: dict[str, Any], settings: Settings, flow: Flow) -> str:
    params = {
        "response_type": "code",
        "client_id": settings.oidc_client_id,
        "redirect_uri": redirect_uri(settings),
        "scope": settings.oidc_scopes,
        "state": flow.state,
        "nonce": flow.nonce,
        "code_challenge": pkce_challenge(flow.verifier),
        "code_challenge_method": "S256",
    }
    endpoint: str = metadata["authorization_endpoint"]
    return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)


# --- code exchange and ID token ------------------------------------------------------


def _client_secret(settings: Settings) -> str:
    secret = settings.oidc_client_secret
    return secret.get_secret_value() if secret is not None else ""


async def exchange_code(
    client: httpx.AsyncClient, metadata: dict[str, Any], settings: Settings, code: str, flow: Flow
) -> dict[str, Any]:
    """Trade the code for tokens at the token endpoint; the answer holds the ID token."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri(settings),
        "code_verifier": flow.verifier,
    }
    headers = {"Accept": "application/json"}
    secret = _client_secret(settings)
    methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if secret and "client_secret_basic" in methods:
        # RFC 6749 2.3.1: id and secret are form-encoded before they go into Basic auth.
        pair = f"{quote(settings.oidc_client_id, safe='')}:{quote(secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    else:
        form["client_id"] = settings.oidc_client_id
        if secret:
            form["client_secret"] = secret
    url = metadata["token_endpoint"]
    try:
        response = await client.post(url, data=form, headers=headers)
    except httpx.HTTPError as exc:
        raise IssuerUnavailable(
            f"could not reach the identity provider's token endpoint at {url}: {_describe(exc)}"
        ) from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if 400 <= response.status_code < 500 and isinstance(body, dict) and "error" in body:
        reason = str(body.get("error"))[:100]
        description = str(body.get("error_description") or "")[:300]
        raise Unauthenticated(
            f"the identity provider refused the sign-in code ({reason}"
            + (f": {description}" if description else "")
            + "); start again"
        )
    if response.status_code != 200 or not isinstance(body, dict):
        raise IssuerUnavailable(
            f"the identity provider's token endpoint answered HTTP {response.status_code} "
            "without usable tokens"
        )
    if not isinstance(body.get("id_token"), str):
        raise IssuerUnavailable(
            "the identity provider's token endpoint sent no ID token; is `openid` in oidc_scopes?"
        )
    return body


async def verify_id_token(
    client: httpx.AsyncClient,
    metadata: dict[str, Any],
    settings: Settings,
    id_token: str,
    nonce: str,
) -> dict[str, Any]:
    """The ID token's claims, once its signature and iss/aud/exp/iat/nonce check out."""
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError as exc:
        raise Unauthenticated("the identity provider sent an ID token that is not a JWT") from exc
    alg = header.get("alg")
    if alg not in ID_TOKEN_ALGORITHMS:
        raise Unauthenticated(f"the ID token's signing algorithm {alg!r} is not accepted")
    kid = header.get("kid")
    key = await _signing_key(client, metadata, kid if isinstance(kid, str) else None, str(alg))
    client_id = settings.oidc_client_id
    try:
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key.key,
            algorithms=[str(alg)],
            audience=client_id,
            issuer=metadata["issuer"],
            leeway=CLOCK_LEEWAY_SECONDS,
            options={"require": ["iss", "sub", "aud", "exp", "iat"]},
        )
    except jwt.InvalidSignatureError as exc:
        raise Unauthenticated("the ID token's signature is not valid") from exc
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("the ID token has expired; check the clocks, then retry") from exc
    except jwt.InvalidAudienceError as exc:
        raise Unauthenticated(
            f"the ID token was issued for another client, not {client_id!r}"
        ) from exc
    except jwt.InvalidIssuerError as exc:
        raise Unauthenticated(
            f"the ID token was issued by someone other than {metadata['issuer']!r}"
        ) from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"the ID token is not valid: {exc}") from exc
    audience = claims["aud"]
    # With several audiences the token must say it was issued to us (OIDC Core 3.1.3.7).
    several = isinstance(audience, list) and len(audience) > 1
    if (several or "azp" in claims) and claims.get("azp") != client_id:
        raise Unauthenticated(f"the ID token was issued for another client, not {client_id!r}")
    issued_at = claims["iat"]
    now = time.time()
    if not isinstance(issued_at, int | float) or not (
        now - FLOW_TTL_SECONDS - CLOCK_LEEWAY_SECONDS <= issued_at <= now + CLOCK_LEEWAY_SECONDS
    ):
        raise Unauthenticated("the ID token's issue time (iat) is not recent; check the clocks")
    if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"], nonce):
        raise Unauthenticated(
            "the ID token does not belong to this sign-in (nonce mismatch); start again"
        )
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise Unauthenticated("the ID token names no subject")
    return claims


async def _with_userinfo(
    client: httpx.AsyncClient,
    metadata: dict[str, Any],
    settings: Settings,
    claims: dict[str, Any],
    access_token: Any,
) -> dict[str, Any]:
    """Fill in e-mail and groups from the userinfo endpoint when the ID token lacks them."""
    wanted = ("email", settings.oidc_groups_claim)
    url = metadata.get("userinfo_endpoint")
    if all(name in claims for name in wanted) or not isinstance(url, str) or not access_token:
        return claims
    try:
        response = await client.get(
            url, headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        )
    except httpx.HTTPError as exc:
        raise IssuerUnavailable(
            f"could not reach the identity provider's userinfo endpoint at {url}: {_describe(exc)}"
        ) from exc
    try:
        info = response.json() if response.status_code == 200 else None
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise IssuerUnavailable(
            f"the identity provider's userinfo endpoint answered HTTP {response.status_code} "
            "without a JSON object"
        )
    if info.get("sub") != claims["sub"]:
        raise Unauthenticated("the userinfo answer is about another subject than the ID token")
    merged = dict(info)
    merged.update(claims)  # what the signed ID token says wins
    return merged


# --- claims -> account ---------------------------------------------------------------


def _verified(claims: dict[str, Any]) -> bool:
    value = claims.get("email_verified")
    # Some issuers (AWS Cognito among them) send the boolean as a string.
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _group_names(claims: dict[str, Any], claim: str) -> list[str]:
    value = claims.get(claim)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    names = []
    for item in value[:MAX_GROUPS]:
        if isinstance(item, str) and 0 < len(item.strip()) <= workspaces.MAX_NAME:
            names.append(item.strip())
    return sorted(set(names))


async def _identity(db: AsyncSession, issuer: str, subject: str) -> UserIdentity | None:
    return await db.scalar(
        select(UserIdentity).where(UserIdentity.issuer == issuer, UserIdentity.subject == subject)
    )


async def find_or_create_user(
    db: AsyncSession, settings: Settings, issuer: str, claims: dict[str, Any]
) -> tuple[User, str]:
    """The account these verified claims belong to, linking or creating it as allowed,
    and how it was found: "existing", "linked" or "created"."""
    subject: str = claims["sub"]
    raw_email = claims.get("email")
    email = raw_email.strip().lower() if isinstance(raw_email, str) else ""
    identity = await _identity(db, issuer, subject)
    if identity is not None:
        user = await db.get(User, identity.user_id)
        if user is None:  # the row vanished between the two reads
            raise Conflict("the linked account was just deleted; try again")
        account = "existing"
    else:
        if not email:
            raise Forbidden(
                "the identity provider sent no e-mail address; allow the `email` scope "
                "for HexaHub there"
            )
        if not _verified(claims):
            raise Forbidden(
                f"the identity provider has not verified the e-mail address {email}; "
                "verify it there (email_verified) before signing in to HexaHub"
            )
        existing = await service.find_user_by_email(db, email)
        if existing is not None:
            user, account = existing, "linked"
        elif settings.oidc_create_users:
            name = claims.get("name") or claims.get("preferred_username") or ""
            try:
                user = await service.create_user(
                    db,
                    email=email,
                    password=None,
                    display_name=str(name)[: service.MAX_DISPLAY_NAME],
                )
            except ValidationFailed as exc:
                raise Forbidden(
                    f"the e-mail address {email!r} from the identity provider cannot be used "
                    f"for an account: {exc.message}"
                ) from exc
            account = "created"
        else:
            raise Forbidden(
                f"there is no HexaHub account for {email}, and accounts are not created on "
                "first sign-on here; ask an administrator to create one"
            )
        identity = UserIdentity(user_id=user.id, issuer=issuer, subject=subject, email=email)
        db.add(identity)
    if not user.is_active:
        raise Forbidden("this account is disabled; ask an administrator")
    identity.last_login_at = utcnow()
    if email:
        identity.email = email
    await db.flush()
    return user, account


def _parse_mapping_target(group: str, target: str) -> tuple[str, Role] | None:
    slug, sep, role_name = target.strip().rpartition("/")
    if not sep or not slug:
        log.warning(
            "oidc_role_mapping[%r] = %r is not <workspace slug>/<role>; ignored", group, target
        )
        return None
    try:
        role = workspaces.parse_role(role_name.strip())
    except ValidationFailed:
        log.warning("oidc_role_mapping[%r] names no role (%r); ignored", group, role_name)
        return None
    if role == Role.owner:
        log.warning("oidc_role_mapping[%r] cannot give ownership; ignored", group)
        return None
    return slug.strip(), role


async def apply_groups(
    db: AsyncSession, settings: Settings, user: User, group_names: list[str], *, ip: str = ""
) -> None:
    """Mirror the SSO groups and give mapped groups their workspace roles.

    Roles go to the groups, not to the person: everyone in the group has them, and
    leaving the group at the issuer takes them away at the next sign-in.
    """
    org = await workspaces.default_organization(db)
    await workspaces.sync_user_groups(db, user, org.id, group_names, source="oidc")
    for group_name, target in settings.oidc_role_mapping.items():
        if group_name not in group_names:
            continue
        parsed = _parse_mapping_target(group_name, target)
        if parsed is None:
            continue
        slug, role = parsed
        workspace = await db.scalar(
            select(Workspace).where(Workspace.organization_id == org.id, Workspace.slug == slug)
        )
        if workspace is None:
            log.warning(
                "oidc_role_mapping[%r]: no workspace with slug %r in %s; ignored",
                group_name,
                slug,
                org.slug,
            )
            continue
        group = await workspaces.ensure_group(db, org.id, group_name, source="oidc")
        before = (await workspaces.group_roles_in(db, workspace.id)).get(group.id)
        if before == role.value:
            continue
        await workspaces.set_group_role(db, workspace, group, role, actor_role=Role.owner)
        audit.record(
            db,
            "group.role_changed",
            user=user,
            ip=ip,
            workspace_id=workspace.id,
            target_type="group",
            target_id=group.id,
            before={"role": before},
            after={"role": role.value},
            details={"source": "oidc_role_mapping", "group": group_name},
        )


# --- routes --------------------------------------------------------------------------


def _set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    # The same cookie as a password sign-in sets (hexahub.web.pages).
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_absolute_timeout_hours * 3600,
        path="/",
        secure=settings.behind_tls,
        httponly=True,
        samesite="lax",
    )


def _clear_flow_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        FLOW_COOKIE,
        path=FLOW_COOKIE_PATH,
        secure=settings.behind_tls,
        httponly=True,
        samesite="lax",
    )


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "Single sign-on is not configured"},
    502: {"description": "The identity provider cannot be reached or answered nonsense"},
}


@router.get(
    "/login",
    summary="Start single sign-on at the OIDC issuer",
    status_code=303,
    response_class=RedirectResponse,
    responses=_ERROR_RESPONSES,
)
async def oidc_login(runtime: RuntimeDep, next: str = "/") -> Response:
    settings = runtime.settings
    _require_enabled(settings)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
        metadata = await discover(client, settings)
    flow = Flow(
        state=secrets.token_urlsafe(24),
        nonce=secrets.token_urlsafe(24),
        verifier=secrets.token_urlsafe(48),  # 64 characters, within RFC 7636's 43..128
        next=safe_next(next),
    )
    response = RedirectResponse(authorization_url(metadata, settings, flow), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(
        FLOW_COOKIE,
        seal_flow(flow, settings),
        max_age=FLOW_TTL_SECONDS,
        path=FLOW_COOKIE_PATH,
        secure=settings.behind_tls,
        httponly=True,
        samesite="lax",
    )
    return response


@dataclass
class _Attempt:
    """What is known about a callback so far, for its audit entry."""

    issuer: str
    subject: str = ""
    email: str = ""

    def details(self, **extra: Any) -> dict[str, Any]:
        found: dict[str, Any] = {"method": "oidc", "issuer": self.issuer}
        if self.subject:
            found["subject"] = self.subject
        found.update(extra)
        return found


@router.get(
    "/callback",
    summary="Finish single sign-on: the OIDC issuer redirects the browser here",
    status_code=303,
    response_class=RedirectResponse,
    responses={
        **_ERROR_RESPONSES,
        400: {"description": "The sign-in cannot be matched to one this browser started"},
        401: {"description": "The issuer's answer failed verification"},
        403: {"description": "No account may be used or created for this person"},
    },
)
async def oidc_callback(
    request: Request,
    runtime: RuntimeDep,
    db: DbSession,
    code: str = "",
    state: str = "",
    error: str = "",
    error_description: str = "",
    iss: str = "",
) -> Response:
    settings = runtime.settings
    _require_enabled(settings)
    ip = client_ip(request)
    attempt = _Attempt(issuer=settings.oidc_issuer.strip())
    try:
        flow = open_flow(request.cookies.get(FLOW_COOKIE), settings)
        if not state or not hmac.compare_digest(state, flow.state):
            raise BadRequest(
                "the sign-in answer does not match the one this browser started (state "
                "mismatch); start again"
            )
        if error:
            reason = "".join(c for c in f"{error}: {error_description}" if c.isprintable())
            reason = reason.strip(": ")[:300]
            if error == "access_denied":
                raise Forbidden(f"the identity provider refused the sign-in ({reason})")
            raise BadRequest(f"the identity provider reported an error ({reason})")
        if not code:
            raise BadRequest("the identity provider sent no authorization code")
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            metadata = await discover(client, settings)
            attempt.issuer = metadata["issuer"]
            # RFC 9207: an issuer that names itself in the answer must be ours.
            if iss and iss != attempt.issuer:
                raise BadRequest(f"the sign-in answer comes from another issuer ({iss[:200]!r})")
            tokens = await exchange_code(client, metadata, settings, code, flow)
            claims = await verify_id_token(
                client, metadata, settings, tokens["id_token"], flow.nonce
            )
            attempt.subject = claims["sub"]
            claims = await _with_userinfo(
                client, metadata, settings, claims, tokens.get("access_token")
            )
        attempt.email = str(claims.get("email") or "")[:320]
        user, account = await find_or_create_user(db, settings, attempt.issuer, claims)
        groups = _group_names(claims, settings.oidc_groups_claim)
        await apply_groups(db, settings, user, groups, ip=ip)
        audit.record(
            db,
            AUDIT_ACTION,
            user=user,
            ip=ip,
            target_type="user",
            target_id=user.id,
            details=attempt.details(account=account, groups=groups),
        )
        if account == "created":
            audit.record(
                db,
                "user.created",
                user=user,
                ip=ip,
                target_type="user",
                target_id=user.id,
                after=service.public_user(user),
                details={"method": "oidc"},
            )
        # A browser signing in again drops the session it held before.
        await sessions.end_browser_session(db, request.cookies.get(SESSION_COOKIE))
        grant = await sessions.start_browser_session(
            db,
            user,
            settings,
            method="oidc",
            ip=ip,
            user_agent=request.headers.get("user-agent", ""),
        )
    except IntegrityError:
        # Two first sign-ins of the same person raced; the other one won.
        await db.rollback()
        return await _refuse(
            db, settings, attempt, ip, Conflict("this account was just set up; sign in again")
        )
    except HexaHubError as exc:
        await db.rollback()
        return await _refuse(db, settings, attempt, ip, exc)
    log.info("%s signed in through single sign-on (%s)", user.email, account)
    response = RedirectResponse(safe_next(flow.next), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    _set_session_cookie(response, settings, grant.token)
    _clear_flow_cookie(response, settings)
    return response


async def _refuse(
    db: AsyncSession, settings: Settings, attempt: _Attempt, ip: str, exc: HexaHubError
) -> Response:
    outcome = "denied" if isinstance(exc, Forbidden) else "failed"
    log.warning("single sign-on %s: %s", outcome, exc.message)
    await audit.record_now(
        db,
        AUDIT_ACTION,
        outcome=outcome,
        actor_label=(attempt.email or attempt.subject or "unknown")[:320],
        ip=ip,
        details=attempt.details(reason=exc.message),
    )
    response = JSONResponse(
        error_body(exc.code, exc.message), status_code=exc.status_code, headers=exc.headers
    )
    # A state is good for one try only.
    _clear_flow_cookie(response, settings)
    return response
