"""Gateway throughput: HexaHub against LiteLLM's proxy and a minimal pass-through.

One run starts a fast local OpenAI-compatible upstream (bench/upstream.py) and, in front
of it, four contenders that all forward `POST /v1/chat/completions`:

- **HexaHub** (`hexahub serve`, one worker, SQLite in a fresh data directory), with API-key
  auth, routing through the models file, usage recording and Prometheus metrics all on,
  and its request log at the default level. The per-IP and per-key rate limits stay on,
  set far above what the run can reach (HEXAHUB_RATE_LIMIT_*_PER_MINUTE=1000000000), so
  the limiter does its work on every request without refusing any;
- **LiteLLM's proxy** (`litellm --config ... --num_workers 1`, master key, no database),
  installed on first use into its own virtual environment, bench/.venvs/litellm;
- **a minimal Starlette pass-through** (bench/passthrough.py): one pooled httpx client,
  no auth, no accounting: the floor for this stack;
- **the same pass-through with eight pools** (`--pools 8`), laid out like HexaHub's
  providers (hexahub/gateway/providers/http.py), so HexaHub's own overhead can be read
  apart from its connection pooling.

Each is loaded in turn by `wrk` (POST with a JSON body and an Authorization header) at
each connection count: a short warm-up, then a measured run of fixed length. With
--rounds N the contenders are measured N times in interleaved order and the median is
reported. Before measuring, one request through each contender must return a valid
completion; afterwards HexaHub is stopped cleanly and the usage records it wrote are
counted against the successful requests wrk reported (they must match, give or take the
requests in flight when wrk stopped).

On a machine with two or more CPUs the contender under test runs on CPU 1 and the
upstream and wrk share CPU 0 (`taskset`), so every gateway gets the same one core and
does not compete with the load generator (--no-pin turns this off).

    .venv/bin/python bench/gateway_throughput.py                    # the recorded run
    .venv/bin/python bench/gateway_throughput.py --duration 5 --contenders hexahub,passthrough
    .venv/bin/python bench/gateway_throughput.py --py-spy /path/to/py-spy   # + profile

Options:
  --duration S           measured seconds per run (default 10); --warmup S (default 3)
  --connections 8,64     wrk connection counts; --threads 2 (wrk threads)
  --rounds N             measure every contender N times, interleaved; report medians
  --contenders LIST      any of hexahub, litellm, passthrough, passthrough-pools (default all)
  --no-pin               no taskset pinning
  --keep                 keep the temporary directory (logs, profile, SQLite database)
  --hexahub-source DIR   run HexaHub from another checkout (e.g. `git archive` of an older
                         commit) for before/after figures
  --py-spy PATH          afterwards, sample HexaHub with py-spy under
                         --profile-connections (64) and print where its time goes

wrk comes from the Debian package `wrk` (installed with apt-get when missing and running as
root; otherwise: `sudo apt-get install wrk`); py-spy from PyPI (`pip install py-spy`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = sys.executable
HEXAHUB = str(Path(PYTHON).with_name("hexahub"))
LITELLM_VENV = BENCH / ".venvs" / "litellm"
MODEL = "bench-model"
LITELLM_MASTER_KEY = "sk-bench-master-key"
REQUEST = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "ping"}],
    "max_tokens": 8,
}
START_TIMEOUT = 180.0  # LiteLLM's first start compiles and imports a lot
STOP_TIMEOUT = 30.0


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(command: list[str], cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu), *command] if cpu is not None else command


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGINT (a clean shutdown: HexaHub flushes its usage records), then SIGKILL."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode


def spawn(
    name: str, command: list[str], workdir: Path, env: dict[str, str], cpu: int | None
) -> Service:
    log = workdir / f"{name}.log"
    handle = log.open("wb")
    process = subprocess.Popen(
        pinned(command, cpu),
        cwd=workdir,
        env={**os.environ, **env},
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so stop() reaches its children
    )
    handle.close()
    return Service(name, process, log)


def wait_until_ready(service: Service, url: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited while starting:\n{service.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{service.name} did not answer {url} in {timeout:.0f} s:\n{service.tail()}")


# --- contenders -------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    label: str
    url: str  # the chat completions URL
    headers: dict[str, str]
    service: Service
    total_ok: int = 0  # 2xx answers counted by wrk over every run (warm-ups included)
    total_bad: int = 0
    cut_off: int = 0  # at most this many were in flight when wrk stopped (sum of -c)


def start_upstream(workdir: Path, cpu: int | None) -> tuple[Service, str]:
    port = free_port()
    service = spawn(
        "upstream", [PYTHON, str(BENCH / "upstream.py"), "--port", str(port)], workdir, {}, cpu
    )
    base = f"http://127.0.0.1:{port}/v1"
    wait_until_ready(service, f"{base}/models")
    return service, base


def start_passthrough(workdir: Path, upstream: str, cpu: int | None, *, pools: int) -> Contender:
    name = "passthrough" if pools == 1 else "passthrough-pools"
    port = free_port()
    command = [
        PYTHON, str(BENCH / "passthrough.py"), "--port", str(port), "--upstream", upstream,
        "--pools", str(pools),
    ]  # fmt: skip
    service = spawn(name, command, workdir, {}, cpu)
    wait_until_ready(service, f"http://127.0.0.1:{port}/")  # 404 is an answer
    label = "minimal pass-through" if pools == 1 else f"pass-through, {pools} pools"
    return Contender(name, label, f"http://127.0.0.1:{port}/v1/chat/completions", {}, service)


def _seed_hexahub(env: dict[str, str]) -> str:
    """Migrate the fresh data directory and make an admin with a gateway key."""
    subprocess.run(
        [HEXAHUB, "migrate"],
        env={**os.environ, **env},
        cwd=env["HEXAHUB_DATA_DIR"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from hexahub.core.db import Database
    from hexahub.identity import keys, service, workspaces
    from hexahub.settings import Settings

    async def seed() -> str:
        settings = Settings(data_dir=Path(env["HEXAHUB_DATA_DIR"]))
        database = Database(settings)
        try:
            async with database.sessions() as db:
                user = await service.create_first_admin(
                    db, email="bench@example.org", password="bench password 12345"
                )
                workspace = (await workspaces.workspaces_of(db, user.id))[0][0]
                created = await keys.create_key(
                    db, user, name="bench", scopes=["gateway"], workspace_id=workspace.id
                )
                await db.commit()
                return created.secret
        finally:
            await database.dispose()

    return asyncio.run(seed())


def start_hexahub(
    workdir: Path, upstream: str, cpu: int | None, source: Path | None
) -> tuple[Contender, Path]:
    data = workdir / "hexahub-data"
    data.mkdir()
    models = workdir / "models.yaml"
    models.write_text(
        json.dumps(  # JSON is YAML
            {
                "providers": [
                    {"name": "bench-upstream", "kind": "openai_compatible", "base_url": upstream}
                ],
                "models": [
                    {"name": MODEL, "deployments": [{"provider": "bench-upstream", "model": "x"}]}
                ],
            }
        )
    )
    port = free_port()
    env = {
        "HEXAHUB_DATA_DIR": str(data),
        "HEXAHUB_MODELS_FILE": str(models),
        "HEXAHUB_HOST": "127.0.0.1",
        "HEXAHUB_PORT": str(port),
        "HEXAHUB_RATE_LIMIT_IP_PER_MINUTE": "1000000000",
        "HEXAHUB_RATE_LIMIT_KEY_PER_MINUTE": "1000000000",
    }
    if source is not None:  # another checkout's package, ahead of the installed one
        env["PYTHONPATH"] = str(source)
    secret = _seed_hexahub(env)
    service = spawn("hexahub", [HEXAHUB, "serve", "--no-migrate"], data, env, cpu)
    wait_until_ready(service, f"http://127.0.0.1:{port}/healthz")
    contender = Contender(
        "hexahub",
        "HexaHub",
        f"http://127.0.0.1:{port}/v1/chat/completions",
        {"Authorization": f"Bearer {secret}"},
        service,
    )
    return contender, data / "hexahub.db"


def ensure_litellm() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if binary.exists():
        return binary
    print(f"installing LiteLLM's proxy into {LITELLM_VENV} (once) ...", flush=True)
    LITELLM_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([PYTHON, "-m", "venv", str(LITELLM_VENV)], check=True, timeout=300)
    subprocess.run(
        [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"],
        check=True,
        timeout=1800,
    )
    return binary


def litellm_version() -> str:
    found = subprocess.run(
        [
            str(LITELLM_VENV / "bin" / "python"),
            "-c",
            "import importlib.metadata as m;print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return found.stdout.strip() or "?"


def start_litellm(workdir: Path, upstream: str, cpu: int | None) -> Contender:
    binary = ensure_litellm()
    config = workdir / "litellm.yaml"
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {
                            "model": "openai/x",
                            "api_base": upstream,
                            "api_key": "sk-upstream-unused",
                        },
                    }
                ],
                "general_settings": {"master_key": LITELLM_MASTER_KEY},
            }
        )
    )
    port = free_port()
    command = [
        str(binary),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    # The cost map is bundled; without this LiteLLM tries GitHub at start (no network here).
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    workdir_litellm = workdir / "litellm"
    workdir_litellm.mkdir()
    service = spawn("litellm", command, workdir_litellm, env, cpu)
    wait_until_ready(service, f"http://127.0.0.1:{port}/health/liveliness")
    return Contender(
        "litellm",
        f"LiteLLM proxy {litellm_version()}",
        f"http://127.0.0.1:{port}/v1/chat/completions",
        {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"},
        service,
    )


def check_answer(contender: Contender) -> None:
    """One request must come back as a valid completion before anything is measured."""
    response = httpx.post(contender.url, json=REQUEST, headers=contender.headers, timeout=60)
    if response.status_code != 200:
        raise RuntimeError(f"{contender.name}: HTTP {response.status_code}: {response.text[:500]}")
    body = response.json()
    content = body["choices"][0]["message"]["content"]
    total = body["usage"]["total_tokens"]
    if content != "pong" or total != 10:
        raise RuntimeError(f"{contender.name}: unexpected completion {body}")
    contender.total_ok += 1


# --- wrk --------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk with apt-get ...", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "wrk"], check=False, timeout=600, capture_output=True
        )
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update"], check=False, timeout=600, capture_output=True)
            subprocess.run(
                ["apt-get", "install", "-y", "wrk"], check=True, timeout=600, capture_output=True
            )
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed: install it with `sudo apt-get install wrk`")
    return found


def lua_script(contender: Contender, workdir: Path) -> Path:
    def lua_string(value: str) -> str:
        return json.dumps(value)  # a JSON string is a valid Lua string literal here (ASCII)

    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {lua_string(json.dumps(REQUEST, separators=(',', ':')))}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    for name, value in contender.headers.items():
        lines.append(f"wrk.headers[{lua_string(name)}] = {lua_string(value)}")
    path = workdir / f"wrk-{contender.name}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    load1: float
    cpu_ms: float = 0.0  # the contender's CPU time (all its processes) per answered request

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx

    @property
    def per_cpu_second(self) -> float:
        """Requests one fully available core would serve: CPU-bound, and unlike req/s
        hardly moved by other programs taking turns on the core."""
        return 1000.0 / self.cpu_ms if self.cpu_ms else 0.0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"cannot read the latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str, load1: float) -> WrkResult:
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output)
        if match is None:
            raise ValueError(f"wrk's output has no {pattern!r}:\n{output}")
        return match

    socket_errors = 0
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if errors:
        socket_errors = sum(int(n) for n in errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(find(r"(\d+) requests in")[1]),
        rps=float(find(r"Requests/sec:\s+([\d.]+)")[1]),
        p50_ms=_ms(find(r"\s50%\s+(\S+)")[1]),
        p99_ms=_ms(find(r"\s99%\s+(\S+)")[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=socket_errors,
        load1=load1,
    )


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(group: int) -> float:
    """User + system CPU time of every process in a process group (threads included)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == group:  # pgrp; fields[0] is the state
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def run_wrk(
    wrk: str,
    contender: Contender,
    script: Path,
    *,
    connections: int,
    threads: int,
    seconds: float,
    cpu: int | None,
) -> WrkResult:
    load1 = os.getloadavg()[0]
    command = pinned(
        [
            wrk,
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(script),
            contender.url,
        ],
        cpu,
    )
    cpu_before = cpu_seconds(contender.service.process.pid)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    cpu_used = cpu_seconds(contender.service.process.pid) - cpu_before
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed on {contender.name}: {done.stderr or done.stdout}")
    result = parse_wrk(done.stdout, load1)
    if result.requests:
        result.cpu_ms = 1000 * cpu_used / result.requests
    contender.total_ok += result.ok
    contender.total_bad += result.non_2xx
    contender.cut_off += connections
    if contender.service.process.poll() is not None:
        raise RuntimeError(f"{contender.name} died under load:\n{contender.service.tail()}")
    return result


# --- profile ----------------------------------------------------------------------------


def profile_hexahub(
    py_spy: str,
    wrk: str,
    contender: Contender,
    script: Path,
    workdir: Path,
    *,
    connections: int,
    seconds: float,
    threads: int,
    cpu: int | None,
) -> None:
    """Sample HexaHub under load; print the functions it spends most time in.

    The collapsed stacks stay in the work directory (--keep) for speedscope or inferno."""
    raw = workdir / "hexahub-profile.txt"
    recorder = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(contender.service.process.pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    run_wrk(
        wrk, contender, script, connections=connections, threads=threads, seconds=seconds, cpu=cpu
    )
    recorder.wait(timeout=seconds + 60)
    if not raw.exists():
        print("py-spy wrote nothing (it needs ptrace permission: run as root)")
        return
    summarise_profile(raw, f"{connections} connections")


def _package(frame: str) -> str:
    """`function (path/to/file.py:12)` -> the top-level package or module of the file."""
    path = frame.rpartition(" (")[2].rstrip(")").rpartition(":")[0]
    top = path.split("/")[0]
    return top.removesuffix(".py") or "?"


def summarise_profile(raw: Path, load: str, top: int = 20) -> None:
    """Print where HexaHub's time goes: own time by package and by function, and the
    inclusive time of HexaHub's own functions."""
    total = 0
    own: dict[str, int] = {}
    by_package: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        package = _package(frames[-1])
        by_package[package] = by_package.get(package, 0) + count
        for frame in set(frames):
            if "(hexahub/" in frame and "hexahub/cli.py" not in frame:
                inclusive[frame] = inclusive.get(frame, 0) + count
    if not total:
        print("the profile is empty")
        return

    def show(title: str, table: dict[str, int], what: str) -> None:
        print(f"\n{title} ({total} samples)\n")
        print(f"| % | {what} |\n|---:|---|")
        for name, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"| {100 * count / total:.1f} | `{name[:150]}` |")

    show(f"HexaHub under {load}: own time by package", by_package, "package")
    show(f"HexaHub under {load}: own time by function", own, "function (file:line)")
    show(f"HexaHub under {load}: HexaHub's functions, inclusive", inclusive, "function")


# --- report -----------------------------------------------------------------------------


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10)
        for line in found.stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    memory = "?"
    with contextlib.suppress(OSError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    return f"{model}, {os.cpu_count()} CPUs, {memory} RAM, {platform.system()} {platform.release()}"


def commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return head + ("+uncommitted changes" if dirty.strip() else "")
    return "?"


def command_line() -> str:
    python = Path(PYTHON)
    shown = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    script = Path(sys.argv[0]).resolve()
    script_shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    return " ".join([str(shown), str(script_shown), *sys.argv[1:]])


@dataclass
class Cell:
    runs: list[WrkResult] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(r, attribute) for r in self.runs)


BASELINES = (("litellm", "LiteLLM", ".1f"), ("passthrough", "pass-through", ".2f"))


def table(
    contenders: list[Contender], cells: dict[tuple[str, int], Cell], connections: list[int]
) -> str:
    names = {c.name for c in contenders}
    baselines = [b for b in BASELINES if b[0] in names]
    head = "| contender | connections | req/s | p50 ms | p99 ms | CPU ms/req | "
    head += "".join(f"vs {label} | " for _, label, _ in baselines)
    rows = [
        head + "errors | load (1 min) |",
        "|---|" + "---:|" * (7 + len(baselines)),
    ]
    for conns in connections:
        for contender in contenders:
            cell = cells[(contender.name, conns)]
            rps = cell.median("rps")
            ratios = "".join(
                f"{rps / cells[(name, conns)].median('rps'):{fmt}} | " for name, _, fmt in baselines
            )
            errors: int | str = sum(r.non_2xx + r.socket_errors for r in cell.runs)
            if not any(r.requests for r in cell.runs):
                errors = "stalled: no answer in the run"
            rows.append(
                f"| {contender.label} | {conns} | {rps:,.0f} | {cell.median('p50_ms'):.2f} "
                f"| {cell.median('p99_ms'):.2f} | {cell.median('cpu_ms'):.2f} | {ratios}{errors} "
                f"| {cell.median('load1'):.2f} |"
            )
    return "\n".join(rows)


TARGETS = {"litellm": ("LiteLLM", 10.0), "passthrough": ("minimal pass-through", 0.5)}


def verdict(cells: dict[tuple[str, int], Cell], names: set[str], connections: list[int]) -> str:
    """Each target judged three ways: the ratio of median req/s (the table), the median
    of the ratios within each round (rounds are interleaved, so drifting load cancels),
    and the ratio of CPU time per request (what a core of its own would give)."""
    if "hexahub" not in names:
        return ""
    lines = []
    for conns in connections:
        hub = cells[("hexahub", conns)]
        for name, (label, target) in TARGETS.items():
            if name not in names:
                continue
            base = cells[(name, conns)]
            by_rps = _ratio(hub.median("rps"), base.median("rps"))
            rounds = [_ratio(h.rps, b.rps) for h, b in zip(hub.runs, base.runs, strict=True)]
            by_cpu = _ratio(base.median("cpu_ms"), hub.median("cpu_ms"))
            met = "met" if min(by_rps, statistics.median(rounds)) >= target else "NOT met"
            lines.append(
                f"- {conns} connections, HexaHub / {label}: {by_rps:.2f} by req/s "
                f"(each round: {', '.join(f'{r:.2f}' for r in rounds)}), {by_cpu:.2f} by CPU "
                f"time per request; target at least {target:g}: {met}"
            )
    return "\n".join(lines)


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def count_usage(database: Path) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        ok = db.execute("SELECT count(*) FROM gateway_usage WHERE status = 200").fetchone()[0]
        other = db.execute("SELECT count(*) FROM gateway_usage WHERE status != 200").fetchone()[0]
    return int(ok), int(other)


# --- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="HexaHub vs LiteLLM vs a minimal pass-through, under wrk (see the docstring)."
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", default="8,64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--contenders", default="hexahub,litellm,passthrough,passthrough-pools")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--py-spy", default="")
    parser.add_argument("--profile-connections", type=int, default=64)
    parser.add_argument("--hexahub-source", type=Path, default=None)
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 120 or not 0 <= args.warmup <= 60:
        parser.error("--duration: 1 to 120 s; --warmup: 0 to 60 s")
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds: 1 to 10")
    return args


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hexahub-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"\nlogs and files kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    connections = [int(c) for c in args.connections.split(",")]
    wanted = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(wanted) - {"hexahub", "litellm", "passthrough", "passthrough-pools"}
    if unknown:
        raise SystemExit(f"--contenders: unknown {', '.join(sorted(unknown))}")
    wrk = ensure_wrk()
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    load_cpu, gateway_cpu = (0, 1) if pin else (None, None)
    started_at = datetime.now(UTC)
    load_before = os.getloadavg()

    services: list[Service] = []
    contenders: list[Contender] = []
    usage_db: Path | None = None
    with workspace(args.keep) as workdir:
        try:
            upstream_service, upstream = start_upstream(workdir, load_cpu)
            services.append(upstream_service)
            for name in wanted:
                if name == "hexahub":
                    contender, usage_db = start_hexahub(
                        workdir, upstream, gateway_cpu, args.hexahub_source
                    )
                elif name == "litellm":
                    contender = start_litellm(workdir, upstream, gateway_cpu)
                elif name == "passthrough":
                    contender = start_passthrough(workdir, upstream, gateway_cpu, pools=1)
                else:
                    contender = start_passthrough(workdir, upstream, gateway_cpu, pools=8)
                services.append(contender.service)
                contenders.append(contender)
                check_answer(contender)
                print(f"{contender.label}: answers correctly at {contender.url}", flush=True)

            scripts = {c.name: lua_script(c, workdir) for c in contenders}
            cells: dict[tuple[str, int], Cell] = {}
            for round_number in range(args.rounds):
                for conns in connections:
                    for contender in contenders:
                        script = scripts[contender.name]
                        if args.warmup:
                            run_wrk(
                                wrk,
                                contender,
                                script,
                                connections=conns,
                                threads=args.threads,
                                seconds=args.warmup,
                                cpu=load_cpu,
                            )
                        result = run_wrk(
                            wrk,
                            contender,
                            script,
                            connections=conns,
                            threads=args.threads,
                            seconds=args.duration,
                            cpu=load_cpu,
                        )
                        cells.setdefault((contender.name, conns), Cell()).runs.append(result)
                        print(
                            f"round {round_number + 1}, {contender.label}, {conns} connections: "
                            f"{result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                            f"p99 {result.p99_ms:.2f} ms, non-2xx {result.non_2xx}, "
                            f"socket errors {result.socket_errors}, load {result.load1:.2f}",
                            flush=True,
                        )

            hub = next((c for c in contenders if c.name == "hexahub"), None)
            if hub is not None and args.py_spy:
                profile_hexahub(
                    args.py_spy,
                    wrk,
                    hub,
                    scripts["hexahub"],
                    workdir,
                    connections=args.profile_connections,
                    seconds=args.duration,
                    threads=args.threads,
                    cpu=load_cpu,
                )
            usage_line, usage_ok = "", True
            if hub is not None and usage_db is not None:
                code = hub.service.stop()
                recorded_ok, recorded_other = count_usage(usage_db)
                extra = recorded_ok - hub.total_ok
                usage_ok = 0 <= extra <= hub.cut_off and recorded_other == hub.total_bad
                usage_line = (
                    f"HexaHub usage records after a clean stop (exit {code}): {recorded_ok} "
                    f"with status 200, {recorded_other} other; wrk and the check counted "
                    f"{hub.total_ok} successful answers, {hub.total_bad} other. {extra} more "
                    f"records than answers: requests in flight when wrk stopped are served "
                    f"and recorded but not counted by wrk (at most {hub.cut_off} here). "
                    + ("Nothing lost." if usage_ok else "MISMATCH: usage was lost or invented.")
                )
        finally:
            for service in reversed(services):
                service.stop()

        names = {c.name for c in contenders}
        print()
        print(f"date: {started_at:%Y-%m-%d %H:%M} UTC")
        print(f"machine: {machine()}")
        print(
            f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}; "
            f"after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        print(f"commit: {commit()}")
        if args.hexahub_source:
            print(f"HexaHub from: {args.hexahub_source}")
        print(f"command: {command_line()}")
        print(
            f"pinning: {'gateway on CPU 1; upstream and wrk on CPU 0' if pin else 'none'}; "
            f"wrk -t{args.threads}, {args.warmup:g} s warm-up + {args.duration:g} s measured, "
            f"{args.rounds} round(s) (medians)"
        )
        print()
        print(table(contenders, cells, connections))
        print()
        print(verdict(cells, names, connections))
        if usage_line:
            print()
            print(usage_line)
        if not usage_ok:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
