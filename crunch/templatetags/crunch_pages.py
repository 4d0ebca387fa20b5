"""Template helpers of the pages: safe Markdown, durations, query-string links."""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import urlencode

from django import template
from django.http import QueryDict
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from crunch import markup

register = template.Library()


@register.filter
def markdown_safe(text: str | None) -> SafeString:
    """Markdown to HTML that runs no script: see crunch.markup for how and why."""
    if not text:
        return mark_safe("")
    return mark_safe(markup.render(text))  # nh3 keeps only its allow-list


@register.filter
def duration(seconds: float | int | None) -> str:
    """A number of seconds as people say it: ``45s``, ``3m 20s``, ``2h 5m``, ``3d 4h``."""
    if seconds is None:
        return "unknown"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {sec}s" if sec else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


@register.filter
def seconds_since(moment: datetime.datetime | None) -> float | None:
    if moment is None:
        return None
    return max(0.0, (timezone.now() - moment).total_seconds())


@register.filter
def percent_of(state: str, stats: Any) -> str:
    """A ProjectStats share as a CSS-safe number (dot decimal whatever the locale)."""
    return f"{stats.percent(state):.2f}"


@register.filter
def bar_segments(stats: Any, states: Any) -> list[dict[str, Any]]:
    """The progress bar's non-empty parts as SVG coordinates out of 100.

    SVG attributes rather than ``style="width: …"``, which a CSP without
    ``'unsafe-inline'`` styles would refuse.
    """
    segments: list[dict[str, Any]] = []
    offset = 0.0
    for value, label in states.choices:
        width = stats.percent(value)
        if width > 0:
            segments.append({
                "state": value, "label": label, "count": int(stats.counts.get(value, 0)),
                "x": f"{offset:.3f}", "width": f"{width:.3f}",
            })  # fmt: skip
            offset += width
    return segments


@register.filter
def count_of(stats: Any, state: str) -> int:
    return int(stats.counts.get(state, 0))


@register.simple_tag(takes_context=True)
def query(context: dict[str, Any], **changes: Any) -> str:
    """The current query string with ``changes`` applied; a change to None or "" removes it."""
    request = context.get("request")
    params: QueryDict = request.GET.copy() if request is not None else QueryDict(mutable=True)
    params.pop("live", None)
    for key, value in changes.items():
        params.pop(key, None)
        if value not in (None, ""):
            params[key] = str(value)
    encoded = urlencode(sorted(params.items()))
    return f"?{encoded}" if encoded else "?"
