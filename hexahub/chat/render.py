"""Answers as safe HTML: Markdown with highlighted code, and [n] citations as links.

Everything a model writes is treated as hostile text. Raw HTML in Markdown is shown as
text, never passed through; only http(s), mailto and relative links are kept (markdown-it
drops javascript:, data: and the like) and every link gets rel="noopener nofollow".
Images become plain links: an answer must not make the reader's browser fetch an address
(a prompt-injected image URL could carry data out). Highlighting uses CSS classes only
(`highlight_css()`), because the pages' Content-Security-Policy forbids inline styles.

Code blocks come out as

    <div class="codeblock" data-lang="python"><pre><code>…</code></pre></div>

so a static script can attach a copy button to each.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.lexers.special import TextLexer
from pygments.util import ClassNotFound

CITATION = re.compile(r"\[(\d{1,3})\]")
LANGUAGE = re.compile(r"^[A-Za-z0-9_+#.-]{1,32}$")
SAFE_URL = re.compile(r"^(https?://|mailto:|/(?!/)|#)", re.IGNORECASE)
LINK_REL = "noopener nofollow"
HIGHLIGHT_STYLE = "default"

_formatter = HtmlFormatter(nowrap=True)  # classes, never inline styles


def highlight_css(selector: str = ".codeblock") -> str:
    """The stylesheet for highlighted code, for a static CSS file."""
    css: str = HtmlFormatter(style=HIGHLIGHT_STYLE).get_style_defs(selector)
    return css


def _language(info: str) -> str:
    first = info.strip().split(maxsplit=1)[0] if info.strip() else ""
    return first if LANGUAGE.match(first) else ""


def highlight_code(code: str, language: str) -> str:
    """Code as escaped HTML with class-marked tokens; plain escaped text for a language
    Pygments does not know (it never guesses)."""
    lexer: Any
    try:
        lexer = get_lexer_by_name(language, stripnl=False) if language else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    html: str = highlight(code, lexer, _formatter)
    return html


def _code(code: str, info: str) -> str:
    language = _language(info)
    lang_class = f' class="language-{escape(language)}"' if language else ""
    return (
        f'<div class="codeblock" data-lang="{escape(language)}">'
        f"<pre><code{lang_class}>{highlight_code(code, language)}</code></pre></div>\n"
    )


def _citation_map(citations: Sequence[Mapping[str, Any]] | None) -> dict[int, Mapping[str, Any]]:
    found: dict[int, Mapping[str, Any]] = {}
    for cite in citations or []:
        try:
            found[int(cite["number"])] = cite
        except (KeyError, TypeError, ValueError):
            continue
    return found


def _cite_link(number: int, cite: Mapping[str, Any]) -> str:
    url = str(cite.get("url") or "")
    where = f"{cite.get('repo_name', '')}/{cite.get('path', '')}"
    span = f"{cite.get('start_line', '')}-{cite.get('end_line', '')}"
    title = escape(f"{where}:{span}")
    if not SAFE_URL.match(url):
        return f'<span class="cite" title="{title}">[{number}]</span>'
    return f'<a class="cite" href="{escape(url)}" title="{title}" rel="{LINK_REL}">[{number}]</a>'


def _with_citations(escaped: str, cites: Mapping[int, Mapping[str, Any]]) -> str:
    """Turn [n] in already escaped text into links, for the n that are cited."""
    if not cites:
        return escaped

    def link(match: re.Match[str]) -> str:
        number = int(match.group(1))
        cite = cites.get(number)
        return _cite_link(number, cite) if cite is not None else match.group(0)

    return CITATION.sub(link, escaped)


def cite_links(text: str, citations: Sequence[Mapping[str, Any]] | None) -> str:
    """Plain text (not Markdown) escaped, with its [n] markers linked to the citations."""
    return _with_citations(escapeHtml(text), _citation_map(citations))


# --- Markdown ---------------------------------------------------------------------------


def _fence(self: Any, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[idx]
    return _code(token.content, token.info)


def _code_block(
    self: Any, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    return _code(tokens[idx].content, "")


def _link_open(self: Any, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[idx]
    href = str(token.attrGet("href") or "")
    if not SAFE_URL.match(href) and "://" in href:
        token.attrSet("href", "#")  # only http(s) leaves the page
    token.attrSet("rel", LINK_REL)
    env["link_depth"] = env.get("link_depth", 0) + 1
    rendered: str = self.renderToken(tokens, idx, options, env)
    return rendered


def _link_close(
    self: Any, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    env["link_depth"] = max(0, env.get("link_depth", 0) - 1)
    rendered: str = self.renderToken(tokens, idx, options, env)
    return rendered


def _image(self: Any, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = self.renderInlineAsText(token.children or [], options, env) or src
    if not SAFE_URL.match(src):
        return f'<span class="image-link">{escapeHtml(alt)}</span>'
    return f'<a class="image-link" href="{escapeHtml(src)}" rel="{LINK_REL}">{escapeHtml(alt)}</a>'


def _text(self: Any, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    escaped = escapeHtml(tokens[idx].content)
    if env.get("link_depth", 0):
        return escaped  # no link inside a link
    cites: Mapping[int, Mapping[str, Any]] = env.get("citations") or {}
    return _with_citations(escaped, cites)


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _code_block)
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("link_close", _link_close)
    md.add_render_rule("image", _image)
    md.add_render_rule("text", _text)
    return md


_markdown = _parser()


def markdown_to_html(text: str, citations: Sequence[Mapping[str, Any]] | None = None) -> str:
    """An answer's Markdown as safe HTML; with `citations` (a message's list of
    {number, url, repo_name, path, start_line, end_line}), [n] markers become links."""
    env: dict[str, Any] = {"citations": _citation_map(citations), "link_depth": 0}
    html: str = _markdown.render(text, env)
    return html
