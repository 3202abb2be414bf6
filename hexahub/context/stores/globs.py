"""Path globs for `SearchFilters.path_glob`, with .gitignore-like semantics.

- `*` matches any run of characters except `/`; `?` one character except `/`;
  `[abc]`, `[a-z]` and `[!abc]` a character class.
- `**` as a whole path component matches any number of directories, none included:
  `src/**/*.py` matches `src/a.py` and `src/x/y/a.py`; `docs/**` everything under docs.
- A pattern without `/` (a trailing one aside) matches a name at any depth: `*.md` is
  every Markdown file, `tests` everything under any directory named tests.
- A pattern with `/` is anchored at the repository root (a leading `/` is optional):
  `src/app` matches the file `src/app` or everything under the directory `src/app`.
- A trailing `/` matches directories only: `vendor/` is everything under any `vendor`.
- Matching is case-sensitive, like paths in git.

The pattern becomes one regular expression that Python's `re` and PostgreSQL's `~`
read alike, so both stores filter identically.
"""

from __future__ import annotations

import re
from functools import lru_cache


def _escape(char: str) -> str:
    # A backslash before ASCII punctuation means the character itself in both dialects;
    # letters, digits and non-ASCII characters are never special, so they stay bare.
    if char.isascii() and not char.isalnum() and char not in "/_":
        return "\\" + char
    return char


def _component(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := text.find("]", i + 2)) != -1:
            body = text[i + 1 : end]
            negate = body[0] in "!^"
            if negate:
                body = body[1:]
            members = "".join(c if c == "-" else _escape(c) for c in body)
            out.append("[" + ("^/" if negate else "") + members + "]")
            i = end
        else:
            out.append(_escape(char))
        i += 1
    return "".join(out)


@lru_cache(maxsize=256)
def glob_to_regex(pattern: str) -> str | None:
    """The regular expression for a path glob; None when the glob matches everything."""
    pattern = pattern.strip()
    directory_only = pattern.endswith("/")
    trimmed = pattern.rstrip("/")
    anchored = "/" in trimmed
    trimmed = trimmed.lstrip("/")
    if not trimmed or trimmed == "**":
        return None
    parts: list[str] = []
    components = trimmed.split("/")
    last = len(components) - 1
    for index, component in enumerate(components):
        if component == "**":
            parts.append(".*" if index == last else "(?:[^/]*/)*")
        else:
            parts.append(_component(component) + ("" if index == last else "/"))
    prefix = "^" if anchored else "^(?:.*/)?"
    suffix = "/.*$" if directory_only else "(?:/.*)?$"
    return prefix + "".join(parts) + suffix


@lru_cache(maxsize=256)
def compiled_glob(pattern: str) -> re.Pattern[str] | None:
    regex = glob_to_regex(pattern)
    return re.compile(regex) if regex is not None else None
