"""`hexahub user` and `hexahub key` against a real database."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from hexahub.cli import app
from hexahub.core.db import Database
from hexahub.identity import keys
from hexahub.settings import Settings

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Settings:
    monkeypatch.setenv("HEXAHUB_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("HEXAHUB_DATA_DIR", str(settings.data_dir))
    return settings


def invoke(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), input=stdin)


def authenticate(settings: Settings, secret: str) -> str:
    async def check() -> str:
        database = Database(settings)
        try:
            async with database.sessions() as db:
                user, _ = await keys.authenticate_key(db, secret)
                return user.email
        finally:
            await database.dispose()

    return asyncio.run(check())


def test_user_and_key_lifecycle(cli_env: Settings) -> None:
    first = invoke("user", "create", "Admin@Example.org", stdin="supersecret1\nsupersecret1\n")
    assert first.exit_code == 0, first.output
    assert "administrator admin@example.org" in first.output
    second = invoke("user", "create", "bob@example.org", stdin="supersecret2\nsupersecret2\n")
    assert second.exit_code == 0, second.output
    listed = invoke("user", "list")
    assert "admin@example.org" in listed.output and "bob@example.org" in listed.output

    made = invoke(
        "key",
        "create",
        "--user",
        "admin@example.org",
        "--name",
        "ci",
        "--scope",
        "read",
        "--workspace",
        "default",
    )
    assert made.exit_code == 0, made.output
    secret = next(line for line in made.output.splitlines() if line.startswith("hh_"))
    assert authenticate(cli_env, secret) == "admin@example.org"
    prefix = "_".join(secret.split("_")[:2])
    assert prefix in invoke("key", "list").output
    assert secret not in invoke("key", "list").output

    revoked = invoke("key", "revoke", prefix)
    assert revoked.exit_code == 0, revoked.output
    with pytest.raises(Exception, match="revoked"):
        authenticate(cli_env, secret)


def test_disable_and_bad_input(cli_env: Settings) -> None:
    invoke("user", "create", "admin@example.org", stdin="supersecret1\nsupersecret1\n")
    bad = invoke("user", "create", "not-an-email", stdin="supersecret1\nsupersecret1\n")
    assert bad.exit_code == 1
    assert "email" in bad.output
    short = invoke("user", "create", "c@example.org", stdin="short\nshort\n")
    assert short.exit_code == 1 and "password" in short.output
    missing = invoke("user", "disable", "nobody@example.org")
    assert missing.exit_code == 1 and "no account" in missing.output
    outsider_key = invoke(
        "key", "create", "--user", "admin@example.org", "--name", "x", "--scope", "root"
    )
    assert outsider_key.exit_code == 1 and "unknown scope" in outsider_key.output
    disabled = invoke("user", "disable", "admin@example.org")
    assert disabled.exit_code == 0
    assert "disabled" in invoke("user", "list").output
