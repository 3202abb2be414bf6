"""What the two SQL stores share: the text a chunk is indexed and embedded by, a query's
full-text phrases, the columns a search reads and the hits its rows become."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from hexahub.context.tokens import expand_identifiers, query_terms
from hexahub.context.types import Chunk, Hit

HIT_COLUMNS = (
    "c.id, c.repo_id, c.path, c.start_line, c.end_line, c.language, c.kind, c.symbol, c.text"
)
# In the order of SymbolHit's fields, so a row is `SymbolHit(*row)`.
SYMBOL_COLUMNS = (
    "s.repo_id, s.path, s.name, s.kind, s.start_line, s.end_line, s.container, "
    "s.signature, s.language"
)
# `list_files(skipped=...)`: all files, the skipped ones, or the indexed ones.
SKIPPED_CONDITION = {None: "", True: " AND skipped IS NOT NULL", False: " AND skipped IS NULL"}


# The version of what the stores keep; a store opened on an index of another version
# starts over (the index is derived data) and says so, so that repositories get re-indexed.
# 3: credentials are redacted before anything is stored (hexahub/context/scanning.py);
# indexes written before hold them in clear and must not be kept. Raise it again when the
# scanning rules change, so every file is scanned again.
INDEX_FORMAT = 3
# How much more a query word counts in a chunk's definition name than in its body. A
# question names what a definition does ("Sends a GET request."), and the definition whose
# name holds the word (`get`) beats the many chunks that merely use it; measured with
# bench/context_retrieval.py.
NAME_WEIGHT = 4.0


def name_text(chunk: Chunk) -> str:
    """The full-text entry of a chunk's own definition name (`Client.send_request` →
    "send_request send request"); "" for a chunk that is not a definition."""
    if not chunk.symbol:
        return ""
    name = re.split(r"\.|::|#", chunk.symbol)[-1]
    return expand_identifiers(name)


def indexed_text(chunk: Chunk) -> str:
    """What a chunk's full-text entry is built from: its context and text, identifiers
    expanded into their parts."""
    return expand_identifiers(f"{chunk.context}\n{chunk.text}")


def embed_text(context: str, text: str) -> str:
    """What a chunk's vector is computed from."""
    return f"{context}\n{text}" if context else text


def phrases(query: str, joiner: str) -> str:
    """The query's terms as quoted phrases joined by `joiner` (the engine's OR)."""
    return joiner.join(f'"{term}"' for term in query_terms(query))


def hit(row: Sequence[Any], score: float) -> Hit:
    """A search hit from a row that starts with HIT_COLUMNS."""
    return Hit(
        chunk_id=row[0],
        repo_id=row[1],
        path=row[2],
        start_line=row[3],
        end_line=row[4],
        language=row[5],
        kind=row[6],
        symbol=row[7],
        text=row[8],
        score=score,
    )
