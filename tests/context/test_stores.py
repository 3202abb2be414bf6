"""The IndexStore contract, run on every store (see conftest.py)."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from hexahub.context.stores import IndexStore, StoreUnavailable
from hexahub.context.stores.globs import compiled_glob, glob_to_regex
from hexahub.context.types import Chunk, ParsedFile, SearchFilters, Symbol

from .conftest import StoreFactory
from .helpers import mark_older_format

CLIENT_PY = """class Client:
    def __init__(self, max_redirects: int = 5):
        self.max_redirects = max_redirects

    def getUserName(self) -> str:
        return self.session.user.name

    def send(self, request):
        raise HTTPServerError("unreachable")
"""


def client_parsed() -> ParsedFile:
    lines = CLIENT_PY.splitlines()

    def chunk(start: int, end: int, kind: str, symbol: str) -> Chunk:
        return Chunk(
            start_line=start,
            end_line=end,
            text="\n".join(lines[start - 1 : end]),
            kind=kind,
            symbol=symbol,
            context="src/http/client.py\nclass Client:",
        )

    return ParsedFile(
        language="python",
        chunks=[
            chunk(2, 3, "method", "Client.__init__"),
            chunk(5, 6, "method", "Client.getUserName"),
            chunk(8, 9, "method", "Client.send"),
        ],
        symbols=[
            Symbol("Client", "class", 1, 9, None, "class Client:"),
            Symbol("__init__", "method", 2, 3, "Client", "def __init__(self, max_redirects)"),
            Symbol("getUserName", "method", 5, 6, "Client", "def getUserName(self) -> str:"),
            Symbol("send", "method", 8, 9, "Client", "def send(self, request):"),
        ],
    )


def text_file(text: str, *, language: str = "text", kind: str = "block") -> ParsedFile:
    end = text.count("\n") + 1
    return ParsedFile(language=language, chunks=[Chunk(1, end, text, kind)])


async def put(
    store: IndexStore,
    repo: str,
    path: str,
    parsed: ParsedFile | None,
    *,
    content: str | None = None,
    content_hash: str = "h1",
    skipped: str | None = None,
) -> None:
    if content is None and parsed is not None:
        content = "\n".join(c.text for c in parsed.chunks)
    await store.replace_file(
        repo,
        path,
        content_hash=content_hash,
        size=len(content or ""),
        language=parsed.language if parsed else "text",
        content=content,
        parsed=parsed,
        skipped=skipped,
    )


def only(*repos: str, glob: str | None = None, language: str | None = None) -> SearchFilters:
    return SearchFilters(repo_ids=repos, path_glob=glob, language=language)


def unit(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


async def test_replace_file_then_read_back(store: IndexStore) -> None:
    await put(store, "r1", "src/http/client.py", client_parsed(), content=CLIENT_PY)

    states = await store.file_states("r1")
    assert set(states) == {"src/http/client.py"}
    assert states["src/http/client.py"].content_hash == "h1"
    assert states["src/http/client.py"].skipped is None
    assert await store.read_file("r1", "src/http/client.py") == (CLIENT_PY, "python")
    assert await store.read_file("r1", "missing.py") is None
    assert await store.read_file("r2", "src/http/client.py") is None
    assert await store.list_files("r1") == [("src/http/client.py", "python", len(CLIENT_PY), None)]
    counts = await store.counts("r1", "m")
    assert (counts.files, counts.skipped, counts.chunks, counts.embedded, counts.symbols) == (
        1,
        0,
        3,
        0,
        4,
    )


async def test_open_is_idempotent_and_sees_the_same_index(store_factory: StoreFactory) -> None:
    first = store_factory()
    await first.open()
    await first.open()
    await put(first, "r1", "a.txt", text_file("hello world"))
    second = store_factory()
    await second.open()
    assert set(await second.file_states("r1")) == {"a.txt"}
    assert [h.path for h in await second.search_text("hello", only("r1"), 5)] == ["a.txt"]


async def test_replace_file_is_atomic(store: IndexStore) -> None:
    await put(store, "r1", "src/http/client.py", client_parsed(), content=CLIENT_PY)
    before = await store.counts("r1")

    broken = ParsedFile(
        language="python",
        chunks=[Chunk(1, 1, "def replacement(): pass", "function", "replacement")],
        # A symbol without a name fails on insert, after the chunks went in.
        symbols=[Symbol(None, "function", 1, 1)],  # type: ignore[arg-type]
    )
    with pytest.raises(Exception):  # noqa: B017 - any store error; the state is what counts
        await put(store, "r1", "src/http/client.py", broken, content_hash="h2")

    assert (await store.file_states("r1"))["src/http/client.py"].content_hash == "h1"
    assert await store.counts("r1") == before
    assert await store.read_file("r1", "src/http/client.py") == (CLIENT_PY, "python")
    assert await store.search_text("replacement", only("r1"), 5) == []
    hits = await store.search_symbols("getUserName", only("r1"), 5)
    assert [h.name for h in hits] == ["getUserName"]
    # And the store still takes writes afterwards.
    await put(store, "r1", "b.txt", text_file("after the failure"))
    assert (await store.counts("r1")).files == 2


async def test_replacing_again_drops_old_chunks_vectors_and_symbols(
    store: IndexStore, expects_vectors: bool
) -> None:
    await put(store, "r1", "src/http/client.py", client_parsed(), content=CLIENT_PY)
    if expects_vectors:
        pending = await store.pending_embeddings("r1", "m", 10)
        await store.put_vectors("m", [(i, [1.0, 0.0, 0.0, float(i)]) for i, _ in pending])
        assert (await store.counts("r1", "m")).embedded == 3

    replacement = ParsedFile(
        language="python",
        chunks=[Chunk(1, 2, "def fetchAccount():\n    pass", "function", "fetchAccount")],
        symbols=[Symbol("fetchAccount", "function", 1, 2, None, "def fetchAccount():")],
    )
    await put(store, "r1", "src/http/client.py", replacement, content_hash="h2")

    counts = await store.counts("r1", "m")
    assert (counts.files, counts.chunks, counts.embedded, counts.symbols) == (1, 1, 0, 1)
    assert await store.search_text("user name", only("r1"), 5) == []
    assert await store.search_symbols("getUserName", only("r1"), 5) == []
    hits = await store.search_text("fetch account", only("r1"), 5)
    assert [h.symbol for h in hits] == ["fetchAccount"]
    if expects_vectors:
        assert await store.search_vector([1.0, 0.0, 0.0, 1.0], "m", only("r1"), 5) == []
        assert [i for i, _ in await store.pending_embeddings("r1", "m", 10)] == [hits[0].chunk_id]


async def test_remove_files_and_drop_repo(store: IndexStore) -> None:
    await put(store, "r1", "a.py", client_parsed())
    await put(store, "r1", "b.md", text_file("Follow redirects", language="markdown"))
    await put(store, "r1", "c.md", text_file("Follow redirects", language="markdown"))
    await put(store, "r2", "a.py", client_parsed())

    await store.remove_files("r1", ["a.py", "b.md", "not-there.txt"])
    await store.remove_files("r1", [])
    assert set(await store.file_states("r1")) == {"c.md"}
    counts = await store.counts("r1")
    assert (counts.files, counts.chunks, counts.symbols) == (1, 1, 0)
    assert [h.path for h in await store.search_text("redirects", only("r1"), 5)] == ["c.md"]
    assert (await store.counts("r2")).chunks == 3  # the other repository is untouched

    await store.drop_repo("r1")
    assert await store.file_states("r1") == {}
    counts = await store.counts("r1")
    assert (counts.files, counts.skipped, counts.chunks, counts.symbols) == (0, 0, 0, 0)
    assert await store.search_text("redirects", only("r1"), 5) == []
    assert len(await store.search_text("redirects", only("r2"), 5)) == 1


async def test_embeddings_pending_put_and_counted(store: IndexStore, expects_vectors: bool) -> None:
    await put(store, "r1", "src/http/client.py", client_parsed(), content=CLIENT_PY)
    await put(store, "r2", "other.txt", text_file("elsewhere"))
    if not expects_vectors and not store.has_vectors:
        assert await store.pending_embeddings("r1", "m", 10) == []
        with pytest.raises(StoreUnavailable, match="pgvector"):
            await store.put_vectors("m", [(1, [1.0, 0.0])])
        assert (await store.counts("r1", "m")).embedded == 0
        return

    pending = await store.pending_embeddings("r1", "m", 10)
    ids = [i for i, _ in pending]
    assert ids == sorted(ids) and len(ids) == 3
    # The text to embed carries the chunk's context before its code.
    assert pending[1][1].startswith("src/http/client.py\nclass Client:")
    assert "def getUserName" in pending[1][1]
    assert [i for i, _ in await store.pending_embeddings("r1", "m", 1)] == ids[:1]
    assert [i for i, _ in await store.pending_embeddings("r1", "m", 10, after_id=ids[0])] == ids[1:]

    await store.put_vectors("m", [(ids[0], [1.0, 0.0, 0.0, 0.0]), (ids[1], [0.0, 1.0, 0.0, 0.0])])
    assert [i for i, _ in await store.pending_embeddings("r1", "m", 10)] == ids[2:]
    assert len(await store.pending_embeddings("r1", "other-model", 10)) == 3
    assert (await store.counts("r1", "m")).embedded == 2
    assert (await store.counts("r1", "other-model")).embedded == 0
    assert (await store.counts("r1")).embedded == 0

    # A chunk deleted between pending_embeddings and put_vectors: its vector is ignored.
    await store.remove_files("r1", ["src/http/client.py"])
    await store.put_vectors("m", [(ids[2], [0.0, 0.0, 1.0, 0.0]), (10**9, [1.0, 1.0, 1.0, 1.0])])
    assert (await store.counts("r1", "m")).embedded == 0
    # Vectors put twice for one chunk: the last one stays.
    (other_id, _), *_ = await store.pending_embeddings("r2", "m", 10)
    await store.put_vectors("m", [(other_id, [1.0, 0.0, 0.0, 0.0])])
    await store.put_vectors("m", [(other_id, [0.0, 1.0, 0.0, 0.0])])
    hits = await store.search_vector([0.0, 1.0, 0.0, 0.0], "m", only("r2"), 5)
    assert [h.chunk_id for h in hits] == [other_id]
    assert hits[0].score == pytest.approx(1.0)
    assert (await store.counts("r2", "m")).embedded == 1


async def test_text_search_understands_identifiers(store: IndexStore) -> None:
    await put(store, "r1", "src/http/client.py", client_parsed(), content=CLIENT_PY)
    await put(
        store,
        "r1",
        "docs/guide.md",
        text_file("# Guide\nUsers sign in with their user name.", language="markdown"),
    )

    hits = await store.search_text("user name", only("r1"), 10)
    assert {h.symbol for h in hits} >= {"Client.getUserName"}
    hit = next(h for h in hits if h.symbol == "Client.getUserName")
    assert (hit.repo_id, hit.path, hit.start_line, hit.end_line) == (
        "r1",
        "src/http/client.py",
        5,
        6,
    )
    assert hit.kind == "method" and hit.language == "python"
    assert "def getUserName(self)" in hit.text
    assert hit.score > 0

    hits = await store.search_text("max redirects", only("r1"), 10)
    assert hits[0].symbol == "Client.__init__"

    # The identifier itself, and an acronym-led one.
    assert (await store.search_text("getUserName", only("r1"), 10))[0].symbol == (
        "Client.getUserName"
    )
    assert (await store.search_text("http server error", only("r1"), 10))[0].symbol == (
        "Client.send"
    )
    # A natural question: not every word needs to match, stemming helps, and scores fall.
    hits = await store.search_text("How does the client follow a redirect?", only("r1"), 10)
    assert hits[0].symbol == "Client.__init__"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # Nothing to search for, or nothing found.
    assert await store.search_text("the of and", only("r1"), 10) == []
    assert await store.search_text("   ", only("r1"), 10) == []
    assert await store.search_text("kubernetes", only("r1"), 10) == []
    # Quotes and operators in the user's words are words, not syntax.
    assert isinstance(await store.search_text('"user" OR (name* -x) NEAR:', only("r1"), 5), list)
    assert len(await store.search_text("user name", only("r1"), 1)) == 1


async def test_the_definition_a_question_names_ranks_first(store: IndexStore) -> None:
    # `send` says "redirect" twice; `redirect` says it once, in its name. A question about
    # redirecting means the definition called so, not the code that uses it most.
    source = (
        "def send(self, request):\n"
        "    response = self.transport(request)\n"
        "    return self.redirect(response) if response.redirect else response\n"
        "\n"
        "def redirect(self, response):\n"
        "    return self.build(response)\n"
    )
    lines = source.splitlines()
    parsed = ParsedFile(
        language="python",
        chunks=[
            Chunk(1, 3, "\n".join(lines[0:3]), "function", "Client.send", "net.py"),
            Chunk(5, 6, "\n".join(lines[4:6]), "function", "Client.redirect", "net.py"),
        ],
    )
    await put(store, "r1", "net.py", parsed, content=source)
    # The rest of the repository, which never mentions redirects (BM25 weighs a word by
    # how few chunks hold it, so a corpus of two chunks that both hold it ranks nothing).
    for n in range(4):
        other = f"def build_{n}(self, response):\n    return response.body[{n}]\n"
        chunk = Chunk(1, 2, other, "function", f"Body.build_{n}", f"body{n}.py")
        await put(store, "r1", f"body{n}.py", ParsedFile("python", [chunk]), content=other)

    hits = await store.search_text("How is a redirect made?", only("r1"), 10)
    assert [h.symbol for h in hits] == ["Client.redirect", "Client.send"]


async def test_an_index_of_another_format_starts_over(store_factory: StoreFactory) -> None:
    first = store_factory()
    await first.open()
    assert first.rebuilt is False
    await put(first, "r1", "src/http/client.py", client_parsed(), content=CLIENT_PY)
    await mark_older_format(first)
    await first.close()

    second = store_factory()
    await second.open()
    assert second.rebuilt is True
    assert await second.file_states("r1") == {}
    assert await second.search_text("user name", only("r1"), 10) == []
    await put(second, "r1", "src/http/client.py", client_parsed(), content=CLIENT_PY)
    assert (await second.search_text("user name", only("r1"), 10))[0].symbol == (
        "Client.getUserName"
    )
    # Opened again in the current format: nothing is dropped.
    third = store_factory()
    await third.open()
    assert third.rebuilt is False
    assert set(await third.file_states("r1")) == {"src/http/client.py"}


async def test_search_filters(store: IndexStore, expects_vectors: bool) -> None:
    body = "def follow_redirects():\n    pass"
    layout = {
        ("r1", "src/app/net.py", "python"),
        ("r1", "src/app/deep/er/net.py", "python"),
        ("r1", "tools/net.py", "python"),
        ("r1", "docs/net.md", "markdown"),
        ("r1", "README.md", "markdown"),
        ("r2", "src/app/net.py", "python"),
    }
    for repo, path, language in sorted(layout):
        await put(store, repo, path, text_file(body, language=language, kind="function"))

    async def paths(filters: SearchFilters) -> set[tuple[str, str]]:
        return {(h.repo_id, h.path) for h in await store.search_text("redirects", filters, 50)}

    everything = {(repo, path) for repo, path, _ in layout}
    assert await paths(only("r1", "r2")) == everything
    assert await paths(only("r2")) == {("r2", "src/app/net.py")}
    assert await paths(only("r3")) == set()
    assert await paths(only("r1", glob="src/**/*.py")) == {
        ("r1", "src/app/net.py"),
        ("r1", "src/app/deep/er/net.py"),
    }
    assert await paths(only("r1", glob="*.md")) == {("r1", "docs/net.md"), ("r1", "README.md")}
    assert await paths(only("r1", glob="/*.md")) == {("r1", "README.md")}
    assert await paths(only("r1", glob="docs/")) == {("r1", "docs/net.md")}
    assert await paths(only("r1", glob="src/app/*.py")) == {("r1", "src/app/net.py")}
    assert await paths(only("r1", glob="**")) == {p for p in everything if p[0] == "r1"}
    assert await paths(only("r1", language="markdown")) == {
        ("r1", "docs/net.md"),
        ("r1", "README.md"),
    }
    assert await paths(only("r1", "r2", glob="src/**", language="python")) == {
        ("r1", "src/app/net.py"),
        ("r1", "src/app/deep/er/net.py"),
        ("r2", "src/app/net.py"),
    }

    symbols = ParsedFile(
        "python",
        [Chunk(1, 2, body, "function", "follow_redirects")],
        [Symbol("follow_redirects", "function", 1, 2, None, "def follow_redirects():")],
    )
    await put(store, "r1", "src/app/net.py", symbols)
    await put(store, "r1", "tools/net.py", symbols)
    found = await store.search_symbols("follow_redirects", only("r1", glob="src/**"), 10)
    assert [(h.repo_id, h.path) for h in found] == [("r1", "src/app/net.py")]
    assert await store.search_symbols("follow_redirects", only("r1", language="go"), 10) == []
    assert await store.search_symbols("follow_redirects", only("r2"), 10) == []

    if expects_vectors:
        pending = await store.pending_embeddings("r1", "m", 50)
        await store.put_vectors("m", [(i, [1.0, 0.5, 0.25, 0.0]) for i, _ in pending])
        hits = await store.search_vector(
            [1.0, 0.5, 0.25, 0.0], "m", only("r1", glob="*.md", language="markdown"), 10
        )
        assert {h.path for h in hits} == {"docs/net.md", "README.md"}
        assert await store.search_vector([1.0, 0.5, 0.25, 0.0], "m", only("r2"), 10) == []

    with pytest.raises(ValueError):
        await store.search_text("redirects", SearchFilters(repo_ids=()), 10)


@pytest.mark.parametrize("dimensions", [4, 384])
async def test_vector_search_ranks_the_nearest_first(
    store: IndexStore, expects_vectors: bool, dimensions: int
) -> None:
    parsed = ParsedFile("text", [Chunk(i + 1, i + 1, f"line {i}", "block") for i in range(6)], [])
    await put(store, "r1", "a.txt", parsed)
    if not expects_vectors and not store.has_vectors:
        with pytest.raises(StoreUnavailable, match="pgvector"):
            await store.search_vector([1.0] * dimensions, "m", only("r1"), 5)
        return

    rng = random.Random(dimensions)
    query = unit([rng.uniform(-1, 1) for _ in range(dimensions)])
    noise = [rng.uniform(-1, 1) for _ in range(dimensions)]
    pending = await store.pending_embeddings("r1", "m", 10)
    vectors = []
    # Chunk k is the query plus k parts noise: the further down the file, the further away.
    for k, (chunk_id, _) in enumerate(pending):
        vectors.append(
            (chunk_id, unit([q + k * 0.4 * n for q, n in zip(query, noise, strict=True)]))
        )
    await store.put_vectors("m", vectors)
    # Another model's vectors and other dimensions are not mixed in.
    await store.put_vectors("other", [(pending[-1][0], query)])

    hits = await store.search_vector(query, "m", only("r1"), 4)
    assert [h.chunk_id for h in hits] == [chunk_id for chunk_id, _ in pending[:4]]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert (hits[0].path, hits[0].start_line, hits[0].text) == ("a.txt", 1, "line 0")
    assert await store.search_vector([*query, 0.0], "m", only("r1"), 4) == []
    other = await store.search_vector(query, "other", only("r1"), 4)
    assert [h.chunk_id for h in other] == [pending[-1][0]]


async def test_symbol_search(store: IndexStore) -> None:
    await put(store, "r1", "src/http/client.py", client_parsed(), content=CLIENT_PY)
    extra = ParsedFile(
        "python",
        [],
        [
            Symbol("sender", "function", 1, 2, None, "def sender():"),
            Symbol("resend", "function", 3, 4, None, "def resend():"),
            Symbol("SEND_TIMEOUT", "constant", 5, 5, None, "SEND_TIMEOUT = 5"),
            Symbol("Send", "class", 6, 9, None, "class Send:"),
            Symbol("send_all_100%_done", "function", 10, 11, None, "def x():"),
        ],
    )
    await put(store, "r1", "src/other.py", extra, content="")

    hits = await store.search_symbols("send", only("r1"), 20)
    names = [h.name for h in hits]
    # Exact (any case) first, then prefix, then substring.
    assert set(names[:2]) == {"send", "Send"}
    assert set(names[2:5]) == {"sender", "SEND_TIMEOUT", "send_all_100%_done"}
    assert names[5:] == ["resend"]
    method = next(h for h in hits if h.name == "send")
    assert (method.repo_id, method.path, method.kind, method.container) == (
        "r1",
        "src/http/client.py",
        "method",
        "Client",
    )
    assert (method.start_line, method.end_line, method.language) == (8, 9, "python")
    assert method.signature == "def send(self, request):"

    assert [h.name for h in await store.search_symbols("GETUSERNAME", only("r1"), 5)] == [
        "getUserName"
    ]
    assert [h.name for h in await store.search_symbols("getUser", only("r1"), 5)] == ["getUserName"]
    assert [h.name for h in await store.search_symbols("send", only("r1"), 5, kind="class")] == [
        "Send"
    ]
    assert len(await store.search_symbols("send", only("r1"), 3)) == 3
    # LIKE wildcards in the name are plain characters.
    assert [h.name for h in await store.search_symbols("100%", only("r1"), 5)] == [
        "send_all_100%_done"
    ]
    assert await store.search_symbols("s_n", only("r1"), 5) == []
    assert await store.search_symbols("", only("r1"), 5) == []


async def test_skipped_files_are_recorded_with_their_reason(store: IndexStore) -> None:
    await put(store, "r1", "src/http/client.py", client_parsed(), content=CLIENT_PY)
    await put(store, "r1", "assets/logo.png", None, skipped="binary")
    await store.replace_file(
        "r1",
        "big.json",
        content_hash="h9",
        size=50_000_000,
        language="json",
        content=None,
        parsed=None,
        skipped="too large (50 MB > 1 MB)",
    )

    states = await store.file_states("r1")
    assert states["assets/logo.png"].skipped == "binary"
    assert states["big.json"].skipped == "too large (50 MB > 1 MB)"
    assert states["big.json"].content_hash == "h9"
    assert await store.read_file("r1", "big.json") is None
    assert await store.list_files("r1", skipped=True) == [
        ("assets/logo.png", "text", 0, "binary"),
        ("big.json", "json", 50_000_000, "too large (50 MB > 1 MB)"),
    ]
    assert [p for p, *_ in await store.list_files("r1", skipped=False)] == ["src/http/client.py"]
    assert [p for p, *_ in await store.list_files("r1")] == [
        "assets/logo.png",
        "big.json",
        "src/http/client.py",
    ]
    assert [p for p, *_ in await store.list_files("r1", limit=1, offset=1)] == ["big.json"]
    counts = await store.counts("r1")
    assert (counts.files, counts.skipped, counts.chunks) == (1, 2, 3)

    # A file that becomes too large loses its chunks and symbols; one that comes back
    # is indexed again.
    await put(store, "r1", "src/http/client.py", client_parsed(), skipped="too large")
    counts = await store.counts("r1")
    assert (counts.files, counts.skipped, counts.chunks, counts.symbols) == (0, 3, 0, 0)
    await put(store, "r1", "src/http/client.py", client_parsed(), content=CLIENT_PY)
    assert (await store.counts("r1")).chunks == 3


async def test_concurrent_writes_and_reads(store: IndexStore) -> None:
    async def write(i: int) -> None:
        await put(store, "r1", f"f{i:02}.txt", text_file(f"fetchAccount number {i}\nline two"))

    async def read() -> None:
        await store.search_text("fetch account", only("r1"), 5)
        await store.search_symbols("x", only("r1"), 5)

    await asyncio.gather(*(write(i) for i in range(30)), *(read() for _ in range(30)))
    # The same files again, concurrently: each ends up with exactly one chunk.
    await asyncio.gather(*(write(i) for i in range(30)), *(write(i) for i in range(30)))
    counts = await store.counts("r1")
    assert (counts.files, counts.chunks) == (30, 30)
    assert len(await store.search_text("fetch account", only("r1"), 100)) == 30


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("src/**/*.py", ["src/a.py", "src/x/y/a.py"], ["lib/src/a.py", "src/a.pyc", "a.py"]),
        ("*.md", ["README.md", "docs/x/a.md"], ["a.mdx", "md"]),
        ("tests", ["tests/a.py", "x/tests/b.py", "tests"], ["tests2/a", "a/latests/b"]),
        ("vendor/", ["vendor/x", "a/vendor/y"], ["vendor", "vendors/x"]),
        ("/src/app", ["src/app", "src/app/x.py"], ["x/src/app", "src/apps"]),
        ("src/app", ["src/app/x.py"], ["x/src/app/x.py"]),
        ("docs/**", ["docs/a", "docs/b/c"], ["x/docs/a"]),
        ("**/test_*.py", ["test_a.py", "a/b/test_c.py"], ["a/b/test_c.pyi"]),
        ("file?.txt", ["file1.txt", "d/filea.txt"], ["file10.txt", "file/.txt"]),
        ("file[0-9].txt", ["file1.txt"], ["filea.txt"]),
        ("file[!0-9].txt", ["filea.txt"], ["file1.txt", "file/.txt"]),
        ("a b(1)+.py", ["x/a b(1)+.py"], ["x/a b1.py"]),
    ],
)
def test_path_globs(pattern: str, matching: list[str], not_matching: list[str]) -> None:
    compiled = compiled_glob(pattern)
    assert compiled is not None
    for path in matching:
        assert compiled.match(path), (pattern, path)
    for path in not_matching:
        assert not compiled.match(path), (pattern, path)


def test_globs_that_match_everything() -> None:
    assert glob_to_regex("") is None
    assert glob_to_regex("**") is None
    assert glob_to_regex("/") is None
