"""Code-context retrieval quality: full text, vectors and hybrid search on code the project
has never seen, with natural-language questions whose answer is one definition.

The dataset is built from two real open-source Python projects as installed from PyPI in
this environment, httpx (package `httpx`) and attrs (packages `attr` and `attrs`):

1. each project's installed package folders are copied to a work folder (every file but
   `__pycache__`), and in every `.py`/`.pyi` file every docstring (module, class, function,
   method) is replaced by an empty string literal padded with newlines, so that every
   other line keeps its number (the builder checks this with `ast`);
2. each documented class, function and method gives one query: the first sentence of its
   docstring, with reStructuredText roles and backquotes removed (":class:`~httpx.URL`"
   becomes "URL"). Sentences of fewer than four words, or whose words all come from the
   definition's own name, are skipped; the same sentence on several definitions (sync and
   async twins) is one query with several targets;
3. the target of a query is the definition's file and lines, from its first decorator to
   its last line. A returned chunk is a hit when it is in that file and its lines overlap
   the target's.

The stripped copy is indexed into a fresh SQLite store (`index_tree`, then `embed_pending`
with the shipped all-MiniLM-L6-v2), one repository per project, and every query runs in
the three modes, `text`, `vector` and `hybrid`, with `limit=10`. Reported per project and
overall: recall@1 (the first hit is the target), recall@10 (a target in the first ten)
and MRR@10 (the mean of 1/rank of the first target, 0 beyond ten).

    .venv/bin/python bench/context_retrieval.py [--work DIR] [--reuse] [--projects httpx,attrs]
        [--modes text,vector,hybrid] [--failures N] [--sweep] [--name-weights 1,2,8]
        [--threads N]
    .venv/bin/python bench/context_retrieval.py --dump [--work DIR] > queries.jsonl

`--dump` only builds the dataset and writes it as JSON lines (one query per line, with its
targets); `--reuse` keeps an already indexed work folder (`--work`) and only searches again;
`--failures N` prints N queries per mode whose target was not in the first ten, with what
came first instead; `--sweep` fuses each question's full-text and vector lists (40 deep)
in other ways (RRF constants, list depths, weights, scaled scores) and prints the same
figures for each; `--name-weights` ranks full text (and hybrid) again with other weights
of the definition-name column. Prints a Markdown table; paste it into bench/README.md with the
machine and the commit.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import importlib.util
import inspect
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.local_inference import commit, machine  # noqa: E402

# project name -> the importable packages it installs
PROJECTS: dict[str, tuple[str, ...]] = {"httpx": ("httpx",), "attrs": ("attr", "attrs")}
MODES = ("text", "vector", "hybrid")
SOURCE_SUFFIXES = (".py", ".pyi")
DEFINITIONS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}

# Words that say nothing about which definition is meant: a sentence made only of these
# and of the definition's own name ("Return the URL." on `url`) is not a question.
_FILLER_WORDS = """
    a an the this that these those of to for in on at by with from as is are be been it its
    and or not no if else when which who whose given new instance object value values
    return returns returned get gets set sets create creates make makes class function
    method property attribute helper used use uses
"""
FILLER = frozenset(_FILLER_WORDS.split())


@dataclass(frozen=True)
class Target:
    path: str  # relative to the project's root, e.g. "httpx/_client.py"
    start_line: int  # 1-based, the first decorator's line when decorated
    end_line: int  # inclusive
    symbol: str  # qualified name, e.g. "Client.send"
    kind: str  # class, function or method


@dataclass
class Query:
    project: str
    text: str
    targets: list[Target] = field(default_factory=list)


@dataclass
class Project:
    name: str
    root: Path  # the stripped copy: the repository to index
    files: int
    blanked: int  # docstrings replaced
    queries: list[Query]


# --- stripping docstrings, line numbers unchanged ----------------------------------------------


def package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {module!r} is not installed in {sys.prefix}")
    return Path(next(iter(spec.submodule_search_locations)))


def docstring_node(node: ast.AST) -> ast.Constant | None:
    body = getattr(node, "body", None)
    if not body or not isinstance(body[0], ast.Expr):
        return None
    value = body[0].value
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return value
    return None


def blank_docstrings(source: str) -> tuple[str, int]:
    """`source` with every docstring replaced by `""` and blank lines, so that every other
    line keeps its number and the file still parses; and how many were replaced."""
    tree = ast.parse(source)
    data = source.encode()
    line_starts = [0]
    for match in re.finditer(b"\n", data):
        line_starts.append(match.end())
    spans: list[tuple[int, int, int]] = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, *DEFINITIONS)):
            continue
        doc = docstring_node(node)
        if doc is None or doc.end_lineno is None or doc.end_col_offset is None:
            continue
        # ast's column offsets count UTF-8 bytes, hence the bytes.
        start = line_starts[doc.lineno - 1] + doc.col_offset
        end = line_starts[doc.end_lineno - 1] + doc.end_col_offset
        spans.append((start, end, doc.end_lineno - doc.lineno))
    touched: set[int] = set()
    for start, end, newlines in sorted(spans, reverse=True):
        data = data[:start] + b'""' + b"\n" * newlines + data[end:]
    for node in ast.walk(tree):
        doc = docstring_node(node) if isinstance(node, (ast.Module, *DEFINITIONS)) else None
        if doc is not None and doc.end_lineno is not None:
            touched.update(range(doc.lineno, doc.end_lineno + 1))
    stripped = data.decode()
    before, after = source.split("\n"), stripped.split("\n")
    if len(before) != len(after) or any(
        old != new
        for number, (old, new) in enumerate(zip(before, after, strict=True), 1)
        if number not in touched
    ):
        raise AssertionError("a line outside a docstring changed or moved")
    return stripped, len(spans)


def starts(tree: ast.AST) -> list[tuple[str, int]]:
    """(qualified name, line of `def`/`class`) of every definition, in walk order."""
    return [(name, node.lineno) for name, node in walk_definitions(tree)]


def walk_definitions(
    node: ast.AST, prefix: str = ""
) -> Iterator[tuple[str, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, DEFINITIONS):
            name = f"{prefix}{child.name}"
            yield name, child
            yield from walk_definitions(child, f"{name}.")
        else:
            yield from walk_definitions(child, prefix)


# --- queries -----------------------------------------------------------------------------------

_ROLE = re.compile(r":(?:[\w-]+:)+`(~?)([^`]*?)(?:\s*<([^>`]*)>)?`")
_LITERAL = re.compile(r"``([^`]*)``|`([^`]*)`")
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)[.!?](?=\s|$)")


def _role_text(match: re.Match[str]) -> str:
    tilde, title, target = match.group(1), match.group(2), match.group(3)
    text = title or target or ""
    if tilde:
        text = text.split(".")[-1]
    return text.strip()


def first_sentence(docstring: str) -> str:
    """The first sentence of a docstring's first paragraph, as plain words."""
    paragraph = inspect.cleandoc(docstring).split("\n\n", 1)[0]
    text = " ".join(paragraph.split())
    text = _ROLE.sub(_role_text, text)
    text = _LITERAL.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), text)
    end = _SENTENCE_END.search(text)
    if end:
        text = text[: end.end()]
    return text.strip()


def name_words(qualified: str) -> set[str]:
    words: set[str] = set()
    for part in re.split(r"[._]+", qualified):
        for word in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", part):
            words.add(word.lower())
    return words


def is_trivial(sentence: str, qualified: str) -> bool:
    words = [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9]*", sentence)]
    if len(words) < 4:
        return True
    own = name_words(qualified)
    # "Return the URL as a string." on `URL.__str__` still says something; "Close the
    # client." on `Client.close` does not.
    return all(w in FILLER or w in own or w.rstrip("s") in own for w in words)


def queries_of(project: str, relative: str, tree: ast.AST, by_text: dict[str, Query]) -> None:
    for qualified, node in walk_definitions(tree):
        doc = ast.get_docstring(node, clean=False)
        if not doc:
            continue
        sentence = first_sentence(doc)
        if is_trivial(sentence, qualified):
            continue
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        kind = (
            "class"
            if isinstance(node, ast.ClassDef)
            else ("method" if "." in qualified else "function")
        )
        target = Target(relative, start, node.end_lineno or node.lineno, qualified, kind)
        key = sentence.lower()
        query = by_text.setdefault(key, Query(project, sentence))
        query.targets.append(target)


def build_project(name: str, packages: Sequence[str], work: Path) -> Project:
    root = work / name
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    by_text: dict[str, Query] = {}
    files = blanked = 0
    for package in packages:
        source_dir = package_dir(package)
        for source in sorted(source_dir.rglob("*")):
            if "__pycache__" in source.parts or not source.is_file():
                continue
            relative = f"{package}/{source.relative_to(source_dir).as_posix()}"
            dest = root / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            files += 1
            if source.suffix not in SOURCE_SUFFIXES:
                shutil.copyfile(source, dest)
                continue
            text = source.read_text(encoding="utf-8")
            tree = ast.parse(text)
            stripped, count = blank_docstrings(text)
            # Every definition still starts where it did (a body that was only a docstring
            # now ends earlier: its blank lines are not part of it any more).
            if starts(ast.parse(stripped)) != starts(tree):
                raise AssertionError(f"{relative}: line numbers moved while blanking")
            dest.write_text(stripped, encoding="utf-8")
            blanked += count
            queries_of(name, relative, tree, by_text)
    return Project(name, root, files, blanked, list(by_text.values()))


def build_dataset(work: Path, projects: Sequence[str] = tuple(PROJECTS)) -> list[Project]:
    return [build_project(name, PROJECTS[name], work) for name in projects]


def describe(built: Sequence[Project]) -> str:
    lines = []
    for project in built:
        kinds: dict[str, int] = {}
        for query in project.queries:
            kind = query.targets[0].kind
            kinds[kind] = kinds.get(kind, 0) + 1
        version = installed_version(project.name)
        split = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        lines.append(
            f"# {project.name} {version}: {project.files} files, {project.blanked} docstrings "
            f"blanked, {len(project.queries)} queries ({split})"
        )
    return "\n".join(lines)


def installed_version(project: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(project)
    except PackageNotFoundError:
        return "?"


# --- searching ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    query: Query
    ranks: dict[str, int | None]  # mode -> 1-based rank of the first hit within 10, or None
    top: dict[str, list[tuple[str, int, int, str | None]]]  # mode -> first results


def first_hit(hits: Sequence[Any], targets: Sequence[Target], limit: int = 10) -> int | None:
    for rank, hit in enumerate(hits[:limit], start=1):
        for target in targets:
            if (
                hit.path == target.path
                and hit.start_line <= target.end_line
                and hit.end_line >= target.start_line
            ):
                return rank
    return None


def metrics(ranks: Sequence[int | None]) -> tuple[float, float, float]:
    """recall@1, recall@10, MRR@10."""
    if not ranks:
        return 0.0, 0.0, 0.0
    count = len(ranks)
    r1 = sum(1 for r in ranks if r == 1) / count
    r10 = sum(1 for r in ranks if r is not None and r <= 10) / count
    mrr = sum(1 / r for r in ranks if r is not None and r <= 10) / count
    return r1, r10, mrr


class SentenceTransformerEmbedder:
    """The shipped all-MiniLM-L6-v2 in this process, behind the `Embedder` protocol."""

    def __init__(self, threads: int = 0, batch_size: int = 64) -> None:
        os.environ.update(OFFLINE)
        import torch
        from sentence_transformers import SentenceTransformer

        from hexahub.localmodels import shipped

        if threads:
            torch.set_num_threads(threads)
        self.model = shipped.DEFAULT_EMBEDDING_MODEL
        self.batch_size = batch_size
        self.st = SentenceTransformer(
            str(shipped.require_default_embedding_dir()), device="cpu", local_files_only=True
        )
        self._lock = asyncio.Lock()

    def encode(self, texts: Sequence[str]) -> Any:
        return self.st.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        # One encode at a time: two would only split the same cores between them.
        async with self._lock:
            vectors = await asyncio.to_thread(self.encode, texts)
        return [row.tolist() for row in vectors]


def make_embedder(threads: int = 0) -> Any:
    """The shipped model in this process: the same vectors the gateway's `local-embed` gives,
    without a data directory and a gateway to set up."""
    return SentenceTransformerEmbedder(threads)


async def open_store(path: Path) -> Any:
    from hexahub.context.stores import SqliteStore

    store = SqliteStore(path)
    await store.open()
    return store


async def index_project(store: Any, embedder: Any, project: Project) -> dict[str, float]:
    from hexahub.context.indexer import embed_pending, index_tree

    started = time.perf_counter()
    report = await index_tree(store, project.name, project.root)
    text_seconds = time.perf_counter() - started
    started = time.perf_counter()
    embedded = await embed_pending(store, embedder, project.name)
    vector_seconds = time.perf_counter() - started
    counts = await store.counts(project.name, embedder.model)
    return {
        "files": counts.files,
        "chunks": counts.chunks,
        "embedded": embedded,
        "text_seconds": text_seconds,
        "vector_seconds": vector_seconds,
        "changed": report.changed,
    }


async def run_queries(
    store: Any, embedder: Any, project: Project, modes: Sequence[str]
) -> list[Outcome]:
    from hexahub.context.search import search
    from hexahub.context.types import SearchFilters

    filters = SearchFilters(repo_ids=(project.name,))
    outcomes = []
    for query in project.queries:
        ranks: dict[str, int | None] = {}
        top: dict[str, list[tuple[str, int, int, str | None]]] = {}
        for mode in modes:
            hits = await search(store, embedder, query.text, filters, mode=mode, limit=10)
            ranks[mode] = first_hit(hits, query.targets)
            top[mode] = [(h.path, h.start_line, h.end_line, h.symbol) for h in hits[:3]]
        outcomes.append(Outcome(query, ranks, top))
    return outcomes


@dataclass
class Lists:
    """One query's full-text and vector results, read deeper than any fusion needs."""

    query: Query
    text: list[Any]
    vector: list[Any]


async def read_lists(store: Any, embedder: Any, project: Project, depth: int) -> list[Lists]:
    from hexahub.context.types import SearchFilters

    filters = SearchFilters(repo_ids=(project.name,))
    found = []
    for query in project.queries:
        text = await store.search_text(query.text, filters, depth)
        vector = (await embedder.embed([query.text]))[0]
        nearest = await store.search_vector(vector, embedder.model, filters, depth)
        found.append(Lists(query, text, nearest))
    return found


def convex_fuse(
    text: Sequence[Any], vector: Sequence[Any], text_share: float, limit: int
) -> list[Any]:
    """Scores instead of ranks: each list's scores scaled to 0..1 over its own results,
    then text_share * text + (1 - text_share) * vector (0 where a list lacks the chunk)."""
    scores: dict[int, float] = {}
    first: dict[int, Any] = {}
    for hits, share in ((text, text_share), (vector, 1.0 - text_share)):
        if not hits:
            continue
        top, bottom = max(h.score for h in hits), min(h.score for h in hits)
        spread = (top - bottom) or 1.0
        for hit in hits:
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + share * (
                (hit.score - bottom) / spread
            )
            first.setdefault(hit.chunk_id, hit)
    ordered = sorted(scores, key=lambda cid: scores[cid], reverse=True)[:limit]
    return [first[cid] for cid in ordered]


def sweep(lists: Sequence[Lists]) -> str:
    """Hybrid's figures under other fusion settings, from the same two result lists."""
    from hexahub.context.search import DEPTH, RRF_K, TEXT_WEIGHT, fuse

    rows = [
        "| fusion | depth per list | recall@1 | recall@10 | MRR@10 |",
        "|---|---:|---:|---:|---:|",
    ]
    settings: list[tuple[str, int, float, int]] = [
        (f"RRF k={RRF_K}, text weight {TEXT_WEIGHT} (as shipped)", RRF_K, TEXT_WEIGHT, 10 * DEPTH)
    ]
    for k in (60, 30, 20, 10, 5, 1):
        settings.append((f"RRF k={k}", k, 1.0, 40))
    for depth in (10, 20):
        settings.append(("RRF k=60", 60, 1.0, depth))
    for weight in (0.5, 0.75, 1.5):
        for k in (60, 10):
            settings.append((f"RRF k={k}, text weight {weight}", k, weight, 40))
    for k in (20, 10):
        for depth in (10, 20):
            settings.append((f"RRF k={k}", k, 1.0, depth))
            settings.append((f"RRF k={k}, text weight 0.5", k, 0.5, depth))
    for label, k, weight, depth in settings:
        ranks = [
            first_hit(
                fuse([one.text[:depth], one.vector[:depth]], 10, weights=[weight, 1.0], k=k),
                one.query.targets,
            )
            for one in lists
        ]
        r1, r10, mrr = metrics(ranks)
        rows.append(f"| {label} | {depth} | {r1:.3f} | {r10:.3f} | {mrr:.3f} |")
    for share in (0.2, 0.3, 0.4, 0.5):
        for depth in (20, 40):
            ranks = [
                first_hit(
                    convex_fuse(one.text[:depth], one.vector[:depth], share, 10),
                    one.query.targets,
                )
                for one in lists
            ]
            r1, r10, mrr = metrics(ranks)
            rows.append(
                f"| scores 0..1, text share {share} | {depth} | {r1:.3f} | {r10:.3f} | {mrr:.3f} |"
            )
    for name, pick in (("full text alone", "text"), ("vectors alone", "vector")):
        ranks = [first_hit(getattr(one, pick), one.query.targets) for one in lists]
        r1, r10, mrr = metrics(ranks)
        rows.append(f"| {name} | 10 | {r1:.3f} | {r10:.3f} | {mrr:.3f} |")
    either = sum(
        1
        for one in lists
        if first_hit(one.text, one.query.targets, 40)
        or first_hit(one.vector, one.query.targets, 40)
    )
    rows.append(f"\n# target in either list's first 40: {either / max(1, len(lists)):.3f}")
    return "\n".join(rows)


async def name_weights(
    args: argparse.Namespace, store: Any, embedder: Any, built: Sequence[Project]
) -> str:
    """Full text and hybrid again with other weights of the definition-name column (the
    SQLite store reads the weight at each query, so the index stays as it is)."""
    from hexahub.context.stores import common

    weights = [float(w) for w in args.name_weights.split(",") if w]
    if not weights:
        return ""
    rows = [
        "| name weight | full text R@1 | R@10 | MRR@10 | hybrid R@1 | R@10 | MRR@10 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    shipped = common.NAME_WEIGHT
    try:
        for weight in weights:
            common.NAME_WEIGHT = weight
            outcomes = []
            for project in built:
                outcomes += await run_queries(store, embedder, project, ("text", "hybrid"))
            cells = []
            for mode in ("text", "hybrid"):
                cells += [f"{v:.3f}" for v in metrics([o.ranks[mode] for o in outcomes])]
            mark = " (as shipped)" if weight == shipped else ""
            rows.append(f"| {weight:g}{mark} | " + " | ".join(cells) + " |")
    finally:
        common.NAME_WEIGHT = shipped
    return "\n".join(rows)


def table(results: dict[str, list[Outcome]], modes: Sequence[str]) -> str:
    names = {"text": "full text", "vector": "vectors", "hybrid": "hybrid"}
    header = "| queries | measure | " + " | ".join(names.get(m, m) for m in modes) + " |"
    rows = [header, "|---|---|" + "---:|" * len(modes)]
    groups = list(results.items())
    if len(groups) > 1:
        groups.append(("all", [o for outcomes in results.values() for o in outcomes]))
    for group, outcomes in groups:
        per_mode = {m: metrics([o.ranks[m] for o in outcomes]) for m in modes}
        for index, measure in enumerate(("recall@1", "recall@10", "MRR@10")):
            best = max(per_mode[m][index] for m in modes)
            cells = []
            for mode in modes:
                value = per_mode[mode][index]
                cell = f"{value:.3f}"
                cells.append(f"**{cell}**" if value == best and len(modes) > 1 else cell)
            label = f"{group} ({len(outcomes)})" if index == 0 else ""
            rows.append(f"| {label} | {measure} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def failures(outcomes: Sequence[Outcome], modes: Sequence[str], count: int) -> str:
    lines = []
    for mode in modes:
        missed = [o for o in outcomes if o.ranks[mode] is None]
        lines.append(f"\n## {mode}: {len(missed)} of {len(outcomes)} not in the first ten")
        for outcome in missed[:count]:
            target = outcome.query.targets[0]
            found = "; ".join(
                f"{path}:{start}-{end} {symbol or ''}".strip()
                for path, start, end, symbol in outcome.top[mode]
            )
            others = ", ".join(f"{m} {outcome.ranks[m]}" for m in modes if m != mode)
            lines.append(
                f"- {outcome.query.text!r} -> {target.symbol} "
                f"({target.path}:{target.start_line}-{target.end_line}); {others}; "
                f"first: {found or 'nothing'}"
            )
    return "\n".join(lines)


def overlap_summary(outcomes: Sequence[Outcome]) -> str:
    """How the modes' misses relate: what fusion could at best reach."""
    both = text_only = vector_only = neither = 0
    for outcome in outcomes:
        text, vector = outcome.ranks.get("text"), outcome.ranks.get("vector")
        if text and vector:
            both += 1
        elif text:
            text_only += 1
        elif vector:
            vector_only += 1
        else:
            neither += 1
    total = len(outcomes) or 1
    return (
        f"# in the first ten: both modes {both}, full text only {text_only}, vectors only "
        f"{vector_only}, neither {neither}; either {(both + text_only + vector_only) / total:.3f}"
    )


# --- the command ---------------------------------------------------------------------------------


def dump(built: Sequence[Project]) -> None:
    for project in built:
        for query in project.queries:
            row = {
                "project": query.project,
                "query": query.text,
                "targets": [asdict(t) for t in query.targets],
            }
            print(json.dumps(row, ensure_ascii=False))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="keep an indexed --work folder")
    parser.add_argument("--projects", default=",".join(PROJECTS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--failures", type=int, default=0, help="misses to print per mode")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--dump", action="store_true", help="write the dataset as JSON lines")
    parser.add_argument(
        "--sweep", action="store_true", help="also try other fusion settings on the same lists"
    )
    parser.add_argument(
        "--name-weights",
        default="",
        help="also rank full text with these weights of the definition-name column, e.g. 1,2,8",
    )
    return parser.parse_args(argv)


async def evaluate(args: argparse.Namespace, built: Sequence[Project], work: Path) -> None:
    modes = [m for m in args.modes.split(",") if m]
    embedder = make_embedder(args.threads)
    print(f"# embedder: {type(embedder).__name__} ({embedder.model})")
    database = work / "index.sqlite"
    fresh = not args.reuse
    store = await open_store(database)
    results: dict[str, list[Outcome]] = {}
    try:
        # Every project is indexed before any is searched: full-text ranking statistics
        # (BM25's document frequencies, average length) are kept for the whole store, so
        # a project's results would otherwise depend on which others were indexed yet.
        if fresh:
            for project in built:
                figures = await index_project(store, embedder, project)
                print(
                    f"# {project.name}: {figures['files']} files, {figures['chunks']:.0f} chunks; "
                    f"full text in {figures['text_seconds']:.1f} s, "
                    f"{figures['embedded']:.0f} vectors in {figures['vector_seconds']:.1f} s"
                )
        for project in built:
            started = time.perf_counter()
            results[project.name] = await run_queries(store, embedder, project, modes)
            print(
                f"# {project.name}: {len(project.queries)} queries, {len(modes)} modes in "
                f"{time.perf_counter() - started:.1f} s"
            )
        if args.sweep:
            lists = []
            for project in built:
                lists += await read_lists(store, embedder, project, 40)
        by_weight = await name_weights(args, store, embedder, built)
    finally:
        await store.close()
    print()
    print(table(results, modes))
    if args.sweep:
        print()
        print(sweep(lists))
    if by_weight:
        print()
        print(by_weight)
    print()
    if {"text", "vector"} <= set(modes):
        print(overlap_summary([o for outcomes in results.values() for o in outcomes]))
    if args.failures:
        for name, outcomes in results.items():
            print(f"\n# {name}")
            print(failures(outcomes, modes, args.failures))
    saved = work / "outcomes.jsonl"
    with saved.open("w") as out:
        for outcomes in results.values():
            for o in outcomes:
                row = {"project": o.query.project, "query": o.query.text, "ranks": o.ranks}
                out.write(json.dumps(row) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    projects = [p for p in args.projects.split(",") if p]
    unknown = [p for p in projects if p not in PROJECTS]
    if unknown:
        sys.exit(f"unknown project(s) {unknown}; choose from {list(PROJECTS)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="hexahub-retrieval-"))
    work.mkdir(parents=True, exist_ok=True)
    # Rebuilt every time: the same files come out, so a reused index finds them unchanged.
    built = build_dataset(work / "src", projects)
    if args.dump:
        print(describe(built), file=sys.stderr)
        dump(built)
        return
    if not args.reuse:
        for leftover in work.glob("index.sqlite*"):
            leftover.unlink()
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}, commit {commit()}")
    print(describe(built))
    asyncio.run(evaluate(args, built, work))


if __name__ == "__main__":
    main()
