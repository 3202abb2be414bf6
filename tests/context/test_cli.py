"""`hexahub repo ...` and `hexahub search` against a real database and index."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hexahub.cli import app
from hexahub.settings import Settings
from tests.context.git_server import commit_all, git
from tests.context.helpers import GITHUB_TOKEN, STRIPE_ENV_KEY, write_project

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


def test_repo_scan_finds_a_credential_committed_then_deleted(
    cli_env: Settings, tmp_path: Path
) -> None:
    made = invoke("user", "create", "admin@example.org", stdin="supersecret1\nsupersecret1\n")
    assert made.exit_code == 0, made.output
    root = tmp_path / "hist"
    root.mkdir()
    (root / "app.py").write_text("def main():\n    return 0\n")
    (root / "config.py").write_text(f'import os\nGITHUB_TOKEN = "{GITHUB_TOKEN}"\n')
    git("init", "-q", "-b", "main", cwd=root)
    leaked = commit_all(root, "add config")
    (root / "config.py").unlink()
    (root / ".env").write_text(f"STRIPE_KEY={STRIPE_ENV_KEY}\n")
    commit_all(root, "move the token out")

    added = invoke("repo", "add", "default", "hist", str(root), "--no-vectors")
    assert added.exit_code == 0, added.output

    # The current tree: only the .env file.
    tree = invoke("repo", "scan", "default", "hist")
    assert tree.exit_code == 0, tree.output
    rows = [line.split("\t") for line in tree.stdout.splitlines()]
    assert rows == [["open", ".env:1", "Stripe Access Key", "tree", rows[0][4]]]
    assert "Scanned 2 files of hist: 1 open finding." in tree.stderr

    # With the history: the token that was committed, then deleted, and by which commit.
    past = invoke("repo", "scan", "default", "hist", "--history")
    assert past.exit_code == 0, past.output
    rows = [line.split("\t") for line in past.stdout.splitlines()]
    assert ["open", "config.py:2", "GitHub Token", "history", leaked[:12]] in rows
    assert ["open", ".env:1", "Stripe Access Key", "tree+history", rows[0][4]] in rows
    assert "and 2 commits" in past.stderr
    for value in (GITHUB_TOKEN, STRIPE_ENV_KEY):
        assert value not in past.output

    missing = invoke("repo", "scan", "default", "nope")
    assert missing.exit_code == 1 and "no repository named 'nope'" in missing.output


def test_repo_scan_history_needs_a_git_repository(cli_env: Settings, tmp_path: Path) -> None:
    made = invoke("user", "create", "admin@example.org", stdin="supersecret1\nsupersecret1\n")
    assert made.exit_code == 0, made.output
    root = write_project(tmp_path / "plain")
    assert invoke("repo", "add", "default", "plain", str(root), "--no-vectors").exit_code == 0
    refused = invoke("repo", "scan", "default", "plain", "--history")
    assert refused.exit_code == 1
    assert "not a git repository" in refused.output
