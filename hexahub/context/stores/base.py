"""The one protocol every code-index store implements.

A store keeps, per repository: each seen file (content hash, language, the text itself,
or why it was skipped), its chunks with their full-text index, one vector per chunk and
embedding model, and its symbols. `replace_file` is atomic, so an indexer that dies half
way leaves every file either in its old or its new state, never a mix: re-running the
index compares hashes and carries on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from hexahub.context.types import (
    FileState,
    Hit,
    ParsedFile,
    SearchFilters,
    StoreCounts,
    SymbolHit,
)


class StoreUnavailable(Exception):
    """The store cannot do this here (e.g. PostgreSQL without the pgvector extension)."""


class IndexStore(Protocol):
    name: str  # "sqlite" or "postgres"
    # Set by `open()` when it found an index in another format and dropped it.
    rebuilt: bool

    @property
    def has_vectors(self) -> bool:
        """Whether vector search works (False on PostgreSQL without pgvector)."""
        ...

    async def open(self) -> None:
        """Create the schema when missing (idempotent); load extensions."""
        ...

    async def close(self) -> None: ...

    async def file_states(self, repo_id: str) -> dict[str, FileState]: ...

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
        """Atomically replace everything known about one file (chunks, their full-text
        entries and vectors, symbols). `skipped` records a file seen but not indexed."""
        ...

    async def remove_files(self, repo_id: str, paths: Sequence[str]) -> None: ...

    async def drop_repo(self, repo_id: str) -> None: ...

    async def pending_embeddings(
        self, repo_id: str, model: str, limit: int, *, after_id: int = 0
    ) -> list[tuple[int, str]]:
        """Chunks (id, text to embed) without a vector for `model`, in id order after
        `after_id`."""
        ...

    async def put_vectors(self, model: str, vectors: Sequence[tuple[int, Sequence[float]]]) -> None:
        """Store vectors; ids of chunks deleted meanwhile are ignored."""
        ...

    async def counts(self, repo_id: str, model: str | None = None) -> StoreCounts: ...

    async def search_text(self, query: str, filters: SearchFilters, limit: int) -> list[Hit]:
        """Full-text search; `query` is the user's words (code-aware tokenisation inside)."""
        ...

    async def search_vector(
        self, vector: Sequence[float], model: str, filters: SearchFilters, limit: int
    ) -> list[Hit]: ...

    async def search_symbols(
        self, name: str, filters: SearchFilters, limit: int, *, kind: str | None = None
    ) -> list[SymbolHit]: ...

    async def read_file(self, repo_id: str, path: str) -> tuple[str, str] | None:
        """(content, language) of an indexed file, as indexed."""
        ...

    async def list_files(
        self, repo_id: str, *, skipped: bool | None = None, limit: int = 1000, offset: int = 0
    ) -> list[tuple[str, str, int, str | None]]:
        """(path, language, size, skipped reason) in path order."""
        ...
