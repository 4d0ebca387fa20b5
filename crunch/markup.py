"""Markdown typed by anyone, rendered to HTML that cannot run script: cmark-gfm, then nh3.

Why cmark-gfm: it is C and linear in its input by design (cmark keeps a suite of
pathological inputs), and it has GitHub's tables. Python-Markdown is quadratic:
``LinkInlineProcessor.getText`` scans from every ``[`` to the end of the paragraph for
its ``]`` (three link patterns each do), so 10 KB of ``[`` took 21 s. markdown-it-py is
linear but pure Python at about 5-20 µs per ``[``: 100 KB took seconds.

Why nh3 after it: cmark without ``CMARK_OPT_UNSAFE`` already omits raw HTML and
``javascript:`` links, but the allow-list below is the boundary. nh3 (ammonia) parses the
HTML as a browser does, entities decoded, checks each URL's scheme as the URL parser
reads it (tabs and newlines removed, case folded) and writes the HTML anew.

html5ever, under nh3, spends time quadratic in the depth of nested elements, so tags deeper
than ``MAX_DEPTH`` are dropped (their text kept) before it sees them; that step only keeps
the time linear, the sanitising does not depend on it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from html import escape

import cmarkgfm
import nh3
from cmarkgfm.cmark import Options
from django.core.validators import MaxLengthValidator

DETAILS_MAX_LENGTH = 100_000
"""Characters of Markdown a details field holds (its validator) and the pages render."""

MAX_DEPTH = 32
MAX_TAGS = 20_000
"""Elements past which details are shown as plain text: sanitising costs per element, and
no one writes 20,000 of them on purpose."""
TAGS = {
    "a", "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "code",
    "em", "strong", "del", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "img",
}  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
}
URL_SCHEMES = {"http", "https", "mailto"}  # and relative URLs
EXTENSIONS = ["table", "strikethrough", "autolink"]

_CLEANER = nh3.Cleaner(
    tags=TAGS,
    clean_content_tags={"script", "style"},
    attributes=ATTRIBUTES,
    url_schemes=URL_SCHEMES,
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)
# cmark's own output: attribute values are escaped, so no ">" before a tag's end.
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^>]*>")
_VOID = {"br", "hr", "img", "input"}


@lru_cache(maxsize=32)  # a page viewed again costs a lookup, not a render
def render(text: str) -> str:
    """Markdown (its first ``DETAILS_MAX_LENGTH`` characters) as sanitised HTML."""
    text = text[:DETAILS_MAX_LENGTH]
    html = cmarkgfm.markdown_to_html_with_extensions(
        text, options=Options.CMARK_OPT_VALIDATE_UTF8, extensions=EXTENSIONS
    )
    if html.count("<") > 2 * MAX_TAGS:
        return f"<pre>{escape(text)}</pre>"
    return sanitize(flatten(html))


def sanitize(html: str) -> str:
    """HTML with only the allowed tags, attributes and URL schemes left."""
    return str(_CLEANER.clean(html))


def flatten(html: str, max_depth: int = MAX_DEPTH) -> str:
    """Drop the tags nested deeper than ``max_depth`` in well-formed HTML, keeping their text."""
    parts: list[str] = []
    kept: list[bool] = []
    position = 0
    for match in _TAG.finditer(html):
        closing, name = match.group(1), match.group(2).lower()
        if name in _VOID:
            continue
        if closing:
            keep = kept.pop() if kept else True
        else:
            keep = len(kept) < max_depth
            kept.append(keep)
        if not keep:
            parts.append(html[position : match.start()])
            position = match.end()
    if not parts:
        return html
    parts.append(html[position:])
    return "".join(parts)


details_length = MaxLengthValidator(DETAILS_MAX_LENGTH)
"""The details fields' validator: the pages render no more than this."""
