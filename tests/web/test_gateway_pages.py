"""The gateway pages: /models for everyone (providers and forms for installation admins)
and each workspace's usage page with its SVG charts, totals and policy form.

Driven like a browser through the real app on SQLite and PostgreSQL; the forms must
authorise and audit exactly like their twins in the JSON API.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from hexahub.core.db import utcnow
from hexahub.gateway import service
from hexahub.identity.models import Role
from tests.identity.conftest import make_person
from tests.web.test_identity_pages import (
    Browser,
    add_directly,
    browser_sign_in,
    events,
    new_browser,
    runtime_of,
    text_of,
)


@pytest.fixture
async def admin(app_client: httpx.AsyncClient) -> Browser:
    """The first administrator of the installation, owner of the Default workspace."""
    person = await make_person(app_client, "alice@example.org", first=True)
    await browser_sign_in(app_client, person.email)
    return Browser(app_client, person)


@pytest.fixture
async def member(app_client: httpx.AsyncClient, admin: Browser) -> AsyncIterator[Browser]:
    """An ordinary user with a workspace of his own, in a second browser."""
    person = await make_person(app_client, "bob@example.org")
    async with new_browser(app_client, person) as browser:
        yield browser


async def providers(client: httpx.AsyncClient) -> list[str]:
    async with runtime_of(client).db.sessions() as db:
        return [p.name for p in await service.list_providers(db)]


async def add_provider(admin: Browser, **fields: Any) -> httpx.Response:
    await admin.get("/models")  # the form's page, which hands out the CSRF cookie
    data = {"name": "openai-test", "kind": "openai", "base_url": "https://api.example.com/v1"}
    return await admin.submit("/models/providers", {**data, **fields})


def num_cells(page: httpx.Response, table_id: str, row_label: str) -> list[str]:
    table = page.text.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    rows = [r for r in re.findall(r"<tr>.*?</tr>", table, flags=re.S) if row_label in r]
    assert len(rows) == 1, (row_label, table)
    return re.findall(r'<td class="num">([^<]*)</td>', rows[0])


def bars(page: httpx.Response, chart_id: str) -> list[str]:
    svg = page.text.split(f'<svg class="chart-svg" id="{chart_id}"', 1)[1].split("</svg>", 1)[0]
    return re.findall(r"<title>([^<]*)</title>", svg)


# --- /models ----------------------------------------------------------------------------


async def test_admin_adds_a_provider_and_a_model_and_members_see_it(
    app_client: httpx.AsyncClient, admin: Browser, member: Browser
) -> None:
    key = "sk-canary-" + secrets.token_hex(16)
    added = await add_provider(admin, api_key=key)
    assert added.status_code == 303 and added.headers["location"] == "/models?ok=provider_created"
    model = await admin.submit(
        "/models/models",
        {
            "name": "smart-web",
            "provider": "openai-test",
            "upstream_model": "gpt-4o-mini",
            "input_price": "0.15",
            "output_price": "0.6",
        },
    )
    assert model.status_code == 303 and model.headers["location"] == "/models?ok=model_created"

    created = await events(app_client, "gateway.provider_created")
    assert [e.target_id for e in created] != [] and created[0].actor == "alice@example.org"
    assert created[0].after["name"] == "openai-test" and created[0].after["has_api_key"]
    models = await events(app_client, "gateway.model_created")
    assert len(models) == 1 and models[0].after["name"] == "smart-web"
    assert models[0].after["deployments"][0]["input_price"] == 0.15
    # The running gateway serves the new model at once (the page reloaded it).
    status = app_client.app.state.gateway.router.status()  # type: ignore[attr-defined]
    assert any(r["model"] == "smart-web" and r["provider"] == "openai-test" for r in status)

    admin_page = await admin.get("/models?ok=model_created")
    assert admin_page.status_code == 200 and "Model added." in admin_page.text
    assert num_cells(admin_page, "models-table", "<code>smart-web</code>") == ["0.15", "0.60"]
    assert 'id="providers-table"' in admin_page.text and "https://api.example.com/v1" in text_of(
        admin_page
    )
    assert 'name="api_key" type="password"' in admin_page.text
    assert 'style="' not in admin_page.text and "<script>" not in admin_page.text

    member_page = await member.get("/models")
    assert member_page.status_code == 200
    assert 'href="/models" aria-current="page"' in member_page.text
    assert "<code>smart-web</code>" in member_page.text and "gpt-4o-mini" in member_page.text
    assert "/v1" in member_page.text and 'href="/keys"' in member_page.text
    assert 'id="providers-table"' not in member_page.text
    assert 'action="/models/providers"' not in member_page.text

    # The key is shown nowhere: not on the pages, not in the audit log.
    for browser, path in (
        (admin, "/models"),
        (member, "/models"),
        (admin, "/audit"),
        (admin, f"/workspaces/{admin.person.workspace_id}/audit"),
        (admin, f"/workspaces/{admin.person.workspace_id}/usage"),
    ):
        page = await browser.get(path)
        assert page.status_code == 200, path
        assert key not in page.text, path
    assert key not in str(created[0].after)


async def test_form_errors_re_render_with_the_message_and_create_nothing(
    app_client: httpx.AsyncClient, admin: Browser
) -> None:
    bad_name = await add_provider(admin, name="no spaces allowed", api_key="sk-x")
    assert bad_name.status_code == 422 and 'id="page-error"' in bad_name.text
    assert "name" in text_of(bad_name) and 'value="no spaces allowed"' in bad_name.text
    no_url = await add_provider(admin, base_url="")
    assert no_url.status_code == 422 and "needs its URL" in text_of(no_url)
    assert "openai-test" not in await providers(app_client)

    assert (await add_provider(admin)).status_code == 303
    twice = await add_provider(admin)
    assert twice.status_code == 409 and "exists already" in text_of(twice)

    unknown = await admin.submit(
        "/models/models",
        {"name": "m1", "provider": "nope", "upstream_model": "x", "input_price": "1"},
    )
    assert unknown.status_code == 422 and "no provider named" in text_of(unknown)
    negative = await admin.submit(
        "/models/models",
        {"name": "m1", "provider": "openai-test", "upstream_model": "x", "input_price": "-1"},
    )
    assert negative.status_code == 422 and "input_price" in text_of(negative)
    assert 'value="-1"' in negative.text
    assert len(await events(app_client, "gateway.provider_created")) == 1
    assert await events(app_client, "gateway.model_created") == []


async def test_a_member_cannot_add_providers_or_models(
    app_client: httpx.AsyncClient, member: Browser
) -> None:
    before = await providers(app_client)
    await member.get("/models")
    refused = await member.submit(
        "/models/providers",
        {"name": "sneaky", "kind": "openai", "base_url": "https://evil.example", "api_key": "k"},
    )
    assert refused.status_code == 403 and "Not allowed" in refused.text
    model = await member.submit(
        "/models/models", {"name": "sneaky", "provider": "x", "upstream_model": "y"}
    )
    assert model.status_code == 403
    assert await providers(app_client) == before
    assert await events(app_client, "gateway.provider_created") == []
    denied = await events(app_client, "access.denied")
    assert [e.details["path"] for e in denied] == ["/models/providers", "/models/models"]


# --- usage -----------------------------------------------------------------------------


async def seed_usage(client: httpx.AsyncClient, workspace_id: str, user_id: str) -> None:
    recorder = client.app.state.gateway.usage  # type: ignore[attr-defined]
    now = utcnow()
    rows = [
        # (days ago, model, prompt, completion, cost, latency, status)
        (0, "smart", 1000, 200, 0.0027, 400.0, 200),
        (0, "smart", 500, 100, 0.0013, 200.0, 200),
        (3, "smart", 300, 0, 0.0005, 300.0, 502),
        (3, "local-chat", 2000, 800, 0.0, 900.0, 200),
        (40, "local-chat", 100, 50, 0.0, 100.0, 200),
    ]
    for days_ago, model, prompt, completion, cost, latency, status in rows:
        await recorder.record(
            created_at=now - timedelta(days=days_ago),
            request_id=secrets.token_hex(8),
            endpoint="chat.completions",
            model=model,
            provider="openai-test" if model == "smart" else "local",
            upstream_model="gpt-4o-mini" if model == "smart" else "qwen",
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
            latency_ms=latency,
            status=status,
            error="upstream failed" if status >= 400 else None,
            workspace_id=workspace_id,
            user_id=user_id,
        )
    # Another workspace's request never shows up here.
    await recorder.record(
        endpoint="chat.completions",
        model="smart",
        provider="openai-test",
        prompt_tokens=99999,
        completion_tokens=1,
        cost_usd=9.0,
        status=200,
        workspace_id="another-workspace",
        user_id=user_id,
    )


async def test_usage_page_charts_and_totals_the_workspace(
    app_client: httpx.AsyncClient, admin: Browser
) -> None:
    ws = admin.person.workspace_id
    await seed_usage(app_client, ws, admin.person.user_id)
    page = await admin.get(f"/workspaces/{ws}/usage")  # flushes the pending records first
    assert page.status_code == 200, page.text
    assert f'href="/workspaces/{ws}/usage" aria-current="page"' in page.text
    assert 'style="' not in page.text and "<script>" not in page.text

    today = utcnow().date()
    three_ago = (today - timedelta(days=3)).isoformat()
    assert bars(page, "tokens-chart") == [
        f"{three_ago}: 3,100 tokens",
        f"{today.isoformat()}: 1,800 tokens",
    ]
    # local-chat costs nothing, so three days ago has a cost only from the failed request.
    assert bars(page, "cost-chart") == [f"{three_ago}: $0.0005", f"{today.isoformat()}: $0.0040"]

    # requests, errors, prompt, completion, cost, average latency
    assert num_cells(page, "usage-by-model", "<code>smart</code>") == [
        "3", "1", "1800", "300", "0.0045", "300.0"
    ]  # fmt: skip
    assert num_cells(page, "usage-by-model", "<code>local-chat</code>") == [
        "1", "0", "2000", "800", "0.0000", "900.0"
    ]  # fmt: skip
    assert num_cells(page, "usage-by-member", "alice@example.org") == [
        "4", "1", "3800", "1100", "0.0045", "450.0"
    ]  # fmt: skip
    assert "99999" not in page.text

    month = await admin.get(f"/workspaces/{ws}/usage?days=90")
    assert len(bars(month, "tokens-chart")) == 3
    assert num_cells(month, "usage-by-model", "<code>local-chat</code>")[0] == "2"
    fallback = await admin.get(f"/workspaces/{ws}/usage?days=nonsense")
    assert fallback.status_code == 200
    assert 'aria-current="page">Last 30 days' in fallback.text


async def test_usage_page_without_usage_and_for_strangers(
    app_client: httpx.AsyncClient, admin: Browser, member: Browser
) -> None:
    ws = admin.person.workspace_id
    empty = await admin.get(f"/workspaces/{ws}/usage?days=7")
    assert empty.status_code == 200
    assert bars(empty, "tokens-chart") == [] and "No usage in this period." in empty.text

    stranger = await member.get(f"/workspaces/{ws}/usage")
    assert stranger.status_code == 404 and "alice@example.org" not in stranger.text
    app_client.cookies.clear()
    signed_out = await app_client.get(f"/workspaces/{ws}/usage")
    assert signed_out.status_code == 303
    assert signed_out.headers["location"].startswith("/login?next=%2Fworkspaces%2F")


async def test_policy_form_for_admins_only(
    app_client: httpx.AsyncClient, admin: Browser, member: Browser
) -> None:
    ws = admin.person.workspace_id
    url = f"/workspaces/{ws}/usage"
    page = await admin.get(url)
    assert f'action="{url}/policy"' in page.text
    saved = await admin.submit(f"{url}/policy", {"local_only": "true"})
    assert (
        saved.status_code == 303 and saved.headers["location"] == f"{url}?ok=gateway_policy_saved"
    )
    async with runtime_of(app_client).db.sessions() as db:
        policy = await service.workspace_policy(db, ws)
        assert policy.local_only is True and policy.trace_bodies is False
    changed = await events(app_client, "gateway.policy_changed")
    assert len(changed) == 1 and changed[0].workspace_id == ws
    assert changed[0].before == {"local_only": False, "trace_bodies": False}
    assert changed[0].after == {"local_only": True, "trace_bodies": False}
    shown = await admin.get(f"{url}?ok=gateway_policy_saved")
    assert "Gateway policy saved." in shown.text
    assert 'name="local_only" type="checkbox" value="true" checked' in shown.text

    await add_directly(app_client, ws, member.person, Role.viewer)
    viewer_page = await member.get(url)
    assert viewer_page.status_code == 200 and f'action="{url}/policy"' not in viewer_page.text
    assert "Local models only: <strong>yes</strong>" in viewer_page.text
    refused = await member.submit(f"{url}/policy", {"trace_bodies": "true"})
    assert refused.status_code == 403
    async with runtime_of(app_client).db.sessions() as db:
        policy = await service.workspace_policy(db, ws)
        assert policy.local_only is True and policy.trace_bodies is False
    assert len(await events(app_client, "gateway.policy_changed")) == 1
