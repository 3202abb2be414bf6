"""Finding credentials in text, and taking them out of what the index keeps.

The rules are detect-secrets' plugins with its false-positive filters: vendor key formats
(AWS, Stripe, GitHub, GitLab, Slack, OpenAI, SendGrid, Twilio, ...), private keys, JSON
web tokens, passwords in URLs and secret-sounding assignments (`password = "..."`). A few
formats it does not know are added (HexaHub's own API keys, Anthropic and Google API
keys). Left out: its high-entropy-string rules, which flag every hash and digest in code,
and public IP addresses, which are not credentials.

`scan_text` returns a file's credentials and its text with each value replaced by
`[secret redacted: <rule>]`. Lines keep their numbers, so citations and symbols still
point at the right lines. Nothing is ever checked against a vendor's API: a value never
leaves the process, and only its keyed fingerprint (`fingerprint`) is ever stored.

A line that carries `pragma: allowlist secret` in a comment (detect-secrets' own marker)
is not reported, for test fixtures that only look like credentials.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import itertools
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# detect-secrets' plugins (by class name) that are not used: see the module's docstring.
EXCLUDED_PLUGINS = frozenset(
    {"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"}
)
# Its filter that reads the file from disk; the text scanned here is already in memory.
_DISK_FILTER = "detect_secrets.filters.common.is_invalid_file"
# Meant for secret-sounding names assigned a call (`password = get_password()`). Applied
# to that rule only: a vendor key inside a call (`Client("sk_live_...")`) is still a key.
_KEYWORD_ONLY_FILTERS = frozenset({"detect_secrets.filters.heuristic.is_indirect_reference"})
# Comments such as `# pragma: allowlist secret` that mark a line as not a credential.
_ALLOWLIST_FILTER = "detect_secrets.filters.allowlist.is_line_allowlisted"
KEYWORD_RULE = "Secret Keyword"
PRIVATE_KEY_RULE = "Private Key"

# Formats detect-secrets does not know: (rule, pattern). Each is a fixed prefix with a
# fixed alphabet, so a match is a credential and not a guess.
EXTRA_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("HexaHub API Key", re.compile(r"\bhh_[0-9a-f]{8}_[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")),
    ("Anthropic API Key", re.compile(r"\bsk-ant-[a-z]+\d{2}-[A-Za-z0-9_-]{32,}")),
    ("Google API Key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")),
)

# Some plugins report only the recognisable start of a token (Stripe: its first 24
# characters after the prefix; GitHub: the prefix alone): the redaction runs on to the
# token's end so no tail of it is left behind.
_TOKEN_TAIL = re.compile(r"[A-Za-z0-9_\-+/=]*")
_AROUND = " \t\"'`"
_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]*-----")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]*-----")
# Key material: base64 lines (maybe quoted, in code), and header lines such as
# `Proc-Type:` or PuTTY's `Private-Lines:`. A key runs at most this many lines.
_KEY_LINE = re.compile(r"""^\s*["']?[A-Za-z0-9+/=]{16,}["']?\s*[,+]?\s*$""")
_KEY_HEADER = re.compile(r"^\s*[A-Za-z][A-Za-z-]*: \S")
_KEY_TAIL = re.compile(r"(?:\\n|[A-Za-z0-9+/=])*")
_PEM_MAX_LINES = 200
# Other occurrences of a detected value elsewhere in the file are redacted too, when the
# value is long enough that replacing it everywhere cannot garble unrelated code.
_REPEAT_MIN_CHARS = 8


def marker(rule: str) -> str:
    """What a redacted value reads as in the index, the code view and answers."""
    return f"[secret redacted: {rule}]"


@dataclass(frozen=True)
class Detection:
    rule: str  # the detect-secrets secret type, e.g. "Stripe Access Key"
    line: int  # 1-based
    # Kept in memory only, for the fingerprint and a move into the vault; never stored,
    # logged or shown (repr leaves it out).
    value: str = field(repr=False)


@dataclass(frozen=True)
class Scan:
    text: str  # the text with every detected value replaced by its marker
    detections: tuple[Detection, ...]


def fingerprint(secret_key: str, value: str) -> str:
    """A keyed hash of a value: tells findings apart across scans without keeping the
    value, and (unlike a plain hash) cannot be brute-forced without the instance key."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"hexahub-findings", info=b"fingerprint"
    ).derive(secret_key.encode())
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


# --- detect-secrets, configured once -----------------------------------------------------


@dataclass(frozen=True)
class _Gate:
    """A cheap condition a line must meet for a rule to find anything in it: it holds one of
    `exact` or (ignoring case; given in lower case) one of `folded`, and, when `shape` is
    given, also matches it. Substring search runs at memory speed, where most of the
    rules' own patterns (lookbehinds, optional groups, IGNORECASE) cost up to a
    microsecond per byte of text."""

    exact: tuple[str, ...] = ()
    folded: tuple[str, ...] = ()
    shape: re.Pattern[str] | None = None
    # Or: lines this matches, searched in the whole text (fast when it starts with a
    # literal character).
    pattern: re.Pattern[str] | None = None


_KEY_WORDS = ("key", "pwd", "pw", "pass", "token")
# Read off detect-secrets 1.5's patterns: each names a literal (or the keyword and value
# shape) that every match of the plugin contains. To be checked again on an upgrade;
# plugins not named here are gated by their own patterns, which is slower but exact.
_GATES: dict[str, _Gate] = {
    "AWSKeyDetector": _Gate(exact=("A3T", "ABIA", "ACCA", "AKIA", "ASIA"), folded=("aws",)),
    "ArtifactoryDetector": _Gate(exact=("AKC", "AP")),
    "AzureStorageKeyDetector": _Gate(exact=("AccountKey=",)),
    "BasicAuthDetector": _Gate(exact=("://",)),
    "CloudantDetector": _Gate(
        folded=(*_KEY_WORDS, "cloudant"), shape=re.compile(r"(?i)[0-9a-f]{64}|[a-z]{24}")
    ),
    "GitHubTokenDetector": _Gate(exact=("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    "GitLabTokenDetector": _Gate(
        exact=(
            "glpat-",
            "gldt-",
            "glft-",
            "glsoat-",
            "glrt-",
            "GR1348941",
            "glcbt-",
            "glimt-",
            "glptt-",
            "glagent-",
            "gloas-",
        )
    ),
    "IbmCloudIamDetector": _Gate(folded=_KEY_WORDS, shape=re.compile(r"[a-zA-Z0-9_\-]{44}")),
    "IbmCosHmacDetector": _Gate(folded=("secret",), shape=re.compile(r"(?i)[a-f0-9]{48}")),
    "JwtTokenDetector": _Gate(exact=("eyJ",)),
    "MailchimpDetector": _Gate(exact=("-us",)),
    "NpmDetector": _Gate(exact=("_authToken",)),
    "OpenAIDetector": _Gate(exact=("T3BlbkFJ",)),
    "PrivateKeyDetector": _Gate(exact=("PRIVATE KEY", "PuTTY-User-Key-File-2")),
    "PypiTokenDetector": _Gate(exact=("pypi-Ag",)),
    "SendGridDetector": _Gate(exact=("SG.",)),
    "SlackDetector": _Gate(exact=("xox",), folded=("hooks.slack.com",)),
    "SoftlayerDetector": _Gate(
        folded=(*_KEY_WORDS, "softlayer"), shape=re.compile(r"(?i)[a-z0-9]{64}")
    ),
    "SquareOAuthDetector": _Gate(exact=("sq0csp-",)),
    "DiscordBotTokenDetector": _Gate(pattern=re.compile(r"\.[a-zA-Z\d_-]{6}\.[a-zA-Z\d_-]{27}")),
    "StripeDetector": _Gate(exact=("k_live_",)),
    "TelegramBotTokenDetector": _Gate(pattern=re.compile(r":[0-9A-Za-z_-]{35}")),
    "TwilioKeyDetector": _Gate(exact=("AC", "SK"), shape=re.compile(r"[a-z0-9]{32}")),
}
# HexaHub's own rules, by the literal each starts with.
_EXTRA_GATES = {"HexaHub API Key": "hh_", "Anthropic API Key": "sk-ant-", "Google API Key": "AIza"}


def _keyword_gate(denylist: Sequence[str]) -> _Gate | None:
    """The keyword rule's words (`api_?key` is apikey or api_key); None if one of them is
    more than that, and the rule's own patterns must gate it."""
    words: list[str] = []
    for item in denylist:
        variants = dict.fromkeys([item.replace("_?", "_"), item.replace("_?", "")])
        if not all(ch.isalnum() or ch == "_" for variant in variants for ch in variant):
            return None
        words.extend(variant.lower() for variant in variants)
    return _Gate(folded=tuple(words))


@dataclass(frozen=True)
class _Rule:
    name: str  # what findings and markers call it, e.g. "Stripe Access Key"
    detector: Any | None  # a detect-secrets plugin, or None for one of EXTRA_RULES
    pattern: re.Pattern[str] | None  # an extra rule's pattern
    gate: _Gate | None  # None: the patterns below gate it
    # Searched in the whole text when there is no gate; None and no gate: every line.
    patterns: tuple[re.Pattern[str], ...] | None


@dataclass(frozen=True)
class _Rules:
    rules: tuple[_Rule, ...]
    filters: tuple[Any, ...]  # detect-secrets filter functions (dependency-injected)


_rules_lock = threading.Lock()
_loaded: _Rules | None = None


def _rules() -> _Rules:
    """detect-secrets keeps its settings in process-global state; they are set once here and
    the resulting plugin objects and filters kept, so scans in several threads never touch
    that state again."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _rules_lock:
        if _loaded is None:
            _loaded = _load_rules()
    return _loaded


def _load_rules() -> _Rules:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.keyword import DENYLIST
    from detect_secrets.settings import get_filters, get_plugins, get_settings

    settings = get_settings()
    settings.clear()
    classes: Iterable[type] = get_mapping_from_secret_type_to_class().values()
    settings.configure_plugins(
        [{"name": cls.__name__} for cls in classes if cls.__name__ not in EXCLUDED_PLUGINS]
    )
    settings.disable_filters(_DISK_FILTER)
    rules = []
    for detector in get_plugins():
        name = type(detector).__name__
        gate = _GATES.get(name)
        patterns: tuple[re.Pattern[str], ...] | None = None
        if detector.secret_type == KEYWORD_RULE:
            gate = _keyword_gate(DENYLIST)
        if gate is None and isinstance(detector, RegexBasedDetector):
            # MULTILINE keeps ^ and $ meaning "line start/end" when searching the whole text.
            patterns = tuple(
                re.compile(p.pattern, p.flags | re.MULTILINE) for p in detector.denylist
            )
        rules.append(_Rule(str(detector.secret_type), detector, None, gate, patterns))
    for name, pattern in EXTRA_RULES:
        rules.append(_Rule(name, None, pattern, _Gate(exact=(_EXTRA_GATES[name],)), None))
    return _Rules(tuple(rules), tuple(get_filters()))


# --- finding ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Span:
    index: int  # 0-based line
    start: int
    end: int
    rule: str


def _rule_filename(path: str) -> str:
    """The name the keyword rule reads the file type from. dotenv files and .npmrc/.pypirc
    are `KEY=value` configuration: read as such, unquoted values count."""
    name = PurePosixPath(path).name.lower()
    if name.startswith(".env") or name.endswith(".env") or name in (".npmrc", ".pypirc"):
        return path + ".conf"
    return path


def _filtered(
    rules: _Rules, rule: _Rule, filename: str, lines: list[str], index: int, secret: str
) -> bool:
    """Whether detect-secrets' filters (known false positives, allowlist comments) drop
    this value."""
    from detect_secrets.util.code_snippet import get_code_snippet
    from detect_secrets.util.inject import call_function_with_arguments

    context = get_code_snippet(lines, index + 1)
    line = lines[index].rstrip()
    for check in rules.filters:
        if rule.name != KEYWORD_RULE and getattr(check, "path", "") in _KEYWORD_ONLY_FILTERS:
            continue
        if rule.detector is None and getattr(check, "path", "") != _ALLOWLIST_FILTER:
            continue  # HexaHub's own rules match exact formats: only the allowlist applies
        try:
            if call_function_with_arguments(
                check,
                filename=filename,
                line=line,
                secret=secret,
                plugin=rule.detector,
                context=context,
            ):
                return True
        except TypeError:
            continue  # a filter that wants something a line scan does not have
    return False


def _token_spans(line: str, value: str) -> list[tuple[int, int]]:
    """Where `value` occurs in `line`, each run on to the end of its token."""
    spans = []
    start = line.find(value)
    while start != -1:
        end = start + len(value)
        tail = _TOKEN_TAIL.match(line, end)
        if tail is not None:
            end = tail.end()
        spans.append((start, end))
        start = line.find(value, end)
    return spans


def _private_key(lines: Sequence[str], index: int, value: str) -> tuple[str, list[_Span]]:
    """A private key's block, from its BEGIN marker through the lines of key material
    after it to its END marker: the value to keep (for a move into the vault) and the
    spans to redact. A line that is not key material ends it (code that only mentions a
    BEGIN marker loses nothing but the marker)."""
    line = lines[index]
    begin = _PEM_BEGIN.search(line)
    start = begin.start() if begin else max(0, line.find(value))
    same_line_end = _PEM_END.search(line, start + 1)
    if same_line_end is not None:  # a key in one line, e.g. with \n escapes in a string
        end = same_line_end.end()
        return line[start:end], [_Span(index, start, end, PRIVATE_KEY_RULE)]
    head = _KEY_TAIL.match(line, begin.end() if begin else start + len(value))
    end = head.end() if head else len(line)
    parts = [line[start:end]]
    spans = [_Span(index, start, end, PRIVATE_KEY_RULE)]
    for follow in range(index + 1, min(len(lines), index + _PEM_MAX_LINES)):
        text = lines[follow]
        closing = _PEM_END.search(text)
        if closing is not None:
            parts.append(text[: closing.end()])
            spans.append(_Span(follow, 0, closing.end(), PRIVATE_KEY_RULE))
            break
        if not (_KEY_LINE.match(text) or _KEY_HEADER.match(text)):
            break
        parts.append(text)
        spans.append(_Span(follow, 0, len(text), PRIVATE_KEY_RULE))
    return "\n".join(parts), spans


class _Text:
    """One file's text, with what finding the lines of a match needs."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.text = "\n".join(lines)
        self.starts = [0, *itertools.accumulate(len(line) + 1 for line in lines[:-1])]
        self._folded: tuple[str, list[int]] | None = None
        self._words: dict[tuple[str, bool], set[int]] = {}

    def line_of(self, offset: int, starts: list[int] | None = None) -> int:
        return bisect.bisect_right(starts or self.starts, offset) - 1

    def folded(self) -> tuple[str, list[int]]:
        if self._folded is None:
            lowered = self.text.lower()
            starts = self.starts
            if len(lowered) != len(self.text):  # a few characters lower-case into two
                starts = [0] + [i + 1 for i, ch in enumerate(lowered) if ch == "\n"]
            self._folded = (lowered, starts)
        return self._folded

    def lines_with(self, words: Sequence[str], *, fold: bool) -> set[int]:
        found: set[int] = set()
        for word in words:
            found |= self._lines_with(word, fold)
        return found

    def _lines_with(self, word: str, fold: bool) -> set[int]:
        cached = self._words.get((word, fold))
        if cached is not None:
            return cached
        text, starts = self.folded() if fold else (self.text, self.starts)
        found: set[int] = set()
        at = text.find(word)
        while at != -1:
            index = self.line_of(at, starts)
            found.add(index)
            # On from the next line: one hit per line is enough.
            at = text.find(word, starts[index + 1]) if index + 1 < len(starts) else -1
        self._words[(word, fold)] = found
        return found

    def lines_matching(self, patterns: Sequence[re.Pattern[str]]) -> set[int]:
        found: set[int] = set()
        for pattern in patterns:
            for match in pattern.finditer(self.text):
                first = self.line_of(match.start())
                found.update(range(first, self.line_of(max(match.start(), match.end() - 1)) + 1))
        return found


def _candidate_lines(
    rules: _Rules, lines: list[str], *, gated: bool = True
) -> dict[int, list[_Rule]]:
    """For each line that may hold a finding, the rules to run on it (with `gated` False:
    every rule on every line, which finds the same, slowly)."""
    text = _Text(lines)
    wanted: dict[int, list[_Rule]] = {}
    for rule in rules.rules:
        hit_lines: Iterable[int]
        if not gated:
            hit_lines = range(len(lines))
        elif rule.gate is not None:
            gate = rule.gate
            hit_lines = text.lines_with(gate.exact, fold=False)
            if gate.pattern is not None:
                hit_lines |= text.lines_matching((gate.pattern,))
            if gate.folded:
                hit_lines |= text.lines_with(gate.folded, fold=True)
            if gate.shape is not None:
                shape = gate.shape
                hit_lines = {i for i in hit_lines if shape.search(lines[i])}
        elif rule.patterns is not None:
            hit_lines = text.lines_matching(rule.patterns)
        else:
            hit_lines = (i for i, line in enumerate(lines) if line.strip())
        for index in hit_lines:
            wanted.setdefault(index, []).append(rule)
    return wanted


def _hits(rule: _Rule, filename: str, line: str, index: int) -> list[str]:
    if rule.pattern is not None:
        return [m.group(0) for m in rule.pattern.finditer(line)]
    assert rule.detector is not None
    found = rule.detector.analyze_line(filename=filename, line=line, line_number=index + 1)
    # Some patterns take in the quote or `=` before a token; the value is the token.
    values = (str(s.secret_value).strip(_AROUND).lstrip("=:").strip(_AROUND) for s in found)
    return [value for value in values if value]


def _find(
    path: str, lines: list[str], *, gated: bool = True
) -> tuple[list[tuple[int, str, str]], list[_Span]]:
    """(line index, rule, value) for each credential, and the spans to redact."""
    rules = _rules()
    filename = _rule_filename(path)
    found: list[tuple[int, str, str]] = []
    spans: list[_Span] = []
    for index, chosen in sorted(_candidate_lines(rules, lines, gated=gated).items()):
        line = lines[index].rstrip()
        for rule in chosen:
            for value in _hits(rule, filename, line, index):
                if _filtered(rules, rule, filename, lines, index, value):
                    continue
                if rule.name == PRIVATE_KEY_RULE:
                    block, block_spans = _private_key(lines, index, value)
                    found.append((index, rule.name, block))
                    spans.extend(block_spans)
                    continue
                located = _token_spans(line, value)
                if not located:  # the plugin transformed the value: hide the whole line
                    located = [(len(line) - len(line.lstrip()), len(line))]
                found.append((index, rule.name, line[located[0][0] : located[0][1]]))
                spans.extend(_Span(index, s, e, rule.name) for s, e in located)
    return _prefer_specific(found), spans


def _prefer_specific(found: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """One finding per value: `STRIPE_KEY = "sk_live_..."` is a Stripe key, not also a
    secret keyword; the first line a value appears on names it."""
    by_value: dict[str, tuple[int, str, str]] = {}
    for item in found:
        index, rule, value = item
        kept = by_value.get(value)
        if kept is None or (kept[1] == KEYWORD_RULE and rule != KEYWORD_RULE):
            by_value[value] = (min(index, kept[0]) if kept else index, rule, value)
    return sorted(by_value.values())


def _repeats(lines: Sequence[str], found: list[tuple[int, str, str]]) -> list[_Span]:
    """The same values wherever else they occur in the file (`assert key == "sk_live_..."`
    a few lines below the assignment the rule caught)."""
    spans: list[_Span] = []
    values = [(rule, value) for _, rule, value in found if len(value) >= _REPEAT_MIN_CHARS]
    values = [(rule, value) for rule, value in values if "\n" not in value]
    for index, line in enumerate(lines):
        for rule, value in values:
            if value in line:
                spans.extend(_Span(index, s, e, rule) for s, e in _token_spans(line, value))
    return spans


def _redact(lines: list[str], spans: Sequence[_Span]) -> list[str]:
    by_line: dict[int, list[_Span]] = {}
    for span in spans:
        by_line.setdefault(span.index, []).append(span)
    out = list(lines)
    for index, line_spans in by_line.items():
        line = out[index]
        merged: list[list[Any]] = []
        for span in sorted(line_spans, key=lambda s: (s.start, -s.end)):
            if merged and span.start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], span.end)
                if merged[-1][2] == KEYWORD_RULE:  # the specific rule names the marker
                    merged[-1][2] = span.rule
            else:
                merged.append([span.start, span.end, span.rule])
        for start, end, rule in reversed(merged):
            line = line[:start] + marker(rule) + line[end:]
        out[index] = line
    return out


def scan_text(path: str, text: str) -> Scan:
    """The credentials in one file's text, and the text without them."""
    lines = text.split("\n")
    found, spans = _find(path, lines)
    if not found:
        return Scan(text, ())
    redacted = _redact(lines, [*spans, *_repeats(lines, found)])
    detections = tuple(Detection(rule, index + 1, value) for index, rule, value in found)
    return Scan("\n".join(redacted), detections)


def detect_lines(path: str, lines: Sequence[str], first_line: int = 1) -> list[Detection]:
    """The credentials in consecutive lines of a file that start at line `first_line`
    (the lines a commit added, for the history scan)."""
    found, _ = _find(path, list(lines))
    return [Detection(rule, first_line + index, value) for index, rule, value in found]
