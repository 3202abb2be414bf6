"""`hexahub models list|add|remove|test` and `hexahub usage`."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hexahub.core.clitools import command_settings, run
from hexahub.core.db import utcnow
from hexahub.gateway.providers.base import UpstreamError

models_app = typer.Typer(
    help="Inspect and try the gateway's models; add your own local ones.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)


def _runtime() -> Any:
    from hexahub.cli import load_settings
    from hexahub.core.runtime import Runtime

    return Runtime.build(load_settings())


@models_app.command("list")
def models_list() -> None:
    """Model names, their deployments, prices and where they are declared."""

    async def fetch() -> list[dict[str, Any]]:
        from hexahub.gateway import service

        runtime = _runtime()
        try:
            await _sync(runtime)
            async with runtime.db.sessions() as db:
                return [service.model_dict(r, d) for r, d in await service.list_models(db)]
        finally:
            await runtime.close()

    table = Table(
        "model",
        "strategy",
        "provider",
        "upstream model",
        "weight",
        "$/M in",
        "$/M out",
        "fallbacks",
        "from",
    )
    for model in run(fetch()):
        for i, d in enumerate(model["deployments"] or [{}]):
            table.add_row(
                model["name"] if i == 0 else "",
                model["strategy"] if i == 0 else "",
                d.get("provider", "-"),
                d.get("model", "-"),
                str(d.get("weight", "")),
                f"{d.get('input_price', 0):g}",
                f"{d.get('output_price', 0):g}",
                ", ".join(model["fallbacks"]) if i == 0 else "",
                model["source"] if i == 0 else "",
            )
    console.print(table)


async def _sync(runtime: Any, *, announce: bool = False) -> None:
    """Mirror the models file and the built-in local models into the database; with
    `announce`, running servers that share Redis with us reload within seconds."""
    from hexahub.gateway import service
    from hexahub.gateway.engine import SNAPSHOT_VERSION_KEY
    from hexahub.localmodels.builtin import configured_models

    secret = runtime.settings.resolved_secret_key()
    async with runtime.db.sessions() as db:
        await service.sync_models_file(db, configured_models(runtime.settings), secret)
    if announce:
        await runtime.shared.incr(SNAPSHOT_VERSION_KEY)


def _registry_run(change: Any, undo: Any) -> None:
    """Change the local models registry, then the database; undo the first if the second
    refuses (a name taken by a model made through the API, say)."""
    from hexahub.localmodels.registry import BadModelFile, RegistryError

    try:
        change()
    except (BadModelFile, RegistryError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc

    async def sync() -> None:
        runtime = _runtime()
        try:
            await _sync(runtime, announce=True)
        finally:
            await runtime.close()

    try:
        run(sync())
    except typer.Exit:
        undo()
        raise


def _registry_now(models_dir: Path) -> list[Any]:
    from hexahub.localmodels import registry

    try:
        return registry.load_registry(models_dir)
    except registry.RegistryError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from exc


def _served_when(settings: Any) -> str:
    if settings.redis_url:
        return "running servers that share this Redis serve the change within seconds"
    return "restart `hexahub serve` to serve the change (the server reads local models at start)"


@models_app.command("add")
def models_add(
    path: Annotated[
        Path,
        typer.Argument(help="A GGUF file (chat) or a sentence-transformers folder (embeddings)."),
    ],
    name: Annotated[str, typer.Option(help="The model name clients will ask for.")],
    context_size: Annotated[
        int | None,
        typer.Option(help="Context window in tokens (default HEXAHUB_LOCAL_CONTEXT_SIZE)."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads (default HEXAHUB_LOCAL_THREADS).")
    ] = None,
    gpu_layers: Annotated[
        int | None,
        typer.Option(help="Layers offloaded to a GPU; -1 all (default HEXAHUB_LOCAL_GPU_LAYERS)."),
    ] = None,
    description: Annotated[str, typer.Option(help="Shown in `hexahub models list`.")] = "",
    copy: Annotated[
        bool, typer.Option("--copy", help="Copy the file into the models directory.")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a registered model of the same name.")
    ] = False,
) -> None:
    """Serve your own GGUF model (or sentence-transformers folder) on the local provider."""
    from hexahub.localmodels import registry

    settings = command_settings()
    models_dir = settings.resolved_models_dir
    before = _registry_now(models_dir)
    added: list[Any] = []

    def change() -> None:
        added.append(
            registry.add_model(
                models_dir,
                path,
                name,
                context_size=context_size,
                threads=threads,
                gpu_layers=gpu_layers,
                description=description,
                copy=copy,
                replace=replace,
            )
        )

    _registry_run(change, lambda: registry.save_registry(models_dir, before))
    entry = added[0]
    console.print(
        f"Added local {entry.kind} model [bold]{entry.name}[/bold] ({entry.path}); "
        f"{_served_when(settings)}.",
        highlight=False,
    )


@models_app.command("remove")
def models_remove(
    name: Annotated[str, typer.Argument(help="A model added with `hexahub models add`.")],
    delete_file: Annotated[
        bool, typer.Option("--delete-file", help="Also delete the model file from disk.")
    ] = False,
) -> None:
    """Stop serving a model added with `hexahub models add`."""
    from hexahub.localmodels import registry

    settings = command_settings()
    models_dir = settings.resolved_models_dir
    before = _registry_now(models_dir)
    removed: list[Any] = []
    _registry_run(
        lambda: removed.append(registry.remove_model(models_dir, name, delete_file=delete_file)),
        lambda: registry.save_registry(models_dir, before),
    )
    console.print(
        f"Removed local model [bold]{removed[0].name}[/bold]; {_served_when(settings)}.",
        highlight=False,
    )


@models_app.command("test")
def models_test(
    name: Annotated[str, typer.Argument(help="The model name to try.")],
    prompt: Annotated[str, typer.Option(help="What to ask.")] = "Say hello in five words.",
    max_tokens: Annotated[int, typer.Option(help="Longest answer.")] = 64,
) -> None:
    """Send one chat request through the router and show the answer and timings."""

    async def attempt() -> tuple[dict[str, Any], Any, float]:
        from hexahub.gateway.engine import Gateway

        runtime = _runtime()
        gateway = await Gateway.start(runtime)
        try:
            body = {
                "model": name,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
            }
            started = time.perf_counter()

            async def run(provider: Any, deployment: Any) -> dict[str, Any]:
                result: dict[str, Any] = await provider.chat(body, deployment.upstream_model)
                return result

            response, outcome = await gateway.router.call(name, run)
            return response, outcome, time.perf_counter() - started
        finally:
            await gateway.stop()
            await runtime.close()

    try:
        with console.status(f"Asking {name} ..."):
            response, outcome, elapsed = run(attempt())
    except UpstreamError as exc:
        err.print(f"[red]{exc.message}[/red]", highlight=False)
        raise typer.Exit(1) from exc
    choice = (response.get("choices") or [{}])[0]
    answer = (choice.get("message") or {}).get("content") or ""
    used = response.get("usage") or {}
    console.print(
        f"[bold]{outcome.deployment.provider}[/bold] / "
        f"{outcome.deployment.upstream_model} answered in {elapsed * 1000:.0f} ms "
        f"after {outcome.attempts} attempt(s):"
    )
    console.print(answer, highlight=False)
    console.print(
        f"[dim]finish: {choice.get('finish_reason')}, tokens: "
        f"{used.get('prompt_tokens', '?')} in / "
        f"{used.get('completion_tokens', '?')} out[/dim]"
    )


def _since(value: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([hdw])", value.strip())
    if not match:
        raise typer.BadParameter("use a number and h, d or w, e.g. 24h, 7d, 4w")
    amount, unit = int(match.group(1)), match.group(2)
    return {
        "h": timedelta(hours=amount),
        "d": timedelta(days=amount),
        "w": timedelta(weeks=amount),
    }[unit]


def usage_command(
    since: Annotated[str, typer.Option(help="How far back: 24h, 7d, 4w.")] = "7d",
    by: Annotated[str, typer.Option(help="model, key, user, workspace or provider")] = "model",
    workspace: Annotated[str | None, typer.Option(help="Only this workspace (id or slug).")] = None,
) -> None:
    """Tokens, cost and requests per model (or key, user, workspace), with totals."""
    window = _since(since)

    async def fetch() -> list[dict[str, Any]]:
        from sqlalchemy import or_, select

        from hexahub.gateway import usage
        from hexahub.identity.models import Workspace

        runtime = _runtime()
        try:
            async with runtime.db.sessions() as db:
                ids = None
                if workspace:
                    found = await db.scalar(
                        select(Workspace.id).where(
                            or_(Workspace.id == workspace, Workspace.slug == workspace)
                        )
                    )
                    if found is None:
                        raise typer.BadParameter(f"no workspace {workspace!r}")
                    ids = [found]
                return await usage.summary(
                    db, workspace_ids=ids, since=utcnow() - window, group_by=by
                )
        finally:
            await runtime.close()

    rows = run(fetch())
    table = Table(
        by,
        "requests",
        "errors",
        "prompt tokens",
        "completion tokens",
        "cost (USD)",
        "avg latency (ms)",
        title=f"Gateway usage, last {since}",
    )
    totals = {
        "requests": 0,
        "errors": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
    }
    for row in rows:
        table.add_row(
            str(row["group"] or "-"),
            str(row["requests"]),
            str(row["errors"]),
            f"{row['prompt_tokens']:,}",
            f"{row['completion_tokens']:,}",
            f"{row['cost_usd']:.4f}",
            f"{row['avg_latency_ms']:.0f}",
        )
        for name in totals:
            totals[name] += row[name]
    table.add_section()
    table.add_row(
        "[bold]total[/bold]",
        str(totals["requests"]),
        str(totals["errors"]),
        f"{totals['prompt_tokens']:,}",
        f"{totals['completion_tokens']:,}",
        f"{totals['cost_usd']:.4f}",
        "",
    )
    console.print(table)
