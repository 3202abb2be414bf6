"""Local inference: HexaHub's `local` provider through its HTTP API against llama-cpp-python
called directly, same model and settings, in one run; plus embeddings per second.

Chat: the shipped SmolLM2-135M-Instruct GGUF, greedy (temperature 0), the same context
size and threads on both sides. Each run streams one answer of `--max-tokens` tokens and
records the time to the first token and the decoding speed (tokens after the first, per
second). Runs alternate direct / HexaHub so that a busy machine slows both alike; one warm-up
run of each is not counted. Each HexaHub run is followed by one more right after another
request with the same key (HexaHub remembers a key's owner and workspace for one second),
reported separately. HexaHub runs as a real server (`hexahub serve`, uvloop and
httptools) in a child process on 127.0.0.1, with a fresh data directory and API key; the
client is httpx reading the SSE stream, as an SDK would.

Embeddings: all-MiniLM-L6-v2 on both sides. Direct: `SentenceTransformer.encode` of the
texts in batches of 64. HexaHub: the same texts as `/v1/embeddings` requests of 64 inputs
one after another, and as single-text requests 16 at a time (which the worker batches).

    .venv/bin/python bench/local_inference.py [--runs 10] [--max-tokens 128] [--threads 0]
        [--context-size 2048] [--texts 512]

Prints a Markdown table; paste it into bench/README.md with the machine and the commit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hexahub.localmodels import shipped  # noqa: E402
from hexahub.localmodels.registry import resolved_threads  # noqa: E402

PROMPT = "Write a long story about a dragon who learns to cook. Story number {run}."
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


@dataclass
class Run:
    ttft: float
    tokens: int
    decode_seconds: float
    text: str
    overhead_ms: float = 0.0  # X-HexaHub-Overhead-Ms: HexaHub's own time before streaming

    @property
    def rate(self) -> float:
        return (self.tokens - 1) / self.decode_seconds if self.decode_seconds > 0 else 0.0


@dataclass
class Side:
    runs: list[Run] = field(default_factory=list)

    def median(self, what: str) -> float:
        return statistics.median(getattr(r, what) for r in self.runs)


# --- the direct baseline -------------------------------------------------------------------


def load_direct(context_size: int, threads: int) -> Any:
    from llama_cpp import Llama

    return Llama(
        model_path=str(shipped.require_default_chat_gguf()),
        n_ctx=context_size,
        n_threads=threads,
        n_threads_batch=threads,
        n_gpu_layers=0,
        verbose=False,
    )


def direct_run(llm: Any, run: int, max_tokens: int) -> Run:
    messages = [{"role": "user", "content": PROMPT.format(run=run)}]
    started = time.perf_counter()
    first = last = 0.0
    pieces: list[str] = []
    for chunk in llm.create_chat_completion(
        messages, max_tokens=max_tokens, temperature=0, stream=True
    ):
        content = chunk["choices"][0]["delta"].get("content")
        if content:
            last = time.perf_counter()
            if not pieces:
                first = last
            pieces.append(content)
    return Run(first - started, len(pieces), last - first, "".join(pieces))


# --- HexaHub, a real server in a child process -----------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed_key(env: dict[str, str]) -> str:
    """A first administrator and a gateway key in the fresh data directory."""
    code = """
import asyncio
from hexahub.core.db import Database
from hexahub.identity import keys, service, workspaces
from hexahub.settings import Settings

async def main():
    database = Database(Settings())
    try:
        async with database.sessions() as db:
            user = await service.create_first_admin(
                db, email="bench@example.org", password="correct horse battery"
            )
            workspace = (await workspaces.workspaces_of(db, user.id))[0][0]
            created = await keys.create_key(
                db, user, name="bench", scopes=["gateway"], workspace_id=workspace.id
            )
            await db.commit()
            print(created.secret)
    finally:
        await database.dispose()

asyncio.run(main())
"""
    hexahub = str(Path(sys.executable).with_name("hexahub"))
    subprocess.run([hexahub, "migrate"], env=env, check=True, capture_output=True)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


class Server:
    def __init__(self, context_size: int, threads: int) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="hexahub-bench-"))
        self.port = free_port()
        self.env = {
            **os.environ,
            **OFFLINE,
            "HEXAHUB_DATA_DIR": str(self.data),
            "HEXAHUB_PORT": str(self.port),
            "HEXAHUB_LOG_LEVEL": "WARNING",
            "HEXAHUB_LOCAL_CONTEXT_SIZE": str(context_size),
            "HEXAHUB_LOCAL_THREADS": str(threads),
            "HEXAHUB_LOCAL_IDLE_UNLOAD_SECONDS": "0",
            "HEXAHUB_RATE_LIMIT_IP_PER_MINUTE": "0",
            "HEXAHUB_RATE_LIMIT_USER_PER_MINUTE": "0",
            "HEXAHUB_RATE_LIMIT_KEY_PER_MINUTE": "0",
            "HEXAHUB_GATEWAY_HEALTH_INTERVAL_SECONDS": "0",
        }
        self.key = seed_key(self.env)
        hexahub = str(Path(sys.executable).with_name("hexahub"))
        self.process = subprocess.Popen(
            [hexahub, "serve", "--no-migrate"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError("HexaHub did not start in 60 s")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.data, ignore_errors=True)


async def hub_run(client: httpx.AsyncClient, server: Server, run: int, max_tokens: int) -> Run:
    body = {
        "model": "local-chat",
        "messages": [{"role": "user", "content": PROMPT.format(run=run)}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    started = time.perf_counter()
    first = last = 0.0
    pieces: list[str] = []
    async with client.stream(
        "POST", f"{server.url}/v1/chat/completions", json=body, headers=server.headers
    ) as response:
        response.raise_for_status()
        overhead = float(response.headers.get("x-hexahub-overhead-ms") or 0)
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    last = time.perf_counter()
                    if not pieces:
                        first = last
                    pieces.append(content)
    return Run(first - started, len(pieces), last - first, "".join(pieces), overhead)


# --- embeddings ------------------------------------------------------------------------------


def texts(count: int) -> list[str]:
    subjects = ["The cat", "A server", "My neighbour", "The river", "This function", "Our team"]
    verbs = ["sleeps on", "restarts after", "writes about", "flows past", "returns", "plans"]
    objects = ["the warm mat", "a kernel update", "the old bridge", "a sorted list", "the launch"]
    return [
        f"{subjects[i % 6]} {verbs[(i // 6) % 6]} {objects[(i // 36) % 5]} (#{i})"
        for i in range(count)
    ]


def direct_embeddings(items: list[str], threads: int) -> float:
    os.environ.update(OFFLINE)
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(
        str(shipped.require_default_embedding_dir()), device="cpu", local_files_only=True
    )
    model.encode(items[:64], batch_size=64, show_progress_bar=False)  # warm up
    started = time.perf_counter()
    model.encode(items, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
    return len(items) / (time.perf_counter() - started)


async def hub_embeddings(
    client: httpx.AsyncClient, server: Server, items: list[str]
) -> tuple[float, float]:
    url = f"{server.url}/v1/embeddings"

    async def post(inputs: list[str] | str) -> None:
        body = {"model": "local-embed", "input": inputs, "encoding_format": "base64"}
        response = await client.post(url, json=body, headers=server.headers)
        response.raise_for_status()

    await post(items[:64])  # loads the model
    started = time.perf_counter()
    for start in range(0, len(items), 64):
        await post(items[start : start + 64])
    batched = len(items) / (time.perf_counter() - started)

    gate = asyncio.Semaphore(16)

    async def one(text: str) -> None:
        async with gate:
            await post(text)

    started = time.perf_counter()
    await asyncio.gather(*(one(t) for t in items))
    single = len(items) / (time.perf_counter() - started)
    return batched, single


# --- the run ---------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    load = os.getloadavg()[0]
    return f"{cpu}, {os.cpu_count()} CPUs, {memory:.0f} GiB, load {load:.1f} at start"


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "?"
    return head + ("+changes" if dirty else "")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--context-size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=0, help="0: one per physical core")
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--time-limit", type=float, default=900, help="seconds for chat runs")
    args = parser.parse_args()
    if not (shipped.chat_available() and shipped.embeddings_available()):
        sys.exit(f"the local models are not installed; run: {shipped.INSTALL_ALL}")
    threads = resolved_threads(args.threads)
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}, commit {commit()}")
    print(
        f"# SmolLM2-135M-Instruct Q4_1, n_ctx {args.context_size}, {threads} thread(s), "
        f"greedy, {args.max_tokens} tokens per answer, {args.runs} runs per side"
    )

    llm = load_direct(args.context_size, threads)
    server = Server(args.context_size, threads)
    direct, hub, warm, direct_warm = Side(), Side(), Side(), Side()
    same_text = 0
    try:
        async with httpx.AsyncClient(timeout=300, trust_env=False) as client:
            direct_run(llm, -1, args.max_tokens)  # warm-up, both sides
            await hub_run(client, server, -1, args.max_tokens)
            deadline = time.monotonic() + args.time_limit
            for run in range(args.runs):
                if time.monotonic() > deadline:
                    print(f"# time limit reached after {run} runs", file=sys.stderr)
                    break
                # Alternate which side goes first, so drift in the machine's load is shared.
                if run % 2 == 0:
                    d = direct_run(llm, run, args.max_tokens)
                    h = await hub_run(client, server, run, args.max_tokens)
                else:
                    h = await hub_run(client, server, run, args.max_tokens)
                    d = direct_run(llm, run, args.max_tokens)
                direct.runs.append(d)
                hub.runs.append(h)
                same_text += d.text == h.text
                # The same again right after another request with this key: HexaHub keeps
                # who a key belongs to for one second, so this one skips those look-ups.
                # Compared with a direct run of the same prompt: a longer number in the
                # prompt is more tokens to read.
                await client.get(f"{server.url}/v1/models", headers=server.headers)
                warm.runs.append(await hub_run(client, server, 1000 + run, args.max_tokens))
                direct_warm.runs.append(direct_run(llm, 1000 + run, args.max_tokens))
            del llm
            items = texts(args.texts)
            direct_rate = direct_embeddings(items, threads)
            hub_batched, hub_single = await hub_embeddings(client, server, items)
    finally:
        server.close()

    def ratio(ours: float, theirs: float) -> str:
        return f"{ours / theirs * 100:.1f} %" if theirs else "-"

    rate_d, rate_h = direct.median("rate"), hub.median("rate")
    ttft_d, ttft_h = direct.median("ttft") * 1000, hub.median("ttft") * 1000
    tokens = statistics.median(r.tokens for r in hub.runs)
    rows = [
        ("decode speed (tokens/s)", f"{rate_d:.1f}", f"{rate_h:.1f}", ratio(rate_h, rate_d)),
        ("time to first token (ms)", f"{ttft_d:.1f}", f"{ttft_h:.1f}", ratio(ttft_h, ttft_d)),
        (
            "time to first token, key used in the last second (ms)",
            f"{direct_warm.median('ttft') * 1000:.1f}",
            f"{warm.median('ttft') * 1000:.1f}",
            ratio(warm.median("ttft"), direct_warm.median("ttft")),
        ),
        (
            "HexaHub's own work in that (X-HexaHub-Overhead-Ms)",
            "",
            f"{hub.median('overhead_ms'):.1f}",
            "",
        ),
        (
            "tokens per answer",
            f"{statistics.median(r.tokens for r in direct.runs):.0f}",
            f"{tokens:.0f}",
            f"same text in {same_text}/{len(hub.runs)} runs",
        ),
        (
            "embeddings/s, 64 texts per request",
            f"{direct_rate:.0f}",
            f"{hub_batched:.0f}",
            ratio(hub_batched, direct_rate),
        ),
        (
            "embeddings/s, 1 text per request, 16 at once",
            f"{direct_rate:.0f}",
            f"{hub_single:.0f}",
            ratio(hub_single, direct_rate),
        ),
    ]
    print()
    print(
        "| measure (median of runs) | llama-cpp-python direct | HexaHub HTTP API | HexaHub/direct |"
    )
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    asyncio.run(main())
