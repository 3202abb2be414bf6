"""Reading a working tree into an index store, and filling in the vectors behind it.

Two passes, so full-text search works within seconds of adding a repository:

1. `index_tree` walks the tree, hashes each file (git's blob id) and re-reads only files
   whose hash changed: it checks them (binary, minified, generated, too large, secrets
   file ...), scans them for credentials and replaces each value with a marker
   (scanning.py), chunks the redacted text with tree-sitter and writes each file in one
   store transaction. Files gone from the tree leave the index. No model is involved.
   What the scan found goes to a `FindingsSink` before the file is written, so a run cut
   short never leaves a redacted file whose findings were not recorded.
2. `embed_pending` embeds the chunks that have no vector yet, in batches of like lengths,
   keeping two requests in flight so the embedding model never waits for the store.

Both can be stopped at any point and run again: they start from what the store holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hexahub.context import chunking, files, scanning
from hexahub.context.embeddings import Embedder
from hexahub.context.scanning import Detection
from hexahub.context.stores.base import IndexStore
from hexahub.context.types import ParsedFile

# progress(phase, done, total): called often; implementations throttle their own writes.
Progress = Callable[[str, int, int], Awaitable[None]]


class FindingsSink(Protocol):
    """Where the credentials found while indexing go (the service records them)."""

    async def tree_listed(self, paths: Sequence[str]) -> None:
        """Called once with every path in the tree: findings elsewhere have left it."""
        ...

    async def file_scanned(self, path: str, found: Sequence[Detection]) -> None:
        """Called for every file read again, with what its scan found (often nothing)."""
        ...


@dataclass
class IndexReport:
    seen: int = 0  # files in the tree (after include/exclude and ignores)
    changed: int = 0  # files (re)read and written
    unchanged: int = 0
    removed: int = 0  # files gone from the tree, dropped from the index
    skipped: int = 0  # of the changed files, those recorded as skipped
    chunks: int = 0  # chunks written
    secrets: int = 0  # credentials found (and redacted) in the files read
    seconds: float = 0.0


@dataclass
class _Prepared:
    path: str
    content_hash: str
    size: int
    language: str
    content: str | None
    parsed: ParsedFile | None
    skipped: str | None
    secrets: tuple[Detection, ...] = ()


def _prepare(root: Path, path: str, known_hash: str | None, max_bytes: int) -> _Prepared | None:
    """Read, hash and (when changed) chunk one file; None when unchanged or unreadable."""
    full = root / path
    try:
        size = full.stat().st_size
        if size > max_bytes:
            digest = f"size:{size}:{full.stat().st_mtime_ns}"
            if digest == known_hash:
                return None
            too_large = f"too large ({size} bytes > {max_bytes})"
            return _Prepared(path, digest, size, files.language_for(path), None, None, too_large)
        data = full.read_bytes()
    except OSError:
        return None  # vanished or unreadable since the walk: treated as gone next time
    digest = files.git_blob_sha(data)
    if digest == known_hash:
        return None
    text, reason = files.check_content(path, data, max_bytes=max_bytes)
    if text is None:
        found: tuple[Detection, ...] = ()
        if reason == files.SECRETS_FILE and (plain := files.decode_text(data)) is not None:
            found = scanning.scan_text(path, plain).detections  # reported, never indexed
        language = files.language_for(path)
        return _Prepared(path, digest, len(data), language, None, None, reason, found)
    # Everything below (chunks, symbols, full text, vectors, the code view) sees only the
    # redacted text.
    scan = scanning.scan_text(path, text)
    text = scan.text
    # The first line names the language of extensionless scripts (#!/bin/bash).
    language = files.language_for(path, text[:200].partition("\n")[0])
    parsed = chunking.chunk_file(path, text, language)
    return _Prepared(path, digest, len(data), parsed.language, text, parsed, None, scan.detections)


async def index_tree(
    store: IndexStore,
    repo_id: str,
    root: Path,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    max_bytes: int = 1_000_000,
    progress: Progress | None = None,
    findings: FindingsSink | None = None,
) -> IndexReport:
    started = time.perf_counter()
    report = IndexReport()
    known = await store.file_states(repo_id)
    paths = await asyncio.to_thread(
        lambda: list(files.walk(root, include=include, exclude=exclude))
    )
    report.seen = len(paths)
    present = set(paths)
    gone = [path for path in known if path not in present]
    if findings is not None:
        await findings.tree_listed(paths)
    if gone:
        await store.remove_files(repo_id, gone)
        report.removed = len(gone)

    # Reading and chunking run in a worker thread while the store writes the previous
    # file in its own thread: a small queue between them keeps both busy.
    queue: asyncio.Queue[_Prepared | None] = asyncio.Queue(maxsize=32)
    total = len(paths)

    async def produce() -> None:
        try:
            batch = 16
            for start in range(0, total, batch):
                part = paths[start : start + batch]

                def work(part: list[str] = part) -> list[_Prepared | None]:
                    return [
                        _prepare(
                            root,
                            path,
                            known[path].content_hash if path in known else None,
                            max_bytes,
                        )
                        for path in part
                    ]

                for item in await asyncio.to_thread(work):
                    if item is None:
                        report.unchanged += 1
                    else:
                        await queue.put(item)
                if progress is not None:
                    await progress("reading files", min(start + batch, total), total)
        finally:
            await queue.put(None)

    producer = asyncio.create_task(produce())
    try:
        while (item := await queue.get()) is not None:
            if findings is not None:
                await findings.file_scanned(item.path, item.secrets)
            report.secrets += len(item.secrets)
            await store.replace_file(
                repo_id,
                item.path,
                content_hash=item.content_hash,
                size=item.size,
                language=item.language,
                content=item.content,
                parsed=item.parsed,
                skipped=item.skipped,
            )
            report.changed += 1
            if item.skipped:
                report.skipped += 1
            elif item.parsed is not None:
                report.chunks += len(item.parsed.chunks)
        await producer
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
    report.seconds = time.perf_counter() - started
    return report


# Pending chunks are read this many batches at a time and batched by length: a batch is
# padded to its longest text, so batches of like lengths waste less of the model's time.
SORT_WINDOW = 8


def _by_length(window: list[tuple[int, str]], batch_size: int) -> list[list[tuple[int, str]]]:
    ordered = sorted(window, key=lambda item: len(item[1]))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


async def embed_pending(
    store: IndexStore,
    embedder: Embedder,
    repo_id: str,
    *,
    batch_size: int = 64,
    progress: Progress | None = None,
    deadline: float | None = None,
) -> int:
    """Embed every chunk of the repository without a vector for the embedder's model.

    Returns how many were embedded. With `deadline` (a time.monotonic() value) it stops
    after the batch that crosses it; the rest stay pending for the next call.
    """
    if not store.has_vectors:
        return 0
    model = embedder.model
    counts = await store.counts(repo_id, model)
    total = counts.chunks
    done = counts.embedded
    embedded = 0
    after = 0
    in_flight: set[asyncio.Task[int]] = set()

    async def one(batch: list[tuple[int, str]]) -> int:
        vectors = await embedder.embed([text for _, text in batch])
        await store.put_vectors(
            model, [(cid, vec) for (cid, _), vec in zip(batch, vectors, strict=True)]
        )
        return len(batch)

    try:
        stop = False
        while not stop:
            window = await store.pending_embeddings(
                repo_id, model, batch_size * SORT_WINDOW, after_id=after
            )
            if not window:
                break
            after = max(cid for cid, _ in window)
            for batch in _by_length(window, batch_size):
                in_flight.add(asyncio.create_task(one(batch)))
                if len(in_flight) >= 2:
                    finished, in_flight = await asyncio.wait(
                        in_flight, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in finished:
                        count = task.result()
                        embedded += count
                        done += count
                    if progress is not None:
                        await progress("embedding chunks", done, total)
                if deadline is not None and time.monotonic() >= deadline:
                    stop = True  # the rest of the window stays pending for the next call
                    break
        for count in await asyncio.gather(*in_flight):
            embedded += count
            done += count
        in_flight = set()
        if progress is not None:
            await progress("embedding chunks", done, total)
    finally:
        for task in in_flight:
            task.cancel()
        for task in in_flight:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return embedded
