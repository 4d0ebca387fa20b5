"""The project page's results: columns, sort and filter links, the charts, who sees them.

The charts' figures are checked against what the rows say, computed here independently of
the summary's SQL.
"""

from __future__ import annotations

import html
import math
import random
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crunch.choices import DatasetState
from crunch.models import Dataset, Project
from crunch.services import charts, result_page, results
from crunch.services.result_filters import Selection
from crunch.services.result_summary import BINS, KeySummary
from crunch.services.results import schema, store
from tests.factories import bulk_datasets, make_dataset, make_project, make_user
from tests.server.results_kit import survey

pytestmark = pytest.mark.django_db
PLOT_HEIGHT = charts.HEIGHT - charts.TOP - charts.BOTTOM

BIN = re.compile(r'<rect class="bin" [^>]*height="([^"]+)" data-count="(\d+)" '
                 r'data-low="([^"]+)" data-high="([^"]+)"><title>([^<]*)</title>')  # fmt: skip


def page(client: Client, project: Project, query: str = "") -> str:
    response = client.get(reverse("crunch:project-detail", kwargs={"slug": project.slug}) + query)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def table_slugs(body: str) -> list[str]:
    """Dataset names in the table's order."""
    table = body[body.index('<table class="datasets">') :]
    return re.findall(r'<td><a href="/datasets/[^"]+/">([^<]+)</a></td>', table)


def scored(total: int = 200, seed: int = 3) -> tuple[Project, dict[str, dict[str, Any]]]:
    """A public project of ``total`` datasets with a score, a site and a place each."""
    rng = random.Random(seed)
    project = make_project(name="Field", is_public=True)
    reported = {}
    for i in range(total):
        dataset = make_dataset(project, name=f"f{i:03d}", state=DatasetState.COMPLETED)
        values = {"score": round(rng.betavariate(2, 5), 4), "site": rng.choice("NNNSE"),
                  "count": rng.randint(0, 40),
                  "where": {"lat": rng.uniform(40, 50), "lon": rng.uniform(-5, 10)}}  # fmt: skip
        store(dataset, values)
        reported[dataset.name] = values
    return project, reported


def test_table_shows_result_columns_with_values(client: Client) -> None:
    project, _ = survey(is_public=True)
    body = page(client, project)
    head = body[body.index("<thead>") : body.index("</thead>")]
    # The first five keys by name; the lat-long is not sortable, so no link.
    assert re.findall(r'title="Result (\w+)', head) == [
        "at", "day", "ok", "score", "site"
    ]  # fmt: skip
    assert '<a href="?sort=-score#datasets-heading">score</a>' in head
    row = body[body.index('<td><a href="/datasets/survey:d1/') :]
    row = row[: row.index("</tr>")]
    assert '<td class="result num">0.95</td>' in row and ">south</td>" in row
    assert ">false</td>" in row


def test_columns_pick_and_order_the_keys(client: Client) -> None:
    project, _ = survey(is_public=True)
    body = page(client, project, "?columns=where,words")
    head = body[body.index("<thead>") : body.index("</thead>")]
    assert re.findall(r'title="Result (\w+)', head) == ["where", "words"]
    assert ">1.5, -2.25</td>" in body  # d0's lat-long
    assert "where ▲" not in head and "?sort=-where" not in head


def test_sort_links_and_order(client: Client) -> None:
    project, _ = survey(is_public=True)
    body = page(client, project, "?sort=-score")
    assert table_slugs(body) == ["d1", "d0", "d2", "d3"]  # no score last
    head = body[body.index("<thead>") : body.index("</thead>")]
    assert 'aria-sort="descending"' in head and "score ▼" in head
    assert '<a href="?sort=score#datasets-heading">score ▼</a>' in head  # click: ascending
    assert '<option value="-score" selected>' in body
    assert table_slugs(page(client, project, "?sort=score")) == ["d2", "d0", "d1", "d3"]


def test_filters_keep_matching_datasets_and_pages_keep_filters(client: Client) -> None:
    project, reported = scored(120)
    expected = sorted(
        (name for name, values in reported.items() if values["score"] > 0.2),
        key=lambda name: (reported[name]["score"], name),  # ties by id, descending too
        reverse=True,
    )
    body = page(client, project, "?where=score%3E0.2&sort=-score")
    assert table_slugs(body) == expected[:50]
    assert 'name="where" value="score&gt;0.2"' in body
    assert 'rel="next"' in body
    next_link = html.unescape(re.search(r'<a href="([^"]+)" rel="next"', body)[1])
    assert "where=score%3E0.2" in next_link and "sort=-score" in next_link
    second = page(client, project, next_link.split("#")[0])
    assert table_slugs(second) == expected[50:100]
    site = page(client, project, "?where=site%3DE&where=count%3E%3D20&sort=name")
    assert table_slugs(site) == sorted(
        name for name, v in reported.items() if v["site"] == "E" and v["count"] >= 20
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?where=scor%3E1", "Unknown result &#x27;scor&#x27; in &#x27;scor&gt;1&#x27;"),
        ("?where=score%3Ehigh", "&#x27;score&#x27; is a float result"),
        ("?where=nothing+to+read", "Cannot read the filter"),
        ("?sort=-where", "&#x27;where&#x27; is a lat-long result"),
        ("?sort=bogus", "Unknown result &#x27;bogus&#x27;"),
        ("?columns=score,nope", "Unknown result &#x27;nope&#x27; in the columns"),
    ],
)
def test_a_bad_filter_is_one_line_never_an_error_page(
    client: Client, query: str, message: str
) -> None:
    project, _ = survey(is_public=True)
    body = page(client, project, query)
    assert len(table_slugs(body)) == 4  # the table as if nothing was asked
    alert = re.search(r'<p class="error" role="alert">([^<]*)</p>', body)
    assert alert and message in alert[1] and "\n" not in alert[1]


def test_a_nul_in_a_filter_is_dropped(client: Client) -> None:
    """PostgreSQL refuses NUL in text: the page drops it as it does in its other fields."""
    project, _ = survey(is_public=True)
    assert table_slugs(page(client, project, "?where=site~no%00rth")) == ["d0", "d2"]


def test_private_projects_results_are_shown_only_to_its_viewers(client: Client) -> None:
    project, _ = survey(is_public=False)
    url = reverse("crunch:project-detail", kwargs={"slug": project.slug})
    for query in ("", "?where=score%3E0.9", "?sort=-score", "?where=nope%3D1"):
        assert client.get(url + query).status_code == 404
    outsider = get_user_model().objects.create_user("outsider", password="pw")
    client.force_login(outsider)
    assert client.get(url + "?where=score%3E0.9").status_code == 404
    viewer, _ = make_user("viewer", role="viewer", projects=[project])
    client.force_login(viewer)
    body = page(client, project, "?where=score%3E0.9")
    assert table_slugs(body) == ["d1"] and 'id="results-heading"' in body


def bins_from_rows(project: Project, key: str) -> tuple[list[int], float, float]:
    """Counts of BINS equal bins of the key's values, read through the rows."""
    values = [row.values[key] for row in results(project, columns=[key]) if key in row.values]
    low, high = min(values), max(values)
    width = (high - low) / BINS
    bins = [0] * BINS
    for value in values:
        bins[min(int((value - low) / width), BINS - 1)] += 1
    return bins, low, high


def test_histogram_bars_match_the_rows(client: Client) -> None:
    project, reported = scored(300)
    body = page(client, project)
    section = body[body.index('id="result-score"') :]
    section = section[: section.index("</figure>")]
    bars = BIN.findall(section)
    expected, low, high = bins_from_rows(project, "score")
    assert [int(count) for _, count, _, _, _ in bars] == expected
    assert sum(expected) == 300
    assert float(bars[0][2]) == low and float(bars[-1][3]) == high
    tallest = max(expected)
    for height, count, _, _, title in bars:  # heights in proportion to counts
        assert math.isclose(float(height), PLOT_HEIGHT * int(count) / tallest, abs_tol=0.01)
        assert title.endswith(f": {int(count):,} datasets")
    assert 'role="img"' in section and 'aria-label="Histogram of score: 300 values' in section
    scores = sorted(v["score"] for v in reported.values())
    median = (scores[149] + scores[150]) / 2
    assert f"<dt>median</dt><dd>{charts.number(median)}</dd>" in section


def test_counts_and_map_match_the_rows(client: Client) -> None:
    project, reported = scored(100)
    body = page(client, project)
    sites = body[body.index('id="result-site"') :]
    sites = sites[: sites.index("</figure>")]
    shown = dict(re.findall(r'data-value="(\w)" data-count="(\d+)"', sites))
    truth: dict[str, int] = {}
    for values in reported.values():
        truth[values["site"]] = truth.get(values["site"], 0) + 1
    assert {value: int(n) for value, n in shown.items()} == truth
    place = body[body.index('id="result-where"') :]
    place = place[: place.index("</figure>")]
    assert 'data-points="100"' in place and place.count("h0") == 100
    assert 'aria-label="Map of where: 100 locations; latitude 4' in place


def test_charts_escape_every_text() -> None:
    hostile = '<script>alert("x")</script>'
    summary = KeySummary(name="site", kind="char", count=3, top=[(hostile, 2), ("a&b", 1)])
    drawn = charts.chart(summary)
    assert "<script" not in drawn and "&lt;script&gt;" in drawn and "a&amp;b" in drawn
    assert "style=" not in drawn


def test_a_project_without_results_has_no_section(client: Client) -> None:
    project = make_project(name="Plain", is_public=True)
    make_dataset(project, name="a")
    body = page(client, project)
    assert 'id="results-heading"' not in body and 'name="where"' not in body


def test_query_count_is_bounded_whatever_the_number_of_results(client: Client) -> None:
    """10 datasets with results or 400: the same queries, the summary cached after the first
    view (a store bumps the version and the next view recomputes it once)."""
    project = make_project(name="Big", is_public=True)
    counts = []
    for size in (10, 400):
        bulk_datasets(project, size, prefix=f"s{size}-", state=DatasetState.COMPLETED)
        for i, dataset in enumerate(Dataset.objects.filter(project=project, results=None)):
            store(dataset, {"score": i / size, "site": "ab"[i % 2], "n": i,
                            "where": {"lat": i % 90, "lon": i % 180}})  # fmt: skip
        page(client, project, "?where=score%3E0.1&sort=-score")  # the summary, computed once
        with CaptureQueriesContext(connection) as queries:
            page(client, project, "?where=score%3E0.1&sort=-score")
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 11, counts


def test_the_section_lags_a_busy_run_by_at_most_stale_seconds(
    client: Client, monkeypatch: Any
) -> None:
    """Each store bumps the version: within STALE seconds the page keeps its figures (and
    says so) instead of computing them again for every view."""
    project, datasets = survey(is_public=True)
    assert 'id="result-words"' in page(client, project)
    store(datasets["d3"], {"words": 400})
    body = page(client, project, "?columns=words")
    assert "<dt>max</dt><dd>30</dd>" in body and "newer results are counted" in body
    assert ">400</td>" in body  # the table is never stale
    monkeypatch.setattr(result_page, "STALE", 0)
    body = page(client, project)
    assert "<dt>max</dt><dd>400</dd>" in body and "newer results" not in body


@pytest.mark.parametrize("sort", ["-score", "score", "-words", "site", "-slug", None])
@pytest.mark.parametrize("where", [[], ["site~north"], ["score<0.9"], ["words>=20"]])
def test_a_window_is_the_slice_of_the_whole_order(sort: str | None, where: list[str]) -> None:
    """Read in two parts (with the key, by its index; then without it), a window is the
    slice of the single sorted query at every offset, across the boundary too."""
    project, _ = survey()
    for name in ("e0", "e1", "e2"):  # more datasets without a score, some with words
        store(make_dataset(project, name=name), {"words": 20} if name != "e1" else {})
    selection = Selection.of(schema(project), where, sort)
    everything = Dataset.objects.filter(project=project)
    whole = [d.name for d in selection.apply(everything.order_by("id"))]
    for limit in (1, 2, 3):
        for offset in range(len(whole) + 2):
            shown = selection.window(everything.order_by("id"), offset, limit)
            assert [d.name for d in shown] == whole[offset : offset + limit], (offset, limit)
