"""The indexer against every store: incremental re-index, removal, crash safety, and
embedding in slices through the gateway."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from hexahub.context import chunking, indexer
from hexahub.context.embeddings import GatewayEmbedder
from hexahub.context.stores.base import IndexStore
from hexahub.context.types import ParsedFile, SearchFilters
from tests.context.helpers import write_project

INDEXED = {"src/billing.py", "web/session.js", "retry.go", "README.md", ".gitignore"}


async def test_reindex_is_incremental(store: IndexStore, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    first = await indexer.index_tree(store, "r1", root)
    states = await store.file_states("r1")
    indexed = {p for p, s in states.items() if s.skipped is None}
    assert indexed == INDEXED
    assert first.changed == first.seen and first.chunks > 0

    again = await indexer.index_tree(store, "r1", root)
    assert (again.changed, again.unchanged, again.removed) == (0, first.seen, 0)

    # Rewriting a file with the same bytes changes nothing; new content does.
    (root / "retry.go").write_text((root / "retry.go").read_text())
    (root / "src" / "billing.py").write_text("def refund_customer():\n    return 1\n")
    (root / "web" / "session.js").unlink()
    third = await indexer.index_tree(store, "r1", root)
    assert (third.changed, third.removed) == (1, 1)
    filters = SearchFilters(repo_ids=("r1",))
    assert await store.search_text("session store remember", filters, 5) == []
    assert [h.path for h in await store.search_text("refund customer", filters, 5)] == [
        "src/billing.py"
    ]
    assert not await store.search_symbols("InvoiceCalculator", filters, 5)


async def test_include_and_exclude(store: IndexStore, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    await indexer.index_tree(store, "r1", root, include=["src/**", "*.go"], exclude=["retry.go"])
    assert set(await store.file_states("r1")) == {"src/billing.py"}


async def test_a_crash_half_way_leaves_a_usable_index(
    store: IndexStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_project(tmp_path / "p")
    real = chunking.chunk_file

    def failing(path: str, text: str, language: str) -> ParsedFile:
        if path == "web/session.js":
            raise RuntimeError("the machine lost power")
        return real(path, text, language)

    monkeypatch.setattr(chunking, "chunk_file", failing)
    with pytest.raises(RuntimeError, match="lost power"):
        await indexer.index_tree(store, "r1", root)
    partial = await store.file_states("r1")
    assert "web/session.js" not in partial
    # What was written is whole: each file's chunks and symbols are all there or absent.
    for path in partial:
        assert path in INDEXED | {"logo.png", "web/app.min.js"}

    monkeypatch.setattr(chunking, "chunk_file", real)
    resumed = await indexer.index_tree(store, "r1", root)
    assert resumed.changed == resumed.seen - len(partial)
    await indexer.index_tree(store, "clean", root)
    assert await store.counts("r1") == await store.counts("clean")


async def test_embedding_resumes_where_it_stopped(
    app_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    from hexahub.context import service

    runtime = app_client.app.state.runtime  # type: ignore[attr-defined]
    store = await service.store_of(runtime)
    root = write_project(tmp_path / "p")
    await indexer.index_tree(store, "r1", root)
    embedder = GatewayEmbedder(app_client.app.state.gateway, "local-embed", workspace_id=None)  # type: ignore[attr-defined]
    total = (await store.counts("r1", "local-embed")).chunks
    if not store.has_vectors:
        assert await indexer.embed_pending(store, embedder, "r1") == 0
        return
    # A deadline already passed: one slice (at most two batches in flight), then stop.
    first = await indexer.embed_pending(
        store, embedder, "r1", batch_size=2, deadline=time.monotonic()
    )
    assert 0 < first < total
    assert (await store.counts("r1", "local-embed")).embedded == first
    rest = await indexer.embed_pending(store, embedder, "r1", batch_size=2)
    assert first + rest == total
    assert (await store.counts("r1", "local-embed")).embedded == total
    vector = (await embedder.embed(["total of the invoice with tax"]))[0]
    hits = await store.search_vector(vector, "local-embed", SearchFilters(repo_ids=("r1",)), 3)
    assert hits[0].path == "src/billing.py"
