"""`hexahub models list|test` and `hexahub usage`."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hexahub.core.clitools import run
from hexahub.core.db import utcnow
from hexahub.gateway.providers.base import UpstreamError

models_app = typer.Typer(help="Inspect and try the gateway's models.", no_args_is_help=True)
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
        from hexahub.gateway.config import load_models_file

        runtime = _runtime()
        try:
            secret = runtime.settings.resolved_secret_key()
            async with runtime.db.sessions() as db:
                await service.sync_models_file(
                    db, load_models_file(runtime.settings.resolved_models_file), secret
                )
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
