"""What a 404 probably means: a misspelled slug, or a URL that is not the server's root.

A newcomer who set ``CRUNCH_URL=http://host/api/`` was told "No project has the slug
'words'" (the server saw ``/api/api/...``), and one who typed ``wrods`` got no suggestion.
These hints cost a call or two, made only after a 404, never on the way of a dataset.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

Get = Callable[[str], Any]
"""GET a path under the API; its JSON, or None when the server answered 404."""

SUGGESTIONS = 3


def api_missing(url: str, get: Get) -> str | None:
    """The reason no crunch API answers under ``url``, or None when one does."""
    if get("") is not None:
        return None
    path = urlsplit(url).path.rstrip("/")
    ends_in_api = path.endswith("/api")
    root = url[: url.rstrip("/").rfind("/api")] + "/" if ends_in_api else ""
    cause = (
        f" It ends in /api/, which the client adds itself: use {root!r}."
        if ends_in_api
        else " Give the URL of the server's root (where its pages are), not a page or the API."
    )
    return f"No crunch API answers at {url.rstrip('/') + '/api/'!r} (404).{cause}"


def slugs_in(answer: Any) -> list[str]:
    """The slugs of a list answer, paginated or not."""
    rows = answer.get("results", []) if isinstance(answer, dict) else answer or []
    return [str(row["slug"]) for row in rows if isinstance(row, dict) and "slug" in row]


def close_to(slug: str, candidates: list[str]) -> str:
    """`` Did you mean 'a' or 'b'?`` for the candidates nearest ``slug``; "" when none is."""
    close = difflib.get_close_matches(slug, candidates, n=SUGGESTIONS, cutoff=0.6)
    if not close:
        return ""
    return f" Did you mean {' or '.join(repr(c) for c in close)}?"


def suggestion(path: str, get: Get) -> str:
    """Close slugs the token may see, for a 404 on ``projects/<slug>/`` or ``datasets/<slug>/``."""
    kind, _, rest = path.partition("/")
    slug = unquote(rest.split("/", 1)[0])
    if not slug or kind not in ("projects", "datasets"):
        return ""
    if kind == "projects" or ":" not in slug:
        return close_to(slug, slugs_in(get("projects/?page_size=1000")))
    project, _, name = slug.partition(":")
    if get(f"projects/{quote(project, safe='')}/") is None:  # the project is misspelled
        return close_to(project, slugs_in(get("projects/?page_size=1000")))
    listed = f"datasets/?project={quote(project)}&page_size=1000"
    near = slugs_in(get(f"{listed}&search={quote(name[:3])}")) + slugs_in(get(listed))
    return close_to(slug, sorted(set(near)))
