"""SVG charts of a project's results, drawn on the server from its summary.

Pure functions from a ``KeySummary`` to an SVG string: no script, no font but the page's,
no ``style`` attribute (the pages' Content-Security-Policy refuses inline styles), only
presentation attributes and classes the stylesheet colours. Every text is escaped. Each
chart is ``role="img"`` with an ``aria-label`` that says what it shows, and each bar holds
a ``<title>`` (its tooltip) and ``data-`` attributes (its range and count), which the
tests read back.

- a numeric key: a histogram of its bins, the median marked, axes labelled;
- a text or boolean key: horizontal bars of its most frequent values, then the others;
- a lat-long key: its sampled points on an equirectangular map (longitude -180..180 by
  latitude -90..90) under a 30-degree graticule. The points are one ``<path>`` of
  zero-length segments with round caps (each drawn as a small circle): 5,000 points cost
  about 16 bytes each and one element, where as many ``<circle>`` elements cost twice the
  bytes and 5,000 nodes.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from crunch.choices import AttributeKind
from crunch.services.result_summary import NUMERIC, KeySummary

# Histogram geometry, in the SVG's own units (about pixels at its usual width).
WIDTH, HEIGHT = 360, 170
LEFT, RIGHT, TOP, BOTTOM = 46, 10, 12, 40
# Counts chart: one row per value.
ROW, LABEL, BAR = 20, 132, 170
LABEL_CHARS = 20


def number(value: Any) -> str:
    """A figure as people read it: ``12,345``, ``1,050.5``, ``0.9312``, ``2024-05-01``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return real(value)
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def real(value: float) -> str:
    """``1,050``, ``1,050.5`` (not 1050 or 1.05e+03), ``0.9312``, ``2e-05``, ``0``."""
    if value == 0 or not 1e-4 <= abs(value) < 1e15:
        return "0" if value == 0 else f"{value:.4g}"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"


def coordinate(value: float) -> str:
    """An SVG coordinate: two decimals, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def svg(label: str, view_box: str, css: str, parts: Iterable[str]) -> SafeString:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css}" role="img" '
        f'aria-label="{escape(label)}" viewBox="{view_box}" preserveAspectRatio="xMinYMin meet">'
    )
    return mark_safe(head + "".join(parts) + "</svg>")  # every text in parts is escaped


def text(
    x: float, y: float, content: str, css: str = "axis", anchor: str = "start", turn: bool = False
) -> str:
    """A label at (x, y); ``turn`` reads it bottom to top (a vertical axis's title)."""
    at = f'x="{coordinate(x)}" y="{coordinate(y)}"'
    if turn:
        at += f' transform="rotate(-90 {coordinate(x)} {coordinate(y)})"'
    return f'<text class="{css}" {at} text-anchor="{anchor}">{escape(content)}</text>'


def bin_range(summary: KeySummary, index: int) -> tuple[float, float]:
    edges = summary.bin_edges
    return edges[index], edges[index + 1]


def histogram(summary: KeySummary) -> SafeString:
    """The key's bins as vertical bars over its range, the median marked."""
    bins, name = summary.bins, summary.name
    tallest = max(bins) if bins else 0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    base = TOP + plot_h
    fullest = bins.index(tallest) if bins else 0
    low, high = bin_range(summary, fullest) if bins else (0.0, 0.0)
    label = (
        f"Histogram of {name}: {number(summary.count)} values from {number(summary.minimum)} "
        f"to {number(summary.maximum)}, median {number(summary.median)}; the fullest of "
        f"{len(bins)} bins is {number(low)} to {number(high)} with {number(tallest)}."
    )
    parts = [f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>']
    width = plot_w / max(1, len(bins))
    for index, count in enumerate(bins):
        low, high = bin_range(summary, index)
        height = plot_h * count / tallest if tallest else 0.0
        x, y = LEFT + index * width, base - height
        closing = "]" if index == len(bins) - 1 else ")"
        parts.append(
            f'<rect class="bin" x="{coordinate(x + 0.5)}" y="{coordinate(y)}" '
            f'width="{coordinate(width - 1)}" height="{coordinate(height)}" '
            f'data-count="{count}" data-low="{low!r}" data-high="{high!r}">'
            f"<title>{escape(name)} in [{escape(number(low))}, {escape(number(high))}"
            f"{closing}: {number(count)} datasets</title></rect>"
        )
    if summary.maximum != summary.minimum and summary.median is not None:
        share = (float(summary.median) - summary.minimum) / (summary.maximum - summary.minimum)
        mx = coordinate(LEFT + plot_w * share)
        parts.append(
            f'<line class="median" x1="{mx}" y1="{TOP}" x2="{mx}" y2="{base}">'
            f"<title>median {escape(number(summary.median))}</title></line>"
        )
    middle = (summary.minimum + summary.maximum) / 2
    parts += [
        f'<line class="axis-line" x1="{LEFT}" y1="{base}" x2="{LEFT + plot_w}" y2="{base}"/>',
        text(LEFT - 4, TOP + 9, number(tallest), anchor="end"),
        text(LEFT - 4, base, "0", anchor="end"),
        text(12, TOP + plot_h / 2, "datasets", css="axis-title", anchor="middle", turn=True),
        text(LEFT, base + 14, number(summary.minimum)),
        text(LEFT + plot_w / 2, base + 14, number(middle), anchor="middle"),
        text(LEFT + plot_w, base + 14, number(summary.maximum), anchor="end"),
        text(LEFT + plot_w / 2, base + 32, name, css="axis-title", anchor="middle"),
    ]
    return svg(label, f"0 0 {WIDTH} {HEIGHT}", "histogram", parts)


def counts(summary: KeySummary) -> SafeString:
    """The key's most frequent values as horizontal bars, the rest as one "others" bar."""
    rows: list[tuple[str, int, str]] = [(number(value), n, "value") for value, n in summary.top]
    if summary.others:
        rows.append(("(others)", summary.others, "others"))
    tallest = max((n for _, n, _ in rows), default=0)
    height = ROW * max(1, len(rows)) + 4
    shown = ", ".join(f"{value} {number(n)}" for value, n, _ in rows[:5])
    label = (
        f"Counts of {summary.name}: {number(summary.count)} values, "
        f"{len(summary.top)} most frequent shown; {shown}."
    )
    parts = []
    for index, (value, n, css) in enumerate(rows):
        y = 2 + index * ROW
        cut = value if len(value) <= LABEL_CHARS else value[: LABEL_CHARS - 1] + "…"
        bar = BAR * n / tallest if tallest else 0.0
        parts.append(
            f'<g class="{css}" data-value="{escape(value)}" data-count="{n}">'
            f"<title>{escape(summary.name)} = {escape(value)}: {number(n)} datasets</title>"
            + text(LABEL - 6, y + 14, cut, anchor="end")
            + f'<rect class="count" x="{LABEL}" y="{y + 3}" width="{coordinate(bar)}" '
            f'height="{ROW - 6}"/>' + text(LABEL + bar + 4, y + 14, number(n)) + "</g>"
        )
    return svg(label, f"0 0 {LABEL + BAR + 58} {height}", "counts", parts)


def graticule() -> tuple[str, str]:
    """Meridians and parallels every 30 degrees (the equator and prime meridian stronger),
    and their labels, drawn over the points."""
    lines = " ".join(f"M{lon} -90V90" for lon in range(-150, 180, 30) if lon)
    lines += " " + " ".join(f"M-180 {lat}H180" for lat in range(-60, 90, 30) if lat)
    labels = [text(-178, -lat - 1.5, f"{abs(lat)}°{'N' if lat > 0 else 'S'}", css="map-label")
              for lat in (-60, -30, 30, 60)]  # fmt: skip
    labels += [text(lon + 1.5, 88, f"{abs(lon)}°{'E' if lon > 0 else 'W'}", css="map-label")
               for lon in (-120, -60, 60, 120)]  # fmt: skip
    return (
        '<rect class="sea" x="-180" y="-90" width="360" height="180"/>'
        f'<path class="graticule" d="{lines}"/>'
        '<path class="graticule main" d="M-180 0H180M0 -90V90"/>'
    ), "".join(labels)


def points(summary: KeySummary) -> SafeString:
    """The sampled points on the whole world, north up: x = longitude, y = -latitude."""
    found = [(lat, lon) for lat, lon in summary.points if -90 <= lat <= 90 and -180 <= lon <= 180]
    label = f"Map of {summary.name}: {number(summary.count)} locations"
    if len(found) < summary.count:
        label += f", {number(len(found))} of them drawn"
    if found:
        lats, lons = [lat for lat, _ in found], [lon for _, lon in found]
        label += (
            f"; latitude {number(min(lats))} to {number(max(lats))}, "
            f"longitude {number(min(lons))} to {number(max(lons))}"
        )
    path = "".join(f"M{coordinate(lon)} {coordinate(-lat)}h0" for lat, lon in found)
    lines, labels = graticule()
    parts = [
        lines,
        f'<path class="points" d="{path}" data-points="{len(found)}">'
        f"<title>{escape(label)}</title></path>"
        if found
        else "",
        labels,
    ]
    return svg(label + ".", "-180 -90 360 180", "map", parts)


def chart(summary: KeySummary) -> SafeString:
    """The chart of one key, by its kind; empty for dates and keys without values."""
    if not summary.count:
        return mark_safe("")
    if summary.kind in NUMERIC and summary.bins:
        return histogram(summary)
    if summary.kind in (AttributeKind.TEXT, AttributeKind.BOOLEAN):
        return counts(summary)
    if summary.kind == AttributeKind.LATLONG:
        return points(summary)
    return mark_safe("")
