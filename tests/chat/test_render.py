"""Answers as HTML: nothing a model writes comes out as markup, code is highlighted with
classes (no inline style), links are marked, citations become links."""

from __future__ import annotations

import re

import pytest

from hexahub.chat.render import cite_links, highlight_css, markdown_to_html

CITATIONS = [
    {
        "number": 1,
        "repo_id": "r1",
        "repo_name": "infra",
        "path": "deploy/app.py",
        "start_line": 3,
        "end_line": 9,
        "url": "/workspaces/w/repos/r1/code/deploy/app.py#L3-L9",
    },
    {"number": 2, "url": "javascript:alert(1)", "repo_name": "x", "path": "y"},
]

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](vbscript:msgbox)",
    "![x](javascript:alert(1))",
    '```html\n<script>alert("in code")</script>\n```',
    "`<script>inline</script>`",
    "    <script>indented()</script>",
    "| a |\n|---|\n| <script>t()</script> |",
    '```"><script>x()</script>\ncode\n```',
    "<style>body{display:none}</style>",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_nothing_a_model_writes_becomes_markup(text: str):
    html = markdown_to_html(text, CITATIONS)
    assert "<script" not in html.lower()
    assert "<style" not in html.lower()
    assert "<img" not in html.lower()
    assert not re.search(r"(href|src)=\"\s*(javascript|vbscript|data):", html, re.IGNORECASE)
    assert not re.search(r"<[^>]+\son\w+=", html)  # no event handler attributes
    assert "style=" not in html


def test_code_blocks_are_highlighted_with_classes_and_wrapped():
    html = markdown_to_html("```python\ndef f():\n    return '<b>'\n```")
    assert html.startswith('<div class="codeblock" data-lang="python"><pre><code')
    assert '<span class="k">def</span>' in html
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert "style=" not in html
    unknown = markdown_to_html("```nosuchlang\nx < y\n```")
    assert 'data-lang="nosuchlang"' in unknown and "x &lt; y" in unknown
    assert ".codeblock .k" in highlight_css()


def test_links_are_marked_and_images_are_only_links():
    html = markdown_to_html("[docs](https://example.org/a?b=1&c=2) ![chart](https://e.org/c.png)")
    assert '<a href="https://example.org/a?b=1&amp;c=2" rel="noopener nofollow">docs</a>' in html
    assert (
        '<a class="image-link" href="https://e.org/c.png" rel="noopener nofollow">chart</a>' in html
    )


def test_citations_become_links_outside_code_and_links():
    html = markdown_to_html(
        "The app deploys here [1] and here [2], not [3]. `[1]` [see [1]](https://e.org)",
        CITATIONS,
    )
    assert (
        '<a class="cite" href="/workspaces/w/repos/r1/code/deploy/app.py#L3-L9" '
        'title="infra/deploy/app.py:3-9" rel="noopener nofollow">[1]</a>'
    ) in html
    # A citation with an unsafe address is shown, not linked; an unknown number stays text.
    assert '<span class="cite" title="x/y:-">[2]</span>' in html
    assert "not [3]." in html
    assert "<code>[1]</code>" in html
    assert '<a href="https://e.org" rel="noopener nofollow">see [1]</a>' in html


def test_cite_links_on_plain_text():
    assert cite_links("<b>[1]</b>", CITATIONS) == (
        "&lt;b&gt;"
        '<a class="cite" href="/workspaces/w/repos/r1/code/deploy/app.py#L3-L9" '
        'title="infra/deploy/app.py:3-9" rel="noopener nofollow">[1]</a>'
        "&lt;/b&gt;"
    )
