"""The `hexahub` command."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import signal
import sys
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from hexahub import __version__
from hexahub.context.cli import repo_app, search_command
from hexahub.gateway.cli import models_app, usage_command
from hexahub.identity.cli import key_app, user_app
from hexahub.settings import (
    ENV_PREFIX,
    ConfigFileError,
    Settings,
    get_settings,
    redact_url,
)
from hexahub.vault.cli import secret_app, vault_app

app = typer.Typer(
    name="hexahub",
    help="HexaHub: a self-hosted AI workspace and homelab control plane.",
    no_args_is_help=True,
    add_completion=False,
    # Local variables can hold passwords and keys: never print them in a traceback.
    pretty_exceptions_show_locals=False,
    pretty_exceptions_short=True,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
tasks_app = typer.Typer(help="Inspect and manage background tasks.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(user_app, name="user")
app.add_typer(key_app, name="key")
app.add_typer(vault_app, name="vault")
app.add_typer(secret_app, name="secret")
app.add_typer(models_app, name="models")
app.command("usage")(usage_command)
app.add_typer(repo_app, name="repo")
app.command("search")(search_command)
app.add_typer(tasks_app, name="tasks")

console = Console()
err = Console(stderr=True)


def load_settings() -> Settings:
    """Settings, or a readable error and exit code 2."""
    try:
        return get_settings()
    except ConfigFileError as exc:
        err.print(f"[red]Configuration error:[/red] {exc}")
    except ValidationError as exc:
        err.print("[red]Configuration error:[/red]")
        for problem in exc.errors():
            name = ".".join(str(p) for p in problem["loc"])
            message = problem["msg"].removeprefix("Value error, ")
            err.print(f"  HEXAHUB_{name.upper()}: {message}" if name else f"  {message}")
    raise typer.Exit(2)


def _configure_logging(settings: Settings) -> None:
    from hexahub.core.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)


def _migrate(settings: Settings) -> None:
    from hexahub.core import migrate

    url = settings.resolved_database_url
    with console.status(f"Applying migrations to {redact_url(url)} ..."):
        migrate.upgrade(url)
    console.print(f"[green]Database is at revision {migrate.head_revision(url)}.[/green]")


@app.command()
def version() -> None:
    """Print HexaHub's version."""
    console.print(f"hexahub {__version__} (Python {platform.python_version()})")


@app.command()
def migrate(
    revision: Annotated[str, typer.Option(help="Target revision (default: latest).")] = "head",
) -> None:
    """Create or upgrade the database schema."""
    settings = load_settings()
    if revision == "head":
        _migrate(settings)
        return
    from hexahub.core import migrate as migrations

    migrations.upgrade(settings.resolved_database_url, revision)
    console.print(f"[green]Database is at revision {revision}.[/green]")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (HEXAHUB_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (HEXAHUB_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    migrate_first: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Apply migrations before starting.")
    ] = True,
) -> None:
    """Start the HexaHub server."""
    import uvicorn

    settings = load_settings()
    if host or port:
        settings = _bind_to(host or settings.host, port or settings.port)
    _configure_logging(settings)
    if migrate_first:
        _migrate(settings)
    console.print(f"HexaHub {__version__} on http://{settings.host}:{settings.port}")
    uvicorn.run(
        "hexahub.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers or settings.workers,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        log_config=None,
        server_header=False,
        **proxy_options(settings),
    )


def _bind_to(host: str, port: int) -> Settings:
    """Settings with `--host`/`--port` applied. uvicorn builds the app (in every worker
    process) from the environment's settings, so the flags go there too: the links the
    app prints (the first-admin setup link, the SSO callback) then name the real port."""
    os.environ[f"{ENV_PREFIX}HOST"] = host
    os.environ[f"{ENV_PREFIX}PORT"] = str(port)
    get_settings.cache_clear()
    return load_settings()


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's reverse-proxy options. uvicorn by default believes X-Forwarded-For from
    127.0.0.1, so any local process could pose as any client and dodge the per-IP limits;
    here only the proxies in HEXAHUB_FORWARDED_ALLOW_IPS are believed, and none by default."""
    trusted = settings.forwarded_allow_ips
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or None}


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Tasks run at once (HEXAHUB_QUEUE_CONCURRENCY).")
    ] = None,
) -> None:
    """Run background tasks taken from the broker (HEXAHUB_QUEUE_BACKEND=broker)."""
    settings = load_settings()
    if settings.queue_backend != "broker":
        err.print(
            "[red]The in-process queue runs inside `hexahub serve`; there is nothing for a "
            "separate worker to take.[/red]\nTo run workers, set HEXAHUB_QUEUE_BACKEND=broker "
            "and HEXAHUB_BROKER_URL (redis://host:6379/1 or nats://host:4222) for the server "
            "and the workers."
        )
        raise typer.Exit(2)
    if concurrency:
        settings = settings.model_copy(update={"queue_concurrency": concurrency})
    _configure_logging(settings)
    asyncio.run(_run_worker(settings))


async def _run_worker(settings: Settings) -> None:
    from hexahub.core.runtime import Runtime

    runtime = Runtime.build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await runtime.start_queue(consume=True)
        console.print(
            f"Worker taking tasks from {redact_url(settings.broker_url)} "
            f"({settings.queue_concurrency} at a time). Ctrl+C stops it."
        )
        await stop.wait()
    finally:
        console.print("Stopping: unfinished tasks go back to the queue.")
        await runtime.close()


@app.command()
def doctor() -> None:
    """Check the database, Redis, broker and local models, and say what to fix."""
    from hexahub.core.doctor import FAIL, WARN, run_checks

    settings = load_settings()
    # Connection errors are reported below, once, in words; not as log noise.
    logging.getLogger("hexahub").setLevel(logging.CRITICAL)
    with console.status("Checking ..."):
        findings = asyncio.run(run_checks(settings))
    mark = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
    console.print(f"[bold]HexaHub {__version__} doctor[/bold]")
    for finding in findings:
        console.print(f"{mark[finding.status]} {finding.check}: {finding.detail}", highlight=False)
        if finding.fix and finding.status != "ok":
            console.print(f"     -> {finding.fix}", highlight=False)
        elif finding.fix:
            console.print(f"     [dim]{finding.fix}[/dim]", highlight=False)
    failed = [f for f in findings if f.status == FAIL]
    warned = [f for f in findings if f.status == WARN]
    if failed:
        console.print(
            f"[red]{len(failed)} problem(s) stop HexaHub from working; fix them "
            "as the arrows say.[/red]"
        )
        raise typer.Exit(1)
    summary = f" ({len(warned)} optional part(s) missing)" if warned else ""
    console.print(f"[green]HexaHub can run{summary}.[/green]")


@app.command("setup-link")
def setup_link() -> None:
    """Print the one-time link that creates the first administrator."""
    from hexahub.web.pages import setup_url

    console.print(setup_url(load_settings()), soft_wrap=True)


@config_app.command("show")
def config_show(
    output: Annotated[str, typer.Option("--format", help="yaml or json")] = "yaml",
) -> None:
    """Print the effective settings, with passwords and keys hidden."""
    settings = load_settings()
    shown = settings.redacted()
    shown["resolved_database_url"] = redact_url(settings.resolved_database_url)
    if output == "json":
        console.print_json(json.dumps(shown, default=str))
    elif output == "yaml":
        console.print(yaml.safe_dump(shown, sort_keys=True), end="", highlight=False)
    else:
        err.print("--format must be yaml or json")
        raise typer.Exit(2)


@config_app.command("docs")
def config_docs() -> None:
    """Print the settings reference (the table in docs/configuration.md)."""
    from hexahub.settings import settings_reference

    sys.stdout.write(settings_reference())


@tasks_app.command("list")
def tasks_list(
    status: Annotated[
        str | None, typer.Option(help="pending, queued, running, succeeded or dead")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
) -> None:
    """List background tasks (`--status dead` shows the dead-letter list)."""
    settings = load_settings()

    async def fetch() -> tuple[dict[str, int], list[tuple[str, ...]]]:
        from hexahub.core.runtime import Runtime

        runtime = Runtime.build(settings)
        try:
            counts = await runtime.queue.counts()
            rows = await runtime.queue.list(status=status, limit=limit)
        finally:
            await runtime.close()
        return counts, [
            (
                row.id,
                row.name,
                row.status,
                f"{row.attempts}/{row.max_attempts}",
                row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                (row.last_error or "").strip().splitlines()[-1][:80] if row.last_error else "",
            )
            for row in rows
        ]

    try:
        counts, rows = asyncio.run(fetch())
    except Exception as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    table = Table(title=" ".join(f"{k}={v}" for k, v in counts.items()))
    for column in ("id", "task", "status", "attempts", "created (UTC)", "last error"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


@tasks_app.command("retry")
def tasks_retry(task_id: str) -> None:
    """Give a dead-lettered task a fresh set of attempts."""
    settings = load_settings()

    async def retry() -> None:
        from hexahub.core.runtime import Runtime

        runtime = Runtime.build(settings)
        try:
            await runtime.queue.retry_dead(task_id)
        finally:
            await runtime.close()

    try:
        asyncio.run(retry())
    except Exception as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"Task {task_id} will run again.")


if __name__ == "__main__":
    app()
