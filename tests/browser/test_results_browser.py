"""Chromium renders the Results section: the bars match the data, the CSP blocks nothing.

The histogram's bars are read back from the rendered page (their ``data-`` attributes, their
``<title>`` tooltips and their drawn heights) and compared with bins computed here from the
stored results. A screenshot of the section is kept in the test's folder (the docs' one is
saved by ``scripts/demo.py --results-screenshot``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from crunch.choices import DatasetState
from crunch.models import Dataset, Project
from crunch.services.result_summary import BINS
from crunch.services.results import store
from tests.factories import bulk_datasets, make_project

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TOTAL = 600


def measured(total: int = TOTAL) -> tuple[Project, list[float]]:
    rng = random.Random(11)
    project = make_project(name="Floats", is_public=True)
    bulk_datasets(project, total, prefix="float-", state=DatasetState.COMPLETED)
    scores = []
    for dataset in Dataset.objects.filter(project=project).order_by("id"):
        score = round(rng.gauss(0.6, 0.12), 4)
        scores.append(score)
        store(dataset, {
            "score": score, "depth": rng.randint(100, 2000), "site": rng.choice("NNNSSE"),
            "ok": rng.random() < 0.9, "where": {"lat": rng.gauss(45, 8), "lon": rng.gauss(-30, 15)},
        })  # fmt: skip
    return project, scores


def expected_bins(values: list[float]) -> list[int]:
    low, high = min(values), max(values)
    bins = [0] * BINS
    for value in values:
        bins[min(int((value - low) / ((high - low) / BINS)), BINS - 1)] += 1
    return bins


def test_results_section_draws_the_data_within_the_csp(
    live_server: Any, page: Any, tmp_path: Path
) -> None:
    project, scores = measured()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Security Policy" in m.text else None)
    page.add_init_script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    page.goto(live_server.url + project.get_absolute_url())
    section = page.locator("#results")
    section.wait_for()

    bars = page.locator("#result-score svg .bin")
    assert bars.count() == BINS
    drawn = bars.evaluate_all(
        "rects => rects.map(r => ({count: +r.dataset.count, title: r.querySelector('title')"
        ".textContent, height: r.getBoundingClientRect().height}))"
    )
    expected = expected_bins(scores)
    assert [bar["count"] for bar in drawn] == expected
    titles = [bar["title"].rsplit(": ", 1)[1] for bar in drawn]
    assert titles == [f"{n:,} datasets" for n in expected]
    tallest = max(drawn, key=lambda bar: bar["count"])
    for bar in drawn:  # on screen, heights in proportion to the counts
        assert abs(bar["height"] - tallest["height"] * bar["count"] / tallest["count"]) < 1.0
    label = page.locator("#result-score svg").get_attribute("aria-label")
    assert label.startswith(f"Histogram of score: {TOTAL} values")
    sites = page.locator("#result-site svg g.value").evaluate_all(
        "gs => Object.fromEntries(gs.map(g => [g.dataset.value, +g.dataset.count]))"
    )
    assert sum(sites.values()) == TOTAL and set(sites) == {"N", "S", "E"}
    assert page.locator("#result-where svg .points").get_attribute("data-points") == str(TOTAL)
    assert section.locator("svg[role=img]").count() == 5

    # A sort by a header link, then a filter through the form: no script needed.
    page.get_by_role("link", name="score", exact=True).click()
    page.wait_for_url("**sort=-score**")
    first = page.locator("table.datasets tbody tr").first.locator("td.result.num").nth(1)
    assert float(first.inner_text()) == max(scores)
    page.fill("#filter-where", "score>0.8")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**where=score**")
    shown = page.locator("table.datasets tbody tr").count()
    assert shown == min(50, sum(1 for s in scores if s > 0.8))

    assert page.evaluate("window.__csp") == [] and violations == []
    shot = tmp_path / "results.png"
    section.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
