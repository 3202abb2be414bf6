"""The chat workspace in a real browser, answered by the shipped local model.

The first administrator signs in, sees the dashboard, starts a chat and watches the answer
arrive piece by piece, switches the model for the next message, writes a prompt template
and uses it from the composer, exports the conversation, and opens a new chat with the
keyboard. With a small repository indexed, a conversation that uses repository context
answers with sources, and a source opens the code view on its lines. Screenshots of the
dashboard, the chat, the templates page and the answer with sources go to the artifacts
folder (see conftest.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hexahub.core import migrate
from hexahub.settings import Settings
from tests.e2e.conftest import LiveServer, artifacts_dir, launch_chromium
from tests.e2e.test_members import ADMIN, create_accounts
from tests.support.live import live_hexahub

SECOND_MODEL = "second-chat"
CONVERSATION_URL = re.compile(r"/workspaces/[^/]+/chat/[0-9a-f-]{36}$")
NEW_CHAT_URL = re.compile(r"/workspaces/[^/]+/chat$")
CODE_URL = re.compile(r"^/workspaces/[^/]+/repos/[^/]+/code/[^#]+#L(\d+)-L(\d+)$")
INDEX_TIMEOUT = 240.0  # seconds: reading the files, then embedding them on the CPU


@pytest.fixture
def chat_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A live HexaHub whose local model has a small context, so answers stay short."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    migrate.upgrade(database_url)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key="e2e-chat-secret-key-" + "z" * 32,
        local_context_size=512,
    )
    with live_hexahub(settings) as base_url:
        yield LiveServer(base_url, settings, [])


def add_second_model(server: LiveServer) -> None:
    """A second model name on the same local deployment, for the model picker."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        login = client.post(
            "/api/auth/login", json={"email": ADMIN["email"], "password": ADMIN["password"]}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        status = client.get("/api/gateway/status", headers=headers).json()
        local = next(row for row in status if row["model"] == "local-chat")
        created = client.post(
            "/api/gateway/models",
            headers=headers,
            json={
                "name": SECOND_MODEL,
                "deployments": [{"provider": local["provider"], "model": local["upstream_model"]}],
            },
        )
        assert created.status_code == 201, created.text


@pytest.mark.e2e
def test_chat_streams_switches_models_uses_templates_and_exports(
    chat_server: LiveServer,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    create_accounts(chat_server)
    add_second_model(chat_server)
    shots = artifacts_dir()
    base = chat_server.base_url
    console_errors: list[str] = []
    lengths: list[int] = []

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.on(
                "console",
                lambda m: console_errors.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda error: console_errors.append(f"page error: {error}"))
            page.expose_function("recordAnswerLength", lambda n: lengths.append(int(n)))

            page.goto(f"{base}/login")
            page.get_by_label("E-mail").fill(ADMIN["email"])
            page.get_by_label("Password").fill(ADMIN["password"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/")
            expect(page.get_by_role("heading", name="Gateway health")).to_be_visible()
            expect(page.get_by_role("heading", name="Recent conversations")).to_be_visible()
            expect(page.get_by_role("img", name="Tokens per day by model")).to_be_visible()

            # Chat from the main navigation: the workspace's new-chat page.
            page.get_by_role("navigation", name="Main").get_by_role("link", name="Chat").click()
            page.wait_for_url(NEW_CHAT_URL)
            expect(page.get_by_role("heading", name="New chat", exact=True)).to_be_visible()
            composer = page.get_by_label("Message", exact=True)

            # Record the answer's length at every change while it is written.
            page.evaluate(
                """() => {
                  const list = document.getElementById("messages");
                  new MutationObserver(() => {
                    const answer = document.getElementById("streaming-answer");
                    if (answer) { window.recordAnswerLength(answer.textContent.length); }
                  }).observe(list, {childList: true, subtree: true, characterData: true});
                }"""
            )
            composer.fill("Write three sentences about the sea.")
            composer.press("Control+Enter")
            page.wait_for_url(CONVERSATION_URL)
            grown = sorted(set(lengths))
            assert len(grown) >= 3 and grown[-1] > grown[0], lengths
            answer = page.locator(".message-assistant").last
            expect(answer.locator(".message-model")).to_have_text(re.compile("local-chat"))
            expect(answer.locator(".message-usage")).to_contain_text("tokens")
            expect(page.locator(".message-user").first).to_contain_text("about the sea")
            expect(page.locator("#conversation-list a[aria-current=page]")).to_be_visible()
            expect(page.get_by_role("button", name="Stop")).to_be_hidden()
            expect(composer).to_be_focused()
            page.screenshot(path=str(shots / "20-chat.png"), full_page=True)

            # Switch the model: the next answer comes from the other name.
            page.locator("#composer").get_by_label("Model", exact=True).select_option(SECOND_MODEL)
            composer.fill("Now say it in one sentence.")
            page.get_by_role("button", name="Send").click()
            expect(page.locator(".message-assistant")).to_have_count(2)
            expect(page.locator(".message-assistant").last.locator(".message-model")).to_have_text(
                re.compile(SECOND_MODEL)
            )
            expect(page.locator("#composer").get_by_label("Model", exact=True)).to_have_value(
                SECOND_MODEL
            )
            conversation_url = page.url

            # Export: the Markdown file holds both questions.
            with page.expect_download() as download_info:
                page.get_by_role("link", name="Export Markdown").click()
            download = download_info.value
            assert download.suggested_filename.endswith(".md")
            exported = Path(download.path()).read_text(encoding="utf-8")
            assert "## You" in exported and "about the sea" in exported
            assert f"## Assistant ({SECOND_MODEL})" in exported

            # A prompt template with two variables.
            page.get_by_role("link", name="Templates").click()
            expect(page.get_by_role("heading", name="Prompt templates")).to_be_visible()
            page.get_by_label("Name", exact=True).fill("Explain")
            page.get_by_label("Description").fill("Explain a topic to someone")
            page.get_by_label("Text", exact=True).fill(
                "Explain {{topic}} to {{audience}} in two sentences."
            )
            page.get_by_role("button", name="Create template").click()
            expect(page.get_by_role("status").first).to_have_text("Template created.")
            page.screenshot(path=str(shots / "21-templates.png"), full_page=True)

            page.goto(conversation_url)
            page.get_by_label("Template").select_option(label="Explain")
            page.get_by_label("topic").fill("DNS")
            page.get_by_label("audience").fill("a child")
            page.get_by_role("button", name="Insert into message").click()
            expect(composer).to_have_value("Explain DNS to a child in two sentences.")
            expect(composer).to_be_focused()

            # Esc stops an answer while it is written; the text so far is kept. A new chat,
            # so that the small context window leaves the answer room to be long.
            page.get_by_role("link", name="New chat").first.click()
            page.wait_for_url(NEW_CHAT_URL)
            composer.fill("Tell a very long story about a dragon and a knight.")
            composer.press("Control+Enter")
            page.wait_for_function(
                "() => (document.getElementById('streaming-answer') || {}).textContent?.length > 10"
            )
            page.keyboard.press("Escape")
            stopped = page.locator(".message-assistant").first
            expect(stopped.locator(".badge")).to_have_text("stopped")
            expect(stopped.locator(".message-body")).not_to_be_empty()
            expect(page.get_by_role("button", name="Stop")).to_be_hidden()

            # Keyboard: "/" searches (as you type), Alt+N opens a new chat.
            page.get_by_role("heading", level=1).click()
            page.keyboard.press("/")
            search = page.get_by_label("Search conversations")
            expect(search).to_be_focused()
            search.fill("zebra")
            expect(page.locator("#conversation-list")).to_contain_text("No conversation matches")
            search.fill("one sentence")  # found in a message, not in a title
            expect(page.locator("#conversation-list li")).to_have_count(1)
            expect(page.locator("#conversation-list li")).to_contain_text("about the sea")
            expect(page.locator("#conversation-count")).to_have_text("1 matching “one sentence”")
            page.keyboard.press("Alt+KeyN")
            page.wait_for_url(NEW_CHAT_URL)
            expect(page.get_by_role("heading", name="New chat", exact=True)).to_be_visible()
            expect(page.locator("#conversation-list li")).to_have_count(2)

            # The dashboard lists the conversation and the usage it made.
            page.goto(f"{base}/")
            recent = page.locator("#recent-conversations")
            expect(recent.get_by_role("link", name=re.compile("about the sea"))).to_be_visible()
            expect(page.locator("#tokens-by-model rect.bar").first).to_be_attached()
            page.screenshot(path=str(shots / "22-dashboard.png"), full_page=True)

            # On a phone the sidebar folds away behind a button.
            phone = browser.new_context(
                viewport={"width": 390, "height": 844}, storage_state=context.storage_state()
            )
            small = phone.new_page()
            small.goto(conversation_url)
            toggle = small.get_by_role("button", name="Conversations")
            expect(toggle).to_have_attribute("aria-expanded", "false")
            expect(small.locator("#conversation-list")).to_be_hidden()
            small.screenshot(path=str(shots / "23-chat-phone.png"), full_page=True)
            toggle.click()
            expect(small.locator("#conversation-list")).to_be_visible()
            phone.close()
        finally:
            browser.close()

    assert console_errors == []


@pytest.mark.e2e
def test_code_blocks_have_a_copy_button_and_citations_are_links(
    chat_server: LiveServer,
) -> None:
    from playwright.sync_api import expect, sync_playwright
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from hexahub.chat.models import Message

    create_accounts(chat_server)
    base = chat_server.base_url
    with httpx.Client(base_url=base, timeout=10) as client:
        login = client.post(
            "/api/auth/login", json={"email": ADMIN["email"], "password": ADMIN["password"]}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        created = client.post("/api/conversations", json={"title": "Code"}, headers=headers)
        assert created.status_code == 201, created.text
        conversation = created.json()
    cite_url = f"/workspaces/{conversation['workspace_id']}/repos/r1/files/app.py#L3"
    answer = "Use this [1]:\n\n```python\nprint('<hello>')\n```\n"
    engine = create_engine(chat_server.settings.database_url.replace("+aiosqlite", ""))
    with Session(engine) as db:
        db.add(Message(conversation_id=conversation["id"], position=0, role="user", content="How?"))
        db.add(
            Message(
                conversation_id=conversation["id"],
                position=1,
                role="assistant",
                content=answer,
                model="local-chat",
                citations=[
                    {
                        "number": 1,
                        "repo_id": "r1",
                        "repo_name": "demo",
                        "path": "app.py",
                        "start_line": 3,
                        "end_line": 9,
                        "url": cite_url,
                    }
                ],
            )
        )
        db.commit()
    engine.dispose()

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
            page = context.new_page()
            page.goto(f"{base}/login")
            page.get_by_label("E-mail").fill(ADMIN["email"])
            page.get_by_label("Password").fill(ADMIN["password"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/")
            page.goto(f"{base}/workspaces/{conversation['workspace_id']}/chat/{conversation['id']}")
            answer_item = page.locator(".message-assistant")
            copy = answer_item.get_by_role("button", name="Copy python code")
            copy.click()
            expect(copy).to_have_text("Copied")
            assert page.evaluate("navigator.clipboard.readText()") == "print('<hello>')\n"
            # The [1] marker and the sources list both lead into the code view.
            expect(answer_item.locator("a.cite")).to_have_attribute("href", cite_url)
            sources = answer_item.locator(".citations a")
            expect(sources).to_have_text("[1] demo/app.py:3-9")
            expect(sources).to_have_attribute("href", cite_url)
        finally:
            browser.close()


SHOP_FILES = {
    "billing.py": '''"""Invoices for the shop."""


def compute_invoice_total(prices: list[float], tax_rate: float) -> float:
    """The invoice total: the sum of the prices plus tax at tax_rate."""
    subtotal = sum(prices)
    return round(subtotal * (1 + tax_rate), 2)


def format_invoice_number(year: int, serial: int) -> str:
    return f"INV-{year}-{serial:05d}"
''',
    "stock.py": '''"""Stock levels."""

STOCK: dict[str, int] = {}


def reserve_item(sku: str, count: int) -> bool:
    """Take `count` items of `sku` out of stock; False when there are not enough."""
    if STOCK.get(sku, 0) < count:
        return False
    STOCK[sku] -= count
    return True
''',
    "README.md": "# shop\n\nA tiny shop: invoices (billing.py) and stock (stock.py).\n",
}


def add_indexed_repository(server: LiveServer, folder: Path) -> dict[str, str]:
    """A repository from `folder`, added and indexed through the API as the installation
    administrator; waits (bounded) until it is ready."""
    folder.mkdir()
    for name, text in SHOP_FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        login = client.post(
            "/api/auth/login", json={"email": ADMIN["email"], "password": ADMIN["password"]}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        created = client.post(
            "/api/repos",
            headers=headers,
            json={"name": "shop", "source": "path", "location": str(folder)},
        )
        assert created.status_code == 201, created.text
        repo: dict[str, str] = created.json()
        deadline = time.monotonic() + INDEX_TIMEOUT
        while repo["state"] != "ready":
            assert repo["state"] != "failed", repo
            assert time.monotonic() < deadline, f"not indexed in {INDEX_TIMEOUT:.0f} s: {repo}"
            time.sleep(0.5)  # poll interval
            repo = client.get(f"/api/repos/{repo['id']}", headers=headers).json()
        return repo


@pytest.mark.e2e
def test_an_answer_from_repository_context_cites_lines_of_the_code_view(
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    database_url = f"sqlite+aiosqlite:///{tmp_path / 'context.db'}"
    migrate.upgrade(database_url)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key="e2e-chat-context-key-" + "q" * 32,
        # Room for the passages in front of the question.
        local_context_size=2048,
    )
    with live_hexahub(settings) as base:
        server = LiveServer(base, settings, [])
        create_accounts(server)
        repo = add_indexed_repository(server, tmp_path / "shop")
        console_errors: list[str] = []
        lengths: list[int] = []
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                page.set_default_timeout(120_000)
                page.on(
                    "console",
                    lambda m: console_errors.append(m.text) if m.type == "error" else None,
                )
                page.on("pageerror", lambda error: console_errors.append(f"page error: {error}"))
                page.expose_function("recordAnswerLength", lambda n: lengths.append(int(n)))
                page.goto(f"{base}/login")
                page.get_by_label("E-mail").fill(ADMIN["email"])
                page.get_by_label("Password").fill(ADMIN["password"])
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(f"{base}/")
                page.goto(f"{base}/workspaces/{repo['workspace_id']}/chat")

                # Repository context on, for the shop repository alone.
                page.get_by_text("Options", exact=True).click()
                page.get_by_label("Use repository context").check()
                page.locator("#composer-repos").get_by_label("shop").check()
                page.evaluate(
                    """() => {
                      const list = document.getElementById("messages");
                      new MutationObserver(() => {
                        const answer = document.getElementById("streaming-answer");
                        if (answer) { window.recordAnswerLength(answer.textContent.length); }
                      }).observe(list, {childList: true, subtree: true, characterData: true});
                    }"""
                )
                composer = page.get_by_label("Message", exact=True)
                composer.fill("What does compute_invoice_total return?")
                composer.press("Control+Enter")
                page.wait_for_url(CONVERSATION_URL)
                assert len(set(lengths)) >= 2, lengths  # the answer arrived in pieces

                answer = page.locator(".message-assistant").last
                expect(answer.locator(".message-body")).not_to_be_empty()
                sources = answer.locator(".citations a")
                expect(answer.get_by_role("heading", name="Sources")).to_be_visible()
                expect(sources.first).to_be_visible()
                billing = answer.locator(".citations a", has_text="shop/billing.py")
                expect(billing.first).to_be_visible()
                href = billing.first.get_attribute("href") or ""
                lines = CODE_URL.match(href)
                assert lines, href
                assert f"/repos/{repo['id']}/code/billing.py#L" in href
                page.screenshot(path=str(artifacts_dir() / "24-chat-context.png"), full_page=True)

                # The source opens the code view with its lines marked.
                billing.first.click()
                page.wait_for_url(re.compile(re.escape(href) + "$"))
                start, end = int(lines.group(1)), int(lines.group(2))
                code = page.locator("[data-code-view]")
                expect(code).to_contain_text("def compute_invoice_total")
                expect(code.locator(f"#L{start}")).to_have_class(re.compile(r"\bhl\b"))
                expect(code.locator(".cl.hl")).to_have_count(end - start + 1)
            finally:
                browser.close()
    assert console_errors == []
