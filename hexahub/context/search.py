"""Hybrid search: full text and vectors, fused by reciprocal rank.

Each list ranks by its own scale (BM25 or ts_rank against cosine distance), so the lists
are merged by rank, not score: a chunk's fused score is the sum over lists of
weight / (k + rank). A chunk found by both rises above one found well by only one.

The constants are measured (bench/context_retrieval.py, recorded in bench/README.md): a
small k lets a list's first places count for more than the usual k=60 does, and full text,
the weaker list on natural-language questions, counts half as much as vectors; together
they make hybrid beat either list alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from hexahub.context.embeddings import Embedder
from hexahub.context.stores.base import IndexStore, StoreUnavailable
from hexahub.context.types import Hit, SearchFilters

log = logging.getLogger("hexahub.context")

Mode = Literal["hybrid", "text", "vector"]
MODES: tuple[str, ...] = ("hybrid", "text", "vector")
RRF_K = 10
TEXT_WEIGHT = 0.5
VECTOR_WEIGHT = 1.0
# Each list is read deeper than asked, so that fusion has candidates to reorder.
DEPTH = 4


def fuse(
    lists: Sequence[Sequence[Hit]],
    limit: int,
    *,
    weights: Sequence[float] | None = None,
    k: int = RRF_K,
) -> list[Hit]:
    """Weighted reciprocal-rank fusion of ranked lists (best first), `limit` best; one
    weight per list (all 1 by default)."""
    weights = weights or [1.0] * len(lists)
    scores: dict[int, float] = {}
    first: dict[int, Hit] = {}
    for hits, weight in zip(lists, weights, strict=True):
        for rank, hit in enumerate(hits, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + weight / (k + rank)
            first.setdefault(hit.chunk_id, hit)
    ordered = sorted(scores, key=lambda cid: scores[cid], reverse=True)[:limit]
    return [replace(first[cid], score=round(scores[cid], 6)) for cid in ordered]


async def search(
    store: IndexStore,
    embedder: Embedder | None,
    query: str,
    filters: SearchFilters,
    *,
    mode: Mode = "hybrid",
    limit: int = 10,
) -> list[Hit]:
    """The best chunks for `query`. Vectors are used when the store and an embedder can;
    otherwise (or while vectors are still being filled in) full text answers alone."""
    query = query.strip()
    if not query or not filters.repo_ids:
        return []
    want_vectors = mode in ("hybrid", "vector") and embedder is not None and store.has_vectors
    want_text = mode in ("hybrid", "text") or not want_vectors
    depth = limit * DEPTH if mode == "hybrid" else limit

    async def by_text() -> list[Hit]:
        return await store.search_text(query, filters, depth) if want_text else []

    async def by_vector() -> list[Hit]:
        if not want_vectors or embedder is None:
            return []
        try:
            vector = (await embedder.embed([query]))[0]
            return await store.search_vector(vector, embedder.model, filters, depth)
        except StoreUnavailable:
            return []
        except Exception as exc:
            if mode == "vector":
                raise
            # The model is down or busy: full text still answers.
            log.warning("vector search failed, answering from full text: %s", exc)
            return []

    text_hits, vector_hits = await asyncio.gather(by_text(), by_vector())
    if mode == "text" or not vector_hits:
        return text_hits[:limit]
    if mode == "vector" or not text_hits:
        return vector_hits[:limit]
    return fuse([text_hits, vector_hits], limit, weights=[TEXT_WEIGHT, VECTOR_WEIGHT])
