"""What every `hexahub` sub-command shares: settings, a database for the command's
duration, plain error messages instead of tracebacks, and the audit actor name."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core.db import Database
from hexahub.core.errors import HexaHubError
from hexahub.settings import Settings

T = TypeVar("T")
err = Console(stderr=True)


def actor_label() -> str:
    """How CLI changes are named in the audit log: `cli:<login name>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def command_settings() -> Settings:
    from hexahub.cli import load_settings

    return load_settings()


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; HexaHub's own errors become a red line and exit 1."""
    try:
        return asyncio.run(work)
    except HexaHubError as exc:
        err.print(f"[red]{exc.message}[/red]", highlight=False)
        raise typer.Exit(1) from exc
    except (ValueError, ConnectionError, OSError) as exc:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        err.print(f"[red]{message}[/red]", highlight=False)
        raise typer.Exit(1) from exc


def with_database(work: Callable[[Database, Settings], Awaitable[T]]) -> T:
    """Run `work` with this installation's database, closed afterwards."""
    settings = command_settings()

    async def main() -> T:
        database = Database(settings)
        try:
            return await work(database, settings)
        finally:
            await database.dispose()

    return run(main())


def with_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` with one database session."""

    async def in_session(database: Database, settings: Settings) -> T:
        async with database.sessions() as db:
            return await work(db)

    return with_database(in_session)
