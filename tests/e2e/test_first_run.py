"""First run in a real browser: setup link, first administrator, sign out, sign in.

Drives the live server with the system's headless Chromium (see conftest.py).
"""

from __future__ import annotations

import re

import pytest

from hexahub.web.pages import setup_url
from tests.e2e.conftest import LiveServer, artifacts_dir, launch_chromium

ADMIN_NAME = "Grace Hopper"
ADMIN_EMAIL = "grace@example.org"
ADMIN_PASSWORD = "cobol-compiler-1959"


@pytest.mark.e2e
def test_first_run_in_a_real_browser(live_server: LiveServer) -> None:
    from playwright.sync_api import ConsoleMessage, expect, sync_playwright

    shots = artifacts_dir()
    base = live_server.base_url

    links = [m for message in live_server.announced for m in re.findall(r"https?://\S+", message)]
    assert links == [setup_url(live_server.settings)], live_server.announced

    console_errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # The wrong-password page answers 401 on purpose; Chromium reports that status.
        if message.type == "error" and "status of 401" not in message.text:
            console_errors.append(message.text)

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(15_000)
            page.on("console", on_console)
            page.on("pageerror", lambda error: console_errors.append(f"page error: {error}"))

            # The setup link printed at start leads to the first-admin form.
            page.goto(links[0])
            expect(page.get_by_role("heading", name="Welcome to HexaHub")).to_be_visible()
            page.get_by_label("Your name").fill(ADMIN_NAME)
            page.get_by_label("E-mail").fill(ADMIN_EMAIL)
            page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
            page.get_by_label("Repeat the password").fill(ADMIN_PASSWORD)
            page.screenshot(path=str(shots / "01-setup.png"), full_page=True)
            page.get_by_role("button", name="Create administrator").click()

            page.wait_for_url(f"{base}/")
            expect(page.get_by_role("heading", name=f"Welcome, {ADMIN_NAME}")).to_be_visible()
            expect(page.get_by_role("table", name="Background tasks by status")).to_be_visible()
            assert page.evaluate("typeof htmx") == "object", "vendored HTMX did not load"
            page.screenshot(path=str(shots / "02-dashboard.png"), full_page=True)

            # Navigation is boosted by HTMX; the link still lands on its page.
            page.get_by_role("navigation", name="Main").get_by_role("link", name="Chat").click()
            # /chat opens the chat of the person's workspace.
            page.wait_for_url(re.compile(r"/chat$"))
            expect(page.get_by_role("heading", name="New chat", exact=True)).to_be_visible()

            page.get_by_text(ADMIN_NAME, exact=True).click()
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(f"{base}/login")
            expect(page.get_by_role("heading", name="Sign in to HexaHub")).to_be_visible()
            page.goto(f"{base}/")
            page.wait_for_url(f"{base}/login?next=%2F")
            page.screenshot(path=str(shots / "03-signed-out.png"), full_page=True)

            page.get_by_label("E-mail").fill(ADMIN_EMAIL)
            page.get_by_label("Password").fill("not-my-password")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_have_text("Wrong e-mail or password.")
            expect(page.get_by_label("E-mail")).to_have_value(ADMIN_EMAIL)
            page.screenshot(path=str(shots / "04-wrong-password.png"), full_page=True)

            page.get_by_label("Password").fill(ADMIN_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/")
            expect(page.get_by_role("heading", name=f"Welcome, {ADMIN_NAME}")).to_be_visible()
            page.screenshot(path=str(shots / "05-dashboard-again.png"), full_page=True)

            page.set_viewport_size({"width": 390, "height": 844})
            page.reload()
            expect(page.get_by_role("heading", name=f"Welcome, {ADMIN_NAME}")).to_be_visible()
            page.screenshot(path=str(shots / "06-dashboard-phone.png"), full_page=True)
        finally:
            browser.close()

    assert console_errors == [], console_errors
