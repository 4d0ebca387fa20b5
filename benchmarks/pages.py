"""Time the web pages on 100,000 datasets with history and 10 results each.

    .venv/bin/python -m benchmarks.pages            # SQLite, in a fresh test database
    DATABASE_URL=postgres://... .venv/bin/python -m benchmarks.pages
    .venv/bin/python -m benchmarks.pages --results 0   # without results

Creates a fresh *test* database (``test_<name>`` on PostgreSQL, a temporary SQLite
file otherwise), fills it with bulk inserts, prints the median server time of each page
over several runs through Django's test Client, then destroys the database. With results
(benchmarks.results_pages) it also times the pages and API calls that filter and sort by
them, the Results section's summary computed afresh, and the project's CSV streamed by a
gunicorn worker (what ``crunch export`` reads), with that worker's memory.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
os.environ["DJANGO_DEBUG"] = "0"  # no query log: time what production runs

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from benchmarks.harness import load_average  # noqa: E402
from crunch.choices import DatasetState, State  # noqa: E402
from crunch.models import Dataset, Project, Status  # noqa: E402
from crunch.services.registration import NewDataset, register_datasets  # noqa: E402

from benchmarks import results_pages  # noqa: E402  isort: skip

TARGET_MS = 150.0
EXPORT_TARGET_S = 5.0
BATCH = 5000  # rows per INSERT batch
ERRORS = [
    "Traceback (most recent call last):\n  File \"run.py\", line 12\nKeyError: 'temperature'",
    "snakemake: MissingInputException in rule align: data/raw.fastq",
    "OSError: [Errno 28] No space left on device",
    "Workflow exceeded its wall time (3600 s).",
    "ValueError: could not convert string to float: 'NaN '",
]
HOSTS = [f"node{n:03d}" for n in range(40)]


def build(total: int, seed: int = 1) -> tuple[Project, Dataset]:
    """One big project of ``total`` datasets mid-run, two small ones, and their statuses."""
    rng = random.Random(seed)
    now = timezone.now()
    big = Project.objects.create(
        name="Survey", slug="survey", is_public=True, details="A **big** run."
    )
    for name in ("Pilot", "Archive"):
        small = Project.objects.create(name=name, slug=name.lower(), is_public=name == "Pilot")
        register_datasets(small, [NewDataset(name=f"s{i}") for i in range(100)])
    n_completed, n_failed, n_running = int(total * 0.6), int(total * 0.05), 200
    states = (
        [DatasetState.COMPLETED] * n_completed + [DatasetState.FAILED] * n_failed
        + [DatasetState.RUNNING] * n_running
        + [DatasetState.PENDING] * (total - n_completed - n_failed - n_running)
    )  # fmt: skip
    for start in range(0, total, BATCH):
        rows = []
        for i in range(start, min(start + BATCH, total)):
            state = states[i]
            done = now - datetime.timedelta(seconds=rng.randint(0, 36000))
            rows.append(
                Dataset(
                    project=big,
                    name=f"ds-{i:06d}",
                    slug=f"survey:ds-{i:06d}",
                    base_file_path=f"crunch/survey/ds-{i:06d}",
                    state=state,
                    stage={"completed": 3, "failed": 2, "running": 2}.get(state),
                    attempts=0 if state == DatasetState.PENDING else 1,
                    note=rng.choice(ERRORS) if state == DatasetState.FAILED else "",
                    finished=done
                    if state in (DatasetState.COMPLETED, DatasetState.FAILED)
                    else None,
                    claim_id=uuid.uuid4() if state == DatasetState.RUNNING else None,
                    claim_holder=f"worker@{rng.choice(HOSTS)}"
                    if state == DatasetState.RUNNING
                    else "",
                    heartbeat=now - datetime.timedelta(seconds=rng.randint(0, 120))
                    if state == DatasetState.RUNNING
                    else None,
                )
            )
        Dataset.objects.bulk_create(rows)
    history = {
        DatasetState.COMPLETED: [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)],
        DatasetState.FAILED: [(1, 1), (1, 2), (2, 1), (2, 3)],
        DatasetState.RUNNING: [(1, 1), (1, 2), (2, 1)],
    }
    statuses: list[Status] = []
    ids = (
        Dataset.objects.filter(project=big)
        .exclude(state=DatasetState.PENDING)
        .values_list("id", "state", "note")
    )
    for pk, reached, note in ids.iterator(chunk_size=BATCH):
        t = now - datetime.timedelta(seconds=rng.randint(600, 40000))
        host = rng.choice(HOSTS)
        for stage, result in history[DatasetState(reached)]:
            t += datetime.timedelta(seconds=rng.randint(1, 300))
            statuses.append(
                Status(
                    dataset_id=pk,
                    stage=stage,
                    state=result,
                    created=t,
                    hostname=host,
                    note=note if result == State.FAIL else "",
                )
            )
        if len(statuses) >= BATCH:
            Status.objects.bulk_create(statuses)
            statuses = []
    Status.objects.bulk_create(statuses)
    sample = Dataset.objects.filter(project=big, state=DatasetState.COMPLETED).order_by("id")[
        total // 3
    ]
    return big, sample


def median_ms(client: Client, url: str, runs: int) -> tuple[float, float, int]:
    """Median server time of ``url`` in milliseconds, after one warm-up, the median CPU
    time of this process in it (the machine is shared: the figure the load moves least;
    with SQLite it includes the database's work), and its query count."""
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    times, cpu = [], []
    for _ in range(runs):
        start, started = time.perf_counter(), time.process_time()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - started) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    return statistics.median(times), statistics.median(cpu), len(queries)


def results_of(big: Project, client: Client, project: str, runs: int) -> bool:
    """The Results section computed afresh, and the CSV export through a server."""
    from django.core.cache import cache

    from crunch.services import result_page

    times = []
    for _ in range(max(1, runs // 2)):
        cache.clear()
        start = time.perf_counter()
        result_page.section(big)
        times.append((time.perf_counter() - start) * 1000)
    cache.clear()
    start = time.perf_counter()
    assert client.get(project).status_code == 200
    page_ms = (time.perf_counter() - start) * 1000
    print(
        f"  Results section computed afresh: {statistics.median(times):.0f} ms (median); the "
        f"page's first view after a change {page_ms:.0f} ms (then cached until results change)"
    )
    path = reverse("crunch:api:project-results", kwargs={"slug": big.slug}) + "?format=csv"
    log = Path(tempfile.gettempdir()) / "crunch-bench-pages-gunicorn.log"
    export = results_pages.time_export(path, log=log)
    ok = export.seconds < EXPORT_TARGET_S and export.rss_peak - export.rss_before < 50
    print(
        f"  export CSV (api/projects/{big.slug}/results/): {export.lines - 1:,} rows, "
        f"{export.megabytes:.1f} MiB in {export.seconds:.2f} s, server CPU {export.cpu:.2f} s "
        f"(target < {EXPORT_TARGET_S:.0f} s); "
        f"server RSS {export.rss_before:.0f} -> peak {export.rss_peak:.0f} MiB "
        f"(+{export.rss_peak - export.rss_before:.1f})  {'ok' if ok else 'SLOW'}"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--results", type=int, default=10, help="results per dataset (0-10)")
    args = parser.parse_args(argv)

    old_name = connection.settings_dict["NAME"]
    started = time.perf_counter()
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        big, sample = build(args.datasets)
        stored = results_pages.build_results(big, args.results) if args.results else 0
        if connection.vendor == "postgresql":
            # What autovacuum does shortly after a bulk load: planner statistics and the
            # visibility map that lets counts be answered from the indexes alone.
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
        built = time.perf_counter() - started
        print(
            f"{connection.vendor}: {Dataset.objects.count():,} datasets, "
            f"{Status.objects.count():,} statuses, {stored:,} results, built in {built:.1f} s; "
            f"median of {args.runs} runs"
        )
        client = Client()
        staff = get_user_model().objects.create_user("bench", password="x", is_staff=True)
        client.force_login(staff)
        project = reverse("crunch:project-detail", kwargs={"slug": big.slug})
        pages = [("projects list", reverse("crunch:project-list")), ("project page", project)]
        pages += [
            (f"project page ?state={state}", f"{project}?state={state}")
            for state in DatasetState.values
        ]
        pages += [
            ("project page ?q=ds-04242 (search)", f"{project}?q=ds-04242"),
            ("project page ?sort=-name&page=40", f"{project}?sort=-name&page=40"),
            ("project page ?live=1 (refresh)", f"{project}?live=1"),
            ("dataset page", sample.get_absolute_url()),
        ]
        if stored:
            api = reverse("crunch:api:dataset-list") + f"?project={big.slug}"
            pages += results_pages.result_pages(project, api)
        worst = 0.0
        for label, url in pages:
            ms, cpu, queries = median_ms(client, url, args.runs)
            worst = max(worst, ms)
            flag = "ok" if ms < TARGET_MS else "SLOW"
            print(f"  {label:<44} {ms:8.1f} ms  (cpu {cpu:6.1f})  {queries:2d} queries  {flag}")
        print(
            f"worst {worst:.1f} ms (target < {TARGET_MS:.0f} ms); load average {load_average():.1f}"
        )
        export_ok = True
        if stored:
            export_ok = results_of(big, client, project, args.runs)
        return 0 if worst < TARGET_MS and export_ok else 1
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    sys.exit(main())
