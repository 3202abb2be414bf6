"""The web UI shell: first-admin setup, sign-in and out, CSRF, redirects, headers."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from hexahub.app import create_app
from hexahub.identity import service
from hexahub.settings import Settings
from hexahub.web import pages
from hexahub.web.csrf import CSRF_COOKIE

ADMIN = {"email": "ada@example.org", "display_name": "Ada Lovelace", "password": "analytical-1843"}
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def setup_token(settings: Settings) -> str:
    return service.setup_token(settings.resolved_secret_key())


async def form_token(client: httpx.AsyncClient, path: str) -> str:
    """Open a form page like a browser does and return its CSRF field."""
    page = await client.get(path)
    assert page.status_code in (200, 401, 403), page.text
    found = _CSRF_FIELD.search(page.text)
    assert found, f"no CSRF field on {path}"
    return found.group(1)


async def user_count(client: httpx.AsyncClient) -> int:
    async with client.app.state.runtime.db.sessions() as db:  # type: ignore[attr-defined]
        return await service.count_users(db)


async def create_admin(client: httpx.AsyncClient, settings: Settings) -> httpx.Response:
    path = f"/setup?token={setup_token(settings)}"
    csrf = await form_token(client, path)
    return await client.post(
        "/setup",
        data={
            "csrf_token": csrf,
            "token": setup_token(settings),
            "email": ADMIN["email"],
            "display_name": ADMIN["display_name"],
            "password": ADMIN["password"],
            "password_confirm": ADMIN["password"],
        },
    )


async def sign_in(
    client: httpx.AsyncClient, *, password: str = ADMIN["password"], next: str = "/"
) -> httpx.Response:
    csrf = await form_token(client, "/login")
    return await client.post(
        "/login",
        data={"csrf_token": csrf, "email": ADMIN["email"], "password": password, "next": next},
    )


async def admin_then_signed_out(client: httpx.AsyncClient, settings: Settings) -> httpx.AsyncClient:
    created = await create_admin(client, settings)
    assert created.status_code == 303, created.text
    client.cookies.delete(pages.SESSION_COOKIE)
    return client


def session_cookie_header(response: httpx.Response) -> str:
    headers = [
        h for h in response.headers.get_list("set-cookie") if h.startswith("hexahub_session=")
    ]
    assert len(headers) == 1, response.headers.get_list("set-cookie")
    return headers[0]


@asynccontextmanager
async def running(settings: Settings, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


# --- first run -------------------------------------------------------------------------


async def test_home_and_login_send_to_setup_while_no_account_exists(
    app_client: httpx.AsyncClient,
) -> None:
    home = await app_client.get("/")
    assert home.status_code == 303
    assert home.headers["location"] == "/setup"
    login = await app_client.get("/login")
    assert login.status_code == 303
    assert login.headers["location"] == "/setup"


async def test_setup_without_token_explains_where_the_link_is(
    app_client: httpx.AsyncClient,
) -> None:
    page = await app_client.get("/setup")
    assert page.status_code == 200
    assert "hexahub setup-link" in page.text
    assert "console" in page.text
    assert 'name="password"' not in page.text


async def test_setup_with_wrong_or_missing_token_is_refused_and_creates_nothing(
    app_client: httpx.AsyncClient, settings: Settings
) -> None:
    wrong = await app_client.get("/setup?token=not-the-token")
    assert wrong.status_code == 403
    assert "not valid" in wrong.text
    assert 'name="password"' not in wrong.text

    await app_client.get("/setup")  # no form without a valid link; the cookie is set
    csrf = app_client.cookies[CSRF_COOKIE]
    form = {
        "csrf_token": csrf,
        "email": "mallory@example.org",
        "password": "long-enough-password",
        "password_confirm": "long-enough-password",
    }
    for token in ("not-the-token", ""):
        refused = await app_client.post("/setup", data={**form, "token": token})
        assert refused.status_code == 403, token
        assert pages.SESSION_COOKIE not in refused.headers.get("set-cookie", "")
    assert await user_count(app_client) == 0


async def test_setup_with_token_creates_the_admin_and_signs_in(
    app_client: httpx.AsyncClient, settings: Settings
) -> None:
    form = await app_client.get(f"/setup?token={setup_token(settings)}")
    assert form.status_code == 200
    assert 'name="password_confirm"' in form.text

    created = await create_admin(app_client, settings)
    assert created.status_code == 303, created.text
    assert created.headers["location"] == "/"
    assert "HttpOnly" in session_cookie_header(created)

    home = await app_client.get("/")
    assert home.status_code == 200
    assert "Welcome, Ada Lovelace" in home.text
    async with app_client.app.state.runtime.db.sessions() as db:  # type: ignore[attr-defined]
        user = await service.authenticate(db, email=ADMIN["email"], password=ADMIN["password"])
    assert user.is_admin


async def test_setup_form_errors_are_shown_and_create_nothing(
    app_client: httpx.AsyncClient, settings: Settings
) -> None:
    token = setup_token(settings)
    csrf = await form_token(app_client, f"/setup?token={token}")
    base = {"csrf_token": csrf, "token": token, "email": "ada@example.org", "display_name": "Ada"}

    mismatch = await app_client.post(
        "/setup", data={**base, "password": "first-password", "password_confirm": "other-password"}
    )
    assert mismatch.status_code == 422
    assert "the two passwords are not the same" in mismatch.text
    assert 'value="ada@example.org"' in mismatch.text

    short = await app_client.post(
        "/setup", data={**base, "password": "short", "password_confirm": "short"}
    )
    assert short.status_code == 422
    assert "at least 10 characters" in short.text

    bad_email = await app_client.post(
        "/setup",
        data={
            **base,
            "email": "not-an-address",
            "password": "x" * 12,
            "password_confirm": "x" * 12,
        },
    )
    assert bad_email.status_code == 422
    assert "enter an address like" in bad_email.text
    assert await user_count(app_client) == 0


async def test_setup_is_refused_once_an_account_exists(
    app_client: httpx.AsyncClient, settings: Settings
) -> None:
    assert (await create_admin(app_client, settings)).status_code == 303
    token = setup_token(settings)

    again = await app_client.get(f"/setup?token={token}")
    assert again.status_code == 303
    assert again.headers["location"] == "/login"

    csrf = await form_token(app_client, "/")
    second = await app_client.post(
        "/setup",
        data={
            "csrf_token": csrf,
            "token": token,
            "email": "second@example.org",
            "password": "another-password",
            "password_confirm": "another-password",
        },
    )
    assert second.status_code == 303
    assert second.headers["location"] == "/login"
    assert pages.SESSION_COOKIE not in second.headers.get("set-cookie", "")
    assert await user_count(app_client) == 1


# --- signing in and out ------------------------------------------------------------


async def test_wrong_password_is_401_keeps_the_email_and_sets_no_session(
    app_client: httpx.AsyncClient, settings: Settings
) -> None:
    await admin_then_signed_out(app_client, settings)
    refused = await sign_in(app_client, password="not-the-password")
    assert refused.status_code == 401
    assert "Wrong e-mail or password." in refused.text
    assert f'value="{ADMIN["email"]}"' in refused.text
    assert not any(h.startswith("hexahub_session=") for h in refused.headers.get_list("set-cookie"))
    assert (await app_client.get("/")).status_code == 303


async def test_sign_in_sets_an_http_only_session_cookie(
    app_client: httpx.AsyncClient, settings: Settings
) -> None:
    await admin_then_signed_out(app_client, settings)
    signed_in = await sign_in(app_client)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/"
    cookie = session_cookie_header(signed_in)
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain http in this test: a Secure cookie would be lost

    home = await app_client.get("/")
    assert home.status_code == 200
    assert "Welcome, Ada Lovelace" in home.text
    assert ADMIN["email"] in home.text


async def test_cookies_are_secure_behind_tls(settings: Settings) -> None:
    tls = settings.model_copy(update={"public_url": "https://hub.example.org"})
    async with running(tls, "https://hub.example.org") as client:
        setup = await client.get(f"/setup?token={setup_token(tls)}")
        csrf_cookie = next(
            h for h in setup.headers.get_list("set-cookie") if h.startswith(f"{CSRF_COOKIE}=")
        )
        assert "Secure" in csrf_cookie
        assert "SameSite=strict" in csrf_cookie
        assert "HttpOnly" in csrf_cookie
        assert "strict-transport-security" in setup.headers
        created = await create_admin(client, tls)
        assert created.status_code == 303, created.text
        assert "Secure" in session_cookie_header(created)


async def test_sign_out_ends_the_session(app_client: httpx.AsyncClient, settings: Settings) -> None:
    await create_admin(app_client, settings)
    old_token = app_client.cookies[pages.SESSION_COOKIE]
    csrf = await form_token(app_client, "/")

    signed_out = await app_client.post("/logout", data={"csrf_token": csrf})
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/login"
    assert pages.SESSION_COOKIE not in app_client.cookies

    app_client.cookies.set(pages.SESSION_COOKIE, old_token)
    replayed = await app_client.get("/")
    assert replayed.status_code == 303
    assert replayed.headers["location"] == "/login?next=%2F"


async def test_form_posts_without_a_matching_csrf_token_are_refused(
    app_client: httpx.AsyncClient, settings: Settings
) -> None:
    token = setup_token(settings)
    setup_form = {
        "token": token,
        "email": "ada@example.org",
        "password": "long-enough-password",
        "password_confirm": "long-enough-password",
    }
    no_field = await app_client.post("/setup", data=setup_form)
    assert no_field.status_code == 403
    assert "This form has expired" in no_field.text
    assert "Reload the page and try again" in no_field.text

    app_client.cookies.clear()
    real = await form_token(app_client, f"/setup?token={token}")
    app_client.cookies.clear()  # the field alone, without its cookie
    no_cookie = await app_client.post("/setup", data={**setup_form, "csrf_token": real})
    assert no_cookie.status_code == 403
    assert await user_count(app_client) == 0

    assert (await create_admin(app_client, settings)).status_code == 303
    mismatched = await app_client.post("/logout", data={"csrf_token": "x" * 43})
    assert mismatched.status_code == 403
    assert (await app_client.get("/")).status_code == 200, "the session must survive"

    app_client.cookies.delete(pages.SESSION_COOKIE)
    login = await app_client.post(
        "/login", data={"email": ADMIN["email"], "password": ADMIN["password"]}
    )
    assert login.status_code == 403
    assert pages.SESSION_COOKIE not in login.headers.get("set-cookie", "")


async def test_next_is_followed_only_to_local_paths(
    app_client: httpx.AsyncClient, settings: Settings
) -> None:
    await admin_then_signed_out(app_client, settings)
    evil = await sign_in(app_client, next="//evil.example")
    assert evil.status_code == 303
    assert evil.headers["location"] == "/"

    app_client.cookies.delete(pages.SESSION_COOKIE)
    local = await sign_in(app_client, next="/chat")
    assert local.headers["location"] == "/chat"

    app_client.cookies.delete(pages.SESSION_COOKIE)
    page = await app_client.get("/login", params={"next": "https://evil.example/x"})
    assert 'name="next" value="/"' in page.text


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/chat?x=1", "/chat?x=1"),
        ("/", "/"),
        ("", "/"),
        (None, "/"),
        ("//evil.example", "/"),
        ("///evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("chat", "/"),
        ("/chat\r\nSet-Cookie: x=1", "/"),
    ],
)
def test_safe_next(target: str | None, expected: str) -> None:
    assert pages.safe_next(target) == expected


# --- pages ---------------------------------------------------------------------------

_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE)
_INLINE_STYLE = re.compile(r"<style|\sstyle=|\son[a-z]+=", re.IGNORECASE)


async def test_pages_send_security_headers_and_nothing_the_csp_would_block(
    app_client: httpx.AsyncClient, settings: Settings
) -> None:
    pages_seen = [
        await app_client.get("/setup"),
        await app_client.get(f"/setup?token={setup_token(settings)}"),
    ]
    await create_admin(app_client, settings)
    pages_seen.append(await app_client.get("/"))
    chat = await app_client.get("/chat")
    assert chat.status_code == 303
    assert chat.headers["location"].endswith("/chat")
    pages_seen.append(await app_client.get(chat.headers["location"]))
    secrets = await app_client.get("/secrets")
    assert secrets.status_code == 303
    assert secrets.headers["location"].endswith("/secrets")
    pages_seen.append(await app_client.get(secrets.headers["location"]))
    app_client.cookies.delete(pages.SESSION_COOKIE)
    pages_seen.append(await app_client.get("/login"))

    for page in pages_seen:
        where = page.request.url.path
        assert page.status_code == 200, where
        assert page.headers["content-type"].startswith("text/html"), where
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp, where
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        assert not _INLINE_SCRIPT.search(page.text), where
        assert not _INLINE_STYLE.search(page.text), where
        assert "https://" not in page.text, f"{where} links off-site"


async def test_dashboard_shows_system_status(
    app_client: httpx.AsyncClient, settings: Settings
) -> None:
    await create_admin(app_client, settings)
    queue = app_client.app.state.runtime.queue  # type: ignore[attr-defined]
    await queue.enqueue("hexahub.echo", {"n": 1}, delay_seconds=3600)

    home = await app_client.get("/")
    backend = app_client.app.state.runtime.db.backend  # type: ignore[attr-defined]
    assert f"<dt>Database</dt><dd>{backend}</dd>" in home.text
    assert "<dt>Queue</dt><dd>inprocess</dd>" in home.text
    assert '<th scope="row">pending</th><td class="num">1</td>' in home.text
    assert '<th scope="row">dead</th><td class="num">0</td>' in home.text
    for area in pages.PRODUCT_AREAS:
        assert f'href="{area.path}"' in home.text


async def test_product_area_pages_exist_and_need_sign_in(
    app_client: httpx.AsyncClient, settings: Settings
) -> None:
    await create_admin(app_client, settings)
    for area in pages.PRODUCT_AREAS:
        page = await app_client.get(area.path)
        assert page.status_code == 200, area.path
        assert "Coming soon" in page.text
        assert f'href="{area.path}" aria-current="page"' in page.text

    app_client.cookies.delete(pages.SESSION_COOKIE)
    anonymous = await app_client.get("/automation")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login?next=%2Fautomation"


async def test_vendored_htmx_and_stylesheet_are_served(app_client: httpx.AsyncClient) -> None:
    htmx = await app_client.get("/static/vendor/htmx.min.js")
    assert htmx.status_code == 200
    assert htmx.text.startswith("/*! htmx 2.")
    assert "0BSD" in htmx.text[:300]
    css = await app_client.get("/static/app.css")
    assert css.status_code == 200
    assert ".skip-link" in css.text


# --- the setup link ----------------------------------------------------------------


async def test_setup_link_is_announced_only_while_no_account_exists(
    app_client: httpx.AsyncClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = app_client.app.state.runtime  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="hexahub.web"):
        await pages.announce_setup_link(runtime)
    announced = [r.getMessage() for r in caplog.records if r.name == "hexahub.web"]
    assert announced == [
        f"No account exists yet. Open http://127.0.0.1:8080/setup?token={setup_token(settings)} "
        "to create the first administrator."
    ]

    await create_admin(app_client, settings)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hexahub.web"):
        await pages.announce_setup_link(runtime)
    assert [r for r in caplog.records if r.name == "hexahub.web"] == []


@pytest.mark.parametrize(
    ("overrides", "base"),
    [
        ({}, "http://127.0.0.1:8080"),
        ({"host": "0.0.0.0", "port": 9000}, "http://127.0.0.1:9000"),
        ({"host": "::1"}, "http://[::1]:8080"),
        ({"public_url": "https://hub.example.org/"}, "https://hub.example.org"),
    ],
)
def test_setup_url(tmp_path: object, overrides: dict[str, object], base: str) -> None:
    settings = Settings(secret_key="k" * 40, data_dir=str(tmp_path), **overrides)  # type: ignore[arg-type]
    assert pages.setup_url(settings) == f"{base}/setup?token={setup_token(settings)}"
