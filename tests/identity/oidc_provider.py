"""A small, real OpenID Connect provider for tests, served over HTTP on 127.0.0.1.

It speaks the wire protocol of OpenID Connect Core 1.0 and RFC 7636 (PKCE) the way
Keycloak or Authentik do: a discovery document, a JWKS, an authorization endpoint that
approves the configured test user at once (redirecting back with a code and the state),
a token endpoint that checks the client's credentials and the PKCE verifier against the
stored challenge and answers an RS256 ID token signed with joserfc, and a userinfo
endpoint. HexaHub talks plain HTTP to it; nothing in HexaHub is patched.

The knobs after "misbehaviour" let a test make it answer the way a broken or hostile
issuer would (another signing key, another audience, a wrong or replayed nonce, ...).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

ISSUER_PATH = "/realms/test"


def generate_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    scope: str
    user: dict[str, Any]


@dataclass
class OidcProvider:
    key: RSAKey
    client_id: str = "hexahub"
    client_secret: str = "provider-secret"
    # The person the authorization endpoint approves (sub, email, email_verified, ...).
    user: dict[str, Any] = field(default_factory=dict)
    auth_methods: list[str] = field(
        default_factory=lambda: ["client_secret_basic", "client_secret_post"]
    )
    issuer: str = ""

    # --- misbehaviour
    signing_key: RSAKey | None = None  # sign with this instead of the published key
    audience: str | None = None  # put this in `aud` instead of the client id
    nonce: str | None = None  # put this in `nonce` instead of the one asked for
    replay_id_token: str | None = None  # answer this old ID token instead of a new one
    id_token_lifetime: int = 300  # negative: already expired when issued
    claims_in_id_token: bool = True  # False: e-mail and groups only from userinfo
    deny: bool = False  # the user refuses: redirect back with error=access_denied
    token_endpoint_down: bool = False  # the token endpoint answers 503

    # --- what happened
    authorizations: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    issued_id_tokens: list[str] = field(default_factory=list)
    _codes: dict[str, Grant] = field(default_factory=dict)
    _access_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)

    # --- HTTP

    def app(self) -> Starlette:
        p = ISSUER_PATH
        return Starlette(
            routes=[
                Route(f"{p}/.well-known/openid-configuration", self.discovery),
                Route(f"{p}/protocol/openid-connect/certs", self.jwks),
                Route(f"{p}/protocol/openid-connect/auth", self.authorize),
                Route(f"{p}/protocol/openid-connect/token", self.token, methods=["POST"]),
                Route(f"{p}/protocol/openid-connect/userinfo", self.userinfo),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        base = f"{self.issuer}/protocol/openid-connect"
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{base}/auth",
                "token_endpoint": f"{base}/token",
                "userinfo_endpoint": f"{base}/userinfo",
                "jwks_uri": f"{base}/certs",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": self.auth_methods,
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": ["authorization_code"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request: Request) -> Response:
        query = dict(request.query_params)
        self.authorizations.append(query)
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect_uri:
            return PlainTextResponse("unknown client or no redirect_uri", status_code=400)

        def back(**params: str) -> Response:
            if "state" in query:
                params["state"] = query["state"]
            return RedirectResponse(f"{redirect_uri}?{urlencode(params)}", status_code=302)

        if query.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if "openid" not in query.get("scope", "").split():
            return back(error="invalid_scope", error_description="openid is required")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return back(error="invalid_request", error_description="PKCE S256 is required")
        if self.deny:
            return back(error="access_denied", error_description="the user said no")
        code = secrets.token_urlsafe(24)
        self._codes[code] = Grant(
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            code_challenge=query["code_challenge"],
            nonce=query.get("nonce"),
            scope=query.get("scope", ""),
            user=dict(self.user),
        )
        return back(code=code)

    def _client_auth(self, request: Request, form: dict[str, str]) -> str | None:
        """The auth method the client used, or None when its credentials are wrong."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            if "client_secret_basic" not in self.auth_methods:
                return None
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            ok = (unquote(client_id), unquote(secret)) == (self.client_id, self.client_secret)
            return "client_secret_basic" if ok else None
        if "client_secret_post" not in self.auth_methods:
            return None
        ok = (form.get("client_id"), form.get("client_secret")) == (
            self.client_id,
            self.client_secret,
        )
        return "client_secret_post" if ok else None

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        if self.token_endpoint_down:
            return PlainTextResponse("upstream maintenance", status_code=503)
        method = self._client_auth(request, form)
        self.token_requests.append({**form, "auth_method": method or "refused"})

        def refuse(error: str, description: str, status: int = 400) -> Response:
            return JSONResponse(
                {"error": error, "error_description": description}, status_code=status
            )

        if method is None:
            return refuse("invalid_client", "client authentication failed", 401)
        if form.get("grant_type") != "authorization_code":
            return refuse("unsupported_grant_type", "only authorization_code")
        grant = self._codes.pop(form.get("code", ""), None)  # a code is good once
        if grant is None:
            return refuse("invalid_grant", "unknown or already used code")
        if form.get("redirect_uri") != grant.redirect_uri:
            return refuse("invalid_grant", "redirect_uri differs from the authorization request")
        verifier = form.get("code_verifier", "")
        if not verifier or s256(verifier) != grant.code_challenge:
            return refuse("invalid_grant", "PKCE verification failed")
        access_token = secrets.token_urlsafe(24)
        self._access_tokens[access_token] = grant.user
        id_token = self.replay_id_token or self._id_token(grant)
        self.issued_id_tokens.append(id_token)
        return JSONResponse(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": id_token,
                "scope": grant.scope,
            },
            headers={"Cache-Control": "no-store"},
        )

    def _id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience or grant.client_id,
            "iat": now,
            "exp": now + self.id_token_lifetime,
            "auth_time": now,
            "sub": grant.user["sub"],
        }
        if self.nonce is not None or grant.nonce is not None:
            claims["nonce"] = self.nonce if self.nonce is not None else grant.nonce
        user_claims = {k: v for k, v in grant.user.items() if k != "sub"}
        if not self.claims_in_id_token:
            user_claims = {k: v for k, v in user_claims.items() if k in ("name",)}
        claims.update(user_claims)
        key = self.signing_key or self.key
        return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)

    async def userinfo(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        user = self._access_tokens.get(header.removeprefix("Bearer ").strip())
        if user is None:
            return JSONResponse(
                {"error": "invalid_token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return JSONResponse(user)


class ProviderServer:
    """Runs an OidcProvider with uvicorn in a background thread on a free loopback port."""

    def __init__(self, provider: OidcProvider) -> None:
        self.provider = provider
        # Listening before uvicorn starts: early connections wait in the backlog.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        port = self.sock.getsockname()[1]
        provider.issuer = f"http://127.0.0.1:{port}{ISSUER_PATH}"
        self.server = uvicorn.Server(
            uvicorn.Config(provider.app(), log_config=None, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self, timeout: float = 15.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the test OIDC provider stopped while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test OIDC provider did not start within {timeout} s")
            self.thread.join(timeout=0.01)  # returns at once if the thread ends

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
