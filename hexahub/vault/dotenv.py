"""`.env` files in and out of the vault, and the warnings an import deserves.

The format is the common one (Docker Compose, python-dotenv, shells): `NAME=value` lines,
an optional `export ` in front, `#` comments, values unquoted, in single quotes (literal) or
in double quotes (with \\n, \\t, \\", \\\\ and \\$ escapes); quoted values may span lines.
Errors name the line, never the value.

Warnings on import (never blocking, never quoting a value):
- `committed_to_git`: the caller found the file in a git repository's index or history
  (`hexahub secret import` asks git); every value in it should be rotated at its source.
- `example_file`: the file is named like the ones projects commit on purpose
  (`.env.example`, `.env.sample`, `.env.template`, `.env.dist`).
- `credential_format`: a value has the shape of a well-known provider credential (AWS,
  GitHub, GitLab, Slack, Stripe, OpenAI, Anthropic, Google, private keys, JWTs, URLs with
  a password): the kinds that secret scanners find in git history minutes after a push.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from hexahub.core.errors import ValidationFailed

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_./:@+,=-]*$")
_DOUBLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}

CREDENTIAL_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{22,})")),
    ("GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("Stripe live key", re.compile(r"\b[rs]k_live_[A-Za-z0-9]{20,}")),
    ("Anthropic API key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    ("OpenAI API key", re.compile(r"\bsk-(?!ant-)(?:proj-)?[A-Za-z0-9_-]{20,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("private key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")),
    ("JSON web token", re.compile(r"\beyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}")),
    ("URL with a password", re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")),
)
EXAMPLE_SUFFIXES = (".example", ".sample", ".template", ".dist", ".tpl")


def parse_env(text: str) -> dict[str, str]:
    """The variables of a .env file, in order (a repeated name keeps its last value)."""
    found: dict[str, str] = {}
    position, line = 0, 1
    length = len(text)

    def fail(problem: str) -> ValidationFailed:
        return ValidationFailed(f"line {line} of the .env file: {problem}")

    while position < length:
        end = text.find("\n", position)
        end = length if end == -1 else end
        stripped = text[position:end].strip()
        if not stripped or stripped.startswith("#"):
            position, line = end + 1, line + 1
            continue
        cursor = position + (len(text[position:end]) - len(text[position:end].lstrip()))
        if text.startswith("export ", cursor):
            cursor += len("export ")
            while cursor < end and text[cursor] in " \t":
                cursor += 1
        name_match = _NAME.match(text, cursor, end)
        if name_match is None:
            raise fail("expected NAME=value (names start with a letter or _)")
        name = name_match.group()
        cursor = name_match.end()
        while cursor < end and text[cursor] in " \t":
            cursor += 1
        if cursor >= end or text[cursor] != "=":
            raise fail("expected NAME=value")
        cursor += 1
        while cursor < end and text[cursor] in " \t":
            cursor += 1
        quote = text[cursor] if cursor < end else ""
        if quote in ("'", '"'):
            value, cursor, line = _quoted(text, cursor + 1, quote, line, fail)
            end = text.find("\n", cursor)
            end = length if end == -1 else end
            rest = text[cursor:end].strip()
            if rest and not rest.startswith("#"):
                raise fail("unexpected text after the closing quote")
        else:
            raw = text[cursor:end]
            comment = re.search(r"\s#", raw)
            value = (raw[: comment.start()] if comment else raw).strip()
        found.pop(name, None)  # keep file order for the last occurrence
        found[name] = value
        position, line = end + 1, line + 1
    return found


def _quoted(text: str, cursor: int, quote: str, line: int, fail: Any) -> tuple[str, int, int]:
    out: list[str] = []
    while cursor < len(text):
        char = text[cursor]
        if char == quote:
            return "".join(out), cursor + 1, line
        if char == "\n":
            line += 1
        if char == "\\" and quote == '"' and cursor + 1 < len(text):
            following = text[cursor + 1]
            if following in _DOUBLE_ESCAPES:
                out.append(_DOUBLE_ESCAPES[following])
                cursor += 2
                continue
        out.append(char)
        cursor += 1
    raise fail(f"the quote ({quote}) opened here is never closed")


def render_env(data: dict[str, str]) -> str:
    """A .env file that parse_env() (and python-dotenv, Docker Compose) read back exactly."""
    lines = []
    for name, value in data.items():
        if _PLAIN_VALUE.match(value):
            lines.append(f"{name}={value}")
            continue
        escaped = (
            value.replace("\\", "\\\\")
            .replace('"', '\\"')
            .replace("$", "\\$")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
            .replace("\t", "\\t")
        )
        lines.append(f'{name}="{escaped}"')
    return "\n".join(lines) + ("\n" if lines else "")


def credential_kind(value: str) -> str | None:
    for label, pattern in CREDENTIAL_FORMATS:
        if pattern.search(value):
            return label
    return None


def import_warnings(
    data: dict[str, str], *, source: str = "", committed_to_git: bool = False
) -> list[dict[str, Any]]:
    """What the person importing should hear about; never a value."""
    warnings: list[dict[str, Any]] = []
    if committed_to_git:
        warnings.append(
            {
                "key": None,
                "kind": "committed_to_git",
                "message": "this file is in a git repository's index or history, so every "
                "value in it is in every clone of that repository: rotate them at their "
                "source now that they are in the vault, then remove the file from the "
                "repository (and its history).",
            }
        )
    name = PurePath(source.replace("\\", "/")).name.lower() if source else ""
    if name.endswith(EXAMPLE_SUFFIXES):
        warnings.append(
            {
                "key": None,
                "kind": "example_file",
                "message": f"files named like {name} are usually committed to git; if its "
                "values are real credentials, rotate them.",
            }
        )
    for key, value in data.items():
        kind = credential_kind(value)
        if kind is not None:
            warnings.append(
                {
                    "key": key,
                    "kind": "credential_format",
                    "message": f"{key} looks like a {kind}. Scanners find these in git history "
                    "within minutes of a push: if this file was ever committed, rotate it.",
                }
            )
    return warnings
