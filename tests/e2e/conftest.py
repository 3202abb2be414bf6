"""Shared pieces of the browser tests: a live HexaHub server and the system Chromium.

The server is the real app served by uvicorn on a free loopback port, with a fresh
SQLite database. Chromium is Debian's `chromium` package, driven by Playwright, which
never downloads a browser here. Screenshots go to $HEXAHUB_TEST_ARTIFACTS (default:
test-artifacts/screenshots).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import uvicorn

from hexahub.app import create_app
from hexahub.core import migrate
from hexahub.settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

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


def artifacts_dir() -> Path:
    folder = Path(
        os.environ.get("HEXAHUB_TEST_ARTIFACTS") or REPO / "test-artifacts" / "screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def launch_chromium(playwright: Playwright) -> Browser:
    """The system Chromium, headless; a clear failure when it is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: this required test drives the system Chromium; "
            "install it with `apt-get install chromium`"
        )
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


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
