"""Split a source file into chunks that follow its definitions, and list its symbols.

A definition that fits the size limit is one chunk. A bigger one that holds definitions
(a class with methods, a Markdown section with subsections) becomes a chunk for its header
plus the chunks of its members; a bigger one that does not is cut into line windows, each
carrying the same context. Code between definitions (imports, constants, statements) is
grouped into "block" chunks. Every non-blank line of a file lands in at least one chunk,
and a chunk's text is always exactly the file's lines `start_line..end_line`.

Languages without a grammar here, and files whose parse fails, are cut into line windows.
`chunk_file` is safe to call from several threads at once.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from hexahub.context.chunking.languages import SPECS, SYMBOL_ONLY_KINDS, LanguageSpec
from hexahub.context.types import Chunk, ParsedFile, Symbol

__all__ = [
    "MAX_CHUNK_CHARS",
    "MAX_CHUNK_LINES",
    "WINDOW_LINES",
    "WINDOW_OVERLAP",
    "chunk_file",
    "supported_languages",
]

log = logging.getLogger(__name__)

# A chunk is at most this many lines and characters (whichever comes first, except a
# single longer line). Chunks are embedded by a model that reads ~256 word pieces and are
# shown as snippets: a function-sized piece is what both want.
MAX_CHUNK_LINES = 60
MAX_CHUNK_CHARS = 2500
# Line windows (files without a grammar, definitions too big to keep whole) aim at this
# many lines, end at a blank line when one is near, and overlap the next window a little.
WINDOW_LINES = 50
WINDOW_OVERLAP = 5
# In documents and configuration, neighbouring pieces are grouped up to this many lines.
GROUP_LINES = 24
# In code, neighbouring members of a class this short are grouped (accessors, one-line
# methods), and up to this many lines of code after a definition join its chunk.
TINY_PIECE_LINES = 3
TRAILING_LINES = 2
SIGNATURE_CHARS = 200

# Lines that only close what an earlier line opened: they join the chunk before them
# rather than make a chunk of their own.
_CLOSING_LINE = re.compile(
    r"\s*(?:[\]\)\}>;,]+|end|fi|done|esac|\?>|---|\.\.\.|in|let)\s*;?\s*(?:(?://|#|/\*).*)?"
)


def supported_languages() -> frozenset[str]:
    """Languages chunked along their definitions (the rest are cut into line windows)."""
    return frozenset(SPECS)


def chunk_file(path: str, text: str, language: str) -> ParsedFile:
    """Chunks and symbols of one file. Never raises: odd input falls back to line windows."""
    lines = text.split("\n")
    if not text.strip():
        return ParsedFile(language=language)
    layout = _Layout(path, lines)
    spec = SPECS.get(language)
    if spec is not None:
        try:
            return _chunk_with_grammar(layout, text, language, spec)
        except Exception:  # a grammar or query problem must not lose the file
            log.warning("could not parse %s as %s; using line windows", path, language)
    chunks = [
        layout.chunk(start, end, "window", None, layout.root_context)
        for start, end in layout.windows(0, len(lines) - 1, WINDOW_OVERLAP)
    ]
    return ParsedFile(language=language, chunks=chunks)


# --- tree-sitter plumbing ----------------------------------------------------------------

_local = threading.local()
_queries: dict[str, Any] = {}
_queries_lock = threading.Lock()


def _parser(grammar: str) -> Any:
    parsers: dict[str, Any] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(grammar)
    if parser is None:
        from tree_sitter_language_pack import get_parser

        parser = parsers[grammar] = get_parser(grammar)  # type: ignore[arg-type]
    return parser


def _query(spec: LanguageSpec) -> Any:
    query = _queries.get(spec.grammar)
    if query is not None:
        return query
    with _queries_lock:
        query = _queries.get(spec.grammar)
        if query is None:
            import tree_sitter
            from tree_sitter_language_pack import get_language

            language = get_language(spec.grammar)  # type: ignore[arg-type]
            try:
                query = tree_sitter.Query(language, spec.query)
            except TypeError:  # py-tree-sitter before 0.23
                query = language.query(spec.query)  # type: ignore[attr-defined]
            _queries[spec.grammar] = query
    return query


def _matches(query: Any, node: Any) -> list[dict[str, list[Any]]]:
    try:
        from tree_sitter import QueryCursor
    except ImportError:  # py-tree-sitter before 0.25
        found = query.matches(node)
    else:
        found = QueryCursor(query).matches(node)
    return [
        {name: nodes if isinstance(nodes, list) else [nodes] for name, nodes in captures.items()}
        for _, captures in found
    ]


def _node_text(node: Any) -> str:
    return bytes(node.text or b"").decode("utf-8", "replace")


def _last_row(node: Any) -> int:
    # A node that ends at the start of a line (Markdown sections, YAML documents) ends on
    # the line before.
    end = node.end_point
    if end.column == 0 and end.row > node.start_point.row:
        return int(end.row) - 1
    return int(end.row)


# --- layout: lines, sizes, windows ---------------------------------------------------------


class _Layout:
    def __init__(self, path: str, lines: list[str]) -> None:
        self.lines = lines
        self.root_context: tuple[str, ...] = (f"path: {path}",)
        # offsets[i]: characters (with newlines) before line i
        self.offsets = [0, *accumulate(len(line) + 1 for line in lines)]

    def blank(self, row: int) -> bool:
        return not self.lines[row].strip()

    def chars(self, start: int, end: int) -> int:
        return self.offsets[end + 1] - self.offsets[start]

    def fits(self, start: int, end: int) -> bool:
        return end - start + 1 <= MAX_CHUNK_LINES and self.chars(start, end) <= MAX_CHUNK_CHARS

    def trim(self, start: int, end: int) -> tuple[int, int] | None:
        """The range without blank lines at either end; None when all blank."""
        while start <= end and self.blank(start):
            start += 1
        while end >= start and self.blank(end):
            end -= 1
        return (start, end) if start <= end else None

    def windows(self, start: int, end: int, overlap: int) -> list[tuple[int, int]]:
        """Cut rows start..end into windows that fit the limits, ending at blank lines where
        one is near, each starting `overlap` lines before the previous one ended."""
        out: list[tuple[int, int]] = []
        row = start
        while True:
            while row <= end and self.blank(row):
                row += 1
            if row > end:
                return out
            hard = row
            while (
                hard < end
                and hard + 1 - row + 1 <= MAX_CHUNK_LINES
                and self.chars(row, hard + 1) <= MAX_CHUNK_CHARS
            ):
                hard += 1
            if hard == end:
                trimmed = self.trim(row, end)
                if trimmed:
                    out.append(trimmed)
                return out
            remaining = end - row + 1
            pieces = -(-remaining // WINDOW_LINES)
            target = min(hard, row + -(-remaining // pieces) - 1)
            stop = target
            best_distance: int | None = None
            for blank_row in range(row + max(1, (target - row) * 2 // 3), hard + 2):
                if blank_row <= end and self.blank(blank_row):
                    distance = abs(blank_row - 1 - target)
                    if best_distance is None or distance < best_distance:
                        best_distance, stop = distance, blank_row - 1
            trimmed = self.trim(row, stop)
            if trimmed:
                out.append(trimmed)
            row = max(stop + 1 - overlap, row + 1)

    def chunk(
        self, start: int, end: int, kind: str, symbol: str | None, context: tuple[str, ...]
    ) -> Chunk:
        return Chunk(
            start_line=start + 1,
            end_line=end + 1,
            text="\n".join(self.lines[start : end + 1]),
            kind=kind,
            symbol=symbol,
            context="\n".join(context),
        )


# --- definitions ---------------------------------------------------------------------------


@dataclass
class _Def:
    kind: str
    name: str
    qualified: str
    container: str | None
    start: int  # first row of the chunk: doc comments and decorators included
    end: int
    symbol_start: int  # first row of the definition itself (decorators included)
    signature: str
    start_byte: int
    end_byte: int
    depth: int = 0
    dropped: bool = False  # nested deeper than the language's limit
    children: list[_Def] = field(default_factory=list)


def _chunk_with_grammar(
    layout: _Layout, text: str, language: str, spec: LanguageSpec
) -> ParsedFile:
    data = text.encode("utf-8")
    tree = _parser(spec.grammar).parse(data)
    top = _definitions(tree.root_node, data, layout, spec)
    symbols = [
        Symbol(
            name=d.name,
            kind=d.kind,
            start_line=d.symbol_start + 1,
            end_line=d.end + 1,
            container=d.container,
            signature=d.signature,
        )
        for d in _flatten(top)
    ]
    symbols.sort(key=lambda s: (s.start_line, -s.end_line))
    pieces = _Pieces(layout, spec)
    pieces.emit_range(0, len(layout.lines) - 1, top, layout.root_context, None)
    return ParsedFile(language=language, chunks=pieces.finish(), symbols=symbols)


def _flatten(defs: list[_Def]) -> list[_Def]:
    out: list[_Def] = []
    for d in defs:
        out.append(d)
        out.extend(_flatten(d.children))
    return out


def _definitions(root: Any, data: bytes, layout: _Layout, spec: LanguageSpec) -> list[_Def]:
    """The file's definitions as a tree (children nested by range), in file order."""
    found: list[tuple[Any, Any, str, str, str | None]] = []  # outer, node, kind, name, container
    seen: set[tuple[int, int]] = set()
    for captures in _matches(_query(spec), root):
        def_key = next((k for k in captures if k.startswith("def.")), None)
        if def_key is None or not captures[def_key]:
            continue
        node = captures[def_key][0]
        kind = def_key[4:]
        names = captures.get("name") or []
        name = " ".join(_node_text(names[0]).split()) if names else ""
        if spec.refine is not None:
            refined = spec.refine(node, kind, name)
            if refined is None:
                continue
            kind, name = refined
        if not name:
            continue
        container = None
        if captures.get("container"):
            container = _type_name(_node_text(captures["container"][0]))
        if not spec.declarative:
            name, container = _split_qualified(name, container)
            if container is not None and kind == "function":
                kind = "method"
        outer = _outer(node, spec)
        key = (outer.start_byte, outer.end_byte)
        if key in seen:
            continue
        seen.add(key)
        found.append((outer, node, kind, name, container))

    found.sort(key=lambda f: (f[0].start_byte, -f[0].end_byte))
    top: list[_Def] = []
    stack: list[_Def] = []
    for outer, node, kind, name, container in found:
        while stack and not (stack[-1].start_byte <= outer.start_byte < stack[-1].end_byte):
            stack.pop()
        parent = stack[-1] if stack else None
        if parent is not None and outer.end_byte > parent.end_byte:
            continue  # overlapping, not nested: an odd tree; leave it to the blocks
        if parent is not None and kind == "function" and parent.kind in spec.method_containers:
            kind = "method"
        owner = ".".join(o for o in (parent and parent.qualified, container) if o) or None
        start_row = int(outer.start_point.row)
        end_row = max(start_row, _last_row(outer))
        while end_row > start_row and layout.blank(end_row):
            end_row -= 1
        d = _Def(
            kind=kind,
            name=name,
            qualified=f"{owner}.{name}" if owner else name,
            container=owner,
            start=start_row,
            end=end_row,
            symbol_start=start_row,
            signature=_signature(outer, node, name, data, spec),
            start_byte=outer.start_byte,
            end_byte=outer.end_byte,
            depth=parent.depth + 1 if parent is not None else 0,
        )
        d.dropped = (parent is not None and parent.dropped) or (
            spec.max_depth is not None and d.depth >= spec.max_depth
        )
        if parent is not None:
            d.start = max(d.start, parent.start)
            d.end = min(d.end, parent.end)
            if not d.dropped:
                parent.children.append(d)
        elif not d.dropped:
            top.append(d)
        stack.append(d)

    _attach_comments(top, None, layout, spec)
    return top


def _outer(node: Any, spec: LanguageSpec) -> Any:
    """The node with the definition's decorations: decorators, `export`, `template <>`."""
    while True:
        parent = node.parent
        if parent is None:
            return node
        single = parent.type in spec.single_wrappers and parent.named_child_count == 1
        if parent.type not in spec.wrappers and not single:
            return node
        node = parent


def _attach_comments(
    defs: list[_Def], parent: _Def | None, layout: _Layout, spec: LanguageSpec
) -> None:
    """Let each definition's chunk start at the comment lines right above it."""
    floor = parent.start + 1 if parent is not None else 0
    for d in defs:
        if spec.comment_prefixes:
            row = d.start
            while row - 1 >= floor:
                line = layout.lines[row - 1].lstrip()
                if not line or not line.startswith(spec.comment_prefixes):
                    break
                row -= 1
            # A run that starts inside a /* ... */ block whose opening is out of reach is
            # not a doc comment of its own.
            while row < d.start and layout.lines[row].lstrip().startswith(("*", "*/")):
                row += 1
            d.start = row
        _attach_comments(d.children, d, layout, spec)
        floor = d.end + 1


def _split_qualified(name: str, container: str | None) -> tuple[str, str | None]:
    # C++ `void Widget::draw()`: a member of Widget defined outside its class.
    if "::" in name:
        owner, _, name = name.rpartition("::")
        return name, owner.replace("::", ".") or None
    return _type_name(name), container


def _type_name(text: str) -> str:
    # `*Server` -> Server, `Stack[T]` -> Stack, `Vec<T>` -> Vec
    text = text.strip().lstrip("*&").strip()
    return re.split(r"[<\[(]", text, maxsplit=1)[0].strip() or text


def _signature(outer: Any, node: Any, name: str, data: bytes, spec: LanguageSpec) -> str:
    """The definition's header up to its body, on one line."""
    start = outer.start_byte
    for child in outer.children:
        if child.type in spec.signature_skip:
            start = child.end_byte
            continue
        if child.type == "modifiers":  # Java: annotations live among the modifiers
            for modifier in child.children:
                if modifier.type not in spec.signature_skip:
                    break
                start = modifier.end_byte
        break
    while start < len(data) and data[start : start + 1] in (b" ", b"\t", b"\n", b"\r"):
        start += 1
    body = _body(node)
    if body is not None and body.start_byte > start:
        stop = min(body.start_byte, start + 2000)
        for child in node.children:  # Ruby: `class Cart < Base  # comment`
            if child.type in _COMMENT_NODES and start < child.start_byte < stop:
                stop = child.start_byte
                break
        header = data[start:stop]
    else:
        end = data.find(b"\n", start, node.end_byte)
        header = data[start : end if end >= 0 else node.end_byte]
    signature = " ".join(header.decode("utf-8", "replace").split())
    signature = _TIGHT_OPEN.sub(r"\1", signature)
    signature = _TIGHT_CLOSE.sub(r"\1", signature)
    signature = signature.removesuffix("=>").rstrip("{:=( ")
    if name and not spec.declarative and name not in signature:
        signature = f"{signature} {name}"  # C: `typedef struct {...} pair_t;`
    if len(signature) > SIGNATURE_CHARS:
        signature = signature[: SIGNATURE_CHARS - 1].rstrip() + "…"
    return signature


_TIGHT_OPEN = re.compile(r"([(\[{]) +")
_TIGHT_CLOSE = re.compile(r",? +([)\]}])")
_COMMENT_NODES = frozenset({"comment", "line_comment", "block_comment"})


def _body(node: Any) -> Any:
    body = node.child_by_field_name("body")
    if body is not None:
        return body
    # `const f = () => {...}`, `exports.f = function () {...}`
    for child in node.named_children:
        for inner in (child, *child.named_children):
            value = inner.child_by_field_name("value") or inner.child_by_field_name("right")
            if value is not None:
                body = value.child_by_field_name("body")
                if body is not None:
                    return body
    for child in node.children:  # HCL: `resource "a" "b" {`
        if child.type == "block_start":
            return child
    return None


# --- pieces -> chunks ----------------------------------------------------------------------


@dataclass
class _Piece:
    start: int
    end: int
    kind: str
    symbol: str | None
    context: tuple[str, ...]
    level: tuple[str, ...]  # the context of the range the piece sits in
    owner: str | None  # qualified name of the enclosing definition
    window: bool = False  # one of several windows of one definition
    filler: bool = False  # lines between definitions
    header: bool = False  # a definition's lines before its first member

    @property
    def size(self) -> int:
        return self.end - self.start + 1


class _Pieces:
    def __init__(self, layout: _Layout, spec: LanguageSpec) -> None:
        self.layout = layout
        self.spec = spec
        self.items: list[_Piece] = []

    def chunk_kind(self, kind: str) -> str:
        return "section" if self.spec.declarative else kind

    def emit_range(
        self,
        start: int,
        end: int,
        defs: list[_Def],
        context: tuple[str, ...],
        owner: _Def | None,
    ) -> None:
        """Rows start..end holding `defs`: each definition, and the lines between them."""
        cursor = start
        first = True
        for d in defs:
            if d.kind in SYMBOL_ONLY_KINDS or d.start < cursor or d.end > end:
                continue
            if d.start > cursor:
                self.filler(cursor, d.start - 1, context, owner, header=first and owner is not None)
            first = False
            self.emit_def(d, context, owner)
            cursor = d.end + 1
        if cursor <= end:
            self.filler(cursor, end, context, owner, header=first and owner is not None)

    def emit_def(self, d: _Def, context: tuple[str, ...], owner: _Def | None) -> None:
        own = (*context, d.signature) if d.signature else context
        kind = self.chunk_kind(d.kind)
        owner_name = owner.qualified if owner is not None else None
        chunked_children = [c for c in d.children if c.kind not in SYMBOL_ONLY_KINDS]
        if self.layout.fits(d.start, d.end):
            self.items.append(_Piece(d.start, d.end, kind, d.qualified, own, context, owner_name))
        elif chunked_children:
            self.emit_range(d.start, d.end, chunked_children, own, d)
        else:
            windows = self.layout.windows(d.start, d.end, WINDOW_OVERLAP)
            for s, e in windows:
                self.items.append(
                    _Piece(
                        s, e, kind, d.qualified, own, context, owner_name, window=len(windows) > 1
                    )
                )

    def filler(
        self,
        start: int,
        end: int,
        context: tuple[str, ...],
        owner: _Def | None,
        *,
        header: bool,
    ) -> None:
        trimmed = self.layout.trim(start, end)
        if trimmed is None:
            return
        start, end = trimmed
        owner_name = owner.qualified if owner is not None else None
        header = header and owner is not None
        kind = self.chunk_kind(owner.kind) if header and owner is not None else "block"
        for s, e in self.layout.windows(start, end, 0):
            self.items.append(
                _Piece(
                    s,
                    e,
                    kind,
                    owner_name,
                    context,
                    context,
                    owner_name,
                    filler=not header,
                    header=header,
                )
            )

    def finish(self) -> list[Chunk]:
        items = self._absorb_small_fillers(self.items)
        items = self._group_small(items)
        return [self.layout.chunk(p.start, p.end, p.kind, p.symbol, p.context) for p in items]

    def _absorb_small_fillers(self, items: list[_Piece]) -> list[_Piece]:
        """Fold closing lines (`}`, `end`), and a statement or two that follows a definition
        (`dispatch[X] = save_x`), into the piece before them."""
        out: list[_Piece] = []
        for p in items:
            if p.filler and out:
                prev = out[-1]
                if self._closing(p):
                    prev.end = p.end
                    continue
                if (
                    p.owner is not None  # inside a class; top-level code keeps its blocks
                    and self._nonblank(p) <= TRAILING_LINES
                    and prev.level == p.level
                    and not prev.window
                    and self.layout.fits(prev.start, p.end)
                ):
                    prev.end = p.end
                    continue
            out.append(p)
        # A file that starts with closing lines, or a class whose header is a line or two
        # (`class Client:`): fold them into the piece after them.
        folded: list[_Piece] = []
        for i, p in enumerate(out):
            after = out[i + 1] if i + 1 < len(out) else None
            foldable = (p.header and self._nonblank(p) <= TRAILING_LINES) or (
                p.filler and not folded and self._closing(p)
            )
            if (
                after is not None
                and foldable
                and (self.layout.fits(p.start, after.end) or self._closing(p))
            ):
                after.start = p.start
                continue
            folded.append(p)
        return folded

    def _closing(self, p: _Piece) -> bool:
        lines = self.layout.lines
        return all(_CLOSING_LINE.fullmatch(lines[r]) for r in range(p.start, p.end + 1))

    def _nonblank(self, p: _Piece) -> int:
        return sum(1 for r in range(p.start, p.end + 1) if not self.layout.blank(r))

    def _joins(self, group: list[_Piece], p: _Piece) -> bool:
        last = group[-1]
        if p.window or last.window or not self.layout.fits(group[0].start, p.end):
            return False
        if self.spec.declarative:
            # Documents and configuration: gather small neighbours, whatever their level.
            return p.end - group[0].start + 1 <= GROUP_LINES
        # Code: only tiny members of one definition (accessors, one-line methods).
        return (
            p.owner is not None
            and last.level == p.level
            and not (p.filler or last.filler)
            and last.size <= TINY_PIECE_LINES >= p.size
        )

    def _group_small(self, items: list[_Piece]) -> list[_Piece]:
        out: list[_Piece] = []
        group: list[_Piece] = []

        def flush() -> None:
            real = [p for p in group if not p.filler]
            if len(group) == 1:
                out.append(group[0])
            elif len(real) == 1:  # one definition with the loose lines around it
                p = real[0]
                out.append(
                    _Piece(
                        group[0].start, group[-1].end, p.kind, p.symbol, p.context, p.level, p.owner
                    )
                )
            elif group:
                kinds = {p.kind for p in group}
                owners = {p.owner for p in group}
                kind = kinds.pop() if len(kinds) == 1 else self.chunk_kind("block")
                owner = owners.pop() if len(owners) == 1 else None
                context = _common_prefix([p.context for p in group])
                level = _common_prefix([p.level for p in group])
                out.append(
                    _Piece(group[0].start, group[-1].end, kind, owner, context, level, owner)
                )
            group.clear()

        for p in items:
            if group and not self._joins(group, p):
                flush()
            group.append(p)
        flush()
        return out


def _common_prefix(contexts: list[tuple[str, ...]]) -> tuple[str, ...]:
    prefix = contexts[0]
    for context in contexts[1:]:
        n = 0
        while n < min(len(prefix), len(context)) and prefix[n] == context[n]:
            n += 1
        prefix = prefix[:n]
    return prefix
