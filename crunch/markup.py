"""Markdown typed by anyone, rendered to HTML that cannot run script: pulldown-cmark, then nh3.

Why pulldown-cmark (the ``pyromark`` binding): it is Rust and linear in its input, and it
parses each adversarial input of ``benchmarks/markup.py`` (100 KB) in under 10 ms, where
cmark-gfm took 30-40 ms on 100 KB of ``>`` or ``*_`` (comrak, its Rust port, as long).
Python-Markdown is quadratic (10 KB of ``[`` took 21 s), markdown-it-py pure Python
(seconds for 100 KB), and markdown-it-pyrs crashed on 100 KB of ``>``.

pulldown-cmark has no switch to drop raw HTML, so every ``<`` that cannot open an autolink
is swapped for ``_LT`` before it parses, and the details show raw HTML as text: every tag in
its output is one the renderer wrote (well-formed, which ``finish`` relies on). GitHub's
bare-URL autolinks, which pulldown-cmark lacks, are added by ``finish``; its tables' inline
``style`` becomes the ``align`` attribute the allow-list keeps.

Why nh3 after it: the allow-list below is the boundary, whatever the renderer lets through
(pulldown-cmark writes ``javascript:`` links as given). nh3 (ammonia) parses the HTML as a
browser does, entities decoded, checks each URL's scheme as the URL parser reads it (tabs
and newlines removed, case folded) and writes the HTML anew.

html5ever, under nh3, spends time quadratic in the depth of nested block elements, so tags
deeper than ``MAX_DEPTH`` are dropped (their text kept) before it sees them; that step only
keeps the time linear, the sanitising does not depend on it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from html import escape

import nh3
import pyromark
from django.core.validators import MaxLengthValidator

DETAILS_MAX_LENGTH = 100_000
"""Characters of Markdown a details field holds (its validator) and the pages render."""

MAX_DEPTH = 32
MAX_TAGS = 10_000
"""Elements past which details are shown as plain text: finishing and sanitising cost about
1.5 µs per element, and no one writes 10,000 of them on purpose (a 2,000-row table of four
columns is 10,000)."""
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

_MARKDOWN = pyromark.Markdown(
    options=pyromark.Options.ENABLE_TABLES | pyromark.Options.ENABLE_STRIKETHROUGH
)
_CLEANER = nh3.Cleaner(
    tags=TAGS,
    clean_content_tags={"script", "style"},
    attributes=ATTRIBUTES,
    url_schemes=URL_SCHEMES,
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)
# The entities the renderer writes, each as a private-use character while nh3 reads the
# HTML: html5ever decodes entities in time that grows faster than their number in one text
# or attribute (100 KB of "&" took 120 ms), and a private-use character costs it nothing.
# Putting them back cannot make markup: each is one literal character in any context, and
# none is a character a URL's scheme can contain or that the URL parser removes.
_ESCAPES = {
    "&amp;": "\ue001", "&lt;": "\ue002", "&gt;": "\ue003", "&quot;": "\ue004",
    "&#x27;": "\ue005", "&#39;": "\ue006",
}  # fmt: skip
_SHIELDED = re.compile("[\ue000-\ue00f]")  # the same characters typed in the Markdown
_LT = _ESCAPES["&lt;"]
# A "<" kept is one opening a URI or email autolink, which CommonMark never reads as HTML.
_TEXT_LT = re.compile(
    r"<(?![A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\x00-\x20<>]*>"
    r"|[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*>)"
)
_ALIGN = re.compile(r'<(th|td) style="text-align: (left|center|right)">')
_TAG = r"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^>]*>"  # the renderer's: no ">" in attribute values
# GitHub's extended autolinks, after a space, "(" or a tag, ending before a space or a "<"
# (escaped). The lookbehind makes an email's local part start only once per run of it.
_BARE_URL = (
    r"(?<![^\s(*_~>])(?:https?://[\w\-]+|www\.[\w\-]+\.[\w\-]+)[^\s<" + _LT + "]*"
    r"|(?<![\w.+\-])[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+"
)
_TAG_OR_URL = re.compile(f"{_TAG}|(?P<url>{_BARE_URL})")
_TAG_ONLY = re.compile(_TAG)
_MAY_LINK = re.compile(r"https?://|www\.|@")
_PUNCTUATION = "?!.,:*_~'\"" + _ESCAPES["&quot;"] + _ESCAPES["&#x27;"] + _ESCAPES["&#39;"]
_VOID = {"br", "hr", "img", "input"}
_NO_LINKS = {"a", "code", "pre"}


@lru_cache(maxsize=32)  # a page viewed again costs a lookup, not a render
def render(text: str) -> str:
    """Markdown (its first ``DETAILS_MAX_LENGTH`` characters) as sanitised HTML."""
    text = text[:DETAILS_MAX_LENGTH]
    html = _MARKDOWN.html(_TEXT_LT.sub(_LT, _SHIELDED.sub("\ufffd", text)))
    if html.count("<") > 2 * MAX_TAGS:
        return f"<pre>{escape(text)}</pre>"
    if 'style="text-align: ' in html:
        html = _ALIGN.sub(r'<\1 align="\2">', html)
    for entity, char in _ESCAPES.items():
        html = html.replace(entity, char)
    html = sanitize(finish(html, max_links=MAX_TAGS - html.count("<") // 2))
    for entity, char in _ESCAPES.items():
        html = html.replace(char, entity)
    return html


def sanitize(html: str) -> str:
    """HTML with only the allowed tags, attributes and URL schemes left."""
    return str(_CLEANER.clean(html))


def finish(html: str, max_depth: int = MAX_DEPTH, max_links: int = MAX_TAGS) -> str:
    """Drop the tags nested deeper than ``max_depth`` in well-formed HTML, keeping their
    text, and link the first ``max_links`` bare URLs and emails outside links and code."""
    token = _TAG_OR_URL if max_links > 0 and _MAY_LINK.search(html) else _TAG_ONLY
    parts: list[str] = []
    kept: list[bool] = []
    inert = 0  # open a, code and pre elements, inside which text is not linked
    position = 0
    for match in token.finditer(html):
        name = match.group(2)
        if name is None:
            if inert == 0 and max_links > 0 and (link := _link(match.group())) is not None:
                parts += [html[position : match.start()], link]
                position = match.end()
                max_links -= 1
            continue
        name = name.lower()
        if name in _VOID:
            continue
        if match.group(1):
            keep = kept.pop() if kept else True
            inert -= name in _NO_LINKS
        else:
            keep = len(kept) < max_depth
            kept.append(keep)
            inert += name in _NO_LINKS
        if not keep:
            parts.append(html[position : match.start()])
            position = match.end()
    if not parts:
        return html
    parts.append(html[position:])
    return "".join(parts)


def _link(found: str) -> str | None:
    """A bare URL or email address as a link, less the punctuation that ends its sentence."""
    text = _trim(found)
    if text.startswith(("http://", "https://")):
        if not text.partition("://")[2]:
            return None
        href = text
    elif text.startswith("www."):
        href = f"http://{text}"
    elif text.endswith(("-", "_")) or "." not in text.rpartition("@")[2]:
        return None
    else:
        href = f"mailto:{text}"
    tail = found[len(text) :]
    href = href.replace('"', _ESCAPES["&quot;"])  # the renderer leaves quotes in text
    return f'<a href="{href}">{text}</a>{tail}'


def _trim(found: str) -> str:
    """``found`` less its trailing punctuation and unmatched ")", in one pass."""
    end = len(found)
    unmatched = found.count(")") - found.count("(")
    while end:
        char = found[end - 1]
        if char in _PUNCTUATION:
            end -= 1
        elif char == ")" and unmatched > 0:
            end -= 1
            unmatched -= 1
        else:
            break
    return found[:end]


details_length = MaxLengthValidator(DETAILS_MAX_LENGTH)
"""The details fields' validator: the pages render no more than this."""
