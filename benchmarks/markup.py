"""Render 100 KB of adversarial Markdown through crunch.markup, beside plain text.

    .venv/bin/python -m benchmarks.markup [--size 100000] [--repeat 5] [--old]

Each input is ``--size`` characters (the details fields' limit). Printed per input: the
best of ``--repeat`` times of crunch.markup.render, uncached (pulldown-cmark, the depth
guard and bare-URL links, nh3), its ratio to plain text of the same size, and whether it is
under the 50 ms target; then the slowest input. The "at the cap" inputs make just under
``markup.MAX_TAGS`` elements, the most that is still rendered rather than shown as text. ``--old``
also times Python-Markdown, the renderer the pages used before, on the first 2 KB only
(it is quadratic: 10 KB of ``[`` took 21 s).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from benchmarks.harness import load_average
from crunch import markup

TARGET_MS = 50.0
OLD_SIZE = 2_000


def fill(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def deep_list(size: int) -> str:
    lines: list[str] = []
    length = 0
    while length < size:
        lines.append("  " * len(lines) + "- item\n")
        length += len(lines[-1])
    return "".join(lines)[:size]


def at_cap(unit: str, elements: int, size: int) -> str:
    """``unit`` as often as makes just under the element cap, then plain text up to ``size``."""
    body = unit * int(markup.MAX_TAGS * 0.99 / elements)
    return (body + "\n\n" + fill("plain words here ", size))[:size]


def inputs(size: int) -> dict[str, str]:
    half = size // 2
    return {
        "plain text (baseline)": fill("All work and no play makes a dull dataset. ", size),
        "[ x N": "[" * size,
        "nested [[[...]]]": "[" * half + "]" * half,
        "[]( x N": fill("[](", size),
        "[a]( unclosed x N": fill("[a](b ", size),
        "![[ images": fill("![[", size),
        "*a emphasis run": fill("*a", size),
        "*_ mixed delimiters": fill("*_", size),
        "**a*** unbalanced": fill("**a***", size),
        "link flood": fill("[link](https://example.org/a) ", size),
        "reference flood": fill("[a][b] ", size - 20) + "\n\n[b]: https://x.org\n",
        "autolink flood": fill("www.a.org/b_ ", size),
        "backtick runs": "".join("`" * n + "a" for n in range(1, 500))[:size],
        "entity flood": fill("&#106;&amp;&colon;", size),
        "& x N": "&" * size,
        "< x N": "<" * size,
        "raw html flood": fill("<a href='javascript:x'><img onerror=x>", size),
        "deep list": deep_list(size),
        "list markers on a line": fill("- ", size),
        "deep quotes": ">" * size,
        "quote and list nesting": fill("> - ", size),
        "table, many columns": "|" + fill("a|", size // 2) + "\n|" + fill("-|", size // 2),
        "table, many rows": "|a|b|\n|-|-|\n" + fill("|x|y|\n", size - 12),
        "email flood": fill("a.b@c.d ", size),
        "links at the cap": at_cap("[a](b) ", 1, size),
        "bare URLs at the cap": at_cap("www.a.org ", 1, size),
        "table rows at the cap": "|a|b|\n|-|-|\n" + at_cap("|x|y|\n", 3, size - 12),
        "emphasis at the cap": at_cap("*a* ", 1, size),
        "quotes at the cap": at_cap(">", 1, size),
    }


RENDER = markup.render.__wrapped__  # not the cache a page view would hit


def best_ms(render: Callable[[str], object], text: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        render(text)
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def old_renderer() -> Callable[[str], object] | None:
    try:
        import markdown  # type: ignore[import-untyped]  # Python-Markdown ships no types
    except ImportError:
        return None
    render: Callable[..., object] = markdown.markdown
    return lambda text: render(text, extensions=["fenced_code", "tables"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=markup.DETAILS_MAX_LENGTH)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--old", action="store_true", help="time Python-Markdown on 2 KB too")
    args = parser.parse_args()
    old = old_renderer() if args.old else None
    if args.old and old is None:
        print("--old: Python-Markdown is not installed (pip install markdown); skipped")
    cases = inputs(args.size)
    baseline = best_ms(RENDER, cases["plain text (baseline)"], args.repeat)
    header = f"{'input (' + format(args.size, ',') + ' chars)':<28} {'render':>10} {'x plain':>8}"
    print(header + (f" {'old, 2 KB':>11}" if old else "") + "  target < 50 ms")
    slowest, slowest_name = 0.0, ""
    for name, text in cases.items():
        ms = best_ms(RENDER, text, args.repeat)
        if ms > slowest:
            slowest, slowest_name = ms, name
        row = f"{name:<28} {ms:>7.1f} ms {ms / baseline:>7.1f}x"
        if old:
            row += f" {best_ms(old, text[:OLD_SIZE], 1):>8.0f} ms"
        print(row + ("  ok" if ms < TARGET_MS else "  OVER"))
    print(f"plain text: {baseline:.1f} ms")
    verdict = "ok" if slowest < TARGET_MS else "OVER"
    print(f"slowest input {slowest:.0f} ms (target {TARGET_MS:.0f} ms): {slowest_name}, {verdict}")
    print(f"load average {load_average():.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
