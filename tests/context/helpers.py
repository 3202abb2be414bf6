"""Shared by the code-context tests: a small project on disk and waiting for an index."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

PYTHON_SOURCE = '''\
"""Billing helpers."""

import decimal

TAX_RATE = decimal.Decimal("0.2")


class InvoiceCalculator:
    """Adds up invoice lines."""

    def __init__(self, currency: str) -> None:
        self.currency = currency

    def total_with_tax(self, lines: list[decimal.Decimal]) -> decimal.Decimal:
        subtotal = sum(lines, decimal.Decimal(0))
        return subtotal * (1 + TAX_RATE)


def parse_money_amount(text: str) -> decimal.Decimal:
    cleaned = text.replace(",", "").strip()
    return decimal.Decimal(cleaned)
'''

JS_SOURCE = """\
export function getUserName(user) {
  return user.firstName + " " + user.lastName;
}

export class SessionStore {
  constructor() {
    this.sessions = new Map();
  }

  rememberSession(id, data) {
    this.sessions.set(id, data);
  }
}
"""

GO_SOURCE = """\
package retry

// Backoff waits longer after every failed attempt.
func ExponentialBackoff(attempt int) int {
	return 1 << attempt
}
"""


def write_project(root: Path) -> Path:
    """A tiny repository with code, ignored files and files that must be skipped."""
    (root / "src").mkdir(parents=True)
    (root / "src" / "billing.py").write_text(PYTHON_SOURCE)
    (root / "web").mkdir()
    (root / "web" / "session.js").write_text(JS_SOURCE)
    (root / "retry.go").write_text(GO_SOURCE)
    (root / "README.md").write_text("# Demo\n\n## Deploying\n\nRun the deploy script.\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00" + bytes(range(256)))
    (root / "web" / "app.min.js").write_text("var a=1;" * 400 + "\n")
    (root / ".gitignore").write_text("secrets.txt\nbuild/\n")
    (root / "secrets.txt").write_text("def leaked_function(): pass\n")
    (root / "build").mkdir()
    (root / "build" / "generated.py").write_text("def built_function(): pass\n")
    (root / "node_modules" / "dep").mkdir(parents=True)
    (root / "node_modules" / "dep" / "index.js").write_text("function depFunction() {}\n")
    return root


FINAL_STATES = ("ready", "failed")


async def wait_for_index(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    repo_id: str,
    *,
    states: tuple[str, ...] = FINAL_STATES,
    limit: float = 120.0,
) -> dict[str, Any]:
    """Poll the repository until its state is one of `states` (bounded in time)."""
    deadline = time.monotonic() + limit
    while True:
        response = await client.get(f"/api/repos/{repo_id}", headers=headers)
        assert response.status_code == 200, response.text
        repo: dict[str, Any] = response.json()
        if repo["state"] in states:
            return repo
        assert time.monotonic() < deadline, f"index did not finish in time: {repo}"
        await asyncio.sleep(0.05)


async def mark_older_format(store: Any) -> None:
    """Make an open index store look as if an older HexaHub had written it."""
    import sqlean

    from hexahub.context.stores import PostgresStore, SqliteStore, common

    if isinstance(store, SqliteStore):
        conn = sqlean.connect(str(store.path))
        try:
            conn.execute(f"PRAGMA user_version = {common.INDEX_FORMAT - 1}")
        finally:
            conn.close()
    else:
        assert isinstance(store, PostgresStore)
        await store.pool.execute("UPDATE ctx.meta SET format = $1", common.INDEX_FORMAT - 1)
