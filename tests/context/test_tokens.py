"""Code-aware tokenisation shared by the index stores."""

from __future__ import annotations

import pytest

from hexahub.context.tokens import (
    STOP_WORDS,
    expand_identifiers,
    query_terms,
    split_identifier,
)


@pytest.mark.parametrize(
    ("word", "parts"),
    [
        ("getUserName", ["get", "user", "name"]),
        ("GetUserName", ["get", "user", "name"]),
        ("HTTPServerError", ["http", "server", "error"]),
        ("XMLHttpRequest", ["xml", "http", "request"]),
        ("max_redirects", ["max", "redirects"]),
        ("MAX_REDIRECTS", ["max", "redirects"]),
        ("_private_helper", ["private", "helper"]),
        ("parseJSON2Html", ["parse", "json", "2", "html"]),
        ("utf8", ["utf", "8"]),
        ("name", []),
        ("NAME", []),
        ("__init__", []),
        ("42", []),
    ],
)
def test_split_identifier(word: str, parts: list[str]) -> None:
    assert split_identifier(word) == parts


def test_expand_identifiers_keeps_the_text_and_adds_the_parts() -> None:
    text = "def getUserName(self):\n    raise HTTPServerError(self.max_redirects)"
    expanded = expand_identifiers(text)
    assert expanded.startswith(text.lower())
    words = set(expanded.split())
    assert {"get", "user", "name", "http", "server", "error", "max", "redirects"} <= words
    assert "getusername(self):" in words  # the original words stay as they were
    assert expanded == expanded.lower()


def test_expand_identifiers_kebab_and_dotted() -> None:
    # Some tokenizers keep `os.path.joinPaths` or a file path as one word: the parts are
    # added as words of their own, and compound parts inside them are split too.
    expanded = expand_identifiers("import os.path.joinPaths; user-agent: src/http/app.py")
    extra = set(expanded.split("\n", 1)[1].split())
    assert {"os", "path", "joinpaths", "join", "paths", "user", "agent"} <= extra
    assert {"src", "http", "app", "py"} <= extra
    assert "std vec vec" in expand_identifiers("std::vec::Vec")


def test_expand_identifiers_adds_each_identifier_once() -> None:
    expanded = expand_identifiers("getUserName getUserName getUserName")
    assert expanded.count("get user name") == 1
    assert expand_identifiers("plain words only") == "plain words only"
    assert expand_identifiers("") == ""


def test_query_terms_split_identifiers_and_keep_them_whole() -> None:
    assert query_terms("getUserName") == ["getusername", "get", "user", "name"]
    assert query_terms("max_redirects") == ["max_redirects", "max", "redirects"]
    assert query_terms("os.path.join") == ["os.path.join", "os", "path", "join"]
    assert query_terms("user-agent") == ["user-agent", "user", "agent"]
    assert query_terms("HTTPServerError") == ["httpservererror", "http", "server", "error"]


def test_query_terms_drop_stop_words_junk_and_duplicates() -> None:
    assert query_terms("How do I get the user name?") == ["get", "user", "name"]
    assert query_terms("Where is the UserName of a user defined") == [
        "username",
        "user",
        "name",
        "defined",
    ]
    assert query_terms("a b c x") == []
    assert query_terms("error 404 in utf8") == ["error", "404", "utf8", "utf"]
    assert query_terms("") == []
    assert query_terms('"quoted" OR (grouped*) -negated NEAR:') == [
        "quoted",
        "grouped",
        "negated",
        "near",
    ]
    assert "get" not in STOP_WORDS and "set" not in STOP_WORDS


def test_query_terms_are_safe_to_quote() -> None:
    # The stores wrap each term in double quotes; no term may contain one.
    for query in ['say "hi"', "a\"b'c", "naïve café", "日本語 テスト", "x\0y"]:
        for term in query_terms(query):
            assert '"' not in term and "\0" not in term and term == term.lower()
