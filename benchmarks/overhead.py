"""What one `crunch loop` spends per dataset beyond the work, beside an older main, and
what each isolation mode adds.

    .venv/bin/python -m benchmarks.overhead [--datasets 50] [--base db247aa] [--warm-up 20]
        [--profile FOLDER] [--rounds 1] [--isolation-modes none,sandbox,charliecloud]

For this checkout and the worktree of --base (see benchmarks/harness.py): gunicorn
(4 workers, an access log) serves the testproject on a fresh SQLite file with local
storage; a project whose workflow is ``true`` gets --datasets empty datasets; one real
``crunch loop`` (the console script, a subprocess, with that checkout's code) processes
them all, after a loop over --warm-up datasets of another project that is not measured
(each gunicorn worker's first calls load the views and connect: 0.4 s each). Prints
seconds per dataset (the loop's wall time / datasets, and the same from the first Setup
Start to the last Upload Success, which leaves out start-up), the HTTP calls per dataset
by kind, the server's time per dataset (answering, from the access log;
CPU of the gunicorn processes), the client's CPU per dataset (with its workflows), beside
the time of as many ``bash -c true`` runs measured in the same run. --profile FOLDER runs
each loop under cProfile and leaves <FOLDER>/<version>.prof.

This checkout runs one loop per --isolation-modes entry, each on a fresh server as above:
``none`` and ``sandbox`` (``--isolation``), ``auto`` (no option: the default a user gets),
``charliecloud`` (a project whose container is a busybox-static image folder built here
from /bin/busybox, see benchmarks/busybox.py; ``--runtime charliecloud`` with the default
isolation, so ch-run runs inside the sandbox where it works). The older checkout runs as
it always did, unisolated; the speed beside it is current/none's. Then each mode's extra
seconds per dataset beside none: the sandbox's against its target (issue 26: at most 10 ms
more, first Setup Start to last Upload Success, which leaves out the client's start-up),
Charliecloud's printed only. A mode this machine cannot run (no ch-run or busybox-static)
is skipped with a line saying why.

Exits 1 if the loop failed or a dataset did not complete exactly once.
"""

from __future__ import annotations

import argparse
import getpass
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from benchmarks import busybox
from benchmarks.baseline import completion, create_project, register_datasets, status_times
from benchmarks.harness import (
    BASE_COMMIT,
    CRUNCH,
    CURRENT,
    Database,
    Server,
    Version,
    base_version,
    load_average,
    server_env,
    write_storage_settings,
)
from crunchclient.worker.workflow.sandbox import sandbox_problem

TARGET = 0.03  # seconds per dataset of one loop (wall), issue 27 (0.04 since issue 15)
SANDBOX_TARGET = 0.010  # seconds per dataset more in the sandbox than with none, issue 26
MODES = ("none", "sandbox", "auto", "charliecloud")
DEFAULT_MODES = "none,sandbox,charliecloud"
CALL_SHAPES = [
    (re.compile(r"^/api/projects/[^/]+/next/$"), "/api/projects/<slug>/next/"),
    (re.compile(r"^/api/datasets/[^/]+/"), "/api/datasets/<slug>/..."),
    (re.compile(r"^/api/claims/[^/]+/"), "/api/claims/<id>/..."),
    (re.compile(r"^/api/projects/[^/]+/$"), "/api/projects/<slug>/"),
]


def children_cpu() -> float:
    """User plus system CPU seconds of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bash_true(count: int) -> float:
    """Seconds per ``bash -c true`` run: the floor of running any workflow at all."""
    started = time.perf_counter()
    for _ in range(count):
        subprocess.run(["bash", "-c", "true"], check=True)
    return (time.perf_counter() - started) / count


@dataclass(frozen=True)
class Variant:
    """One checkout run in one isolation mode (an older checkout: 'auto', its only one)."""

    version: Version
    mode: str = "auto"

    @property
    def label(self) -> str:
        return self.version.name if self.mode == "auto" else f"{self.version.name}/{self.mode}"

    def flags(self, folder: Path) -> list[str]:
        """The loop's options for this mode."""
        if self.mode == "charliecloud":
            return ["--runtime", "charliecloud", "--cache", str(folder / "image-cache")]
        if self.mode in ("none", "sandbox"):
            return ["--isolation", self.mode]
        return []


def isolation_modes(text: str) -> list[str]:
    """--isolation-modes: a comma-separated list of MODES."""
    modes = [mode.strip() for mode in text.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a comma-separated list of {', '.join(MODES)}"
        )
    return list(dict.fromkeys(modes))


@dataclass
class Figures:
    version: str
    wall_per_dataset: float
    span_per_dataset: float
    calls_per_dataset: float
    server_ms_per_dataset: float
    server_cpu_ms_per_dataset: float
    client_cpu_ms_per_dataset: float
    calls: Counter[str]
    check: dict[str, int]
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.check["wrong"] == 0

    def lines(self, datasets: int) -> list[str]:
        check = "all completed once" if self.ok else f"WRONG exit={self.exit_code} {self.check}"
        head = (
            f"{self.version:<20} {self.wall_per_dataset:.3f} s/dataset (loop wall / {datasets}), "
            f"{self.span_per_dataset:.3f} s/dataset (first Setup Start to last Upload Success), "
            f"{self.calls_per_dataset:.1f} HTTP calls/dataset, "
            f"server {self.server_ms_per_dataset:.0f} ms/dataset answering "
            f"(CPU {self.server_cpu_ms_per_dataset:.0f} ms), "
            f"client CPU {self.client_cpu_ms_per_dataset:.0f} ms/dataset  {check}"
        )
        calls = [
            f"{'':<21}{count / datasets:5.2f}/dataset  {call}"
            for call, count in self.calls.most_common()
        ]
        return [head, *calls]


def call_shape(line: str) -> tuple[str, int]:
    """('POST /api/projects/<slug>/next/ 200', microseconds) of an access-log line."""
    method, path, code, micros = line.split()
    for pattern, shape in CALL_SHAPES:
        if pattern.match(path):
            path = shape
            break
    return f"{method} {path} {code}", int(micros)


def measure(
    variant: Variant, args: argparse.Namespace, folder: Path, image: Path | None = None
) -> Figures:
    """One loop of ``variant`` over --datasets datasets on a fresh server; ``image`` is
    the container of charliecloud's project."""
    version = variant.version
    media, work = folder / "media", folder / "work"
    media.mkdir()
    work.mkdir()
    db = Database("sqlite", {"CRUNCH_SQLITE": str(folder / "db.sqlite3")})
    env = server_env(**db.settings, CRUNCH_MEDIA_ROOT=str(media))
    version.manage("migrate", "--verbosity", "0", env=env)
    maintainer, worker = version.tokens(env, "overhead")
    access_log = folder / "access.log"
    server = Server(version, env=env, log=folder / "gunicorn.log", access_log=access_log)
    server.start(timeout=120)
    try:
        container = str(image) if variant.mode == "charliecloud" and image else ""
        slug = create_project(server, maintainer, "Overhead", "true", container=container)
        register_datasets(server, maintainer, slug, args.datasets)
        client_env = version.env(
            server_env(
                CRUNCH_URL=server.url,
                CRUNCH_TOKEN=worker,
                CRUNCH_STORAGE_SETTINGS=str(write_storage_settings(folder / "storage.toml", media)),
            )
        )
        client_env.setdefault("USER", getpass.getuser())  # ch-run refuses to start without
        flags = variant.flags(folder)
        if args.warm_up:
            warm_up(server, maintainer, client_env, work, args.warm_up, flags)
        before = len(access_log.read_text().splitlines())
        loop = [str(CRUNCH), "loop", "--project", slug, "--directory", str(work), *flags]
        if args.profile:
            profile = Path(args.profile).resolve() / f"{variant.label.replace('/', '-')}.prof"
            profile.parent.mkdir(parents=True, exist_ok=True)
            loop = [sys.executable, "-m", "cProfile", "-o", str(profile), *loop]
        cpu_before, children_before = server.cpu_seconds(), children_cpu()
        started = time.perf_counter()
        result = subprocess.run(
            loop, check=False, env=client_env, cwd=folder, capture_output=True, text=True
        )
        wall = time.perf_counter() - started
        client_cpu = children_cpu() - children_before
        server_cpu = server.cpu_seconds() - cpu_before
        time.sleep(0.5)  # the last access-log lines
        if result.returncode:
            print(
                f"{variant.label}: crunch loop exited {result.returncode}:\n{result.stderr[-2000:]}"
            )
        lines = access_log.read_text().splitlines()[before:]
    finally:
        server.stop()
    calls: Counter[str] = Counter()
    micros = 0
    for line in lines:
        shape, spent = call_shape(line)
        calls[shape] += 1
        micros += spent
    first, last = status_times(db, slug)
    n = args.datasets
    return Figures(
        version=variant.label,
        wall_per_dataset=wall / n,
        span_per_dataset=(last - first) / n,
        calls_per_dataset=len(lines) / n,
        server_ms_per_dataset=micros / 1000 / n,
        server_cpu_ms_per_dataset=server_cpu * 1000 / n,
        client_cpu_ms_per_dataset=client_cpu * 1000 / n,
        calls=calls,
        check=completion(db, slug),
        exit_code=result.returncode,
    )


def warm_up(
    server: Server, token: str, client_env: dict[str, str], work: Path, datasets: int,
    flags: list[str],
) -> None:  # fmt: skip
    """A loop over another project first, so every gunicorn worker has loaded the views,
    connected and answered each kind of call once: the measured loop meets a running
    server, as a loop does but for the first datasets after a deployment."""
    slug = create_project(server, token, "Warm-up", "true")
    register_datasets(server, token, slug, datasets)
    loop = [str(CRUNCH), "loop", "--project", slug, "--directory", str(work / "warm-up"), *flags]
    subprocess.run(loop, env=client_env, capture_output=True, check=True)


def medians(figures: list[Figures], label: str) -> tuple[float, float, int]:
    """(wall, span) seconds per dataset of ``label``, medians over its rounds, and how many."""
    mine = [f for f in figures if f.version == label]
    wall = statistics.median(f.wall_per_dataset for f in mine)
    span = statistics.median(f.span_per_dataset for f in mine)
    return wall, span, len(mine)


def summary(figures: list[Figures], variants: list[Variant]) -> None:
    """Each variant's median seconds per dataset over the rounds, and this checkout's speed
    (unisolated where measured) relative to the older one (its time / ours: above 1 is
    faster)."""
    for variant in variants:
        wall, span, rounds = medians(figures, variant.label)
        print(
            f"{variant.label:<20} median of {rounds}: {wall:.3f} s/dataset (loop wall), "
            f"{span:.3f} s/dataset (first Setup Start to last Upload Success)"
        )
    older = [v for v in variants if v.version != CURRENT]
    ours = [v for v in variants if v.version == CURRENT]
    if older and ours:
        mine = next((v for v in ours if v.mode == "none"), ours[0])
        wall, span, _ = medians(figures, mine.label)
        old_wall, old_span, _ = medians(figures, older[0].label)
        print(
            f"speed of {mine.label} vs {older[0].label}: {old_wall / wall:.2f}x (wall), "
            f"{old_span / span:.2f}x (span)"
        )


def isolation_summary(figures: list[Figures], modes: list[str]) -> None:
    """Each mode's extra seconds per dataset beside current/none (medians over the rounds);
    the sandbox's against SANDBOX_TARGET, judged on the span."""
    if "none" not in modes or len(modes) < 2:
        return
    wall_none, span_none, rounds = medians(figures, f"{CURRENT.name}/none")
    print(f"isolation beside current/none, per dataset (medians of {rounds}):")
    for mode in modes:
        if mode == "none":
            continue
        wall, span, _ = medians(figures, f"{CURRENT.name}/{mode}" if mode != "auto" else "current")
        line = (
            f"  {mode:<13} {(span - span_none) * 1000:+6.1f} ms (first Setup Start to last "
            f"Upload Success), {(wall - wall_none) * 1000:+6.1f} ms (loop wall)"
        )
        if mode == "sandbox":
            verdict = "PASS" if span - span_none <= SANDBOX_TARGET else "FAIL"
            line += f"; target at most +{SANDBOX_TARGET * 1000:.0f} ms (span): {verdict}"
        elif mode == "charliecloud":
            where = "in the sandbox" if sandbox_problem() is None else "without the sandbox"
            line += f"; ch-run {where}, no target"
        print(line)


def runnable_modes(modes: list[str]) -> list[str]:
    """``modes`` without those this machine cannot run, each dropped with a line why."""
    kept = []
    for mode in modes:
        problem = busybox.missing() if mode == "charliecloud" else None
        if mode == "sandbox":
            problem = sandbox_problem()
        if problem:
            print(f"{mode}: skipped, {problem}")
        else:
            kept.append(mode)
    return kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=50)
    parser.add_argument("--base", default=BASE_COMMIT, help="the older commit ('' for none)")
    parser.add_argument("--base-tree", type=Path, help="its worktree (/tmp/crunch-base-<base>)")
    parser.add_argument("--profile", metavar="FOLDER", help="cProfile each loop into FOLDER")
    parser.add_argument(
        "--warm-up",
        type=int,
        default=20,
        metavar="N",
        help="datasets of a loop run first on another project, not measured (0: a cold server)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each checkout this often, in turns (the older one first every other "
        "round), and print the medians: drift on a shared machine then hits both alike",
    )
    parser.add_argument(
        "--isolation-modes",
        type=isolation_modes,
        default=isolation_modes(DEFAULT_MODES),
        metavar="MODES",
        help=f"this checkout's loops, one per mode, of {', '.join(MODES)} (default "
        f"{DEFAULT_MODES}; 'auto' alone is the run before isolation existed)",
    )
    args = parser.parse_args()
    modes = runnable_modes(args.isolation_modes)
    variants = [Variant(CURRENT, mode) for mode in modes]
    if args.base:
        variants.append(Variant(base_version(args.base, args.base_tree)))
    bash = bash_true(args.datasets)
    figures = []
    with ExitStack() as stack:
        image = stack.enter_context(busybox.busybox_image()) if "charliecloud" in modes else None
        for round_ in range(args.rounds):
            for variant in variants[::-1] if round_ % 2 else variants:
                with tempfile.TemporaryDirectory(prefix="crunch-overhead-") as folder:
                    figures.append(measure(variant, args, Path(folder), image))
                print("\n".join(figures[-1].lines(args.datasets)), flush=True)
    bash_after = bash_true(args.datasets)
    if args.rounds > 1:
        summary(figures, variants)
    isolation_summary(figures, modes)
    print(
        f"bash     {bash:.4f} s per 'bash -c true' before the loops, {bash_after:.4f} s after "
        f"({args.datasets} runs each); target {TARGET} s/dataset; load average "
        f"{load_average():.1f}" + (" (under cProfile: slower than without)" if args.profile else "")
    )
    return 0 if all(f.ok for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
