"""Measure crunch transfers against `cp -r` and plain boto3, and ``--transfer server``
against direct, in one run, and print a table.

    .venv/bin/python -m benchmarks.transfer [--quick] [--cases a,b,c] [--storages local,s3]
        [--parts baseline,server] [--repeat 3] [--jobs 8] [--workers 4] [--threads 1] [--tmp DIR]

Cases: (a) one 1 GiB file, (b) 2,000 files of 4 KiB in nested folders, (c) 100 files of
10 MiB (--quick shrinks them). Each timing is the best of --repeat runs, alternating ours
and the baseline so both see the same page cache and the same noisy neighbours; a second
setup is the best of --repeat runs too. Part "baseline" is crunch's direct transfers
against cp -r and boto3 (this module, benchmarks/transfer_s3.py); part "server" is
server mode against direct mode through gunicorn (benchmarks/transfer_server.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT
from benchmarks.timing import Table, best_of, best_pair, clear, emptied, evict, load, timed
from benchmarks.transfer_s3 import s3_benchmarks
from benchmarks.transfer_server import served_benchmarks

MiB = 1024 * 1024


def setup_django() -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(USE_TZ=True, INSTALLED_APPS=[])
        django.setup()


def make_cases(base: Path, quick: bool, which: str) -> dict[str, Path]:
    """Write the source trees of the cases in which; return {case: folder}."""
    cases: dict[str, Path] = {}
    if "a" in which:
        a = cases["a"] = base / "a"
        a.mkdir(parents=True)
        with open(a / "one.bin", "wb") as out:
            for _ in range((64 if quick else 1024) // 16):
                out.write(os.urandom(16 * MiB))
    if "b" in which:
        b = cases["b"] = base / "b"
        for i in range(400 if quick else 2000):
            folder = b / f"d{i % 10}" / f"e{i % 7}" / f"f{i % 5}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"file{i}.dat").write_bytes(os.urandom(4096))
    if "c" in which:
        c = cases["c"] = base / "c"
        c.mkdir(parents=True)
        for i in range(20 if quick else 100):
            (c / f"part{i:03}.bin").write_bytes(os.urandom((2 if quick else 10) * MiB))
    return cases


def describe(case: str, quick: bool) -> str:
    if quick:
        return {"a": "(a) 1x64MiB", "b": "(b) 400x4KiB", "c": "(c) 20x2MiB"}[case]
    return {"a": "(a) 1x1GiB", "b": "(b) 2000x4KiB", "c": "(c) 100x10MiB"}[case]


def local_benchmarks(
    work: Path, cases: dict[str, Path], table: Table, args: argparse.Namespace
) -> None:
    from django.core.files.storage import FileSystemStorage

    from crunchclient.transfer import download_tree, fetch_tree, upload_tree
    from crunchclient.transfer.hashing import Checksums

    storage = FileSystemStorage(location=work / "media")
    targets = {"a": 1.5, "b": 3.0, "c": 1.5}
    for case, source in cases.items():
        label = describe(case, args.quick)
        dest = work / "down" / case
        dest_cp = work / "down-cp" / case
        checksums: dict[str, str] = {}
        runs: list[tuple[float, Checksums]] = []  # (seconds until the files were in place, MD5s)

        def ours() -> None:
            started = time.perf_counter()
            result = fetch_tree(storage, case, dest, jobs=args.jobs, quiet=True)
            runs.append((time.perf_counter() - started, result))

        def settle() -> None:
            """Let the last run's background MD5s finish, so no timing competes with them."""
            if runs:
                checksums.update(runs[-1][1].result())

        def before_ours() -> None:
            settle()
            clear(dest)
            evict(source, args.cold)

        def before_cp() -> None:
            settle()
            clear(dest_cp)
            evict(source, args.cold)

        t_ours, t_cp = best_pair(
            ours,
            lambda: subprocess.run(["cp", "-r", str(source), str(dest_cp)], check=True),
            before_ours,
            before_cp,
            args.repeat,
        )
        settle()
        table.add(label, "local download (files ready)", t_ours, t_cp, "cp -r", targets[case])
        # Until the last MD5 is known: the record Upload waits for, hashed while the
        # workflow runs. Files in place plus the background hashing after it.
        t_hashed = min(files + result.seconds for files, result in runs[1:])  # timed runs
        table.add_raw(
            label,
            "(+ MD5s recorded, background)",
            f"{t_hashed:.3f}s",
            f"{t_cp:.3f}s",
            "cp -r",
            f"{t_hashed / t_cp:.2f}x",
            "",
            "",
        )
        # The floor for any copy that checksums: md5sum alone reading the same tree.
        # With several files, md5sum runs on every core (xargs -P), as crunch hashes.
        files = [str(f) for f in sorted(source.rglob("*")) if f.is_file()]
        cores = os.cpu_count() or 1
        md5sum = md5sum_command(len(files))
        t_md5 = min(
            timed(
                lambda: subprocess.run(
                    md5sum, input="\0".join(files).encode(), capture_output=True, check=True
                ),
                lambda: None,
            )
            for _ in range(args.repeat)
        )
        table.add_raw(
            label,
            f"(md5sum alone, {min(cores, len(files))} proc)",
            f"{t_md5:.3f}s",
            f"{t_cp:.3f}s",
            "cp -r",
            f"{t_md5 / t_cp:.2f}x",
            "",
            "",
        )

        # Second setup of the unchanged dataset: nothing moves.
        t_second = min(
            timed(
                lambda: download_tree(
                    storage, case, dest, jobs=args.jobs, known=checksums, quiet=True
                ),
                lambda: None,
            )
            for _ in range(args.repeat)
        )
        table.add(label, "local 2nd setup vs 1st", t_second, t_ours, "1st setup", 0.2)

        # Upload of a fresh copy of the tree (new files: the checksum pass is included).
        fresh = work / "fresh" / case
        clear(fresh)
        subprocess.run(["cp", "-r", str(source), str(fresh)], check=True)
        up = work / "media" / "up" / case
        up_cp = work / "up-cp" / case
        fresh_files = "\0".join(str(f) for f in sorted(fresh.rglob("*")) if f.is_file())
        t_ours, t_cp, t_sum = best_of(
            [
                (
                    lambda: upload_tree(storage, f"up/{case}", fresh, jobs=args.jobs, quiet=True),
                    emptied(up, fresh, args.cold),
                ),
                (
                    lambda: subprocess.run(["cp", "-r", str(fresh), str(up_cp)], check=True),
                    emptied(up_cp, fresh, args.cold),
                ),
                (
                    lambda: subprocess.run(
                        md5sum_command(len(files)),
                        input=fresh_files.encode(),
                        capture_output=True,
                        check=True,
                    ),
                    lambda: evict(fresh, args.cold),
                ),
            ],
            args.repeat,
        )
        table.add(label, "local upload, nothing hashed yet", t_ours, t_cp, "cp -r", 2.0)
        # The floor of a copy that checksums: the slower of copying and hashing the same
        # bytes, each measured in the same rounds as the upload.
        floor, which = max((t_cp, "cp -r"), (t_sum, "md5sum"))
        table.add(label, "(same, vs max(cp -r, md5sum))", t_ours, floor, f"floor: {which}", 1.3)
        table.add_raw(
            label, "(md5sum of the same bytes)", f"{t_sum:.3f}s", "", "", "", "", ""
        )  # fmt: skip

        # The client's case: a workflow wrote the files, and they were hashed while it
        # ran (outputs.OutputHashes), so Upload only copies them.
        early: dict[str, Any] = {}
        lags: list[float] = []

        def write_while_watched() -> None:
            early["hashed"], lag = play_workflow(source, fresh)
            lags.append(lag)
            clear(up)
            evict(fresh, args.cold)

        t_ours, t_cp = best_pair(
            lambda: upload_tree(
                storage, f"up/{case}", fresh, hashed=early["hashed"], jobs=args.jobs, quiet=True
            ),
            lambda: subprocess.run(["cp", "-r", str(fresh), str(up_cp)], check=True),
            write_while_watched,
            emptied(up_cp, fresh, args.cold),
            args.repeat,
        )
        table.add(label, "local upload, hashed in workflow", t_ours, t_cp, "cp -r", 2.0)
        table.add_raw(
            label, "(all hashed, s after last write)", f"{min(lags):.3f}s", "", "", "", "", "",
        )  # fmt: skip
        output_at_the_end(storage, work, source, case, label, table, args)
        clear(fresh)
        clear(up_cp)
        clear(dest_cp)


def output_at_the_end(
    storage: Any, work: Path, source: Path, case: str, label: str, table: Table,
    args: argparse.Namespace,
) -> None:  # fmt: skip
    """A run whose workflow writes its output just before it ends: Setup downloaded the
    input (its MD5s still being computed, in the background), the workflow wrote a copy
    of it as its output (not hashed while it ran), and Upload sends the output and
    records both. Timed from the start of Upload to its end, against cp -r and md5sum of
    the output; the upload as before (Setup's MD5s awaited first, then the output hashed
    while sent) is measured in the same rounds."""
    from crunchclient.transfer import fetch_tree, upload_tree
    from crunchclient.transfer.upload import upload_after_setup

    run = work / "run" / case
    output = run / "output"
    stored_output = work / "media" / case / "output"
    up_cp = work / "up-cp-output" / case
    state: dict[str, Any] = {}

    def setup_and_workflow() -> None:
        clear(run)
        clear(stored_output)
        state["setup"] = fetch_tree(storage, case, run, jobs=args.jobs, quiet=True)
        subprocess.run(["cp", "-r", str(source), str(output)], check=True)
        evict(run, args.cold)

    def ours() -> None:
        upload_after_setup(storage, case, run, state["setup"], jobs=args.jobs, quiet=True)

    def before() -> None:
        setup = state["setup"].future.result()  # as before: no hurry, awaited first
        upload_tree(storage, case, run, known=setup, jobs=args.jobs, quiet=True)

    def sums() -> None:
        names = [str(f) for f in sorted(output.rglob("*")) if f.is_file()]
        command = md5sum_command(len(names))
        subprocess.run(command, input="\0".join(names).encode(), capture_output=True, check=True)

    def settled() -> None:
        """The last run's background MD5s done, so they do not slow the next timing."""
        if "setup" in state:
            state["setup"].result()

    def settled_then_setup() -> None:
        settled()
        setup_and_workflow()

    def before_baseline() -> None:
        settled()
        clear(up_cp)
        evict(output, args.cold)

    t_ours, t_before, t_cp, t_sum = best_of(
        [
            (ours, setup_and_workflow),
            (before, settled_then_setup),
            (lambda: subprocess.run(["cp", "-r", str(output), str(up_cp)], check=True),
             before_baseline),
            (sums, before_baseline),
        ],
        args.repeat,
    )  # fmt: skip
    settled()
    floor, which = max((t_cp, "cp -r"), (t_sum, "md5sum"))
    table.add(label, "upload, output written at the end", t_ours, floor, f"floor: {which}", 1.3)
    table.add_raw(
        label, "(same, as before: Setup's MD5s first)", f"{t_before:.3f}s", f"{floor:.3f}s",
        f"floor: {which}", f"{t_before / floor:.2f}x", "", "",
    )  # fmt: skip
    table.add_raw(
        label, "(cp -r, md5sum of the output)", f"{t_cp:.3f}s", f"{t_sum:.3f}s", "", "", "", ""
    )
    clear(run)
    clear(stored_output)
    clear(up_cp)


def md5sum_command(files: int) -> list[str]:
    """md5sum over file names read from stdin; with several files, on every core (xargs
    -P), as crunch hashes them."""
    cores = os.cpu_count() or 1
    return ["xargs", "-0", "-P", str(cores), "-n", str(max(1, -(-files // cores))), "md5sum"]


def play_workflow(source: Path, folder: Path) -> tuple[dict[str, Any], float]:
    """Write source's tree into folder, as a workflow writes its files, while the client
    hashes them (crunchclient.worker.workflow.outputs); return the MD5s and how
    long after the last write the last of them was known: how much longer a workflow must
    run for all of them."""
    from crunchclient.transfer.hashing import fingerprint
    from crunchclient.worker.workflow.outputs import OutputHashes

    clear(folder)
    folder.mkdir()
    outputs = OutputHashes(folder, exclude=lambda rel: False).start()
    try:
        subprocess.run(["cp", "-r", f"{source}/.", str(folder)], check=True)
        written = time.perf_counter()
        files = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
        while time.perf_counter() - written < 300:
            hashed = outputs.digests()
            if all(hashed.get(rel, (None,))[0] == fingerprint(str(folder / rel)) for rel in files):
                return hashed, time.perf_counter() - written
            time.sleep(0.05)
        raise SystemExit(f"{folder}: not all files were hashed within 300s")
    finally:
        outputs.stop()


def memory_benchmark(work: Path, table: Table, args: argparse.Namespace) -> None:
    """Peak RSS of a client process downloading case (a), and of one that only imports."""
    script = f"""
import sys, json
from pathlib import Path
from django.conf import settings
import django
settings.configure(USE_TZ=True, INSTALLED_APPS=[]); django.setup()
from django.core.files.storage import FileSystemStorage
from crunchclient.transfer import download_tree
def hwm():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
idle = hwm()
if sys.argv[1] == "run":
    download_tree(FileSystemStorage(location={str(work / "media")!r}), "a",
                  Path({str(work / "mem")!r}), jobs={args.jobs}, quiet=True)
print(json.dumps([idle, hwm()]))
"""
    clear(work / "mem")
    out = subprocess.run(
        [sys.executable, "-c", script, "run"], capture_output=True, text=True, check=True
    )
    idle, peak = json.loads(out.stdout)
    clear(work / "mem")
    label = describe("a", args.quick)
    table.add_raw(
        label,
        "peak client memory (download)",
        f"{peak / 1024:.0f}MiB",
        f"{idle / 1024:.0f}MiB",
        "same, before download",
        "",
        "< 120MiB",
        "ok" if peak / 1024 < 120 else "MISSED",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a fast check")
    parser.add_argument("--no-s3", action="store_true", help="the same as --storages local")
    parser.add_argument("--cases", default="abc", help="which cases to run (default a,b,c)")
    parser.add_argument(
        "--storages", default="local,s3", help="local and/or s3 (moto) (default local,s3)"
    )
    parser.add_argument(
        "--parts", default="baseline,server",
        help="baseline (vs cp -r, boto3) and/or server (vs direct) (default both)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=4, help="gunicorn workers of part server (default 4)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="threads per gunicorn worker (default 1: sync)"
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="read local sources from disk, not the page cache (evicted before each run)",
    )
    parser.add_argument("--s3-cases", default="abc", help="which cases to run on S3 (default abc)")
    parser.add_argument("--jobs", type=int, default=8, help="parallel files (default 8)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per timing, best kept (default 3)"
    )
    parser.add_argument(
        "--tmp", default=str(ROOT.parent), help="folder for the trees (same disk as /work)"
    )
    args = parser.parse_args(argv)
    args.cases = "".join(sorted(set(args.cases) & set("abc")))
    args.storages = [kind for kind in ("local", "s3") if kind in args.storages.split(",")]
    if args.no_s3:
        args.storages = [kind for kind in args.storages if kind != "s3"]
    parts = set(args.parts.split(","))
    if not args.cases or not args.storages or not parts or parts - {"baseline", "server"}:
        parser.error("--cases needs a, b or c; --storages local or s3; --parts baseline or server")

    setup_django()
    table = Table()
    with tempfile.TemporaryDirectory(prefix="crunch-bench-", dir=args.tmp) as tmp:
        work = Path(tmp)
        cases = make_cases(work / "media", args.quick, args.cases)
        print(
            f"trees in {work} (jobs={args.jobs}, best of {args.repeat}, {os.cpu_count()} cpus, "
            f"load average {load()} at start)\n"
        )
        table.start()
        labels = {case: describe(case, args.quick) for case in cases}
        if "baseline" in parts and "local" in args.storages:
            local_benchmarks(work, cases, table, args)
            if "a" in cases:
                memory_benchmark(work, table, args)
        if "baseline" in parts and "s3" in args.storages:
            s3_benchmarks(work, cases, labels, table, args)
        if "server" in parts:
            served_benchmarks(work, cases, labels, table, args)
    missed = [row for row in table.rows if row[7] == "MISSED"]
    within = len(table.rows) - len(missed)
    print(f"\n{within}/{len(table.rows)} within target (load average {load()} at end)")


if __name__ == "__main__":
    main()
