"""The home dashboard: one workspace's usage, gateway health and recent activity.

Driven like a browser through the real app on SQLite and PostgreSQL. What each person
sees follows the API: usage for any member, audit events for the workspace's admins only,
and a workspace that is not theirs is a 404.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from hexahub.identity.models import Role
from tests.identity.conftest import make_person
from tests.web.test_gateway_pages import seed_usage
from tests.web.test_identity_pages import (
    Browser,
    add_directly,
    browser_sign_in,
    new_browser,
    text_of,
)


@pytest.fixture
async def admin(app_client: httpx.AsyncClient) -> Browser:
    person = await make_person(app_client, "alice@example.org", first=True)
    await browser_sign_in(app_client, person.email)
    return Browser(app_client, person)


@pytest.fixture
async def member(app_client: httpx.AsyncClient, admin: Browser) -> AsyncIterator[Browser]:
    person = await make_person(app_client, "bob@example.org")
    async with new_browser(app_client, person) as browser:
        yield browser


def chart_titles(page: httpx.Response, chart_id: str) -> list[str]:
    svg = page.text.split(f'<svg class="chart-svg" id="{chart_id}"', 1)[1].split("</svg>", 1)[0]
    return re.findall(r"<title>([^<]*)</title>", svg)


async def test_dashboard_charts_usage_by_model_and_member(
    app_client: httpx.AsyncClient, admin: Browser
) -> None:
    ws = admin.person.workspace_id
    await seed_usage(app_client, ws, admin.person.user_id)
    page = await admin.get("/")
    assert page.status_code == 200, page.text
    assert 'href="/" aria-current="page"' in page.text
    assert "<h1>Welcome, " in page.text
    assert 'style="' not in page.text and "<script>" not in page.text

    # Two models in the period (the 40-day-old record is outside it), each its own series.
    by_model = chart_titles(page, "tokens-by-model")
    assert any("smart: 1,800 tokens" in title for title in by_model), by_model
    assert any("local-chat: 2,800 tokens" in title for title in by_model), by_model
    assert 'class="bar series-0"' in page.text and 'class="bar series-1"' in page.text
    by_member = chart_titles(page, "tokens-by-member")
    assert by_member and all("alice@example.org" in title for title in by_member)
    assert "<dt>Tokens</dt><dd>4,900</dd>" in page.text
    assert "<dt>Requests</dt><dd>4</dd>" in page.text

    # Gateway health lists the embedded model's deployment; the last hour had no errors.
    health = page.text.split('id="gateway-health"', 1)[1].split("</section>", 1)[0]
    assert "Deployments up" in health and "Breakers" in health
    assert "0 of 2 requests (0.0 %)" in health

    # The admin sees the workspace's latest audit events.
    assert 'id="recent-activity"' in page.text
    assert 'id="recent-conversations"' in page.text


async def test_workspace_switcher_and_who_sees_what(
    app_client: httpx.AsyncClient, admin: Browser, member: Browser
) -> None:
    ws = admin.person.workspace_id
    own = member.person.workspace_id
    # Bob alone in his own workspace: no switcher; as an owner he sees its activity.
    alone = await member.get("/")
    assert alone.status_code == 200
    assert 'id="dashboard-workspace"' not in alone.text
    assert 'id="recent-activity"' in alone.text

    await add_directly(app_client, ws, member.person, Role.viewer)
    both = await member.get("/")
    assert 'id="dashboard-workspace"' in both.text
    assert f'<option value="{ws}"' in both.text and f'<option value="{own}"' in both.text

    # As a viewer he sees the usage of Alice's workspace but not its audit events.
    await seed_usage(app_client, ws, admin.person.user_id)
    viewer = await member.get(f"/?workspace={ws}")
    assert viewer.status_code == 200
    assert f'<option value="{ws}" selected>' in viewer.text
    assert 'id="recent-activity"' not in viewer.text
    assert 'href="/workspaces/' + ws + '/audit"' not in viewer.text
    assert chart_titles(viewer, "tokens-by-member")
    recent = viewer.text.split('id="recent-conversations"', 1)[1].split("</section>", 1)[0]
    assert ">New chat</a>" not in recent and ">New chat</a>" in alone.text


async def test_a_workspace_that_is_not_yours_is_not_found(
    app_client: httpx.AsyncClient, admin: Browser, member: Browser
) -> None:
    ws = admin.person.workspace_id
    refused = await member.get(f"/?workspace={ws}")
    assert refused.status_code == 404
    assert "alice@example.org" not in refused.text
    missing = await member.get("/?workspace=no-such-workspace")
    assert missing.status_code == 404

    app_client.cookies.clear()
    signed_out = await app_client.get(f"/?workspace={ws}")
    assert signed_out.status_code == 303
    assert signed_out.headers["location"].startswith("/login?next=")


async def test_names_on_the_dashboard_are_escaped(
    app_client: httpx.AsyncClient, admin: Browser
) -> None:
    runtime = app_client.app.state.runtime  # type: ignore[attr-defined]
    from hexahub.identity.models import Workspace

    async with runtime.db.sessions() as db:
        workspace = await db.get(Workspace, admin.person.workspace_id)
        assert workspace is not None
        workspace.name = "<img src=x onerror=alert(1)>"
        await db.commit()
    page = await admin.get("/")
    assert page.status_code == 200
    assert "<img src=x" not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "<img src=x onerror=alert(1)>" in text_of(page)
