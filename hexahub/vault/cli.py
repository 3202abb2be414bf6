"""`hexahub vault ...` (master keys) and `hexahub secret ...` (secrets) from a shell.

Secret commands act as HexaHub itself, audited as `cli:<login name>` (whoever runs them can
read the master key file anyway), or with `--as EMAIL` as that person, under their role and
the workspace's path policies. Values are printed only by `get --reveal` and `export`, only
to stdout (or a 0600 file); everything else goes to stderr or shows names alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core.clitools import actor_label, command_settings, with_database
from hexahub.core.db import Database, utcnow
from hexahub.core.errors import HexaHubError, NotFound
from hexahub.identity import audit, workspaces
from hexahub.identity import service as identity_service
from hexahub.settings import Settings
from hexahub.vault import dotenv, keyring, service
from hexahub.vault.service import Caller

vault_app = typer.Typer(
    help="The vault's master keys: create, inspect, rotate.", no_args_is_help=True
)
secret_app = typer.Typer(help="Read and write secrets in the vault.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")

WorkspaceArg = Annotated[str, typer.Argument(help="Workspace slug or id.")]
PathArg = Annotated[str, typer.Argument(help="Secret path, e.g. infra/proxmox/api-token.")]
AsOption = Annotated[
    str | None,
    typer.Option("--as", help="Act as this person (their role and the path policies apply)."),
]


async def _caller(db: AsyncSession, workspace_id: str, as_email: str | None) -> Caller:
    if as_email is None:
        return Caller.system(actor_label())
    user = await identity_service.find_user_by_email(db, as_email)
    if user is None:
        raise NotFound(f"no account with the e-mail {as_email.strip().lower()}")
    return await service.caller_for_user(db, user, workspace_id, via=actor_label())


_DURATION = re.compile(r"^(\d+)\s*([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _parse_duration(text: str) -> timedelta:
    found = _DURATION.match(text.strip().lower())
    if not found or int(found.group(1)) == 0:
        raise typer.BadParameter("use a number with s, m, h, d or w, e.g. 90m, 24h or 30d")
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])


def _parse_date(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter("use an ISO date such as 2026-12-31") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=utcnow().tzinfo)


def _read_item(item: str, *, stdin_used: list[bool]) -> tuple[str, str]:
    """KEY (prompted, hidden), KEY=- (stdin), KEY=@file, or KEY=value (warned about)."""
    name, sep, value = item.partition("=")
    try:
        service.check_key_name(name)
    except HexaHubError as exc:
        raise typer.BadParameter(exc.message) from None
    if not sep:
        return name, typer.prompt(f"Value of {name}", hide_input=True)
    if value == "-":
        if stdin_used[0]:
            raise typer.BadParameter("only one KEY=- can read standard input")
        stdin_used[0] = True
        return name, sys.stdin.read().removesuffix("\n")
    if value.startswith("@"):
        try:
            return name, Path(value[1:]).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {value[1:]}: {exc.strerror}") from None
    err.print(
        f"[yellow]The value of {name} was given on the command line, where shell history and "
        "process lists can see it; next time give KEY alone (prompted), KEY=- (stdin) or "
        "KEY=@file.[/yellow]",
        highlight=False,
    )
    return name, value


# --- hexahub vault ...  --------------------------------------------------------------


@vault_app.command("init")
def vault_init(
    print_only: Annotated[
        bool,
        typer.Option(
            "--print", help="Print a new key for HEXAHUB_VAULT_MASTER_KEY; write nothing."
        ),
    ] = False,
) -> None:
    """Create the master key file (mode 0600) and say how to back it up."""
    if print_only:
        sys.stdout.write(keyring.MasterKey.generate().encoded() + "\n")
        err.print(
            f"Put this key first in {keyring.ENV_NAME} on every HexaHub process (keep any older "
            "keys after it, comma separated), and keep a copy in your password manager.",
            highlight=False,
        )
        return
    settings = command_settings()
    if settings.vault_master_key is not None and settings.vault_master_key.get_secret_value():
        console.print(
            f"The master keys come from {keyring.ENV_NAME}; there is no file to create.",
            highlight=False,
        )
        return

    async def work(database: Database, settings: Settings) -> tuple[Path, Any]:
        path = keyring.key_file_path(settings)
        if not path.exists():
            try:
                async with database.sessions() as db:
                    stored = await keyring.stored_key_count(db)
            except SQLAlchemyError:  # no schema yet: nothing can be stored either
                stored = 0
            if stored:
                raise keyring.VaultLocked(
                    f"the vault holds {stored} encrypted secret version(s) but {path} is "
                    "missing: restore it from your backup; a new key could not read them"
                )
        return keyring.ensure_key_file(settings)

    path, created = with_database(work)
    if created is None:
        existing = keyring.Keyring.from_file(path)
        console.print(
            f"{path} exists already (keys {', '.join(existing.ids)}); nothing was changed.",
            highlight=False,
        )
        return
    console.print(f"Created vault master key {created.id} in {path} (mode 0600).", highlight=False)
    console.print(
        "[bold]Back it up now[/bold], away from this machine: copy the file's contents into a "
        "password manager or onto offline media. Without it the vault's secrets cannot be "
        "read; with it and a copy of the database anyone can read them, so keep it apart "
        f"from database backups. To print it: cat {path}",
        highlight=False,
    )


@vault_app.command("status")
def vault_status() -> None:
    """Where the master keys come from, and which key wraps how many versions."""

    async def work(database: Database, settings: Settings) -> service.VaultStatus:
        async with database.sessions() as db:
            return await service.status(db, settings)

    found = with_database(work)
    console.print(f"Master keys from {found.source}", highlight=False)
    if found.file_private is False:
        console.print(
            f"[red]The key file can be read by other users: chmod 600 {found.source}[/red]",
            highlight=False,
        )
    table = Table("key id", "role", "versions wrapped")
    for key_id in found.key_ids:
        role = "active (wraps new keys)" if key_id == found.active_id else "older (reads only)"
        table.add_row(key_id, role, str(found.versions_by_key.get(key_id, 0)))
    for key_id in found.missing:
        table.add_row(key_id, "[red]MISSING[/red]", str(found.versions_by_key[key_id]))
    console.print(table)
    console.print(f"{found.secrets} secret(s).")
    if found.missing:
        err.print(
            "[red]Some versions need keys that are not loaded: restore them from your backup.[/red]"
        )
        raise typer.Exit(1)


@vault_app.command("rotate-master")
def vault_rotate_master(
    batch: Annotated[int, typer.Option(min=1, max=10000, help="Data keys per transaction.")] = 500,
    new_key: Annotated[
        bool,
        typer.Option(
            "--new-key/--no-new-key",
            help="Add a new master key first (--no-new-key only finishes re-wrapping).",
        ),
    ] = True,
    drop_old: Annotated[
        bool, typer.Option(help="Afterwards, remove keys that no longer wrap anything.")
    ] = False,
) -> None:
    """Add a new master key and re-wrap every data key under it, while HexaHub runs."""

    async def work(database: Database, settings: Settings) -> None:
        async with database.sessions() as db:
            ring = await keyring.open_keyring(db, settings)
        added = None
        if new_key and ring.path is not None:
            added = service.add_master_key(settings, ring)
            console.print(f"Added master key {added.id} to {ring.path}.", highlight=False)
        async with database.sessions() as db:
            total = await service.count_to_rewrap(db, ring)
        with Progress(
            TextColumn("Re-wrapping data keys"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
        ) as progress:
            task = progress.add_task("rewrap", total=total)

            def advance(count: int) -> None:
                progress.update(task, advance=count)

            report = await service.rewrap_all(
                database.sessions, ring, batch=batch, on_batch=advance
            )
        dropped: list[str] = []
        async with database.sessions() as db:
            if drop_old and not report.failed:
                dropped = await service.retire_old_keys(db, ring)
            audit.record(
                db,
                "vault.master_key_rotated",
                actor_label=actor_label(),
                target_type="vault",
                details={
                    "new_key_id": added.id if added else None,
                    "active_key_id": ring.active.id,
                    "rewrapped": report.rewrapped,
                    "failed": len(report.failed),
                    "dropped_key_ids": dropped,
                },
            )
            await db.commit()
        summary = f"Re-wrapped {report.rewrapped} data key(s)"
        if not report.failed:
            summary += f"; every version is now under master key {ring.active.id}"
        console.print(summary + ".", highlight=False)
        if dropped:
            console.print(f"Removed old key(s) {', '.join(dropped)} from {ring.path}.")
        elif not drop_old and len(ring.keys) > 1:
            console.print(
                "Older keys stay in the keyring; `hexahub vault rotate-master --no-new-key "
                "--drop-old` removes them once nothing needs them.",
                highlight=False,
            )
        if report.failed:
            for line in report.failed:
                err.print(f"[red]could not re-wrap {line}[/red]", highlight=False)
            raise typer.Exit(1)

    with_database(work)


# --- hexahub secret ...  -------------------------------------------------------------


@secret_app.command("put")
def secret_put(
    workspace: WorkspaceArg,
    path: PathArg,
    items: Annotated[
        list[str] | None,
        typer.Argument(
            help="KEY (asked for, hidden), KEY=- (stdin), KEY=@file or KEY=value. "
            "Default: one key named `value`, asked for."
        ),
    ] = None,
    cas: Annotated[int | None, typer.Option(help="Only if the current version is this.")] = None,
    merge: Annotated[bool, typer.Option(help="Keep the secret's other keys.")] = False,
    expires_in: Annotated[str | None, typer.Option(help="e.g. 24h or 30d")] = None,
    owner: Annotated[str | None, typer.Option(help="Who answers for it.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag (repeatable).")] = None,
    rotate_by: Annotated[
        str | None, typer.Option(help="Rotation due date, e.g. 2026-12-31")
    ] = None,
    as_email: AsOption = None,
) -> None:
    """Write a new version of a secret."""
    stdin_used = [False]
    data = dict(_read_item(i, stdin_used=stdin_used) for i in (items or [service.DEFAULT_KEY]))
    expires_at = utcnow() + _parse_duration(expires_in) if expires_in else None
    rotate = _parse_date(rotate_by) if rotate_by else None

    async def work(database: Database, settings: Settings) -> Any:
        async with database.sessions() as db:
            found = await workspaces.find_workspace(db, workspace)
            caller = await _caller(db, found.id, as_email)
            return await service.write_secret(
                db,
                settings,
                caller,
                found.id,
                path,
                dict(data),
                cas=cas,
                merge=merge,
                expires_at=expires_at,
                owner=owner,
                tags=tag,
                rotate_by=rotate,
            )

    row = with_database(work)
    err.print(
        f"Wrote version {row.version} of {path.strip('/')} ({', '.join(row.key_names)}).",
        highlight=False,
    )


@secret_app.command("get")
def secret_get(
    workspace: WorkspaceArg,
    path: PathArg,
    key: Annotated[str | None, typer.Option(help="Only this key's value.")] = None,
    version: Annotated[int | None, typer.Option(min=1, help="Default: the current one.")] = None,
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Print the value(s) to stdout (audited).")
    ] = False,
    as_email: AsOption = None,
) -> None:
    """Show a secret's keys; with --reveal, print its value(s) to stdout."""

    async def work(database: Database, settings: Settings) -> tuple[Any, dict[str, str] | None]:
        async with database.sessions() as db:
            found = await workspaces.find_workspace(db, workspace)
            caller = await _caller(db, found.id, as_email)
            if not reveal:
                secret, versions = await service.describe_secret(db, caller, found.id, path)
                wanted = version or secret.current_version
                row = next((v for v in versions if v.version == wanted), None)
                if row is None:
                    raise NotFound(f"version {wanted} of {secret.path} was not kept")
                return row, None
            read = await service.read_secret(
                db, settings, caller, found.id, path, version=version, details={"via": "cli"}
            )
            return read.version, read.data

    row, data = with_database(work)
    if data is None:
        err.print(
            f"{path.strip('/')} version {row.version}: keys {', '.join(row.key_names)}. "
            "Add --reveal to print the value(s).",
            highlight=False,
        )
        return
    if key is not None:
        if key not in data:
            err.print(f"[red]no key {key}; the secret has {', '.join(sorted(data))}[/red]")
            raise typer.Exit(1)
        sys.stdout.write(data[key] + "\n")
    elif len(data) == 1:
        sys.stdout.write(next(iter(data.values())) + "\n")
    else:
        sys.stdout.write(dotenv.render_env(data))


@secret_app.command("list")
def secret_list(
    workspace: WorkspaceArg,
    prefix: Annotated[str, typer.Option(help="Only at or under this path.")] = "",
    deleted: Annotated[bool, typer.Option(help="Include deleted secrets.")] = False,
    as_email: AsOption = None,
) -> None:
    """List secrets (names and metadata, never values)."""

    async def work(database: Database, settings: Settings) -> list[service.SecretInfo]:
        async with database.sessions() as db:
            found = await workspaces.find_workspace(db, workspace)
            caller = await _caller(db, found.id, as_email)
            return await service.list_secrets(
                db, caller, found.id, prefix=prefix, include_deleted=deleted
            )

    table = Table("path", "keys", "version", "owner", "tags", "rotate by", "expires", "state")
    for info in with_database(work):
        shown = service.summary_dict(info.secret, info.current)
        state = "deleted" if shown["deleted"] else ("expired" if shown["expired"] else "")
        if shown["rotation_due"]:
            state = (state + " rotation due").strip()
        table.add_row(
            shown["path"],
            ", ".join(shown["key_names"]),
            str(shown["current_version"]),
            shown["owner"],
            ", ".join(shown["tags"]),
            f"{shown['rotate_by']:%Y-%m-%d}" if shown["rotate_by"] else "",
            f"{shown['expires_at']:%Y-%m-%d %H:%M}" if shown["expires_at"] else "",
            state,
        )
    console.print(table)


@secret_app.command("history")
def secret_history(workspace: WorkspaceArg, path: PathArg, as_email: AsOption = None) -> None:
    """The kept versions of a secret (who wrote them, when, which keys)."""

    async def work(database: Database, settings: Settings) -> tuple[Any, list[Any]]:
        async with database.sessions() as db:
            found = await workspaces.find_workspace(db, workspace)
            caller = await _caller(db, found.id, as_email)
            return await service.describe_secret(db, caller, found.id, path)

    secret, versions = with_database(work)
    state = " (deleted)" if secret.deleted_at else ""
    table = Table(
        "version", "written (UTC)", "by", "keys", "expires", title=f"{secret.path}{state}"
    )
    for row in versions:
        mark = " (current)" if row.version == secret.current_version else ""
        table.add_row(
            f"{row.version}{mark}",
            f"{row.created_at:%Y-%m-%d %H:%M:%S}",
            row.created_by,
            ", ".join(row.key_names),
            f"{row.expires_at:%Y-%m-%d %H:%M}" if row.expires_at else "",
        )
    console.print(table)


@secret_app.command("rm")
def secret_rm(
    workspace: WorkspaceArg,
    path: PathArg,
    destroy: Annotated[
        bool, typer.Option("--destroy", help="Remove every version for good (owners, admins).")
    ] = False,
    as_email: AsOption = None,
) -> None:
    """Delete a secret (soft: `secret undelete` restores it), or --destroy it."""

    async def work(database: Database, settings: Settings) -> None:
        async with database.sessions() as db:
            found = await workspaces.find_workspace(db, workspace)
            caller = await _caller(db, found.id, as_email)
            if destroy:
                await service.destroy_secret(db, caller, found.id, path)
            else:
                await service.delete_secret(db, caller, found.id, path)

    with_database(work)
    done = "Destroyed" if destroy else "Deleted (undelete restores it)"
    err.print(f"{done}: {path.strip('/')}", highlight=False)


@secret_app.command("undelete")
def secret_undelete(workspace: WorkspaceArg, path: PathArg, as_email: AsOption = None) -> None:
    """Restore a deleted secret."""

    async def work(database: Database, settings: Settings) -> None:
        async with database.sessions() as db:
            found = await workspaces.find_workspace(db, workspace)
            caller = await _caller(db, found.id, as_email)
            await service.undelete_secret(db, caller, found.id, path)

    with_database(work)
    err.print(f"Restored {path.strip('/')}.", highlight=False)


def committed_to_git(file: Path) -> bool:
    """Whether git tracks the file or has it anywhere in the repository's history."""
    git = shutil.which("git")
    if git is None:
        return False
    folder, name = str(file.resolve().parent), file.name
    try:
        tracked = subprocess.run(
            [git, "-C", folder, "ls-files", "--error-unmatch", "--", name],
            capture_output=True,
            timeout=15,
            check=False,
        )
        if tracked.returncode == 0:
            return True
        history = subprocess.run(
            [git, "-C", folder, "log", "--all", "--format=%h", "-1", "--", name],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return history.returncode == 0 and bool(history.stdout.strip())


@secret_app.command("import")
def secret_import(
    workspace: WorkspaceArg,
    path: PathArg,
    file: Annotated[Path, typer.Argument(help="The .env file.", exists=True, dir_okay=False)],
    merge: Annotated[bool, typer.Option(help="Keep the secret's other keys.")] = False,
    cas: Annotated[int | None, typer.Option(help="Only if the current version is this.")] = None,
    as_email: AsOption = None,
) -> None:
    """Store a .env file's variables as the keys of one secret."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]cannot read {file}: {exc}[/red]", highlight=False)
        raise typer.Exit(1) from exc
    in_git = committed_to_git(file)

    async def work(database: Database, settings: Settings) -> service.Imported:
        async with database.sessions() as db:
            found = await workspaces.find_workspace(db, workspace)
            caller = await _caller(db, found.id, as_email)
            return await service.import_env(
                db,
                settings,
                caller,
                found.id,
                path,
                text,
                source=str(file),
                committed_to_git=in_git,
                cas=cas,
                merge=merge,
            )

    result = with_database(work)
    err.print(
        f"Imported {len(result.version.key_names)} variable(s) into {path.strip('/')} "
        f"(version {result.version.version}).",
        highlight=False,
    )
    for warning in result.warnings:
        err.print(f"[yellow]warning: {warning['message']}[/yellow]", highlight=False)


@secret_app.command("export")
def secret_export(
    workspace: WorkspaceArg,
    prefix: Annotated[str, typer.Argument(help="A secret path, or a prefix of several.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (mode 0600), not stdout.")
    ] = None,
    as_email: AsOption = None,
) -> None:
    """Write secrets at or under a path as a .env file (every read is audited)."""

    async def work(database: Database, settings: Settings) -> str:
        async with database.sessions() as db:
            found = await workspaces.find_workspace(db, workspace)
            caller = await _caller(db, found.id, as_email)
            return await service.export_env(db, settings, caller, found.id, prefix)

    text = with_database(work)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        err.print(f"[red]cannot write {output}: {exc.strerror}[/red]", highlight=False)
        raise typer.Exit(1) from exc
    err.print(f"Wrote {output}.", highlight=False)


__all__ = ["secret_app", "vault_app"]
