"""`hexahub repo ...` and `hexahub search` against a real database and index."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hexahub.cli import app
from hexahub.settings import Settings
from tests.context.helpers import write_project

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Settings:
    monkeypatch.setenv("HEXAHUB_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("HEXAHUB_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("HEXAHUB_SECRET_KEY", settings.resolved_secret_key())
    return settings


def invoke(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), input=stdin)


def test_repo_commands(cli_env: Settings, tmp_path: Path) -> None:
    made = invoke("user", "create", "admin@example.org", stdin="supersecret1\nsupersecret1\n")
    assert made.exit_code == 0, made.output
    root = write_project(tmp_path / "project")

    added = invoke("repo", "add", "default", "demo", str(root))
    assert added.exit_code == 0, added.output
    assert "Added demo" in added.output
    assert "chunks" in added.output and "(ready)" in added.output

    listed = invoke("repo", "list", "default")
    assert listed.exit_code == 0 and "demo" in listed.output and "ready" in listed.output

    found = invoke("search", "user name", "-w", "default", "--mode", "text")
    assert found.exit_code == 0, found.output
    assert "demo/web/session.js:1-" in found.output and "getUserName" in found.output

    symbols = invoke("search", "total_with_tax", "-w", "default", "--symbols")
    assert symbols.exit_code == 0 and "demo/src/billing.py" in symbols.output
    assert "InvoiceCalculator.total_with_tax" in symbols.output

    (root / "retry.go").unlink()
    again = invoke("repo", "index", "default", "demo", "--no-vectors")
    assert again.exit_code == 0, again.output
    gone = invoke("search", "ExponentialBackoff", "-w", "default", "--symbols")
    assert "retry.go" not in gone.output

    missing = invoke("repo", "index", "default", "nope")
    assert missing.exit_code == 1 and "no repository named 'nope'" in missing.output

    removed = invoke("repo", "remove", "default", "demo", "--yes")
    assert removed.exit_code == 0, removed.output
    assert "demo" not in invoke("repo", "list", "default").output
