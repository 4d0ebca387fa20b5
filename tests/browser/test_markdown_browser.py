"""The Markdown payloads in Chromium: each link clicked, no script runs, no javascript: or data:.

Run with the Content-Security-Policy and without it, so the sanitiser is shown to hold alone.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import make_project
from tests.server.test_markup import PAYLOADS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ACTIVE = ("javascript:", "data:", "vbscript:")


@pytest.mark.parametrize("policy", ["crunch's", "none"])
def test_payloads_are_inert_when_clicked(
    live_server: Any, page: Any, settings: Any, policy: str
) -> None:
    if policy == "none":
        settings.CRUNCH_CONTENT_SECURITY_POLICY = ""
    project = make_project(name="Payloads", is_public=True, details="\n\n".join(PAYLOADS))
    url = live_server.url + project.get_absolute_url()
    dialogs: list[str] = []
    navigations: list[str] = []
    violations: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.on("console", lambda m: violations.append(m.text) if "Security Policy" in m.text else None)
    # Nothing leaves the test server: links to other sites are refused, and recorded.
    elsewhere: list[str] = []

    def route(request_route: Any) -> None:
        if request_route.request.url.startswith(live_server.url):
            request_route.continue_()
        else:
            elsewhere.append(request_route.request.url)
            request_route.abort()

    page.route("**/*", route)

    page.goto(url)
    links = page.locator("section.details a")
    count = links.count()
    assert count >= 25
    hrefs = [links.nth(i).get_attribute("href") or "" for i in range(count)]
    assert page.evaluate("typeof window.__pwned") == "undefined"  # no handler ran on load
    for i in range(count):
        if page.url != url:
            page.goto(url)
        page.locator("section.details a").nth(i).click()
        page.wait_for_load_state()
        assert page.evaluate("typeof window.__pwned") == "undefined", hrefs[i]
    if page.url != url:
        page.goto(url)
    page.locator("section.details").hover()
    page.wait_for_timeout(200)

    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert dialogs == []
    assert not [href for href in hrefs if href.strip().lower().startswith(ACTIVE)]
    assert not [n for n in navigations if n.lower().startswith(ACTIVE)], navigations
    assert not [n for n in elsewhere if not n.startswith("https://example.org")], elsewhere
    # With the policy on, nothing even tried to run: the sanitiser left nothing for it.
    assert violations == []
    assert (
        page.locator("section.details script, section.details svg, section.details iframe").count()
        == 0
    )
