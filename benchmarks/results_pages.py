"""The results half of ``benchmarks.pages``: 10 results per dataset, their pages and export.

``build_results`` bulk-inserts ``keys`` results for every dataset of a project (1,000,000
rows at 100,000 datasets), as ``crunch.services.results.store`` would have stored them;
``result_pages`` lists the pages and API calls to time; ``time_export`` streams the
project's CSV from a gunicorn server on the same database (as ``crunch export`` does) and
samples the server's resident memory while it streams.
"""

from __future__ import annotations

import datetime
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil
import requests
from django.db import connection

from benchmarks.harness import Server, server_env
from crunch.models import Dataset, Project, Result, ResultKey
from crunch.services.results import bump

BATCH = 20_000  # result rows per INSERT batch
DAY0 = datetime.date(2024, 1, 1)
SITES = ["north", "south", "east", "west", "ridge", "delta"]
KEYS = [  # name, kind: every kind a result may have
    ("score", "float"), ("p_value", "float"), ("temperature", "float"), ("words", "int"),
    ("depth", "int"), ("site", "char"), ("label", "char"), ("ok", "bool"), ("day", "date"),
    ("where", "latlong"),
]  # fmt: skip


VALUES: dict[str, Callable[[random.Random], dict[str, object]]] = {
    "score": lambda rng: {"number": rng.betavariate(2, 5)},
    "p_value": lambda rng: {"number": rng.random() ** 3},
    "temperature": lambda rng: {"number": rng.gauss(14, 6)},
    "words": lambda rng: {"integer": int(rng.lognormvariate(7, 1))},
    "depth": lambda rng: {"integer": rng.randint(10, 4000)},
    "site": lambda rng: {"text": rng.choice(SITES)},
    "label": lambda rng: {"text": f"group-{int(rng.paretovariate(1.2)) % 500:03d}"},
    "ok": lambda rng: {"flag": rng.random() < 0.9},
    "day": lambda rng: {"date": DAY0 + datetime.timedelta(days=rng.randint(0, 365))},
    "where": lambda rng: {"lat": rng.gauss(45, 12), "lon": rng.gauss(5, 30)},
}
"""{key: the typed columns of one random result of it}."""


def build_results(project: Project, keys: int = len(KEYS), seed: int = 2) -> int:
    """Give each of the project's datasets ``keys`` results; the number of rows inserted."""
    rng = random.Random(seed)
    made = [ResultKey.objects.create(project=project, name=name, kind=kind)
            for name, kind in KEYS[:keys]]  # fmt: skip
    rows: list[Result] = []
    total = 0
    ids = Dataset.objects.filter(project=project).order_by("id").values_list("id", flat=True)
    for dataset_id in ids.iterator(chunk_size=BATCH):
        for key in made:
            rows.append(Result(dataset_id=dataset_id, key=key, **VALUES[key.name](rng)))
        if len(rows) >= BATCH:
            Result.objects.bulk_create(rows)
            total, rows = total + len(rows), []
    Result.objects.bulk_create(rows)
    bump(project)
    return total + len(rows)


def result_pages(project: str, api: str) -> list[tuple[str, str]]:
    """(label, url) of the pages and API calls that read results."""
    where = "where=" + quote("score>0.9")
    site = "where=" + quote("site=north")
    return [
        ("project page ?where=score>0.9&sort=-score", f"{project}?{where}&sort=-score"),
        ("project page ?where=site=north&sort=-score", f"{project}?{site}&sort=-score"),
        ("project page ?sort=-score&page=40", f"{project}?sort=-score&page=40"),
        ("project page ?columns=...&sort=words", f"{project}?columns=words,site,where&sort=words"),
        ("project page ?where=score>0.9 (live)", f"{project}?{where}&live=1"),
        ("API datasets ?where=score>0.9&sort=-score", f"{api}&{where}&sort=-score&columns=score"),
        ("API datasets ?where=site=north&sort=-score", f"{api}&{site}&sort=-score"),
        ("API datasets ?sort=-score", f"{api}&sort=-score"),
    ]


@dataclass(frozen=True)
class Export:
    seconds: float
    megabytes: float
    lines: int
    rss_before: float
    rss_peak: float
    """The serving worker's resident memory in MiB, before and at its highest."""
    cpu: float
    """The serving worker's CPU seconds (the machine is shared: wall time moves with it)."""


def server_database_env() -> dict[str, str]:
    """The environment that points a server at the benchmark's (test) database."""
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        user, host, port = settings["USER"], settings["HOST"], settings["PORT"] or 5432
        password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
        return {"DATABASE_URL": f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"}
    return {"CRUNCH_SQLITE": str(settings["NAME"])}


def time_export(path: str, log: Path) -> Export:
    """Stream ``path`` (the project's CSV) from one gunicorn worker, sampling its memory."""
    with Server(env=server_env(**server_database_env()), log=log, workers=1, timeout=300) as server:
        server.start()
        assert server.process is not None
        worker = psutil.Process(server.process.pid).children()[0]
        requests.get(f"{server.url}{path}&columns=score", timeout=60).raise_for_status()
        before = worker.memory_info().rss
        peak, done = before, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, worker.memory_info().rss)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        cpu_before = sum(worker.cpu_times()[:2])
        sampler.start()
        started, size, lines = time.perf_counter(), 0, 0
        try:
            with requests.get(server.url + path, stream=True, timeout=300) as response:
                response.raise_for_status()
                for chunk in response.iter_content(chunk_size=1 << 16):
                    size += len(chunk)
                    lines += chunk.count(b"\n")
        finally:
            done.set()
            sampler.join()
        seconds = time.perf_counter() - started
        cpu = sum(worker.cpu_times()[:2]) - cpu_before
    mib = 1024 * 1024
    return Export(seconds, size / mib, lines, before / mib, peak / mib, cpu)
