"""What each commit of a repository added, for the history scan.

`git log -p -U0` lists every commit reachable from HEAD, oldest first, with the lines it
added (no context lines, no renames: a file's lines count where they first appeared).
`added_lines` streams that output, so a long history is never held in memory whole.
Merge commits add nothing of their own here: what they bring in was added by the commits
they merge.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# A line longer than this is data (minified, encoded), not something people type a
# credential into; skipping it keeps the rules' regular expressions fast.
MAX_LINE_CHARS = 10_000

_HUNK = re.compile(rb"^@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_ESCAPE = re.compile(rb"\\([0-7]{3}|.)")
_ESCAPES = {b"n": b"\n", b"t": b"\t", b'"': b'"', b"\\": b"\\", b"a": b"\a", b"b": b"\b"}


class HistoryError(Exception):
    """git could not list the history: say what to fix."""


@dataclass(frozen=True)
class Added:
    """Consecutive lines a commit added to a file, starting at line `first_line`."""

    commit: str
    path: str
    first_line: int
    lines: list[str]


def _env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
        "HOME": os.environ.get("HOME", "/"),
    }


def is_git_repository(root: Path) -> bool:
    return (root / ".git").exists()


def count_commits(root: Path) -> int:
    """How many commits HEAD's history has (for a progress bar)."""
    done = subprocess.run(
        ["git", "rev-list", "--count", "HEAD"],
        cwd=root,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise HistoryError(f"git rev-list failed: {' '.join(message[-2:]) or done.returncode}")
    return int(done.stdout.strip() or 0)


def file_at(root: Path, commit: str, path: str) -> bytes | None:
    """A file's bytes as of a commit; None when git does not have it (any more)."""
    if not re.fullmatch(r"[0-9a-f]{7,64}", commit):
        return None
    done = subprocess.run(
        ["git", "show", f"{commit}:{path}"],
        cwd=root,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    return done.stdout if done.returncode == 0 else None


def _unquote(raw: bytes) -> str:
    """A path as git prints it: C-quoted ("caf\\303\\251") when it holds special bytes."""
    if raw.startswith(b'"') and raw.endswith(b'"'):

        def one(match: re.Match[bytes]) -> bytes:
            code = match.group(1)
            if len(code) == 3 and code.isdigit():
                return bytes([int(code, 8) & 0xFF])
            return _ESCAPES.get(code, code)

        raw = _ESCAPE.sub(one, raw[1:-1])
    return raw.decode("utf-8", errors="replace")


def _new_path(line: bytes) -> str | None:
    """The path of a `+++ b/path` line; None for a deleted file (`+++ /dev/null`)."""
    target = line[4:].rstrip(b"\n")
    if target == b"/dev/null":
        return None
    text = _unquote(target)
    return text[2:] if text.startswith("b/") else text


def added_lines(
    root: Path,
    *,
    keep: Callable[[str], bool],
    on_commit: Callable[[str], None] | None = None,
) -> Iterator[Added]:
    """Every run of lines a commit added to a file `keep` accepts, oldest commit first.

    `on_commit(commit)` is called as each commit starts (for progress).
    """
    args = [
        "git",
        "-c",
        "core.quotepath=off",
        "log",
        "-p",
        "-U0",
        "--reverse",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--no-renames",
        "--diff-filter=AMT",
        "--format=format:%x00%H",
        "HEAD",
        "--",
    ]
    process = subprocess.Popen(
        args,
        cwd=root,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        yield from _parse(process.stdout, keep, on_commit)
    finally:
        if process.poll() is None:
            process.kill()
        _, err = process.communicate()
    if process.returncode not in (0, -9):
        message = err.decode(errors="replace").strip().splitlines()
        raise HistoryError(f"git log failed: {' '.join(message[-2:]) or process.returncode}")


def _parse(
    stream: Iterator[bytes], keep: Callable[[str], bool], on_commit: Callable[[str], None] | None
) -> Iterator[Added]:
    commit = ""
    path: str | None = None
    wanted = False
    old_left = new_left = 0  # lines of the current hunk still to come
    run: list[str] = []
    run_start = 0
    for line in stream:
        if old_left > 0 or new_left > 0:
            # Inside a hunk every line is content, even one that starts with "+++".
            if line.startswith(b"+"):
                new_left -= 1
                if wanted:
                    text = line[1:].rstrip(b"\n").decode("utf-8", errors="replace")
                    run.append(text if len(text) <= MAX_LINE_CHARS else "")
                continue
            if line.startswith(b"-"):
                old_left -= 1
                continue
            if line.startswith(b"\\"):  # "\ No newline at end of file"
                continue
            old_left = new_left = 0  # malformed: fall through and read it as a header
        if run and path is not None:
            yield Added(commit, path, run_start, run)
        run = []
        if line.startswith(b"\0"):
            commit = line[1:].strip().decode("ascii", errors="replace")
            path, wanted = None, False
            if on_commit is not None:
                on_commit(commit)
        elif line.startswith(b"diff --git "):
            path, wanted = None, False
        elif line.startswith(b"+++ "):
            path = _new_path(line)
            wanted = path is not None and keep(path)
        elif (hunk := _HUNK.match(line)) is not None:
            old_left = int(hunk.group(1)) if hunk.group(1) is not None else 1
            run_start = int(hunk.group(2))
            new_left = int(hunk.group(3)) if hunk.group(3) is not None else 1
    if run and path is not None:
        yield Added(commit, path, run_start, run)
