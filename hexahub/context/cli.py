"""`hexahub repo ...` and `hexahub search` from a shell.

Commands act as HexaHub itself, audited as `cli:<login name>`. `repo add` and `repo index`
queue the index on the task queue like the API does and follow it with a progress bar:
with the in-process queue this command runs the work itself; with a broker, workers do
and this command watches. Ctrl+C stops watching; unfinished work stays queued.
`repo scan` runs secret scanning in this process and prints the findings, one per line.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hexahub.context import findings, scans, service
from hexahub.context.models import Repository, SecretFinding
from hexahub.context.schemas import RepoCreate
from hexahub.core.clitools import actor_label, command_settings, run
from hexahub.core.runtime import Runtime
from hexahub.identity.workspaces import find_workspace
from hexahub.settings import Settings

T = TypeVar("T")
repo_app = typer.Typer(
    help="Repositories of the code context: add, list, index, scan, remove.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)

WorkspaceArg = Annotated[str, typer.Argument(help="Workspace slug or id.")]
NameArg = Annotated[str, typer.Argument(help="Repository name (or id).")]


async def _with_runtime(settings: Settings, work: Callable[[Runtime], Awaitable[T]]) -> T:
    runtime = Runtime.build(settings)
    try:
        return await work(runtime)
    finally:
        await runtime.close()


async def _follow(runtime: Runtime, repo_id: str, *, vectors: bool) -> Repository:
    """Show the repository's progress until its index is done (or failed)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("waiting for a worker", total=None)
        while True:
            async with runtime.db.sessions() as db:
                repo = await db.get(Repository, repo_id)
                if repo is None:
                    raise typer.Exit(1)
            total = repo.progress_total or None
            bar.update(
                task,
                description=repo.phase or repo.state,
                completed=repo.progress_done,
                total=total,
            )
            finished = repo.state in ("ready", "failed", "idle") or (
                repo.state == "embedding" and not vectors
            )
            if finished:
                return repo
            await asyncio.sleep(0.25)


def _summary(repo: Repository) -> None:
    if repo.state == "failed":
        err.print(f"[red]Indexing {repo.name} failed: {repo.last_error}[/red]", highlight=False)
        raise typer.Exit(1)
    console.print(
        f"{repo.name}: {repo.files_count} files, {repo.chunks_count} chunks, "
        f"{repo.symbols_count} symbols, {repo.embedded_count} embedded, "
        f"{repo.skipped_count} skipped ({repo.state})"
    )
    if repo.last_error:
        err.print(f"[yellow]{repo.last_error}[/yellow]", highlight=False)


async def _index_and_follow(
    runtime: Runtime, repo: Repository, *, full: bool, wait: bool, vectors: bool
) -> None:
    consume = runtime.settings.queue_backend == "inprocess"
    if wait:
        await runtime.start_queue(consume=consume)
    async with runtime.db.sessions() as db:
        fresh = await db.get(Repository, repo.id)
        assert fresh is not None
        await service.request_index(runtime, db, None, fresh, full=full, actor_label=actor_label())
    if not wait:
        console.print(f"Indexing of {repo.name} is queued; `hexahub repo list` shows progress.")
        return
    _summary(await _follow(runtime, repo.id, vectors=vectors))


@repo_app.command("add")
def add(
    workspace: WorkspaceArg,
    name: NameArg,
    location: Annotated[str, typer.Argument(help="A server directory or a git URL.")],
    branch: Annotated[str | None, typer.Option(help="Branch to follow (git).")] = None,
    include: Annotated[list[str] | None, typer.Option(help="Only paths matching (repeat).")] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Leave out paths matching (repeat).")
    ] = None,
    token_env: Annotated[
        str | None, typer.Option(help="Environment variable holding an HTTPS access token.")
    ] = None,
    ssh_key: Annotated[
        Path | None, typer.Option(help="SSH private key file (git over SSH).")
    ] = None,
    credential_ref: Annotated[
        str | None, typer.Option(help="vault:// reference to a token (or, with --ssh, a key).")
    ] = None,
    ssh: Annotated[bool, typer.Option(help="The vault reference holds an SSH key.")] = False,
    index: Annotated[bool, typer.Option(help="Index at once.")] = True,
    wait: Annotated[bool, typer.Option(help="Follow the index with a progress bar.")] = True,
    vectors: Annotated[bool, typer.Option(help="Wait for the vectors too.")] = True,
) -> None:
    """Add a repository to a workspace (and index it)."""
    settings = command_settings()
    is_dir = os.path.isdir(os.path.expanduser(location))
    credential: str | None = None
    kind: Literal["token", "ssh_key"] | None = None
    if token_env:
        credential, kind = os.environ.get(token_env), "token"
        if not credential:
            err.print(f"[red]The environment variable {token_env} is empty or unset.[/red]")
            raise typer.Exit(2)
    elif ssh_key:
        credential, kind = ssh_key.read_text(), "ssh_key"
    elif credential_ref:
        credential, kind = credential_ref, ("ssh_key" if ssh else "token")
    spec = RepoCreate(
        name=name,
        source="path" if is_dir else "git",
        location=str(Path(location).expanduser().resolve()) if is_dir else location,
        branch=branch,
        include=include or [],
        exclude=exclude or [],
        credential=credential,
        credential_kind=kind,
        index=index,
    )

    async def work(runtime: Runtime) -> None:
        async with runtime.db.sessions() as db:
            ws = await find_workspace(db, workspace)
            repo = await service.create_repo(
                db, settings, None, ws.id, spec, actor_label=actor_label()
            )
            await db.commit()
        console.print(f"Added {repo.name} ({repo.source_kind}: {repo.location}) id {repo.id}")
        if index:
            await _index_and_follow(runtime, repo, full=False, wait=wait, vectors=vectors)

    run(_with_runtime(settings, work))


@repo_app.command("list")
def list_(workspace: WorkspaceArg) -> None:
    """Repositories of a workspace with their index status."""
    settings = command_settings()

    async def work(runtime: Runtime) -> list[Repository]:
        async with runtime.db.sessions() as db:
            ws = await find_workspace(db, workspace)
            return await service.list_repos(db, ws.id)

    repos = run(_with_runtime(settings, work))
    table = Table("name", "source", "state", "files", "chunks", "embedded", "skipped", "indexed")
    for repo in repos:
        state = repo.state
        if repo.state in ("indexing", "embedding") and repo.progress_total:
            state += f" {repo.progress_done}/{repo.progress_total}"
        table.add_row(
            repo.name,
            f"{repo.source_kind}: {repo.location}",
            state,
            str(repo.files_count),
            str(repo.chunks_count),
            str(repo.embedded_count),
            str(repo.skipped_count),
            repo.indexed_at.strftime("%Y-%m-%d %H:%M") if repo.indexed_at else "never",
        )
    console.print(table)


@repo_app.command("index")
def index_(
    workspace: WorkspaceArg,
    name: NameArg,
    full: Annotated[bool, typer.Option(help="Forget the index and read every file.")] = False,
    wait: Annotated[bool, typer.Option(help="Follow the index with a progress bar.")] = True,
    vectors: Annotated[bool, typer.Option(help="Wait for the vectors too.")] = True,
) -> None:
    """Index a repository now: only files whose content changed are read again."""
    settings = command_settings()

    async def work(runtime: Runtime) -> None:
        async with runtime.db.sessions() as db:
            ws = await find_workspace(db, workspace)
            repo = await service.find_repo(db, ws.id, name)
        await _index_and_follow(runtime, repo, full=full, wait=wait, vectors=vectors)

    run(_with_runtime(settings, work))


@repo_app.command("scan")
def scan(
    workspace: WorkspaceArg,
    name: NameArg,
    history: Annotated[
        bool, typer.Option("--history", help="Scan every commit too, not only the current tree.")
    ] = False,
) -> None:
    """Scan a repository for committed credentials (the current tree, and with --history
    every commit) and list its findings: one per line, tab-separated, for scripts."""
    settings = command_settings()

    async def work(runtime: Runtime) -> list[SecretFinding]:
        async with runtime.db.sessions() as db:
            ws = await find_workspace(db, workspace)
            repo = await service.find_repo(db, ws.id, name)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeElapsedColumn(), console=err) as bar:
            files_task = bar.add_task("scanning files", total=None)

            async def files_progress(phase: str, done: int, total: int) -> None:
                bar.update(files_task, description=phase, completed=done, total=total)

            tree = await scans.scan_tree(
                runtime, repo, progress=files_progress, actor_label=actor_label()
            )
            summary = f"{tree.scanned} files"
            if history:
                commits_task = bar.add_task("scanning commits", total=None)

                def commits_progress(done: int, total: int) -> None:
                    # Called from the scan's worker thread; rich's Progress takes a lock.
                    bar.update(commits_task, completed=done, total=total)

                past = await scans.scan_history(
                    runtime, repo, on_commit=commits_progress, actor_label=actor_label()
                )
                summary += f" and {past.scanned} commits"
        async with runtime.db.sessions() as db:
            rows = await findings.list_findings(db, repo.id, limit=100_000)
            still_open = await findings.count_open(db, repo.workspace_id, repo.id)
        err.print(
            f"Scanned {summary} of {repo.name}: {still_open} open finding"
            f"{'' if still_open == 1 else 's'}.",
            highlight=False,
        )
        return rows

    for row in run(_with_runtime(settings, work)):
        where = "+".join(w for w, on in (("tree", row.in_tree), ("history", row.in_history)) if on)
        typer.echo(
            f"{row.status}\t{row.path}:{row.line}\t{row.rule}\t{where or '-'}\t"
            f"{(row.commit or '-')[:12]}"
        )


@repo_app.command("remove")
def remove(
    workspace: WorkspaceArg,
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> None:
    """Remove a repository and its index (the files themselves are not touched)."""
    settings = command_settings()
    if not yes and not typer.confirm(f"Remove {name} and its index?"):
        raise typer.Exit(1)

    async def work(runtime: Runtime) -> None:
        async with runtime.db.sessions() as db:
            ws = await find_workspace(db, workspace)
            repo = await service.find_repo(db, ws.id, name)
            await service.delete_repo(runtime, db, None, repo, actor_label=actor_label())
            await db.commit()

    run(_with_runtime(settings, work))
    console.print(f"Removed {name}.")


def search_command(
    query: Annotated[str, typer.Argument(help="What to look for (words or identifiers).")],
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="Workspace slug or id.")],
    repo: Annotated[list[str] | None, typer.Option(help="Only these repositories.")] = None,
    path: Annotated[str | None, typer.Option(help="Path glob, e.g. 'src/**/*.py'.")] = None,
    language: Annotated[str | None, typer.Option(help="Only this language.")] = None,
    mode: Annotated[str, typer.Option(help="hybrid, text or vector.")] = "hybrid",
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    symbols: Annotated[bool, typer.Option(help="Look up definitions by name instead.")] = False,
) -> None:
    """Search the code of a workspace's repositories."""
    settings = command_settings()

    async def work(runtime: Runtime) -> None:
        async with runtime.db.sessions() as db:
            ws = await find_workspace(db, workspace)
            if symbols:
                found = await service.find_symbols(
                    runtime, db, ws.id, query, repos=repo, limit=limit
                )
                for sym, r in found:
                    console.print(
                        f"[bold]{r.name}/{sym.path}:{sym.start_line}[/bold] {sym.kind} "
                        f"{sym.container + '.' if sym.container else ''}{sym.name}  "
                        f"[dim]{sym.signature}[/dim]",
                        highlight=False,
                    )
                if not found:
                    err.print("No definitions found.")
                return
            hits, partial = await service.search_workspace(
                runtime,
                db,
                ws.id,
                query,
                repos=repo,
                path_glob=path,
                language=language,
                mode=mode,
                limit=limit,
            )
        for item in hits:
            hit = item.hit
            label = f" {hit.symbol}" if hit.symbol else ""
            console.print(
                f"[bold]{item.repo.name}/{hit.path}:{hit.start_line}-{hit.end_line}[/bold]"
                f"{label} [dim]({hit.score:.4f})[/dim]",
                highlight=False,
            )
            lines = hit.text.splitlines()
            for line in lines[:6]:
                console.print(f"    {line}", highlight=False, markup=False)
            if len(lines) > 6:
                console.print("    ...", highlight=False, markup=False)
        if not hits:
            err.print("Nothing found.")
        if partial:
            err.print(
                f"[yellow]Vectors are still being filled in for: {', '.join(partial)}; "
                "their results lean on full text for now.[/yellow]"
            )

    run(_with_runtime(settings, work))
