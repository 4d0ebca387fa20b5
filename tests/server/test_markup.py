"""Markdown in details renders inert: no script, handler or active URL survives crunch.markup."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.core.exceptions import ValidationError

from crunch import markup
from tests.factories import make_project

# Each sets window.__pwned or opens a dialog if it runs; the browser test clicks them all.
RUN = "window.__pwned=1;alert(1)"
PAYLOADS = [
    f"[plain](javascript:{RUN})",
    f"[colon entity](javascript&#58;{RUN})",
    f"[named colon](javascript&colon;{RUN})",
    f"[hex colon](javascript&#x3A;{RUN})",
    f"[padded colon](javascript&#0000058;{RUN})",
    f"[j entity](&#106;avascript:{RUN})",
    f"[all hex](&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;{RUN})",
    f"[mixed case](JaVaScRiPt:{RUN})",
    f"[tab in angle](<java\tscript:{RUN}>)",
    f"[tab entity](java&#x09;script:{RUN})",
    f"[named tab](java&Tab;script:{RUN})",
    f"[newline entity](java&#10;script:{RUN})",
    f"[named newline](java&NewLine;script:{RUN})",
    f"[percent](%6Aavascript:{RUN})",
    f"[leading space]( javascript:{RUN})",
    f"[leading control](&#1;javascript:{RUN})",
    f"[zero width](&#x200B;javascript:{RUN})",
    f"[full width](ｊａｖａｓｃｒｉｐｔ:{RUN})",
    f"[backslash](\\javascript:{RUN})",
    "[vbscript](vbscript:msgbox(1))",
    f"[reference][evil]\n\n[evil]: javascript:{RUN}",
    f"<javascript:{RUN}>",
    "[data html](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[data text](data:text/html,<script>alert(1)</script>)",
    "![data svg](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    f"![image js](javascript:{RUN})",
    f'[title](https://example.org "x\\" onmouseover=\\"{RUN}")',
    f"<script>{RUN}</script>",
    f'<a href="javascript:{RUN}">raw link</a>',
    f'<a href="&#x6A;avascript&#x3A;{RUN}">raw entity link</a>',
    f'<img src="x" onerror="{RUN}">',
    f"<svg onload={RUN}><circle r=5></svg>",
    f"<svg><script>{RUN}</script></svg>",
    f'<svg><a xlink:href="javascript:{RUN}"><text y="20">svg link</text></a></svg>',
    f"<math><mtext><table><mglyph><style><img src=x onerror={RUN}></style></mglyph></table>",
    f'<math href="javascript:{RUN}">math link</math>',
    f'<iframe src="javascript:{RUN}"></iframe>',
    f'<iframe srcdoc="<script>{RUN}</script>"></iframe>',
    f'<object data="javascript:{RUN}"></object><embed src="javascript:{RUN}">',
    f'<form action="javascript:{RUN}"><button>form button</button></form>',
    f'<details open ontoggle="{RUN}"><summary>toggle</summary></details>',
    f'<div style="background:url(javascript:{RUN})">styled</div>',
    f"<style>body{{background:url('javascript:{RUN}')}}</style>",
    f'<noscript><p title="</noscript><img src=x onerror={RUN}>"></noscript>',
    f"<!-- --><img src=x onerror={RUN}> -->",
    f'<meta http-equiv="refresh" content="0;url=javascript:{RUN}">',
    '<base href="javascript:/">[relative](x)',
    f'<a href="java\tscript:{RUN}">raw tab link</a>',
    f"**[emphasised](javascript:{RUN})**",
    f"| a |\n|---|\n| [in table](javascript:{RUN}) |",
]
ALLOWED_SCHEMES = {"http", "https", "mailto"}


class _Collect(HTMLParser):
    """Every start tag with its attributes, entities decoded as a browser reads them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))


def elements(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Collect()
    parser.feed(html)
    parser.close()
    return parser.tags


def scheme(url: str) -> str:
    """The scheme a browser's URL parser reads: C0 and spaces trimmed, tabs/newlines gone."""
    url = re.sub(r"[\t\n\r]", "", url.strip("\x00\x01\x02\x03\x04\x05\x06\x07\x08 \x0b\x0c\x0e"))
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.\-]*):", url.strip())
    return match.group(1).lower() if match else ""


def assert_inert(html: str) -> None:
    for tag, attrs in elements(html):
        assert tag in markup.TAGS, (tag, html)
        for name, value in attrs.items():
            assert not name.startswith("on") and name not in {"style", "srcdoc", "formaction"}
            if name in {"href", "src", "action", "data", "xlink:href"}:
                assert scheme(value) in ALLOWED_SCHEMES | {""}, (tag, name, value)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_renders_inert(payload: str) -> None:
    html = markup.render(payload)

    assert_inert(html)
    assert "<script" not in html.lower() and "<svg" not in html.lower()


def test_all_payloads_together_render_inert() -> None:
    html = markup.render("\n\n".join(PAYLOADS))

    assert_inert(html)
    hrefs = [attrs.get("href", "") for tag, attrs in elements(html) if tag == "a"]
    assert len(hrefs) >= 25  # the links are still there, only their targets are gone
    assert {scheme(href) for href in hrefs} <= {"", "https"}


def test_sanitize_alone_strips_what_a_renderer_might_let_through() -> None:
    html = markup.sanitize(
        '<a href="jav&#x09;ascript:alert(1)" onclick="x()">a</a><img src="data:image/png;base64,AA"'
        ' onerror="x()"><svg><script>x()</script></svg><p style="color:red">p</p>'
    )

    assert html == '<a rel="noopener noreferrer nofollow">a</a><img><p>p</p>'


def test_normal_markdown_still_renders() -> None:
    text = (
        "# Title\n\nSome *emphasis*, **strong**, ~~struck~~ and `code`.\n\n"
        "- one\n- two\n  1. nested\n\n3. three\n4. four\n\n> quoted\n\n"
        "```python\nprint('<b>')\n```\n\n"
        "| left | right |\n|:-----|------:|\n| 1 | 2 |\n\n"
        '[site](https://example.org/a?b=1&c=2 "Title") [page](/projects/x/) '
        "[mail](mailto:team@example.org) https://example.com/auto\n\n"
        "![chart](https://example.org/chart.png)\n\n---\n"
    )

    html = markup.render(text)

    for fragment in [
        "<h1>Title</h1>", "<em>emphasis</em>", "<strong>strong</strong>", "<del>struck</del>",
        "<code>code</code>", "<li>one</li>", "<ol>", '<ol start="3">', "<blockquote>",
        "<pre><code>print('&lt;b&gt;')\n</code></pre>", '<th align="left">left</th>',
        '<td align="right">2</td>', '<a href="https://example.org/a?b=1&amp;c=2" title="Title"',
        '<a href="/projects/x/"', '<a href="mailto:team@example.org"',
        '<a href="https://example.com/auto"', "<hr>",
        '<img src="https://example.org/chart.png" alt="chart">',
    ]:  # fmt: skip
        assert fragment in html, fragment
    assert 'rel="noopener noreferrer nofollow"' in html
    assert_inert(html)


def test_deep_nesting_is_flattened_keeping_the_text() -> None:
    html = markup.render(">" * 5000 + " deep")

    assert html.count("<blockquote>") == markup.MAX_DEPTH
    assert "deep" in html


def test_finish_keeps_shallow_html_as_it_is() -> None:
    html = "<ul>\n<li><p>a<br />b</p></li>\n</ul>\n<!-- raw HTML omitted -->"

    assert markup.finish(html) == html
    assert markup.finish("<a><b><c>x</c></b></a>", max_depth=1) == "<a>x</a>"


def test_render_stops_at_the_size_limit() -> None:
    html = markup.render("a" * markup.DETAILS_MAX_LENGTH + "TAIL")

    assert "TAIL" not in html and "a" * 1000 in html


@pytest.mark.django_db
def test_details_longer_than_the_limit_are_refused() -> None:
    project = make_project(name="Long", details="x" * markup.DETAILS_MAX_LENGTH)
    project.full_clean()

    project.details += "x"
    with pytest.raises(ValidationError, match="at most 100000 characters"):
        project.full_clean()


def test_raw_html_is_shown_as_text() -> None:
    html = markup.render('<b title="x">bold</b> a<b and `<i>code</i>`\n\n<div>\nblock\n</div>')

    assert html == (
        '<p>&lt;b title="x"&gt;bold&lt;/b&gt; a&lt;b and <code>&lt;i&gt;code&lt;/i&gt;</code></p>\n'
        "<p>&lt;div&gt;\nblock\n&lt;/div&gt;</p>\n"
    )


def test_bare_urls_and_emails_are_linked_outside_links_and_code() -> None:
    html = markup.render(
        "See www.example.org/a_b, (https://example.org/x(y)) and team@example.org.\n\n"
        "`https://example.org/code` [https://shown.org](https://target.org) a@b"
    )

    rel = 'rel="noopener noreferrer nofollow"'
    assert html == (
        f'<p>See <a href="http://www.example.org/a_b" {rel}>www.example.org/a_b</a>, '
        f'(<a href="https://example.org/x(y)" {rel}>https://example.org/x(y)</a>) and '
        f'<a href="mailto:team@example.org" {rel}>team@example.org</a>.</p>\n'
        f'<p><code>https://example.org/code</code> <a href="https://target.org" {rel}>'
        "https://shown.org</a> a@b</p>\n"
    )


def test_escaped_characters_come_back_as_written() -> None:
    html = markup.render("a & b < c > d \"e\" 'f' \ue001\n\n```\n&<>\"'\n```")

    assert html == (
        "<p>a &amp; b &lt; c &gt; d \"e\" 'f' \ufffd</p>\n"
        "<pre><code>&amp;&lt;&gt;\"'\n</code></pre>\n"
    )


def test_bare_links_count_towards_the_element_cap() -> None:
    html = markup.render("a@b.io " * (markup.MAX_TAGS + 10))

    assert html.count("<a ") == markup.MAX_TAGS - 1  # the paragraph is the other element


def test_more_elements_than_the_cap_are_shown_as_plain_text() -> None:
    html = markup.render("*a* " * (markup.MAX_TAGS + 1))

    assert html.startswith("<pre>*a* *a* ") and "<em>" not in html
