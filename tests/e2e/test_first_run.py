"""First run in a real browser: setup link, first administrator, sign out, sign in.

Drives the real app served by uvicorn on a free loopback port with headless Chromium from
the system (Debian's `chromium` package); Playwright never downloads a browser here.
Screenshots go to $HEXAHUB_TEST_ARTIFACTS (default: test-artifacts/screenshots).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from hexahub.app import create_app
from hexahub.core import migrate
from hexahub.settings import Settings
from hexahub.web.pages import setup_url

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
ADMIN_NAME = "Grace Hopper"
ADMIN_EMAIL = "grace@example.org"
ADMIN_PASSWORD = "cobol-compiler-1959"


def artifacts_dir() -> Path:
    folder = Path(
        os.environ.get("HEXAHUB_TEST_ARTIFACTS") or REPO / "test-artifacts" / "screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class LiveServer:
    base_url: str
    settings: Settings
    announced: list[str]


class _Announcements(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}"
    migrate.upgrade(database_url)
    # Binding here and handing uvicorn the socket leaves no window for another process
    # to take the port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        host="127.0.0.1",
        port=port,
        secret_key="e2e-secret-key-" + "y" * 32,
    )
    announcements = _Announcements()
    web_log = logging.getLogger("hexahub.web")
    web_log.addHandler(announcements)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_config=None, log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if not thread.is_alive():
                pytest.fail("the HexaHub server thread stopped while starting")
            if time.monotonic() > deadline:
                pytest.fail(f"HexaHub did not answer {base_url}/healthz within 30 s")
            thread.join(timeout=0.05)  # poll interval; returns at once if the thread ends
        yield LiveServer(base_url, settings, announcements.messages)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        web_log.removeHandler(announcements)
        sock.close()


@pytest.mark.e2e
def test_first_run_in_a_real_browser(live_server: LiveServer) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: this required test drives the system Chromium; "
            "install it with `apt-get install chromium`"
        )
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
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
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
            page.wait_for_url(f"{base}/chat")
            expect(page.get_by_role("heading", name="Chat", exact=True)).to_be_visible()

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
