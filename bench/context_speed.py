"""Code-context indexing speed: a real repository of more than a thousand files, indexed
into a fresh SQLite store the way HexaHub indexes a repository, with the embedding model's
raw speed on the same texts measured in the same run.

The repository (by default) is a copy of the CPython standard library this interpreter was
built from (`sysconfig`'s stdlib folder), without its `test/` and `site-packages/` folders,
the static-library `config-*` folder and `__pycache__` folders: about 1,100 files, most of
them Python, with some text, data and compiled extension modules among them.

1. **First index** (`index_tree`: walk, hash, check, chunk with tree-sitter, write the
   full-text index; no model): files and chunks per second, and how soon full-text search
   answers. A probe searches every half second while the index runs and records when the
   first result came back, so "searchable within seconds" is measured, not assumed.
2. **Re-index** with nothing changed, then after editing one file (one line appended):
   how long it takes and how many files it re-read.
3. **Embeddings**: the first `--embed-chunks` chunks waiting for a vector, embedded by
   `embed_pending` through HexaHub's gateway and its built-in local model (all-MiniLM-L6-v2,
   the `local-embed` model on the `local` provider, in this process) exactly as the
   `context.embed` task does, against `SentenceTransformer.encode` of the same texts in
   batches of the same size on the same number of threads (once before and once after).
   The progress callbacks `embed_pending` makes are counted and timed.
4. **Search latency** over the whole repository: `--queries` questions (first sentences of
   docstrings of the repository's own functions, spread over it), each in `text`, `vector`
   and `hybrid` mode, p50 and p95. Embedding all of the repository's chunks on a CPU
   takes far longer than the benchmark should, so the chunks beyond the embedded ones get
   stand-in vectors first (copies of the real ones with noise), so that vector search scans
   as many vectors as a fully embedded repository has; vector and hybrid latency include
   embedding the question through the gateway.

    .venv/bin/python bench/context_speed.py [--source DIR] [--work DIR] [--embed-chunks 1500]
        [--queries 200] [--batch-size 64] [--threads 0]

`--threads 0` is what HexaHub does by default (HEXAHUB_LOCAL_THREADS: one per physical
core). Prints Markdown tables; paste them into
bench/README.md with the machine and the commit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.context_retrieval import (  # noqa: E402
    OFFLINE,
    SentenceTransformerEmbedder,
    first_sentence,
)
from bench.local_inference import commit, machine  # noqa: E402

REPO_ID = "stdlib"
LEFT_OUT_TOP = ("test", "site-packages")


# --- the repository ------------------------------------------------------------------------------


def copy_repository(source: Path, dest: Path) -> tuple[int, int]:
    """Copy `source` to `dest` without caches and the folders named above; (files, bytes)."""

    def ignore(folder: str, names: list[str]) -> list[str]:
        top = Path(folder).resolve() == source.resolve()
        return [
            name
            for name in names
            if name == "__pycache__"
            or (top and (name in LEFT_OUT_TOP or name.startswith("config-")))
        ]

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=ignore, symlinks=True)
    files = size = 0
    for path in dest.rglob("*"):
        if path.is_file() and not path.is_symlink():
            files += 1
            size += path.stat().st_size
    return files, size


def questions(root: Path, count: int) -> list[str]:
    """First sentences of docstrings of the repository's functions, spread over its files."""
    import ast

    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node)
                if doc:
                    sentence = first_sentence(doc)
                    if len(sentence.split()) >= 4:
                        found.append(sentence)
    if not found:
        sys.exit(f"no docstrings found under {root} to ask about")
    step = max(1, len(found) // count)
    return found[::step][:count]


# --- embedders -----------------------------------------------------------------------------------


@dataclass
class Gatewayed:
    embedder: Any
    runtime: Any
    threads: int
    model: str

    async def close(self) -> None:
        await self.runtime.close()


async def gateway_embedder(data_dir: Path, threads: int, batch_size: int) -> Gatewayed:
    """HexaHub's own embedding path, as the `context.embed` task builds it: the gateway with
    its built-in `local` provider, on a fresh data directory."""
    os.environ.update(OFFLINE)
    os.environ.update(
        {
            "HEXAHUB_DATA_DIR": str(data_dir),
            "HEXAHUB_LOG_LEVEL": "WARNING",
            "HEXAHUB_LOCAL_THREADS": str(threads),
            "HEXAHUB_LOCAL_EMBEDDING_BATCH_SIZE": str(batch_size),
            "HEXAHUB_LOCAL_IDLE_UNLOAD_SECONDS": "0",
            "HEXAHUB_GATEWAY_HEALTH_INTERVAL_SECONDS": "0",
            "HEXAHUB_CONTEXT_EMBED_BATCH_SIZE": str(batch_size),
        }
    )
    hexahub = str(Path(sys.executable).with_name("hexahub"))
    await asyncio.to_thread(subprocess.run, [hexahub, "migrate"], check=True, capture_output=True)

    from hexahub.context.embeddings import GatewayEmbedder, gateway_of
    from hexahub.core.runtime import Runtime
    from hexahub.localmodels.registry import resolved_threads
    from hexahub.settings import Settings

    settings = Settings()
    runtime = Runtime.build(settings)
    gateway = await gateway_of(runtime)
    embedder = GatewayEmbedder(gateway, settings.context_embedding_model, workspace_id=None)
    await embedder.embed(["warm up: load the model"])
    return Gatewayed(embedder, runtime, resolved_threads(threads), embedder.model)


def raw_speed(model: Any, texts: Sequence[str], batch_size: int) -> tuple[float, Any]:
    """Chunks per second through one `SentenceTransformer.encode` of all the texts (which
    sorts them by length, so each batch pads little); and the vectors."""
    model.encode(list(texts[:batch_size]), batch_size=batch_size, show_progress_bar=False)
    started = time.perf_counter()
    vectors = model.encode(
        list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
    )
    return len(texts) / (time.perf_counter() - started), vectors


def raw_speed_in_order(model: Any, texts: Sequence[str], batch_size: int) -> float:
    """The same, one `encode` per batch of chunks in the order the store hands them out:
    the batches `embed_pending` sends, without the gateway and the store."""
    started = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        model.encode(
            list(texts[start : start + batch_size]),
            batch_size=batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return len(texts) / (time.perf_counter() - started)


class FirstPending:
    """The store as `embed_pending` sees it, limited to the first chunks waiting for a
    vector, so that a bounded, known set of texts goes through the real pipeline."""

    def __init__(self, store: Any, last_id: int, total: int) -> None:
        self._store = store
        self._last_id = last_id
        self._total = total

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def pending_embeddings(
        self, repo_id: str, model: str, limit: int, *, after_id: int = 0
    ) -> list[tuple[int, str]]:
        batch = await self._store.pending_embeddings(repo_id, model, limit, after_id=after_id)
        return [(cid, text) for cid, text in batch if cid <= self._last_id]

    async def counts(self, repo_id: str, model: str | None = None) -> Any:
        from dataclasses import replace

        counts = await self._store.counts(repo_id, model)
        return replace(counts, chunks=self._total)


@dataclass
class ProgressLog:
    started: float = field(default_factory=time.perf_counter)
    calls: list[tuple[float, str, int, int]] = field(default_factory=list)

    async def __call__(self, phase: str, done: int, total: int) -> None:
        self.calls.append((time.perf_counter() - self.started, phase, done, total))

    def summary(self) -> str:
        if not self.calls:
            return "no progress reported"
        gaps = [b[0] - a[0] for a, b in zip(self.calls, self.calls[1:], strict=False)]
        first = self.calls[0][0]
        widest = max(gaps) if gaps else 0.0
        return f"{len(self.calls)} reports, first after {first:.1f} s, widest gap {widest:.1f} s"


# --- searching -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


async def latencies(
    store: Any, embedder: Any, queries: Sequence[str], mode: str
) -> tuple[list[float], int]:
    from hexahub.context.search import search
    from hexahub.context.types import SearchFilters

    filters = SearchFilters(repo_ids=(REPO_ID,))
    times: list[float] = []
    answered = 0
    for query in queries:
        started = time.perf_counter()
        hits = await search(store, embedder, query, filters, mode=mode, limit=10)  # type: ignore[arg-type]
        times.append((time.perf_counter() - started) * 1000)
        answered += bool(hits)
    return times, answered


async def fill_stand_in_vectors(store: Any, model: str, real: Any, seed: int = 7) -> int:
    """A vector for every chunk still without one: one of `real` (this repository's own
    vectors) plus noise, normalised, so that vector search scans as many vectors as a fully
    embedded repository holds."""
    import numpy as np

    rng = np.random.default_rng(seed)
    real = np.asarray(real, dtype=np.float32)
    filled = after = 0
    while batch := await store.pending_embeddings(REPO_ID, model, 2000, after_id=after):
        after = batch[-1][0]
        picks = real[rng.integers(0, len(real), len(batch))]
        noisy = picks + rng.normal(0, 0.05, picks.shape).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        pairs = [(cid, row.tolist()) for (cid, _), row in zip(batch, noisy, strict=True)]
        await store.put_vectors(model, pairs)
        filled += len(batch)
    return filled


# --- the run -----------------------------------------------------------------------------------


def uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


async def run(args: argparse.Namespace) -> None:
    from hexahub.context.indexer import embed_pending, index_tree
    from hexahub.context.search import search
    from hexahub.context.stores import SqliteStore
    from hexahub.context.types import SearchFilters

    work = args.work or Path(tempfile.mkdtemp(prefix="hexahub-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    repo = work / "repo"
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}, commit {commit()}")
    print(f"# load average before: {uptime()}")
    files, size = copy_repository(args.source, repo)
    print(
        f"# repository: {args.source} (copy without {', '.join(LEFT_OUT_TOP)}, config-*, "
        f"__pycache__): {files} files, {size / 2**20:.1f} MiB"
    )
    asked = questions(repo, args.queries)

    for leftover in work.glob("index.sqlite*"):
        leftover.unlink()
    store = SqliteStore(work / "index.sqlite")
    await store.open()
    filters = SearchFilters(repo_ids=(REPO_ID,))
    rows: list[tuple[str, str]] = []
    try:
        # 1. first index, with a probe searching while it runs
        probe_query = asked[0]
        first_answer: list[float] = []
        progress = ProgressLog()
        started = time.perf_counter()
        indexing = asyncio.create_task(index_tree(store, REPO_ID, repo, progress=progress))

        async def probe() -> None:
            while not indexing.done():
                hits = await search(store, None, probe_query, filters, mode="text", limit=1)
                if hits and not first_answer:
                    first_answer.append(time.perf_counter() - started)
                    return
                await asyncio.sleep(0.5)

        prober = asyncio.create_task(probe())
        report = await indexing
        await prober
        index_seconds = time.perf_counter() - started
        counts = await store.counts(REPO_ID)
        rows += [
            (
                "first index: files seen / indexed / skipped",
                f"{report.seen} / {counts.files} / {counts.skipped}",
            ),
            ("first index: chunks, symbols", f"{counts.chunks} / {counts.symbols}"),
            (
                "first index: wall time (full text searchable for the whole tree)",
                f"{index_seconds:.1f} s",
            ),
            (
                "first index: files/s, chunks/s",
                f"{report.seen / index_seconds:.0f}, {counts.chunks / index_seconds:.0f}",
            ),
            (
                "first full-text answer while indexing",
                f"{first_answer[0]:.1f} s" if first_answer else "after the end",
            ),
            ("indexing progress", progress.summary()),
        ]

        # 2. re-index: unchanged, then one file edited
        started = time.perf_counter()
        again = await index_tree(store, REPO_ID, repo)
        rows.append(
            (
                "re-index, nothing changed",
                f"{time.perf_counter() - started:.2f} s ({again.changed} files re-read)",
            )
        )
        by_size = sorted(repo.rglob("*.py"), key=lambda p: (p.stat().st_size, str(p)))
        edited = by_size[len(by_size) // 2]  # a file of median size
        with edited.open("a", encoding="utf-8") as out:
            out.write("\n# edited by the benchmark\n")
        started = time.perf_counter()
        again = await index_tree(store, REPO_ID, repo)
        rows.append(
            (
                f"re-index after editing one file ({edited.relative_to(repo)})",
                f"{time.perf_counter() - started:.2f} s "
                f"({again.changed} re-read, {again.chunks} chunks)",
            )
        )

        # 3. embeddings: the pipeline against the model alone on the same texts
        gatewayed = await gateway_embedder(work / "data", args.threads, args.batch_size)
        try:
            model = gatewayed.model
            first = await store.pending_embeddings(REPO_ID, model, args.embed_chunks)
            texts = [text for _, text in first]
            threads = gatewayed.threads
            st = (await asyncio.to_thread(SentenceTransformerEmbedder, threads)).st
            raw, vectors = await asyncio.to_thread(raw_speed, st, texts, args.batch_size)
            bounded = FirstPending(store, first[-1][0], len(first))
            embed_progress = ProgressLog()
            started = time.perf_counter()
            embedded = await embed_pending(
                bounded,
                gatewayed.embedder,
                REPO_ID,
                batch_size=args.batch_size,
                progress=embed_progress,
            )
            pipeline = embedded / (time.perf_counter() - started)
            in_order = await asyncio.to_thread(raw_speed_in_order, st, texts, args.batch_size)
            del st
            tokens = statistics.median(len(t) for t in texts)
            rows += [
                (
                    f"embedding {embedded} chunks (median {tokens:.0f} characters): "
                    "embed_pending through the gateway",
                    f"{pipeline:.1f} chunks/s",
                ),
                (
                    f"the model alone, one encode of the same texts ({threads} thread(s), "
                    f"batches of {args.batch_size}, sorted by length inside)",
                    f"{raw:.1f} chunks/s (pipeline: {pipeline / raw * 100:.1f} %)",
                ),
                (
                    "the model alone, batches of 64 in store order (no length windows)",
                    f"{in_order:.1f} chunks/s (pipeline: {pipeline / in_order * 100:.1f} %)",
                ),
                ("embedding progress", embed_progress.summary()),
            ]

            # 4. search latency over the whole repository
            stand_ins = await fill_stand_in_vectors(store, model, vectors)
            rows.append(("stand-in vectors added for the rest of the chunks", f"{stand_ins}"))
            for mode in ("text", "vector", "hybrid"):
                times, answered = await latencies(store, gatewayed.embedder, asked, mode)
                rows.append(
                    (
                        f"search latency, {mode} ({len(times)} queries, limit 10)",
                        f"p50 {percentile(times, 0.5):.1f} ms, p95 {percentile(times, 0.95):.1f} "
                        f"ms ({answered} answered)",
                    )
                )
        finally:
            await gatewayed.close()
    finally:
        await store.close()
    print(f"# load average after: {uptime()}")
    print()
    print("| measure | figure |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--embed-chunks", type=int, default=1500)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="0: HexaHub's default")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
