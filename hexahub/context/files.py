"""Which files of a repository to index, what language each is, and whether its content is
worth indexing.

`walk` lists candidate paths (respecting .gitignore files and a built-in list of build and
dependency folders); `check_content` decides per file whether the bytes are indexable text;
`git_blob_sha` names content the way git does, so unchanged files can be recognised from
`git ls-tree` output without reading them.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pathspec

# --- languages ---------------------------------------------------------------------------

# File extension (lower case, with the dot) to language name.
EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".pyw": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".scala": "scala",
    ".cs": "csharp",
    ".swift": "swift",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".c++": "cpp",
    ".hh": "cpp",
    ".hpp": "cpp",
    ".hxx": "cpp",
    ".h++": "cpp",
    ".ipp": "cpp",
    ".rb": "ruby",
    ".rake": "ruby",
    ".gemspec": "ruby",
    ".php": "php",
    ".lua": "lua",
    ".pl": "perl",
    ".pm": "perl",
    ".r": "r",
    ".ex": "elixir",
    ".exs": "elixir",
    ".erl": "erlang",
    ".hs": "haskell",
    ".ml": "ocaml",
    ".zig": "zig",
    ".dart": "dart",
    ".sh": "bash",
    ".bash": "bash",
    ".zsh": "bash",
    ".ksh": "bash",
    ".fish": "fish",
    ".ps1": "powershell",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".rst": "rst",
    ".nix": "nix",
    ".tf": "hcl",
    ".tfvars": "hcl",
    ".hcl": "hcl",
    ".nomad": "hcl",
    ".toml": "toml",
    ".sql": "sql",
    ".json": "json",
    ".jsonc": "json",
    ".json5": "json",
    ".css": "css",
    ".scss": "scss",
    ".sass": "scss",
    ".less": "css",
    ".html": "html",
    ".htm": "html",
    ".xml": "xml",
    ".svg": "xml",
    ".vue": "vue",
    ".svelte": "svelte",
    ".proto": "proto",
    ".graphql": "graphql",
    ".gql": "graphql",
    ".ini": "ini",
    ".cfg": "ini",
    ".conf": "ini",
    ".j2": "jinja",
    ".jinja": "jinja",
    ".jinja2": "jinja",
    ".txt": "text",
    ".dockerfile": "dockerfile",
    ".mk": "makefile",
    ".cmake": "cmake",
}

# Whole file names (lower case) that say the language better than an extension does.
FILE_NAMES: dict[str, str] = {
    "dockerfile": "dockerfile",
    "containerfile": "dockerfile",
    "makefile": "makefile",
    "gnumakefile": "makefile",
    "cmakelists.txt": "cmake",
    "justfile": "makefile",
    "rakefile": "ruby",
    "gemfile": "ruby",
    "vagrantfile": "ruby",
    "podfile": "ruby",
    "jenkinsfile": "groovy",
    ".bashrc": "bash",
    ".bash_profile": "bash",
    ".profile": "bash",
    ".zshrc": "bash",
    ".envrc": "bash",
    "pkgbuild": "bash",
    "flake.lock": "json",
    "pipfile": "toml",
    ".gitignore": "text",
    ".dockerignore": "text",
    ".editorconfig": "ini",
    ".gitattributes": "text",
}

# Every language name `language_for` can return.
LANGUAGES: frozenset[str] = frozenset(EXTENSIONS.values()) | frozenset(FILE_NAMES.values())

# Interpreter (as named on a `#!` line) to language.
_INTERPRETERS: dict[str, str] = {
    "python": "python",
    "python2": "python",
    "python3": "python",
    "sh": "bash",
    "bash": "bash",
    "dash": "bash",
    "zsh": "bash",
    "ksh": "bash",
    "node": "javascript",
    "nodejs": "javascript",
    "deno": "typescript",
    "bun": "javascript",
    "ts-node": "typescript",
    "ruby": "ruby",
    "perl": "perl",
    "php": "php",
    "lua": "lua",
    "fish": "fish",
    "nix-shell": "bash",
}


def language_for(path: str, first_line: str | None = None) -> str:
    """The language of `path` by file name, then extension, then (when given) a `#!` line.

    "text" when nothing matches. `first_line` only matters for files without a known name or
    extension, e.g. an executable script called `deploy`.
    """
    name = PurePosixPath(path).name.lower()
    if name in FILE_NAMES:
        return FILE_NAMES[name]
    if name.startswith("dockerfile.") or name.endswith(".dockerfile"):
        return "dockerfile"
    if name.startswith("makefile."):
        return "makefile"
    suffix = PurePosixPath(name).suffix
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if first_line and first_line.startswith("#!"):
        return _language_from_shebang(first_line)
    return "text"


def _language_from_shebang(line: str) -> str:
    words = line[2:].strip().split()
    if not words:
        return "text"
    interpreter = PurePosixPath(words[0]).name
    if interpreter == "env":
        # `#!/usr/bin/env -S python3 -u`: the first word that is not an option.
        rest = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        if not rest:
            return "text"
        interpreter = rest[0]
    # python3.12, ruby2.7, ...
    interpreter = re.sub(r"[\d.]+$", "", interpreter) or interpreter
    return _INTERPRETERS.get(interpreter, "text")


# --- walking -----------------------------------------------------------------------------

# Version-control folders: never content, never descended.
VCS_DIRS: frozenset[str] = frozenset({".git", ".hg", ".svn", ".bzr", "_darcs", "CVS", ".jj"})

# Folders skipped even when no .gitignore names them: dependencies, virtual environments,
# caches and build output. Their content is either someone else's code or derived from the
# repository's own, and indexing it would drown the repository's own code in search.
IGNORED_DIRS: frozenset[str] = frozenset(
    {
        "node_modules",
        "bower_components",
        "jspm_packages",
        "vendor",  # Go modules, PHP composer, Ruby bundler
        "__pycache__",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        ".eggs",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        ".ipynb_checkpoints",
        "site-packages",
        "dist",
        "build",
        "target",  # Rust, Maven
        "out",
        ".gradle",
        ".next",
        ".nuxt",
        ".svelte-kit",
        ".parcel-cache",
        ".turbo",
        ".cache",
        ".terraform",
        ".direnv",
        ".idea",
        ".vs",
        "htmlcov",
        "coverage",
        ".coverage",
        "_build",  # Sphinx, Elixir
        "zig-cache",
        "zig-out",
        ".stack-work",
        "Pods",
        "DerivedData",
    }
)

_IGNORED_DIR_SUFFIXES = (".egg-info",)


@dataclass(frozen=True)
class _Ignore:
    """One .gitignore file: its patterns apply to paths below `base` (relative, "" = root)."""

    base: str
    spec: pathspec.PathSpec

    def verdict(self, rel: str) -> bool | None:
        """True: ignored, False: explicitly re-included (`!pattern`), None: no opinion."""
        if self.base:
            if not rel.startswith(self.base + "/"):
                return None
            rel = rel[len(self.base) + 1 :]
        return _last_match(self.spec, rel)


def _compile(patterns: Sequence[str]) -> pathspec.PathSpec:
    return pathspec.GitIgnoreSpec.from_lines(patterns)


def _last_match(spec: pathspec.PathSpec, rel: str) -> bool | None:
    # The last pattern that matches decides, as in git; a `!` pattern re-includes.
    verdict: bool | None = None
    for pattern in spec.patterns:
        if pattern.include is None:
            continue
        regex = getattr(pattern, "regex", None)
        if regex is not None:
            matched = regex.match(rel) is not None
        else:
            matched = pattern.match_file(rel) is not None
        if matched:
            verdict = bool(pattern.include)
    return verdict


def _read_gitignore(directory: str, base: str) -> _Ignore | None:
    try:
        with open(os.path.join(directory, ".gitignore"), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    lines = [line for line in lines if line.strip()]
    if not lines:
        return None
    return _Ignore(base, _compile(lines))


def _ignored(ignores: Sequence[_Ignore], rel: str) -> bool:
    # Deeper .gitignore files are later in the list and override shallower ones.
    for ignore in reversed(ignores):
        verdict = ignore.verdict(rel)
        if verdict is not None:
            return verdict
    return False


def walk(
    root: Path,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    ignored_dirs: Collection[str] = IGNORED_DIRS,
) -> Iterator[str]:
    """Relative POSIX paths of the files under `root` worth looking at, sorted.

    Skipped: version-control folders, folders named in `ignored_dirs` (by default
    `IGNORED_DIRS`, plus `*.egg-info`), and whatever the .gitignore files say, each applying
    to its own folder and below (a deeper file overrides a shallower one; `!pattern`
    re-includes). Ignored folders are not descended into.

    `include` and `exclude` are gitignore-style patterns matched against the relative path
    (`*.py` matches at any depth, `src/**/*.py` only under src/, `docs/` a whole folder).
    With `include`, only matching files are kept; `exclude` removes files and prunes folders.

    Symbolic links to folders are never followed (no loops, no duplicates); a link to a
    file is listed only when its target is a regular file inside `root`.
    """
    root = Path(root)
    root_real = os.path.realpath(root)
    include_spec = _compile(include) if include else None
    exclude_spec = _compile(exclude) if exclude else None
    skip_dirs = frozenset(ignored_dirs) | VCS_DIRS

    def excluded(rel: str) -> bool:
        return exclude_spec is not None and bool(_last_match(exclude_spec, rel))

    def wanted(rel: str) -> bool:
        return include_spec is None or bool(_last_match(include_spec, rel))

    def visit(directory: str, rel_dir: str, ignores: list[_Ignore]) -> Iterator[str]:
        own = _read_gitignore(directory, rel_dir)
        if own is not None:
            ignores = [*ignores, own]
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError:
            return
        # Files and folders interleave by name so the output is sorted as plain strings
        # would be; a folder sorts as "name/" to match how its files' paths compare.
        keyed = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            keyed.append((entry.name + "/" if is_dir else entry.name, entry, is_dir))
        keyed.sort(key=lambda k: k[0])
        for _, entry, is_dir in keyed:
            name = entry.name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if is_dir:
                if name in skip_dirs or name.endswith(_IGNORED_DIR_SUFFIXES):
                    continue
                if _ignored(ignores, rel + "/") or excluded(rel + "/"):
                    continue
                yield from visit(entry.path, rel, ignores)
                continue
            if _ignored(ignores, rel) or excluded(rel) or not wanted(rel):
                continue
            try:
                if entry.is_symlink():
                    if not _link_inside(entry.path, root_real):
                        continue
                elif not entry.is_file(follow_symlinks=False):
                    continue  # sockets, fifos, devices
            except OSError:
                continue
            yield rel

    yield from visit(str(root), "", [])


def path_filter(
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    ignored_dirs: Collection[str] = IGNORED_DIRS,
) -> Callable[[str], bool]:
    """Whether a relative path is one `walk` would list with these patterns, for paths that
    are not on disk (a commit's files): the same folders and globs apply; .gitignore files
    do not (git history holds what was committed, ignored or not)."""
    include_spec = _compile(include) if include else None
    exclude_spec = _compile(exclude) if exclude else None
    skip_dirs = frozenset(ignored_dirs) | VCS_DIRS

    def keep(rel: str) -> bool:
        parts = rel.split("/")
        for depth, part in enumerate(parts[:-1]):
            if part in skip_dirs or part.endswith(_IGNORED_DIR_SUFFIXES):
                return False
            if exclude_spec is not None and _last_match(
                exclude_spec, "/".join(parts[: depth + 1]) + "/"
            ):
                return False
        if exclude_spec is not None and _last_match(exclude_spec, rel):
            return False
        return include_spec is None or bool(_last_match(include_spec, rel))

    return keep


def _link_inside(path: str, root_real: str) -> bool:
    target = os.path.realpath(path)
    if not os.path.isfile(target):
        return False
    return target == root_real or target.startswith(root_real.rstrip(os.sep) + os.sep)


# --- content -----------------------------------------------------------------------------

# Files whose content is pinned dependency metadata: large, churning, useless to search.
LOCKFILES: frozenset[str] = frozenset(
    {
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lock",
        "bun.lockb",
        "deno.lock",
        "poetry.lock",
        "pipfile.lock",
        "pdm.lock",
        "uv.lock",
        "pixi.lock",
        "conda-lock.yml",
        "cargo.lock",
        "go.sum",
        "go.work.sum",
        "composer.lock",
        "gemfile.lock",
        "podfile.lock",
        "mix.lock",
        "pubspec.lock",
        "packages.lock.json",
        "paket.lock",
        "gradle.lockfile",
        "flake.lock",
        "package.resolved",
        ".terraform.lock.hcl",
    }
)

# File names that generators produce (protobuf, gRPC, Kubernetes code generators, ...).
_GENERATED_NAME = re.compile(
    r"(_pb2(_grpc)?\.pyi?|\.pb\.(go|cc|h|swift)|\.pb\.gw\.go|_grpc\.pb\.go|^zz_generated.*\.go"
    r"|\.g\.dart|\.freezed\.dart|\.designer\.cs|\.generated\.\w+)$",
    re.IGNORECASE,
)

# Markers that generators put near the top of what they write.
_GENERATED_MARKER = re.compile(
    r"code generated .*do not edit"
    r"|@generated\b"
    r"|\bauto-?generated\b"
    r"|\bautomatically generated\b"
    r"|\bgenerated by the protocol buffer compiler\b"
    r"|\bgenerated by (?:protoc|thrift|swig|cython|bison|flex|mockgen|stringer|sqlc|"
    r"openapi-generator|swagger-codegen)\b"
    r"|\bdo not edit\b.*\bgenerated\b|\bgenerated\b.*\bdo not edit\b",
    re.IGNORECASE,
)
_GENERATED_SCAN_LINES = 10

# Languages where a very long line means the file was minified or bundled.
_MINIFIABLE = frozenset({".js", ".mjs", ".cjs", ".css", ".scss", ".less", ".html", ".htm"})
_MINIFIED_NAME = re.compile(r"[.-]min\.(js|mjs|cjs|css)$|\.bundle\.js$|\.chunk\.js$", re.I)
MAX_LINE_CHARS = 1000  # any line longer than this in a _MINIFIABLE file: minified
_MINIFIED_AVERAGE = 300  # average line length over which a _MINIFIABLE file is minified
_DATA_AVERAGE = 1000  # ... and over which any other file is

_SNIFF_BYTES = 8192

# Files that exist to hold credentials: dotenv files, private keys and certificate
# bundles, package-registry and login configuration. Never indexed, whatever else they
# hold; secret scanning still reads them, so their credentials show up as findings.
SECRETS_FILE = "secrets file"
_SECRETS_FILE_NAMES = frozenset(
    {
        "id_rsa",
        "id_dsa",
        "id_ecdsa",
        "id_ed25519",
        "id_ecdsa_sk",
        "id_ed25519_sk",
        ".npmrc",
        ".pypirc",
        ".netrc",
        "_netrc",
        ".pgpass",
        ".git-credentials",
        ".htpasswd",
    }
)
_SECRETS_FILE_SUFFIXES = (".pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".ppk")


def is_secrets_file(path: str) -> bool:
    """`.env`, `.env.production`, `prod.env`, `id_rsa`, `server.key`, `.npmrc`, ..."""
    name = PurePosixPath(path).name.lower()
    return (
        name.startswith(".env")
        or name.endswith(".env")
        or name in _SECRETS_FILE_NAMES
        or name.endswith(_SECRETS_FILE_SUFFIXES)
    )


def noise_by_name(path: str) -> bool:
    """Whether the name alone says the file is not worth reading (lockfile, minified or
    generated output), as `check_content` would decide before reading it."""
    name = PurePosixPath(path).name
    lower = name.lower()
    return (
        lower in LOCKFILES
        or _MINIFIED_NAME.search(lower) is not None
        or _GENERATED_NAME.search(name) is not None
    )


def check_content(path: str, data: bytes, *, max_bytes: int) -> tuple[str | None, str | None]:
    """Decide whether a file's bytes are worth indexing: `(text, None)` or `(None, reason)`.

    The reasons: "secrets file" (by name: `.env*`, key files, `.npmrc`, ... see
    `is_secrets_file`), "lockfile" (by name), "too large (N bytes > limit)", "binary" (a NUL byte
    in the first 8 KiB, or bytes that are neither UTF-8 nor plausible Latin-1 text),
    "minified" (`.min.js`-style names, or lines far longer than people write), and
    "generated" (protobuf/gRPC output by name, or a generator's marker such as
    "Code generated ... DO NOT EDIT" or "@generated" in the first lines).

    The text is decoded as UTF-8 (a BOM is dropped) or, failing that, Latin-1; Windows line
    endings become "\\n" (line numbers are unchanged).
    """
    name = PurePosixPath(path).name
    lower = name.lower()
    if is_secrets_file(path):
        return None, SECRETS_FILE
    if lower in LOCKFILES:
        return None, "lockfile"
    if len(data) > max_bytes:
        return None, f"too large ({len(data)} bytes > {max_bytes})"
    head = data[:_SNIFF_BYTES]
    if b"\0" in head:
        return None, "binary"
    text = _decode(data)
    if text is None:
        return None, "binary"
    if _MINIFIED_NAME.search(lower):
        return None, "minified"
    if _GENERATED_NAME.search(name):
        return None, "generated"
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if _looks_generated(text):
        return None, "generated"
    if _looks_minified(text, PurePosixPath(lower).suffix):
        return None, "minified"
    return text, None


def decode_text(data: bytes) -> str | None:
    """The bytes as text the way `check_content` reads them (UTF-8, else Latin-1 that
    reads like text; "\\n" line endings), or None for binary data."""
    if b"\0" in data[:_SNIFF_BYTES]:
        return None
    text = _decode(data)
    if text is not None and "\r" in text:
        text = text.replace("\r\n", "\n")
    return text


def _decode(data: bytes) -> str | None:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Not UTF-8: accept it as Latin-1 only if it reads like text, i.e. few control bytes.
    head = data[:_SNIFF_BYTES]
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    if controls > len(head) // 100:
        return None
    return data.decode("latin-1")


def _looks_generated(text: str) -> bool:
    head = text[:4000].split("\n", _GENERATED_SCAN_LINES)[:_GENERATED_SCAN_LINES]
    return any(_GENERATED_MARKER.search(line) for line in head)


def _looks_minified(text: str, suffix: str) -> bool:
    if not text:
        return False
    lines = text.count("\n") + 1
    average = len(text) / lines
    if suffix in _MINIFIABLE:
        if average > _MINIFIED_AVERAGE and len(text) > 1024:
            return True
        return any(len(line) > MAX_LINE_CHARS for line in text.split("\n"))
    return average > _DATA_AVERAGE and len(text) > 4096


# --- identity ----------------------------------------------------------------------------


def git_blob_sha(data: bytes) -> str:
    """The SHA-1 git gives these bytes as a blob: equal to what `git ls-tree` shows."""
    digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


def content_hash(data: bytes) -> str:
    """The hash stored per file to tell whether it changed (git's blob id)."""
    return git_blob_sha(data)
