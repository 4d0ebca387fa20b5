"""A Content-Security-Policy for every response: a second wall behind crunch.markup.

Whatever reached a page despite the sanitiser cannot run: the pages load their one
script and one stylesheet from the site itself and hold no inline script or style, so the
policy allows nothing inline and no other origin (images from https: excepted, for
Markdown's pictures). A host project adds ``crunch.middleware.ContentSecurityPolicyMiddleware``
to ``MIDDLEWARE`` and may change the policy with ``CRUNCH_CONTENT_SECURITY_POLICY``
(an empty string sends none). A response that already has the header keeps its own.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

DEFAULT_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' https:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])  # fmt: skip
HEADER = "Content-Security-Policy"


class ContentSecurityPolicyMiddleware:
    """Add ``CRUNCH_CONTENT_SECURITY_POLICY`` (or ``DEFAULT_POLICY``) to responses without one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = getattr(settings, "CRUNCH_CONTENT_SECURITY_POLICY", DEFAULT_POLICY)
        if policy and HEADER not in response:
            response[HEADER] = policy
        return response
