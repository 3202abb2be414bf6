"""Repositories, search and the code view in a real browser.

The first administrator adds a directory of source files through the form, watches the
live status (HTMX polling, no reload) reach "ready", searches for a function, follows the
hit and lands on the code view with the hit's lines highlighted. Screenshots of each page
go to the artifacts folder (see conftest.py); any console error (a CSP violation, say)
fails the test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.context.helpers import write_project
from tests.e2e.conftest import LiveServer, artifacts_dir, launch_chromium
from tests.e2e.test_members import ADMIN, create_accounts

MODULE = '''\
"""Generated module {n}."""


def handler_{n}(request: dict) -> dict:
    """Answer request number {n}."""
    return {{"handled": {n}, "path": request.get("path")}}


class Worker{n}:
    def run(self, items: list[int]) -> int:
        return sum(items) + {n}
'''


def bigger_project(root: Path) -> Path:
    """The shared demo project plus enough modules that indexing takes a moment."""
    write_project(root)
    for n in range(120):
        (root / "src" / f"module_{n}.py").write_text(MODULE.format(n=n))
    return root


@pytest.mark.e2e
def test_add_index_search_and_open_the_code_in_a_real_browser(
    live_server: LiveServer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    create_accounts(live_server)
    root = bigger_project(tmp_path / "shop")
    shots = artifacts_dir()
    base = live_server.base_url
    console_errors: list[str] = []

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.on(
                "console",
                lambda m: console_errors.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda error: console_errors.append(f"page error: {error}"))

            page.goto(f"{base}/login")
            page.get_by_label("E-mail").fill(ADMIN["email"])
            page.get_by_label("Password").fill(ADMIN["password"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/")

            # The navigation's Repositories entry opens the workspace's repositories.
            nav = page.get_by_role("navigation", name="Main")
            nav.get_by_role("link", name="Repositories").click()
            page.wait_for_url(re.compile(r".*/workspaces/[^/]+/repos$"))
            repos_url = page.url
            expect(page.get_by_text("No repositories in this workspace yet.")).to_be_visible()

            # Add the directory through the form.
            page.get_by_label("Name").fill("shop")
            page.get_by_label("Source").select_option("path")
            page.get_by_label("Location").fill(str(root))
            page.get_by_label("Exclude (globs, one per line)").fill("**/*.md")
            status_polls: list[str] = []
            page.on(
                "request",
                lambda r: status_polls.append(r.url) if r.url.endswith("/repos/status") else None,
            )
            page.get_by_role("button", name="Add repository").click()
            page.wait_for_url(f"{repos_url}?ok=repo_added")
            was_busy = page.locator("#repo-status[hx-trigger]").count() == 1
            if was_busy:
                expect(page.locator("progress").first).to_be_attached()
                page.screenshot(path=str(shots / "30-repos-indexing.png"), full_page=True)
            expect(page.get_by_role("status").first).to_contain_text("Repository added.")

            # The live status updates in place until the index is ready: no reload.
            page.evaluate("window.hexahubSamePage = true")
            card = page.get_by_role("article", name="shop")
            expect(card).to_be_visible()
            expect(card.locator(".badge-ok")).to_have_text("ready", timeout=180_000)
            assert page.evaluate("window.hexahubSamePage === true"), "the page was reloaded"
            if was_busy:  # it got there by polling its fragment
                assert status_polls, "the status block was never refreshed"
            expect(page.locator("#repo-status")).not_to_have_attribute("hx-trigger", "every 1s")
            files = int(card.locator("dt:text-is('Files') + dd").inner_text())
            assert files >= 123, files
            assert int(card.locator("dt:text-is('Symbols') + dd").inner_text()) >= 240
            page.screenshot(path=str(shots / "30-repos.png"), full_page=True)

            # Search in place (HTMX), with a bookmarkable address.
            tabs = page.get_by_role("navigation", name="Workspace sections")
            tabs.get_by_role("link", name="Search").click()
            page.wait_for_url(re.compile(r".*/search$"))
            page.get_by_label("Search for").fill("parse_money_amount")
            page.get_by_label("Mode (code)").select_option("text")
            page.evaluate("window.hexahubSamePage = true")
            page.get_by_role("button", name="Search", exact=True).click()
            page.wait_for_url(re.compile(r".*/search\?q=parse_money_amount&.*mode=text.*"))
            hit = page.locator("a.hit-link").first
            expect(hit).to_contain_text("src/billing.py")
            assert page.evaluate("window.hexahubSamePage === true"), "search reloaded the page"
            expect(page.get_by_role("status").last).to_contain_text("result")
            page.screenshot(path=str(shots / "31-search.png"), full_page=True)

            # The hit opens the code view at its lines, highlighted and scrolled to.
            href = hit.get_attribute("href") or ""
            start, end = (int(x) for x in re.findall(r"#L(\d+)-L(\d+)$", href)[0])
            hit.click()
            page.wait_for_url(re.compile(r".*/code/src/billing\.py#L\d+-L\d+$"))
            expect(page.locator(f"#L{start}")).to_have_class(re.compile(r"\bhl\b"))
            expect(page.locator(f"#L{end}")).to_have_class(re.compile(r"\bhl\b"))
            expect(page.locator(".cl.hl")).to_have_count(end - start + 1)
            expect(page.locator(f"#L{start}")).to_be_in_viewport()
            expect(page.locator("#L19 .nf")).to_have_text("parse_money_amount")
            crumbs = page.get_by_role("navigation", name="Breadcrumb")
            expect(crumbs).to_contain_text("shop")
            expect(crumbs).to_contain_text("billing.py")
            page.screenshot(path=str(shots / "32-code-view.png"), full_page=True)

            # A click on a line number marks that line; shift-click extends the range.
            page.locator("#L3 a.ln").click()
            expect(page.locator(".cl.hl")).to_have_count(1)
            page.locator("#L6 a.ln").click(modifiers=["Shift"])
            expect(page.locator(".cl.hl")).to_have_count(4)
            assert page.url.endswith("#L3-L6"), page.url

            # Phone width: nothing overflows the screen; the code scrolls inside its box.
            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(repos_url)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
            page.screenshot(path=str(shots / "33-repos-phone.png"), full_page=True)
        finally:
            browser.close()

    assert console_errors == [], console_errors
