"""Code-aware tokenisation: one home for what both index stores feed their full-text index.

Full-text tokenizers split on punctuation, so `max_redirects` already becomes `max` and
`redirects`, but `getUserName` stays one word and a query for "user name" misses it. The
stores therefore index `expand_identifiers(text)`: the text itself plus the parts of every
compound identifier; queries go through `query_terms`, which splits the same way.
"""

from __future__ import annotations

import re

# A word as the full-text tokenizers see one (letters, digits, underscore).
_WORD = re.compile(r"\w+")
# An identifier in a query, dotted or kebab parts included: `os.path.join`, `max-age`.
_QUERY_IDENTIFIER = re.compile(r"\w+(?:[.\-]\w+)*")
# A token of indexed text: words joined by dots, dashes, slashes or colons
# (`self.max_redirects`, `src/app.py`, `std::vec::Vec`, `user-agent`).
_TOKEN = re.compile(r"\w+(?:(?:[./\-]|::)\w+)*")
_SEPARATOR = re.compile(r"[./\-:]")
# Whether a word is compound at all: an underscore, a lower→upper step, an acronym
# followed by a word (`HTTPServer`), or letters next to digits.
_COMPOUND = re.compile(r"_|[a-z][A-Z]|[A-Z]{2}[a-z]|[A-Za-z]\d|\d[A-Za-z]")
# The parts of a compound word: `HTTPServerError2` → HTTP, Server, Error, 2.
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^\W\d_A-Za-z]+")

# Deliberately short: English filler in a question about code. Words that are also
# keywords (`for`, `if`, `in`, `not`) are in it: a search for the keyword alone is rare.
# `get` and `set` are not: they start half the method names there are.
_STOP_WORDS_TEXT = """
    a about above after all also am an and any are as at be been being but by can could
    did do does doing done each either find for from give had has have having he her here
    hers him his how i if in into is it its itself just me more most my no nor not of off
    on once only or other our ours out over own please same she should show so some such
    tell than that the their theirs them then there these they this those through to too
    under until up us very was we were what when where which while who whom why will with
    would you your yours
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


def split_identifier(word: str) -> list[str]:
    """The lowercased parts of one compound word; [] when it is not compound."""
    # Most words are plain (`return`, `Client`, `NAME`): settle those without a regex.
    if word.isalpha() and (word.islower() or word.isupper() or word[1:].islower()):
        return []
    if not _COMPOUND.search(word):
        return []
    parts = [p.lower() for p in _PART.findall(word)]
    return parts if len(parts) > 1 else []


def expand_identifiers(text: str) -> str:
    """Text to full-text index: the lowercased text plus, after it, the parts of each
    distinct compound identifier (`getUserName` adds "get user name", `os.path.join`
    adds "os path join")."""
    extra: list[str] = []
    seen: set[str] = set()
    for token in _TOKEN.findall(text):
        if token in seen:
            continue
        seen.add(token)
        if _SEPARATOR.search(token):
            # PostgreSQL's parser keeps `self.max_redirects` or `src/app.py` as one word
            # (a host name, a file path); its parts must be words of their own.
            words = _WORD.findall(token)
            extra.append(" ".join(words).lower())
        else:
            words = [token]
        for word in words:
            parts = split_identifier(word)
            if parts:
                extra.append(" ".join(parts))
    lowered = text.lower()
    if not extra:
        return lowered
    return lowered + "\n" + " ".join(extra)


def query_terms(query: str) -> list[str]:
    """The distinct lowercased terms of a user's query, in order: each identifier as a
    whole and its parts (`getUserName` → getusername, get, user, name), stop words and
    one-letter junk left out."""
    terms: list[str] = []
    seen: set[str] = set()

    def add(term: str, *, part: bool = False) -> None:
        if term in seen or term in STOP_WORDS:
            return
        # One letter is noise; a number counts as a word of its own ("error 404"), not
        # as the tail of `utf8`.
        if part and (term.isdigit() or len(term) < 2):
            return
        if len(term) < 2 and not term.isdigit():
            return
        seen.add(term)
        terms.append(term)

    for identifier in _QUERY_IDENTIFIER.findall(query):
        add(identifier.lower())
        words = _WORD.findall(identifier)
        for word in words:
            if len(words) > 1:
                add(word.lower())
            for part in split_identifier(word):
                add(part, part=True)
    return terms
