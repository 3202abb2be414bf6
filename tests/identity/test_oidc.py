"""Single sign-on end to end: HexaHub (in-process) against a real OIDC provider over HTTP.

The browser is played by hand: HexaHub's redirect is followed to the provider with a real
HTTP client, and the provider's redirect back is replayed against HexaHub.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from hexahub.app import create_app
from hexahub.identity import oidc, service
from hexahub.identity.models import AuditEvent, Group, GroupRole, User, UserIdentity
from hexahub.settings import Settings
from tests.conftest import make_settings
from tests.identity.conftest import Person
from tests.identity.oidc_provider import OidcProvider, ProviderServer, generate_key, s256

CLIENT_ID = "hexahub"
CLIENT_SECRET = "provider-secret"
CAROL = {
    "sub": "kc-user-0001",
    "email": "carol@example.org",
    "email_verified": True,
    "name": "Carol Example",
    "groups": [],
}
KID = "test-key-1"


@pytest.fixture(scope="session")
def provider_key() -> Any:
    return generate_key(KID)


@pytest.fixture(autouse=True)
def _fresh_issuer_cache() -> Iterator[None]:
    oidc.cache.clear()
    yield
    oidc.cache.clear()


@pytest.fixture
def provider(provider_key: Any) -> Iterator[OidcProvider]:
    idp = OidcProvider(
        key=provider_key, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, user=dict(CAROL)
    )
    server = ProviderServer(idp)
    server.start()
    try:
        yield idp
    finally:
        server.stop()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, provider: OidcProvider) -> Settings:
    return make_settings(
        tmp_path,
        database_url=database_url,
        oidc_issuer=provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_display_name="Keycloak",
        oidc_role_mapping={"homelab-admins": "default/admin", "family": "default/viewer"},
    )


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    """The browser's view of the identity provider (a real HTTP connection)."""
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def _app(settings: Settings) -> FastAPI:
    app = create_app(settings)
    # Until app.py includes the SSO router itself.
    if not any(getattr(r, "path", "") == oidc.CALLBACK_PATH for r in app.routes):
        app.include_router(oidc.router)
    return app


@asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, lifespan included, driven in-process over ASGI."""
    app = _app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hexahub.test") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


@pytest.fixture
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(settings) as client:
        yield client


def _runtime(app_client: httpx.AsyncClient) -> Any:
    return app_client.app.state.runtime  # type: ignore[attr-defined]


async def _to_provider(app_client: httpx.AsyncClient, next_path: str = "/") -> httpx.Response:
    started = await app_client.get("/api/auth/oidc/login", params={"next": next_path})
    assert started.status_code == 303, started.text
    return started


async def _at_provider(browser: httpx.AsyncClient, started: httpx.Response) -> str:
    """Follow HexaHub's redirect to the provider; return the callback path it sends back."""
    approved = await browser.get(started.headers["location"])
    assert approved.status_code == 302, approved.text
    back = urlsplit(approved.headers["location"])
    assert f"{back.scheme}://{back.netloc}" == "http://127.0.0.1:8080"
    return f"{back.path}?{back.query}"


async def sso_login(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, next_path: str = "/"
) -> httpx.Response:
    """One whole sign-in; returns HexaHub's answer to the callback."""
    started = await _to_provider(app_client, next_path)
    return await app_client.get(await _at_provider(browser, started))


def _with_query(path: str, **changes: str) -> str:
    parts = urlsplit(path)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return f"{parts.path}?{urlencode(query)}"


async def _events(app_client: httpx.AsyncClient, action: str) -> list[AuditEvent]:
    async with _runtime(app_client).db.sessions() as db:
        return list(
            (
                await db.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.action == action)
                    .order_by(AuditEvent.created_at)
                )
            ).all()
        )


async def _count(app_client: httpx.AsyncClient, model: Any) -> int:
    async with _runtime(app_client).db.sessions() as db:
        return int(await db.scalar(select(func.count()).select_from(model)) or 0)


def _refused(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    for word in words:
        assert word in message, message
    assert "Traceback" not in response.text
    assert "hexahub_session=" not in response.headers.get("set-cookie", "")


# --- the happy path ------------------------------------------------------------------


async def test_first_sign_on_creates_the_user_and_a_working_session(
    app_client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    provider: OidcProvider,
    alice: Person,
) -> None:
    started = await _to_provider(app_client, "/chat?tab=2")
    location = urlsplit(started.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}".startswith(provider.issuer)
    asked = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert asked["response_type"] == "code"
    assert asked["client_id"] == CLIENT_ID
    assert asked["redirect_uri"] == "http://127.0.0.1:8080/api/auth/oidc/callback"
    assert asked["scope"] == "openid email profile"
    assert asked["code_challenge_method"] == "S256"
    assert len(asked["state"]) >= 32 and len(asked["nonce"]) >= 32
    flow_cookie = started.headers["set-cookie"]
    assert flow_cookie.startswith(f"{oidc.FLOW_COOKIE}=")
    assert "HttpOnly" in flow_cookie and "SameSite=lax" in flow_cookie
    assert "Path=/api/auth/oidc" in flow_cookie and "Max-Age=600" in flow_cookie
    # The verifier stays in the signed cookie; only its S256 challenge travels.
    assert asked["code_challenge"] not in flow_cookie

    done = await app_client.get(await _at_provider(browser, started))
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/chat?tab=2"
    set_cookie = done.headers.get_list("set-cookie")
    session_cookie = next(c for c in set_cookie if c.startswith("hexahub_session="))
    assert "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie
    assert "Max-Age=604800" in session_cookie and "Secure" not in session_cookie
    assert any(c.startswith(f'{oidc.FLOW_COOKIE}=""') for c in set_cookie)  # cleared

    # The provider saw PKCE done right and the client authenticate with Basic.
    assert s256(provider.token_requests[-1]["code_verifier"]) == asked["code_challenge"]
    assert provider.token_requests[-1]["auth_method"] == "client_secret_basic"

    me = await app_client.get("/api/me")
    assert me.status_code == 200, me.text
    user = me.json()["user"]
    assert user["email"] == "carol@example.org"
    assert user["display_name"] == "Carol Example"
    assert user["has_password"] is False
    assert me.json()["workspaces"] == []

    async with _runtime(app_client).db.sessions() as db:
        identity = await db.scalar(select(UserIdentity))
        assert identity is not None
        assert (identity.issuer, identity.subject) == (provider.issuer, CAROL["sub"])
        assert identity.user_id == user["id"]

    [event] = await _events(app_client, "auth.oidc_login")
    assert event.outcome == "ok"
    assert event.actor == "carol@example.org"
    assert event.details == {
        "method": "oidc",
        "issuer": provider.issuer,
        "subject": CAROL["sub"],
        "account": "created",
        "groups": [],
    }
    # No token of any kind ends up in the audit log.
    everything = json.dumps([e.details for e in await _events(app_client, "auth.oidc_login")])
    assert provider.issued_id_tokens[-1] not in everything


async def test_second_sign_on_reuses_the_linked_account(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, alice: Person
) -> None:
    first = await sso_login(app_client, browser)
    assert first.status_code == 303, first.text
    first_id = (await app_client.get("/api/me")).json()["user"]["id"]
    app_client.cookies.clear()

    second = await sso_login(app_client, browser, next_path="https://evil.example/")
    assert second.status_code == 303, second.text
    assert second.headers["location"] == "/"
    assert (await app_client.get("/api/me")).json()["user"]["id"] == first_id
    assert await _count(app_client, UserIdentity) == 1
    assert await _count(app_client, User) == 2  # alice and carol
    accounts = [(e.details or {})["account"] for e in await _events(app_client, "auth.oidc_login")]
    assert accounts == ["created", "existing"]


async def test_verified_email_links_an_existing_password_account(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, provider: OidcProvider, alice: Person
) -> None:
    provider.user = {**CAROL, "email": "Alice@Example.org"}
    done = await sso_login(app_client, browser)
    assert done.status_code == 303, done.text
    me = (await app_client.get("/api/me")).json()
    assert me["user"]["id"] == alice.user_id
    assert me["user"]["has_password"] is True
    assert [(e.details or {})["account"] for e in await _events(app_client, "auth.oidc_login")] == [
        "linked"
    ]


async def test_unverified_email_is_neither_linked_nor_used(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, provider: OidcProvider, alice: Person
) -> None:
    provider.user = {**CAROL, "email": alice.email, "email_verified": False}
    refused = await sso_login(app_client, browser)
    _refused(refused, 403, "not verified")
    assert await _count(app_client, UserIdentity) == 0
    [event] = await _events(app_client, "auth.oidc_login")
    assert event.outcome == "denied"


async def test_group_claim_gives_the_mapped_group_its_workspace_role(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, provider: OidcProvider, alice: Person
) -> None:
    provider.user = {**CAROL, "groups": ["homelab-admins", "family", "book-club"]}
    assert (await sso_login(app_client, browser)).status_code == 303
    [(workspace)] = (await app_client.get("/api/me")).json()["workspaces"]
    assert (workspace["id"], workspace["slug"], workspace["role"]) == (
        alice.workspace_id,
        "default",
        "admin",
    )
    async with _runtime(app_client).db.sessions() as db:
        groups = {g.name: g for g in (await db.scalars(select(Group))).all()}
        assert set(groups) == {"homelab-admins", "family", "book-club"}
        assert {g.source for g in groups.values()} == {"oidc"}
        roles = {
            (r.group_id, r.workspace_id): r.role for r in (await db.scalars(select(GroupRole)))
        }
    # The role belongs to the group, not to the person.
    assert roles == {
        (groups["homelab-admins"].id, alice.workspace_id): "admin",
        (groups["family"].id, alice.workspace_id): "viewer",
    }
    changes = await _events(app_client, "group.role_changed")
    assert {(e.workspace_id, e.after["role"]) for e in changes if e.after} == {
        (alice.workspace_id, "admin"),
        (alice.workspace_id, "viewer"),
    }

    # Leaving the admin group at the issuer takes the admin role away at the next sign-in.
    provider.user = {**CAROL, "groups": ["family"]}
    app_client.cookies.clear()
    assert (await sso_login(app_client, browser)).status_code == 303
    [(workspace)] = (await app_client.get("/api/me")).json()["workspaces"]
    assert workspace["role"] == "viewer"


async def test_claims_missing_from_the_id_token_come_from_userinfo(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, provider: OidcProvider, alice: Person
) -> None:
    provider.claims_in_id_token = False
    provider.user = {**CAROL, "groups": ["homelab-admins"]}
    done = await sso_login(app_client, browser)
    assert done.status_code == 303, done.text
    me = (await app_client.get("/api/me")).json()
    assert me["user"]["email"] == "carol@example.org"
    assert [w["role"] for w in me["workspaces"]] == ["admin"]


async def test_client_secret_post_when_the_issuer_only_offers_that(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, provider: OidcProvider, alice: Person
) -> None:
    provider.auth_methods = ["client_secret_post"]
    done = await sso_login(app_client, browser)
    assert done.status_code == 303, done.text
    assert provider.token_requests[-1]["auth_method"] == "client_secret_post"


async def test_login_page_offers_single_sign_on(
    app_client: httpx.AsyncClient, alice: Person
) -> None:
    page = await app_client.get("/login", params={"next": "/chat?x=1"})
    assert page.status_code == 200
    assert 'href="/api/auth/oidc/login?next=/chat%3Fx%3D1"' in page.text
    assert "Sign in with Keycloak" in page.text


# --- refusals ------------------------------------------------------------------------


async def test_state_mismatch_is_refused(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, alice: Person
) -> None:
    started = await _to_provider(app_client)
    callback = await _at_provider(browser, started)
    refused = await app_client.get(_with_query(callback, state="forged-state"))
    _refused(refused, 400, "state mismatch")
    assert (await app_client.get("/api/me")).status_code == 401

    # The state is good for one try: the real answer is refused too now.
    again = await app_client.get(callback)
    _refused(again, 400, "start again")
    assert {e.outcome for e in await _events(app_client, "auth.oidc_login")} == {"failed"}


async def test_callback_from_another_browser_is_refused(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, alice: Person
) -> None:
    callback = await _at_provider(browser, await _to_provider(app_client))
    app_client.cookies.clear()  # a browser that did not start this sign-in
    _refused(await app_client.get(callback), 400, "no single sign-on is in progress")


async def test_id_token_signed_with_another_key_is_refused(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, provider: OidcProvider, alice: Person
) -> None:
    provider.signing_key = generate_key(KID)  # same kid, key not the published one
    _refused(await sso_login(app_client, browser), 401, "signature is not valid")

    provider.signing_key = generate_key("attacker-key")
    _refused(await sso_login(app_client, browser), 401, "does not publish")
    assert await _count(app_client, UserIdentity) == 0
    assert await _count(app_client, User) == 1


async def test_id_token_for_another_audience_is_refused(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, provider: OidcProvider, alice: Person
) -> None:
    provider.audience = "some-other-app"
    _refused(await sso_login(app_client, browser), 401, "another client")
    [event] = await _events(app_client, "auth.oidc_login")
    assert event.outcome == "failed"
    assert event.details is not None and "another client" in event.details["reason"]


async def test_expired_id_token_is_refused(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, provider: OidcProvider, alice: Person
) -> None:
    provider.id_token_lifetime = -(oidc.CLOCK_LEEWAY_SECONDS + 60)
    _refused(await sso_login(app_client, browser), 401, "expired")


async def test_wrong_or_replayed_nonce_is_refused(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, provider: OidcProvider, alice: Person
) -> None:
    provider.nonce = "a-nonce-hexahub-never-asked-for"
    _refused(await sso_login(app_client, browser), 401, "nonce mismatch")

    # A genuine ID token from an earlier sign-in does not open a new one.
    provider.nonce = None
    assert (await sso_login(app_client, browser)).status_code == 303
    app_client.cookies.clear()
    provider.replay_id_token = provider.issued_id_tokens[-1]
    _refused(await sso_login(app_client, browser), 401, "nonce mismatch")
    assert (await app_client.get("/api/me")).status_code == 401


async def test_disabled_user_is_refused(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, alice: Person
) -> None:
    assert (await sso_login(app_client, browser)).status_code == 303
    app_client.cookies.clear()
    async with _runtime(app_client).db.sessions() as db:
        user = await service.find_user_by_email(db, "carol@example.org")
        assert user is not None
        await service.set_active(db, user, False)
        await db.commit()
    _refused(await sso_login(app_client, browser), 403, "disabled")
    assert (await app_client.get("/api/me")).status_code == 401
    outcomes = [e.outcome for e in await _events(app_client, "auth.oidc_login")]
    assert outcomes == ["ok", "denied"]


async def test_no_account_is_created_when_creation_is_off(
    tmp_path: Path,
    database_url: str,
    provider: OidcProvider,
    browser: httpx.AsyncClient,
) -> None:
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        oidc_issuer=provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_create_users=False,
    )
    async with _client(settings) as c:
        _refused(await sso_login(c, browser), 403, "no HexaHub account for carol@example.org")
        assert await _count(c, User) == 0
        [event] = await _events(c, "auth.oidc_login")
        assert (event.outcome, event.actor) == ("denied", "carol@example.org")


async def test_user_refusing_at_the_issuer_is_refused_here(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, provider: OidcProvider, alice: Person
) -> None:
    provider.deny = True
    _refused(await sso_login(app_client, browser), 403, "access_denied")
    assert provider.token_requests == []


async def test_token_endpoint_failure_is_a_bad_gateway(
    app_client: httpx.AsyncClient, browser: httpx.AsyncClient, provider: OidcProvider, alice: Person
) -> None:
    provider.token_endpoint_down = True
    refused = await sso_login(app_client, browser)
    _refused(refused, 502, "HTTP 503")
    assert refused.json()["error"]["code"] == "issuer_unavailable"


async def test_provider_rejects_a_wrong_pkce_verifier(
    provider: OidcProvider, browser: httpx.AsyncClient
) -> None:
    """The stand-in checks PKCE for real, so HexaHub's passing sign-ins prove its verifier."""
    verifier = "v" * 50
    approved = await browser.get(
        f"{provider.issuer}/protocol/openid-connect/auth",
        params={
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": "http://127.0.0.1:8080/api/auth/oidc/callback",
            "scope": "openid",
            "state": "s",
            "nonce": "n",
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
        },
    )
    code = parse_qs(urlsplit(approved.headers["location"]).query)["code"][0]
    token_url = f"{provider.issuer}/protocol/openid-connect/token"
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "http://127.0.0.1:8080/api/auth/oidc/callback",
        "code_verifier": "w" * 50,
    }
    wrong = await browser.post(token_url, data=form, auth=(CLIENT_ID, CLIENT_SECRET))
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"


# --- configuration -------------------------------------------------------------------


async def test_sso_off_answers_404(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    assert not oidc.sso_enabled(settings) and oidc.sso_display_name(settings) == ""
    async with _client(settings) as c:
        for path in ("/api/auth/oidc/login", "/api/auth/oidc/callback?code=x&state=y"):
            answer = await c.get(path)
            assert answer.status_code == 404
            error = answer.json()["error"]
            assert error["code"] == "not_found"
            assert error["message"].startswith("single sign-on is not configured")


async def test_unreachable_issuer_is_a_clear_bad_gateway(tmp_path: Path, database_url: str) -> None:
    # Bound but never listening: connections to it are refused at once.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        issuer = f"http://127.0.0.1:{closed.getsockname()[1]}/realms/gone"
        settings = make_settings(
            tmp_path,
            database_url=database_url,
            oidc_issuer=issuer,
            oidc_client_id=CLIENT_ID,
            oidc_client_secret=CLIENT_SECRET,
        )
        async with _client(settings) as c:
            answer = await c.get("/api/auth/oidc/login")
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert error["code"] == "issuer_unavailable"
    assert error["message"].startswith("could not reach the identity provider")
    assert issuer in error["message"]
