"""The one-command demo (``make demo``): a server, a project of 12 datasets, two clients.

Migrates a fresh SQLite database in ./demo-work, writes the datasets' input files to local
storage, starts the testproject server on 127.0.0.1, runs two ``crunch loop`` clients side
by side, prints what they did and the project's page, and stops what it started.

``--screenshot PATH`` also saves the project page as it looks a third of the way through
the run (Playwright with Debian's Chromium; this is the README's picture).

The demo also holds the results a finished survey reported: the project "Ocean floats",
2,000 datasets whose results (temperature, salinity, depth, basin, a position...) are
stored as a run stores them (``crunch.services.results.store``), and the word counts of
the demo's own datasets once its clients are done. ``--results-screenshot PATH`` saves the
Results section of "Ocean floats" (docs/images/results.png).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "demo-work"
BIN = Path(sys.executable).parent
DATASETS = 12
CLIENTS = 2
FLOATS = 2000  # datasets of the results project
BASINS = [  # name, share, centre (lat, lon) and spread in degrees: a plausible ocean survey
    ("North Atlantic", 0.24, (35, -40), (11, 14)), ("South Atlantic", 0.14, (-25, -15), (11, 11)),
    ("North Pacific", 0.22, (28, -160), (11, 22)), ("South Pacific", 0.16, (-28, -120), (11, 24)),
    ("Indian", 0.16, (-18, 78), (10, 15)), ("Southern", 0.08, (-58, 0), (4, 100)),
]  # fmt: skip

WORKFLOW = """\
# Count the words of each text and write a small report.
set -e
echo "Counting words in $(ls *.txt | wc -l) file(s) of $CRUNCH_DATASET"
wc -w *.txt > counts.txt
sort -k1 -n -r counts.txt | head -n 3 > top.txt
sleep 0.5
total=$(tail -n 1 counts.txt | awk '{print $1}')
printf 'Report for %s\nTotal words: %s\n' "$CRUNCH_DATASET" "$total" > report.md
"""

TEXT = (
    "crunch hands out datasets through atomic claims so that many clients can work "
    "through thousands of them on any compute without ever processing one twice "
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare() -> tuple[str, str]:
    """Fresh database and storage: migrate, create the project, its datasets and files."""
    import django

    django.setup()
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.core.management import call_command

    from crunch.models import Dataset, Project
    from crunch.services.accounts import client_token

    call_command("migrate", verbosity=0)
    project = Project.objects.create(
        name="Word counts", workflow=WORKFLOW, is_public=True,
        description="The demo: count the words of each dataset's texts.",
    )  # fmt: skip
    for i in range(1, DATASETS + 1):
        dataset = Dataset.objects.create(project=project, name=f"Sample {i:02d}")
        for j in range(1 + i % 3):
            default_storage.save(
                f"{dataset.base_file_path}/text{j}.txt", ContentFile(TEXT * (i + j))
            )
    token, _ = client_token("demo-client")
    return project.slug, token


def float_results(rng: random.Random) -> dict[str, object]:
    """One float's results: where it drifted, what it measured, whether QC passed."""
    roll, basin = rng.random(), BASINS[-1]
    for candidate in BASINS:
        roll -= candidate[1]
        if roll < 0:
            basin = candidate
            break
    name, _, (lat0, lon0), (dlat, dlon) = basin
    lat = max(-75.0, min(75.0, rng.gauss(lat0, dlat)))
    lon = (rng.gauss(lon0, dlon) + 180) % 360 - 180
    temperature = 28 - 0.42 * abs(lat) + rng.gauss(0, 1.8)
    return {
        "temperature": round(max(-1.8, temperature), 2),
        "salinity": round(rng.gauss(34.7 if name != "Southern" else 34.1, 0.45), 3),
        "depth": int(rng.triangular(200, 2000, 1950)),
        "profiles": rng.randint(40, 180),
        "basin": name,
        "qc_passed": rng.random() < 0.93,
        "where": {"lat": round(lat, 3), "lon": round(lon, 3)},
    }


def results_project(count: int = FLOATS) -> str:
    """A finished survey whose datasets reported results: the Results section's demo."""
    from crunch.choices import DatasetState
    from crunch.models import Dataset, Project
    from crunch.services.results import store

    rng = random.Random(2024)
    project = Project.objects.create(
        name="Ocean floats", is_public=True, allow_empty=True,
        description=f"Temperature and salinity reported by {count:,} Argo floats.",
    )  # fmt: skip
    names = [f"float-{5900000 + i}" for i in range(count)]
    Dataset.objects.bulk_create(
        Dataset(project=project, name=name, slug=f"{project.slug}:{name}", stage=3, attempts=1,
                base_file_path=f"crunch/{project.slug}/{name}", state=DatasetState.COMPLETED)
        for name in names
    )  # fmt: skip
    for dataset in Dataset.objects.filter(project=project).order_by("id"):
        store(dataset, float_results(rng))
    return project.slug


def word_results(slug: str) -> None:
    """What the word-count workflow measured, stored as its datasets' results."""
    from django.core.files.storage import default_storage

    from crunch.models import Dataset
    from crunch.services.results import store

    for dataset in Dataset.objects.filter(project__slug=slug, state="completed"):
        folder = dataset.base_file_path
        texts = [name for name in default_storage.listdir(folder)[1] if name.startswith("text")]
        words = 0
        for name in texts:
            with default_storage.open(f"{folder}/{name}") as handle:
                words += len(handle.read().split())
        store(dataset, {"words": words, "texts": len(texts)})


def screenshot_results(page_url: str, path: Path) -> None:
    """Save the Results section of a project page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(page_url)
        path.parent.mkdir(parents=True, exist_ok=True)
        page.locator("#results").screenshot(path=str(path))
        browser.close()
    print(f"Saved the Results section to {path}")


def wait_for(url: str, server: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"The server stopped with exit code {server.returncode}; see above.")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"The server did not answer at {url!r} within {timeout:g}s.")


def relay(name: str, stream: object) -> None:
    for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
        sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
        sys.stdout.flush()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def screenshot_mid_run(page_url: str, slug: str, path: Path) -> None:
    """Save the project page once a third of the datasets are done, with both clients busy."""
    from playwright.sync_api import sync_playwright

    from crunch.models import Project
    from crunch.services.stats import project_stats

    project = Project.objects.get(slug=slug)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counts = project_stats(project).counts
            if counts.get("completed", 0) >= DATASETS // 3 and counts.get("running", 0) >= CLIENTS:
                break  # a third done and every client at work
            time.sleep(0.05)
        page.goto(page_url)
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path))
        browser.close()
    print(f"Saved the project page mid-run to {path}")


def main() -> int:  # noqa: PLR0915 (one story, told in order)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, metavar="PATH", help="save the page mid-run")
    parser.add_argument(
        "--results-screenshot", type=Path, metavar="PATH", help="save a Results section"
    )
    args = parser.parse_args()
    started = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    media = WORK / "media"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "CRUNCH_SQLITE": str(WORK / "db.sqlite3"),
        "CRUNCH_MEDIA_ROOT": str(media),
        "PYTHONUNBUFFERED": "1",
        "DJANGO_DEBUG": "1",  # runserver serves the static files only with DEBUG on
    }
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    slug, token = prepare()
    started_results = time.monotonic()
    floats = results_project()
    print(f"Stored the results of {FLOATS:,} floats in {time.monotonic() - started_results:.1f}s")
    storage_settings = WORK / "storage.toml"
    storage_settings.write_text(
        f'[STORAGES.default]\nBACKEND = "django.core.files.storage.FileSystemStorage"\n'
        f'[STORAGES.default.OPTIONS]\nlocation = "{media}"\n'
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    print(f"Starting the server at {url} ...")
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    clients: list[subprocess.Popen[bytes]] = []
    try:
        wait_for(url, server)
        client_env = {
            **env,
            "CRUNCH_URL": url,
            "CRUNCH_TOKEN": token,
            "CRUNCH_STORAGE_SETTINGS": str(storage_settings),
        }
        print(f"Running {CLIENTS} 'crunch loop' clients on {DATASETS} datasets ...")
        for n in range(1, CLIENTS + 1):
            clients.append(
                subprocess.Popen(
                    [
                        str(BIN / "crunch"),
                        "loop",
                        "--project",
                        slug,
                        "--quiet",
                        "--directory",
                        str(WORK / f"client{n}"),
                        "--heartbeat",
                        "5",
                    ],
                    cwd=WORK,
                    env=client_env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            )
        relays = [
            threading.Thread(target=relay, args=(f"client {n}", c.stdout))
            for n, c in enumerate(clients, 1)
        ]
        for thread in relays:
            thread.start()
        if args.screenshot:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop, our ORM
            screenshot_mid_run(f"{url}projects/{slug}/", slug, args.screenshot.resolve())
        codes = [client.wait(timeout=120) for client in clients]
        for thread in relays:
            thread.join()
        word_results(slug)
        if args.results_screenshot:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
            screenshot_results(f"{url}projects/{floats}/", args.results_screenshot.resolve())
        from crunch.models import Project
        from crunch.services.stats import project_stats

        stats = project_stats(Project.objects.get(slug=slug)).as_dict()
        print()
        print(
            f"Done in {time.monotonic() - started:.1f}s: {stats['completed']} completed, "
            f"{stats['failed']} failed, {stats['pending']} pending, {stats['running']} running."
        )
        print(f"Client exit codes: {codes}")
        print(f"Results are in {media / 'crunch' / slug}")
        print(f"Project page (while a server runs on this database): {url}projects/{slug}/")
        print(f"Results of {FLOATS:,} floats: {url}projects/{floats}/#results-heading")
        print(f"To browse it: DJANGO_DEBUG=1 CRUNCH_SQLITE={WORK / 'db.sqlite3'} "
              f"CRUNCH_MEDIA_ROOT={media} {BIN / 'python'} manage.py runserver {port}")  # fmt: skip
        return 0 if all(code == 0 for code in codes) and stats["completed"] == DATASETS else 1
    finally:
        for process in [*clients, server]:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    sys.exit(main())
