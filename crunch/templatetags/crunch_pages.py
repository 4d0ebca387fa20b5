"""Template helpers of the pages: safe Markdown, durations, query-string links."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as etree
from typing import Any
from urllib.parse import urlencode, urlsplit

import markdown
from django import template
from django.http import QueryDict
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

register = template.Library()

SAFE_SCHEMES = {"", "http", "https", "mailto"}


class _SafeLinks(Treeprocessor):
    """Drop link and image targets with schemes such as ``javascript:``."""

    def run(self, root: etree.Element) -> None:
        for element in root.iter():
            for attribute in ("href", "src"):
                value = element.get(attribute)
                if value is not None and urlsplit(value.strip()).scheme.lower() not in SAFE_SCHEMES:
                    element.set(attribute, "#")


class _EscapeHtml(Extension):
    """Render raw HTML in Markdown as text, so details typed by anyone cannot inject markup."""

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (Markdown's API)
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        md.treeprocessors.register(_SafeLinks(md), "crunch_safe_links", 0)


@register.filter
def markdown_safe(text: str | None) -> SafeString:
    """Markdown to HTML with raw HTML escaped and unsafe link schemes removed."""
    if not text:
        return mark_safe("")
    html = markdown.markdown(text, extensions=[_EscapeHtml(), "fenced_code", "tables"])
    return mark_safe(html)  # noqa: S308 (raw HTML is escaped by _EscapeHtml)


@register.filter
def duration(seconds: float | int | None) -> str:
    """A number of seconds as people say it: ``45s``, ``3m 20s``, ``2h 5m``, ``3d 4h``."""
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
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
