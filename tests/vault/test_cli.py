"""`hexahub vault ...` and `hexahub secret ...` against a real database."""

from __future__ import annotations

import asyncio
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hexahub.cli import app
from hexahub.core.db import Database
from hexahub.identity import audit, workspaces
from hexahub.identity import service as identity_service
from hexahub.identity.models import Role
from hexahub.settings import Settings, get_settings
from hexahub.vault import keyring
from tests.vault.conftest import PASSWORD, canary

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Settings:
    monkeypatch.setenv("HEXAHUB_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("HEXAHUB_DATA_DIR", str(settings.data_dir))
    return settings


def invoke(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), input=stdin)


def setup_people(settings: Settings) -> str:
    """An owner with the Default workspace and a viewer in it; the workspace's slug."""

    async def work() -> str:
        database = Database(settings)
        try:
            async with database.sessions() as db:
                owner = await identity_service.create_first_admin(
                    db, email="owner@example.org", password=PASSWORD
                )
                workspace = (await workspaces.workspaces_of(db, owner.id))[0][0]
                viewer = await identity_service.create_user(
                    db, email="viewer@example.org", password=PASSWORD
                )
                await workspaces.add_member(
                    db, workspace, viewer, Role.viewer, actor_role=Role.owner
                )
                await db.commit()
                return workspace.slug
        finally:
            await database.dispose()

    return asyncio.run(work())


def audited(settings: Settings, action: str) -> list[audit.AuditEvent]:
    async def work() -> list[audit.AuditEvent]:
        database = Database(settings)
        try:
            async with database.sessions() as db:
                return await audit.query(db, action=action)
        finally:
            await database.dispose()

    return asyncio.run(work())


def test_vault_init_creates_a_private_key_and_says_how_to_back_it_up(cli_env: Settings) -> None:
    made = invoke("vault", "init")
    assert made.exit_code == 0, made.output
    path = keyring.key_file_path(cli_env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "Back it up now" in made.output and str(path) in made.output
    key_id = keyring.Keyring.from_file(path).active.id
    again = invoke("vault", "init")
    assert again.exit_code == 0 and "exists already" in again.output and key_id in again.output
    assert keyring.Keyring.from_file(path).active.id == key_id
    printed = invoke("vault", "init", "--print")
    assert printed.exit_code == 0
    key = printed.stdout.strip()
    assert keyring.MasterKey.decode(key).id != key_id


def test_secret_commands_round_trip(cli_env: Settings, tmp_path: Path) -> None:
    slug = setup_people(cli_env)
    value = canary()
    put = invoke("secret", "put", slug, "infra/pve", "token=-", "--tag", "pve", stdin=value)
    assert put.exit_code == 0, put.output
    assert "version 1" in put.output and value not in put.output
    # Without --reveal, `get` shows names only.
    hidden = invoke("secret", "get", slug, "infra/pve")
    assert hidden.exit_code == 0 and "token" in hidden.output and value not in hidden.output
    assert hidden.stdout == ""
    shown = invoke("secret", "get", slug, "infra/pve", "--reveal")
    assert shown.exit_code == 0 and shown.stdout == value + "\n"
    assert audited(cli_env, "secret.read")[0].actor.startswith("cli:")
    # Prompted, hidden input; a second key; then --key picks one.
    prompted = invoke("secret", "put", slug, "infra/pve", "user", "--merge", stdin="root@pam\n")
    assert prompted.exit_code == 0, prompted.output
    one = invoke("secret", "get", slug, "infra/pve", "--reveal", "--key", "user")
    assert one.stdout == "root@pam\n"
    both = invoke("secret", "get", slug, "infra/pve", "--reveal")
    assert both.stdout == f"token={value}\nuser=root@pam\n"
    listed = invoke("secret", "list", slug)
    assert "infra/pve" in listed.output and "pve" in listed.output and value not in listed.output
    history = invoke("secret", "history", slug, "infra/pve")
    assert "2 (current)" in history.output and "token, user" in history.output
    conflict = invoke("secret", "put", slug, "infra/pve", "token=x", "--cas", "1")
    assert conflict.exit_code == 1 and "check-and-set failed" in conflict.output
    assert "shell history" in conflict.output  # a value on the command line is warned about
    removed = invoke("secret", "rm", slug, "infra/pve")
    assert removed.exit_code == 0
    assert invoke("secret", "get", slug, "infra/pve", "--reveal").exit_code == 1
    assert invoke("secret", "undelete", slug, "infra/pve").exit_code == 0
    assert invoke("secret", "get", slug, "infra/pve", "--reveal", "--key", "user").exit_code == 0
    assert invoke("secret", "rm", slug, "infra/pve", "--destroy").exit_code == 0
    assert "no secret" in invoke("secret", "history", slug, "infra/pve").output


def test_acting_as_a_person_applies_their_role(cli_env: Settings) -> None:
    slug = setup_people(cli_env)
    assert invoke("secret", "put", slug, "apps/x", "v=-", stdin="secret-x").exit_code == 0
    refused = invoke("secret", "get", slug, "apps/x", "--reveal", "--as", "viewer@example.org")
    assert refused.exit_code == 1 and "no vault policy" in refused.output
    assert refused.stdout == ""
    denied = audited(cli_env, "secret.denied")
    assert denied[0].actor.startswith("viewer@example.org via cli:")
    owner = invoke("secret", "get", slug, "apps/x", "--reveal", "--as", "owner@example.org")
    assert owner.exit_code == 0 and owner.stdout == "secret-x\n"
    nobody = invoke("secret", "list", slug, "--as", "nobody@example.org")
    assert nobody.exit_code == 1 and "no account" in nobody.output


def test_import_warns_about_files_in_git_and_export_writes_a_private_file(
    cli_env: Settings, tmp_path: Path
) -> None:
    slug = setup_people(cli_env)
    repo = tmp_path / "repo"
    repo.mkdir()
    env_file = repo / ".env"
    env_file.write_text("DB_PASSWORD=hunter2\nAPI_TOKEN='abc def'\n")
    git = shutil.which("git")
    if git is not None:
        for command in (
            ["init", "-q"],
            ["add", ".env"],
            ["-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", "oops"],
            ["rm", "-q", "--cached", ".env"],
            ["-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", "fix"],
        ):
            subprocess.run([git, "-C", str(repo), *command], check=True, capture_output=True)
    imported = invoke("secret", "import", slug, "apps/web", str(env_file))
    assert imported.exit_code == 0, imported.output
    assert "Imported 2 variable(s)" in imported.output and "hunter2" not in imported.output
    if git is not None:  # untracked now, but still in history: that counts
        assert "git repository's index or history" in imported.output
    out = tmp_path / "out.env"
    exported = invoke("secret", "export", slug, "apps/web", "-o", str(out))
    assert exported.exit_code == 0, exported.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text() == 'API_TOKEN="abc def"\nDB_PASSWORD=hunter2\n'


def test_rotate_master_rewraps_everything_and_status_shows_it(cli_env: Settings) -> None:
    slug = setup_people(cli_env)
    values = [canary(str(i)) for i in range(5)]
    for number, value in enumerate(values):
        made = invoke("secret", "put", slug, f"s/{number % 2}", "v=-", stdin=value)
        assert made.exit_code == 0, made.output
    old_id = keyring.Keyring.from_file(keyring.key_file_path(cli_env)).active.id
    rotated = invoke("vault", "rotate-master", "--batch", "2")
    assert rotated.exit_code == 0, rotated.output
    assert "Re-wrapped 5 data key(s)" in rotated.output
    keyring.forget_keyrings()
    ring = keyring.Keyring.from_file(keyring.key_file_path(cli_env))
    assert ring.ids[1] == old_id and ring.active.id != old_id
    status = invoke("vault", "status")
    assert status.exit_code == 0, status.output
    assert f"{ring.active.id}" in status.output and "active" in status.output
    assert invoke("vault", "rotate-master", "--no-new-key", "--drop-old").exit_code == 0
    keyring.forget_keyrings()
    assert keyring.Keyring.from_file(keyring.key_file_path(cli_env)).ids == [ring.active.id]
    for number in range(2):
        history = invoke("secret", "history", slug, f"s/{number}")
        versions = [line for line in history.output.splitlines() if "cli:" in line]
        for version in range(1, len(versions) + 1):
            shown = invoke(
                "secret", "get", slug, f"s/{number}", "--version", str(version), "--reveal"
            )
            assert shown.exit_code == 0, shown.output
            assert shown.stdout.strip() == values[(version - 1) * 2 + number]
    event = audited(cli_env, "vault.master_key_rotated")
    assert len(event) == 2 and event[1].details["rewrapped"] == 5


def test_status_fails_when_a_needed_key_is_missing(
    cli_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    slug = setup_people(cli_env)
    assert invoke("secret", "put", slug, "a", "v=-", stdin="x").exit_code == 0
    other = keyring.MasterKey.generate()
    monkeypatch.setenv("HEXAHUB_VAULT_MASTER_KEY", other.encoded())
    get_settings.cache_clear()
    keyring.forget_keyrings()
    status = invoke("vault", "status")
    assert status.exit_code == 1 and "MISSING" in status.output
    read = invoke("secret", "get", slug, "a", "--reveal")
    assert read.exit_code == 1 and "wrong key" in read.output and read.stdout == ""
