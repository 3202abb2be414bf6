"""The embedded index store: one SQLite file with FTS5 and sqlite-vec, through sqlean.

The index lives in its own database file, apart from the app database, so a long index
write never blocks the app. Python's own sqlite3 cannot load extensions; `sqlean` is the
same API with FTS5 built in and extension loading allowed.

Threads: every call runs off the event loop. Writes go through one dedicated thread with
its own connection (SQLite takes one writer at a time anyway); reads through a small pool
of threads, each with its own connection, which WAL lets run beside the writer.

Full text: a contentless FTS5 table (`contentless_delete=1`, so rows can be deleted by
id) over `expand_identifiers(context + text)`, tokenizer `porter unicode61`; a query is
its `query_terms` OR-ed as phrases and ranked by BM25, so a natural-language question
matches chunks that contain only some of its words.

Vectors: float32 blobs in a plain table, searched by exact `vec_distance_cosine` over
the rows that pass the filters, the top ids first and their text afterwards. A vec0
table would need one table per dimension and cannot filter by path glob; an exact scan
of 20,000 384-dimensional vectors took about 25 ms (median) on a shared 2-vCPU machine
(bench/context_stores.py).
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import sqlean
import sqlite_vec

from hexahub.context.stores import common
from hexahub.context.stores.base import StoreUnavailable
from hexahub.context.stores.globs import glob_to_regex
from hexahub.context.types import (
    FileState,
    Hit,
    ParsedFile,
    SearchFilters,
    StoreCounts,
    SymbolHit,
)
from hexahub.core.files import prepare_sqlite_file

T = TypeVar("T")

_READERS = 3
_BUSY_TIMEOUT_MS = 30_000
# The highest code point: `name < prefix + _TOP` bounds a prefix range on an index.
_TOP = "\U0010ffff"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    repo_id TEXT NOT NULL,
    path TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    language TEXT NOT NULL,
    content TEXT,
    skipped TEXT,
    PRIMARY KEY (repo_id, path)
);
-- AUTOINCREMENT: an id is never reused, so a vector computed for a chunk that was
-- replaced meanwhile can never land on its successor.
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo_id TEXT NOT NULL,
    path TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    kind TEXT NOT NULL,
    symbol TEXT,
    language TEXT NOT NULL,
    text TEXT NOT NULL,
    context TEXT NOT NULL,
    FOREIGN KEY (repo_id, path) REFERENCES files (repo_id, path) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS chunks_file ON chunks (repo_id, path);
CREATE INDEX IF NOT EXISTS chunks_repo_id ON chunks (repo_id, id);
-- `name`: the chunk's own definition name, weighted up in ranking (common.NAME_WEIGHT).
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5 (
    name,
    body,
    content = '',
    contentless_delete = 1,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
-- However a chunk goes (replaced, file removed, repository dropped), its full-text
-- entry goes with it.
CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    DELETE FROM chunks_fts WHERE rowid = old.id;
END;
CREATE TABLE IF NOT EXISTS vectors (
    chunk_id INTEGER NOT NULL REFERENCES chunks (id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    repo_id TEXT NOT NULL,
    dimensions INTEGER NOT NULL,
    embedding BLOB NOT NULL,
    PRIMARY KEY (chunk_id, model)
);
CREATE INDEX IF NOT EXISTS vectors_model_repo ON vectors (model, repo_id, dimensions);
CREATE TABLE IF NOT EXISTS symbols (
    id INTEGER PRIMARY KEY,
    repo_id TEXT NOT NULL,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    container TEXT,
    signature TEXT NOT NULL,
    language TEXT NOT NULL,
    FOREIGN KEY (repo_id, path) REFERENCES files (repo_id, path) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS symbols_file ON symbols (repo_id, path);
CREATE INDEX IF NOT EXISTS symbols_name ON symbols (lower(name), repo_id);
"""


_DROP = """
DROP TABLE IF EXISTS vectors;
DROP TABLE IF EXISTS symbols;
DROP TABLE IF EXISTS chunks_fts;
DROP TABLE IF EXISTS chunks;
DROP TABLE IF EXISTS files;
"""


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: str, value: str | None) -> bool:
    # SQLite's `x REGEXP y` calls regexp(y, x); patterns come from glob_to_regex.
    return value is not None and _compiled(pattern).match(value) is not None


def _pack(vector: Sequence[float]) -> bytes:
    return array("f", vector).tobytes()


def _filter_sql(
    filters: SearchFilters, alias: str, repo_alias: str | None = None
) -> tuple[str, list[Any]]:
    """The WHERE conditions for `filters`, each with a leading AND."""
    if not filters.repo_ids:
        raise ValueError("search needs at least one repository")
    sql = f" AND {repo_alias or alias}.repo_id IN ({', '.join('?' * len(filters.repo_ids))})"
    params: list[Any] = list(filters.repo_ids)
    if filters.language:
        sql += f" AND {alias}.language = ?"
        params.append(filters.language)
    if filters.path_glob and (regex := glob_to_regex(filters.path_glob)) is not None:
        sql += f" AND {alias}.path REGEXP ?"
        params.append(regex)
    return sql, params


class SqliteStore:
    """IndexStore on one SQLite file (FTS5 + sqlite-vec)."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._write_conn: Any = None
        self._read_conns: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._all_conns: list[Any] = []
        self._conns_lock = threading.Lock()
        self._has_vectors = False
        self.rebuilt = False

    # -- plumbing ------------------------------------------------------------------

    @property
    def has_vectors(self) -> bool:
        return self._has_vectors

    def _connect(self) -> Any:
        conn = sqlean.connect(
            str(self.path),
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
            check_same_thread=False,  # each connection is used by one thread at a time
        )
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB
        conn.execute("PRAGMA mmap_size = 1073741824")
        conn.execute("PRAGMA temp_store = MEMORY")
        try:
            conn.enable_load_extension(True)
            sqlite_vec.load(conn)
            conn.enable_load_extension(False)
            self._has_vectors = True
        except Exception:  # pragma: no cover - a build of sqlean without extensions
            self._has_vectors = False
        conn.create_function("regexp", 2, _regexp, deterministic=True)
        with self._conns_lock:
            self._all_conns.append(conn)
        return conn

    def _open_sync(self) -> None:
        prepare_sqlite_file(self.path)  # 0600, so its -wal and -shm are 0600 too
        conn = self._connect()
        conn.execute("PRAGMA journal_mode = WAL")
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version != common.INDEX_FORMAT:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'chunks'").fetchone()
            if found:
                # An index written by another version: start over, it is derived data.
                conn.executescript(_DROP)
                self.rebuilt = True
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {common.INDEX_FORMAT}")
        self._write_conn = conn

    async def open(self) -> None:
        if self._writer is not None:
            return
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="hexahub-index-write")
        self._readers = ThreadPoolExecutor(_READERS, thread_name_prefix="hexahub-index-read")
        await self._in(self._writer, self._open_sync)

    async def close(self) -> None:
        writer, readers = self._writer, self._readers
        self._writer = self._readers = None
        for executor in (readers, writer):
            if executor is not None:
                await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)
        with self._conns_lock:
            conns, self._all_conns = self._all_conns, []
        for conn in conns:
            conn.close()
        self._read_conns = queue.SimpleQueue()
        self._write_conn = None

    async def _in(self, executor: ThreadPoolExecutor | None, fn: Callable[[], T]) -> T:
        if executor is None:
            raise StoreUnavailable("the index store is not open")
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    async def _write(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(conn)` in one IMMEDIATE transaction on the writer thread."""

        def run() -> T:
            conn = self._write_conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._in(self._writer, run)

    @contextmanager
    def _reader(self) -> Iterator[Any]:
        try:
            conn = self._read_conns.get_nowait()
        except queue.Empty:
            conn = self._connect()
        try:
            yield conn
        finally:
            self._read_conns.put(conn)

    async def _read(self, fn: Callable[[Any], T]) -> T:
        def run() -> T:
            with self._reader() as conn:
                return fn(conn)

        return await self._in(self._readers, run)

    # -- files ---------------------------------------------------------------------

    async def file_states(self, repo_id: str) -> dict[str, FileState]:
        def run(conn: Any) -> dict[str, FileState]:
            rows = conn.execute(
                "SELECT path, content_hash, skipped FROM files WHERE repo_id = ?", (repo_id,)
            )
            return {p: FileState(path=p, content_hash=h, skipped=s) for p, h, s in rows}

        return await self._read(run)

    async def replace_file(
        self,
        repo_id: str,
        path: str,
        *,
        content_hash: str,
        size: int,
        language: str,
        content: str | None,
        parsed: ParsedFile | None,
        skipped: str | None = None,
    ) -> None:
        chunks = parsed.chunks if parsed is not None and skipped is None else []
        symbols = parsed.symbols if parsed is not None and skipped is None else []
        # Tokenise before the transaction, to keep the write lock short.
        entries = [(common.name_text(c), common.indexed_text(c)) for c in chunks]

        def run(conn: Any) -> None:
            conn.execute(
                "INSERT INTO files (repo_id, path, content_hash, size, language, content, "
                "skipped) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (repo_id, path) DO UPDATE "
                "SET content_hash = excluded.content_hash, size = excluded.size, "
                "language = excluded.language, content = excluded.content, "
                "skipped = excluded.skipped",
                (repo_id, path, content_hash, size, language, content, skipped),
            )
            conn.execute("DELETE FROM chunks WHERE repo_id = ? AND path = ?", (repo_id, path))
            conn.execute("DELETE FROM symbols WHERE repo_id = ? AND path = ?", (repo_id, path))
            for chunk, (name, body) in zip(chunks, entries, strict=True):
                cursor = conn.execute(
                    "INSERT INTO chunks (repo_id, path, start_line, end_line, kind, symbol, "
                    "language, text, context) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        repo_id,
                        path,
                        chunk.start_line,
                        chunk.end_line,
                        chunk.kind,
                        chunk.symbol,
                        language,
                        chunk.text,
                        chunk.context,
                    ),
                )
                conn.execute(
                    "INSERT INTO chunks_fts (rowid, name, body) VALUES (?, ?, ?)",
                    (cursor.lastrowid, name, body),
                )
            conn.executemany(
                "INSERT INTO symbols (repo_id, path, name, kind, start_line, end_line, "
                "container, signature, language) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        repo_id,
                        path,
                        s.name,
                        s.kind,
                        s.start_line,
                        s.end_line,
                        s.container,
                        s.signature,
                        language,
                    )
                    for s in symbols
                ],
            )

        await self._write(run)

    async def remove_files(self, repo_id: str, paths: Sequence[str]) -> None:
        if not paths:
            return

        def run(conn: Any) -> None:
            conn.executemany(
                "DELETE FROM files WHERE repo_id = ? AND path = ?", [(repo_id, p) for p in paths]
            )

        await self._write(run)

    async def drop_repo(self, repo_id: str) -> None:
        def run(conn: Any) -> None:
            conn.execute("DELETE FROM files WHERE repo_id = ?", (repo_id,))

        await self._write(run)

    async def read_file(self, repo_id: str, path: str) -> tuple[str, str] | None:
        def run(conn: Any) -> tuple[str, str] | None:
            row = conn.execute(
                "SELECT content, language FROM files WHERE repo_id = ? AND path = ? "
                "AND skipped IS NULL AND content IS NOT NULL",
                (repo_id, path),
            ).fetchone()
            return (row[0], row[1]) if row else None

        return await self._read(run)

    async def list_files(
        self, repo_id: str, *, skipped: bool | None = None, limit: int = 1000, offset: int = 0
    ) -> list[tuple[str, str, int, str | None]]:
        def run(conn: Any) -> list[tuple[str, str, int, str | None]]:
            rows = conn.execute(
                "SELECT path, language, size, skipped FROM files WHERE repo_id = ?"
                f"{common.SKIPPED_CONDITION[skipped]} ORDER BY path LIMIT ? OFFSET ?",
                (repo_id, limit, offset),
            )
            return [(p, lang, size, why) for p, lang, size, why in rows]

        return await self._read(run)

    # -- embeddings ----------------------------------------------------------------

    async def pending_embeddings(
        self, repo_id: str, model: str, limit: int, *, after_id: int = 0
    ) -> list[tuple[int, str]]:
        def run(conn: Any) -> list[tuple[int, str]]:
            rows = conn.execute(
                "SELECT c.id, c.context, c.text FROM chunks c WHERE c.repo_id = ? AND c.id > ? "
                "AND NOT EXISTS (SELECT 1 FROM vectors v WHERE v.chunk_id = c.id "
                "AND v.model = ?) ORDER BY c.id LIMIT ?",
                (repo_id, after_id, model, limit),
            )
            return [(i, common.embed_text(context, text)) for i, context, text in rows]

        return await self._read(run)

    async def put_vectors(self, model: str, vectors: Sequence[tuple[int, Sequence[float]]]) -> None:
        if not self._has_vectors:
            raise StoreUnavailable("sqlite-vec could not be loaded into this SQLite")
        rows = [(model, len(v), _pack(v), chunk_id) for chunk_id, v in vectors]
        if not rows:
            return

        def run(conn: Any) -> None:
            # Only chunks that still exist: ids deleted meanwhile select nothing.
            conn.executemany(
                "INSERT INTO vectors (chunk_id, model, repo_id, dimensions, embedding) "
                "SELECT id, ?1, repo_id, ?2, ?3 FROM chunks WHERE id = ?4 "
                "ON CONFLICT (chunk_id, model) DO UPDATE SET repo_id = excluded.repo_id, "
                "dimensions = excluded.dimensions, embedding = excluded.embedding",
                rows,
            )

        await self._write(run)

    async def counts(self, repo_id: str, model: str | None = None) -> StoreCounts:
        def run(conn: Any) -> StoreCounts:
            files, skipped = conn.execute(
                "SELECT count(*) FILTER (WHERE skipped IS NULL), "
                "count(*) FILTER (WHERE skipped IS NOT NULL) FROM files WHERE repo_id = ?",
                (repo_id,),
            ).fetchone()
            (chunks,) = conn.execute(
                "SELECT count(*) FROM chunks WHERE repo_id = ?", (repo_id,)
            ).fetchone()
            embedded = 0
            if model is not None:
                (embedded,) = conn.execute(
                    "SELECT count(*) FROM vectors WHERE model = ? AND repo_id = ?",
                    (model, repo_id),
                ).fetchone()
            (symbols,) = conn.execute(
                "SELECT count(*) FROM symbols WHERE repo_id = ?", (repo_id,)
            ).fetchone()
            return StoreCounts(
                files=files, skipped=skipped, chunks=chunks, embedded=embedded, symbols=symbols
            )

        return await self._read(run)

    # -- search --------------------------------------------------------------------

    async def search_text(self, query: str, filters: SearchFilters, limit: int) -> list[Hit]:
        match = common.phrases(query, " OR ")
        if not match or limit <= 0:
            return []
        where, params = _filter_sql(filters, "c")

        def run(conn: Any) -> list[Hit]:
            # Rank ids first and read the winners' text afterwards: sorting every match
            # with its text costs more than the ranking. CROSS JOIN keeps the full-text
            # match as the outer loop, each match's chunk looked up by id for the filters.
            rows = conn.execute(
                f"SELECT {common.HIT_COLUMNS}, top.rank FROM (SELECT f.rowid AS id, "
                f"bm25(chunks_fts, {common.NAME_WEIGHT}, 1.0) AS rank "
                "FROM chunks_fts AS f CROSS JOIN chunks c "
                f"ON c.id = f.rowid WHERE chunks_fts MATCH ?{where} ORDER BY rank, c.id "
                "LIMIT ?) AS top JOIN chunks c ON c.id = top.id ORDER BY top.rank, c.id",
                (match, *params, limit),
            ).fetchall()
            return [common.hit(row, -row[9]) for row in rows]

        return await self._read(run)

    async def search_vector(
        self, vector: Sequence[float], model: str, filters: SearchFilters, limit: int
    ) -> list[Hit]:
        if not self._has_vectors:
            raise StoreUnavailable("sqlite-vec could not be loaded into this SQLite")
        if limit <= 0 or not vector:
            return []
        # The repository filter on the vector row itself, so the index narrows the scan.
        where, params = _filter_sql(filters, "c", repo_alias="v")
        blob = _pack(vector)

        # Chunk columns are needed to filter only by language or path.
        join = (
            " CROSS JOIN chunks c ON c.id = v.chunk_id"
            if len(params) > len(filters.repo_ids)
            else ""
        )

        def run(conn: Any) -> list[Hit]:
            rows = conn.execute(
                f"SELECT {common.HIT_COLUMNS}, top.distance FROM (SELECT v.chunk_id AS id, "
                "vec_distance_cosine(v.embedding, ?) AS distance FROM vectors v"
                f"{join} WHERE v.model = ? AND v.dimensions = ?{where} "
                "ORDER BY distance, v.chunk_id LIMIT ?) AS top "
                "JOIN chunks c ON c.id = top.id ORDER BY top.distance, c.id",
                (blob, model, len(vector), *params, limit),
            ).fetchall()
            return [common.hit(row, 1.0 - row[9]) for row in rows]

        return await self._read(run)

    async def search_symbols(
        self, name: str, filters: SearchFilters, limit: int, *, kind: str | None = None
    ) -> list[SymbolHit]:
        needle = name.strip().lower()
        if not needle or limit <= 0:
            return []
        where, params = _filter_sql(filters, "s")
        if kind:
            where += " AND s.kind = ?"
            params.append(kind)
        # Exact names first, then names that start with it, then names that contain it;
        # each stage only fills what the ones before left of `limit`.
        # The name index for the first two (the planner would rather take the file
        # index for `repo_id IN (...)`, and then sort every symbol of the repository).
        stages = [
            ("INDEXED BY symbols_name WHERE lower(s.name) = ?", [needle]),
            (
                "INDEXED BY symbols_name WHERE lower(s.name) > ? AND lower(s.name) < ?",
                [needle, needle + _TOP],
            ),
            ("WHERE instr(lower(s.name), ?) > 1", [needle]),
        ]

        def run(conn: Any) -> list[SymbolHit]:
            hits: list[SymbolHit] = []
            for condition, values in stages:
                left = limit - len(hits)
                if left <= 0:
                    break
                rows = conn.execute(
                    f"SELECT {common.SYMBOL_COLUMNS} FROM symbols s {condition}{where} "
                    "ORDER BY length(s.name), s.name, s.repo_id, s.path, s.start_line LIMIT ?",
                    (*values, *params, left),
                )
                hits.extend(SymbolHit(*row) for row in rows)
            return hits

        return await self._read(run)
