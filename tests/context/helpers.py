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


# --- credentials for the secret-scanning tests ------------------------------------------
# Built from pieces at run time, so this file itself holds nothing a scanner would flag.

STRIPE_KEY = "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc" + "Qx81ZtWm"
STRIPE_ENV_KEY = "sk_" + "live_" + "51HbX2pLq9RtYvW0aZc3Ke7N" + "m4Tg"
AWS_KEY_ID = "AKIA" + "Q3ZT7W2XKDJ5LMNB"
GITHUB_TOKEN = "ghp_" + "Zq8Xr2Lm5Vt9Wc3Nb7Hd1Kf4Py6Js0Ga2Re5"
PRIVATE_KEY = (
    "-----BEGIN OPENSSH " + "PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDq8bV0Yy2ZbQm3P4yKXcK8p9zq2jJ1XxGm8t7L0r5sYQAAAJi0kK9qtJCv\n"
    "-----END OPENSSH " + "PRIVATE KEY-----\n"
)
LEAKY_VALUES = (STRIPE_KEY, STRIPE_ENV_KEY, AWS_KEY_ID)

PAYMENTS_SOURCE = f'''\
"""Payments through the card processor."""

STRIPE_API_KEY = "{STRIPE_KEY}"


def charge_customer(amount, api_key="{STRIPE_KEY}"):
    """Charge a customer's card for an invoice amount."""
    return {{"amount": amount, "key": api_key}}


AWS_ACCESS_KEY_ID = "{AWS_KEY_ID}"
'''


def write_leaky_project(root: Path) -> Path:
    """A small repository that committed credentials: a .env file, an SSH key, and a
    Python module with a Stripe key (twice) and an AWS key id."""
    (root / "app").mkdir(parents=True)
    (root / "app" / "payments.py").write_text(PAYMENTS_SOURCE)
    (root / "app" / "refunds.py").write_text(
        "def refund_invoice(invoice):\n    return invoice.total * -1\n"
    )
    (root / ".env").write_text(f"STRIPE_KEY={STRIPE_ENV_KEY}\nDEBUG=true\n")
    (root / "deploy").mkdir()
    (root / "deploy" / "id_ed25519").write_text(PRIVATE_KEY)
    return root
