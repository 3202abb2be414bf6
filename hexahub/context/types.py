"""The shapes that pass between the chunker, the indexer and the index stores."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Symbol:
    """A definition found in a file: `Client.send` is a method named `send` in `Client`."""

    name: str
    kind: str  # function, method, class, struct, enum, interface, trait, module, heading, ...
    start_line: int  # 1-based, inclusive
    end_line: int
    container: str | None = None  # the enclosing class/impl/module, when there is one
    signature: str = ""  # the definition's first line(s), trimmed


@dataclass(frozen=True)
class Chunk:
    """A piece of a file to index: a definition with its enclosing context, or a block."""

    start_line: int  # 1-based, inclusive
    end_line: int
    text: str  # the file's lines start_line..end_line, unchanged
    kind: str  # function, method, class, block, section, ...
    symbol: str | None = None  # qualified name, e.g. "Client.send"
    # What a reader needs to place the text: path, enclosing class, signature. Embedded
    # and full-text indexed together with `text`; never shown as code.
    context: str = ""


@dataclass
class ParsedFile:
    language: str  # e.g. "python"; "text" when no grammar applies
    chunks: list[Chunk] = field(default_factory=list)
    symbols: list[Symbol] = field(default_factory=list)


@dataclass(frozen=True)
class FileState:
    """What the store holds for one path: enough to tell whether it changed."""

    path: str
    content_hash: str
    skipped: str | None = None  # why the file was not indexed, when it was not


@dataclass(frozen=True)
class SearchFilters:
    repo_ids: tuple[str, ...]  # never empty: search is always scoped to repositories
    path_glob: str | None = None  # e.g. "src/**/*.py"; matched against the whole path
    language: str | None = None


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    repo_id: str
    path: str
    start_line: int
    end_line: int
    language: str
    kind: str
    symbol: str | None
    text: str
    score: float  # higher is better within one result list


@dataclass(frozen=True)
class SymbolHit:
    repo_id: str
    path: str
    name: str
    kind: str
    start_line: int
    end_line: int
    container: str | None
    signature: str
    language: str


@dataclass(frozen=True)
class StoreCounts:
    files: int  # indexed files
    skipped: int  # files seen but not indexed (the reason is kept per file)
    chunks: int
    embedded: int  # chunks that have a vector for the current embedding model
    symbols: int
