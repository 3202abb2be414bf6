"""Members, API keys and the audit log in a real browser.

The first administrator signs in, adds a second account to their workspace on the
members page, changes its role, creates an API key (shown once, and it works), and finds
all of it in the workspace's audit log. Screenshots of each page go to the artifacts
folder (see conftest.py).
"""

from __future__ import annotations

import re

import httpx
import pytest

from hexahub.identity import service
from tests.e2e.conftest import LiveServer, artifacts_dir, launch_chromium

ADMIN = {"email": "grace@example.org", "name": "Grace Hopper", "password": "cobol-compiler-1959"}
MEMBER = {"email": "kathleen@example.org", "name": "Kathleen Booth", "password": "assembly-1947"}
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
_KEY = re.compile(r"^hh_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$")


def create_accounts(server: LiveServer) -> None:
    """The first administrator through the setup form, the second account through the API."""
    token = service.setup_token(server.settings.resolved_secret_key())
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        form = client.get(f"/setup?token={token}")
        csrf = _CSRF_FIELD.search(form.text)
        assert csrf, form.text
        created = client.post(
            "/setup",
            data={
                "csrf_token": csrf.group(1),
                "token": token,
                "email": ADMIN["email"],
                "display_name": ADMIN["name"],
                "password": ADMIN["password"],
                "password_confirm": ADMIN["password"],
            },
        )
        assert created.status_code == 303, created.text
        login = client.post(
            "/api/auth/login", json={"email": ADMIN["email"], "password": ADMIN["password"]}
        )
        assert login.status_code == 200, login.text
        user = client.post(
            "/api/users",
            json={
                "email": MEMBER["email"],
                "display_name": MEMBER["name"],
                "password": MEMBER["password"],
            },
            headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        )
        assert user.status_code == 201, user.text


@pytest.mark.e2e
def test_members_keys_and_audit_in_a_real_browser(live_server: LiveServer) -> None:
    from playwright.sync_api import expect, sync_playwright

    create_accounts(live_server)
    shots = artifacts_dir()
    base = live_server.base_url
    console_errors: list[str] = []

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.on(
                "console",
                lambda m: console_errors.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda error: console_errors.append(f"page error: {error}"))

            # Sign in as the first administrator.
            page.goto(f"{base}/login")
            page.get_by_label("E-mail").fill(ADMIN["email"])
            page.get_by_label("Password").fill(ADMIN["password"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/")
            nav = page.get_by_role("navigation", name="Main")

            # Workspaces: the first administrator owns "Default".
            nav.get_by_role("link", name="Workspaces").click()
            page.wait_for_url(f"{base}/workspaces")
            expect(page.get_by_role("heading", name="Workspaces", exact=True)).to_be_visible()
            page.screenshot(path=str(shots / "10-workspaces.png"), full_page=True)
            page.get_by_role("link", name="Default").click()
            expect(page.get_by_role("heading", name="Default")).to_be_visible()
            workspace_url = page.url
            page.screenshot(path=str(shots / "11-workspace.png"), full_page=True)

            # Add the second account as a viewer on the members page.
            tabs = page.get_by_role("navigation", name="Workspace sections")
            tabs.get_by_role("link", name="Members").click()
            page.wait_for_url(f"{workspace_url}/members")
            page.get_by_label("E-mail").fill(MEMBER["email"])
            page.get_by_label("Role", exact=True).select_option("viewer")
            page.get_by_role("button", name="Add member").click()
            page.wait_for_url(f"{workspace_url}/members?ok=member_added")
            expect(page.get_by_role("status").first).to_have_text("Member added.")
            row = page.get_by_role("row", name=re.compile(MEMBER["email"]))
            expect(row).to_contain_text(MEMBER["name"])
            role_select = page.get_by_label(f"Role of {MEMBER['email']}")
            expect(role_select).to_have_value("viewer")
            page.screenshot(path=str(shots / "12-member-added.png"), full_page=True)

            # Make them an admin.
            role_select.select_option("admin")
            page.get_by_role("button", name=f"Change role of {MEMBER['email']}").click()
            page.wait_for_url(f"{workspace_url}/members?ok=role_changed")
            expect(page.get_by_role("status").first).to_have_text("Role changed.")
            expect(page.get_by_label(f"Role of {MEMBER['email']}")).to_have_value("admin")
            page.screenshot(path=str(shots / "13-role-changed.png"), full_page=True)

            # An API key, bound to this workspace: its secret is shown once, and works.
            nav.get_by_role("link", name="API keys").click()
            page.wait_for_url(f"{base}/keys")
            page.get_by_label("Name").fill("e2e script")
            page.get_by_role("checkbox", name=re.compile(r"^write\b")).check()
            page.get_by_label("Workspace").select_option(label="Default")
            page.get_by_label("Expires after (days)").fill("30")
            page.screenshot(path=str(shots / "14-keys-form.png"), full_page=True)
            page.get_by_role("button", name="Create key").click()
            expect(page.get_by_role("heading", name="Your new API key")).to_be_visible()
            expect(page.get_by_role("alert")).to_contain_text("only time the key is shown")
            secret = page.get_by_label("API key").input_value()
            assert _KEY.match(secret), secret
            page.get_by_role("button", name="Copy to clipboard").click()
            expect(page.get_by_text("Copied.")).to_be_visible()
            assert page.evaluate("navigator.clipboard.readText()") == secret
            page.screenshot(path=str(shots / "15-key-created.png"), full_page=True)
            me = httpx.get(f"{base}/api/me", headers={"x-api-key": secret}, timeout=10)
            assert me.status_code == 200, me.text
            assert me.json()["user"]["email"] == ADMIN["email"]
            assert me.json()["auth"]["scopes"] == ["read", "write"]

            page.get_by_role("link", name="Done, back to API keys").click()
            page.wait_for_url(f"{base}/keys")
            key_row = page.get_by_role("row", name=re.compile("e2e script"))
            expect(key_row).to_contain_text(secret[:11])
            expect(key_row).to_contain_text("active")
            assert secret not in page.content()
            page.screenshot(path=str(shots / "16-keys.png"), full_page=True)

            # The audit log shows all of it.
            nav.get_by_role("link", name="Audit").click()
            page.wait_for_url(f"{base}/audit")
            page.get_by_role("link", name="Default").click()
            page.wait_for_url(f"{workspace_url}/audit")
            events = page.get_by_role("table", name=re.compile("Audit events"))
            for action in ("key.created", "member.role_changed", "member.added"):
                expect(events.get_by_text(action, exact=True)).to_be_visible()
            expect(events).to_contain_text("role: viewer → admin")
            page.screenshot(path=str(shots / "17-audit.png"), full_page=True)
            page.get_by_label("Action").fill("member.")
            page.get_by_role("button", name="Filter").click()
            page.wait_for_url(re.compile(r".*/audit\?action=member\..*"))
            expect(events.get_by_role("row")).to_have_count(3)  # header + two events
            expect(page.get_by_role("link", name="Export JSON lines")).to_be_visible()
            page.screenshot(path=str(shots / "18-audit-filtered.png"), full_page=True)

            # Phone width: the members table scrolls inside the page, nothing overflows.
            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(f"{workspace_url}/members")
            expect(page.get_by_role("heading", name="Members")).to_be_visible()
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
            page.screenshot(path=str(shots / "19-members-phone.png"), full_page=True)
        finally:
            browser.close()

    assert console_errors == [], console_errors
