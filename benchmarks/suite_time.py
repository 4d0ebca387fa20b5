"""The time of the tests an older main already had, at that main and at this checkout.

    .venv/bin/python -m benchmarks.suite_time [--base db247aa] [--base-tree DIR]
        [--only tests/server] [--keep results.json]

Whole-suite times do not compare once new tests came in, so this collects the node ids at
both (``pytest --collect-only -q -p no:randomly``), keeps those present at both (under
--only PATH if given) and runs just those at each: the worktree of --base (see
benchmarks/harness.py) with its own folder as cwd and on PYTHONPATH, and this checkout,
each with this .venv, its own pytest configuration, ``-p no:randomly -p no:cacheprovider``,
a fresh temporary folder and an environment without CRUNCH_*, DJANGO_* and DATABASE_URL
(so tests marked postgres skip at both). The sides run one after the other per group
(tests/server, tests/client, tests/e2e, tests/browser, ...), base first, so drift on a
shared machine hits both alike.

Prints per test file and per group: node ids compared, skipped at base / now, the seconds
of those tests at base and now (setup + call + teardown, from --junitxml) and now / base;
then the total, with the wall time of the pytest runs; the node ids collected at the base
that are gone now (a count, the first few); tests that failed at either side, with the
first line of why; and the 1-minute load average over the run. Exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from benchmarks.harness import BASE_COMMIT, CURRENT, Version, base_version, clean_env

PYTEST = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider"]
CHROMIUM = Path("/usr/bin/chromium")
SHOWN = 8


@dataclass
class Result:
    """One test at one side: seconds (setup + call + teardown) and passed/skipped/failed."""

    seconds: float = 0.0
    outcome: str = "missing"
    reason: str = ""


def side_env(side: Version) -> dict[str, str]:
    env = clean_env()
    env.pop("PYTHONPATH", None)
    return side.env(env)


def collect(side: Version) -> list[str]:
    """The node ids ``pytest --collect-only`` finds at ``side``, in its order."""
    done = subprocess.run(
        [*PYTEST, "--collect-only", "-q"], check=False, cwd=side.root, env=side_env(side),
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode not in (0, 5):
        raise SystemExit(f"{side.name}: collection failed:\n{done.stdout[-3000:]}{done.stderr}")
    return [line for line in done.stdout.splitlines() if "::" in line and " " not in line[:1]]


def junit_key(node: str) -> tuple[str, str]:
    """(classname, name) of ``node`` in pytest's junit XML (its mangle_test_address)."""
    path, bracket, params = node.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def file_of(node: str) -> str:
    return node.split("::", 1)[0]


def group_of(node: str) -> str:
    parts = file_of(node).split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else file_of(node)


def run(side: Version, nodes: list[str], folder: Path) -> tuple[dict[str, Result], float]:
    """Run ``nodes`` at ``side``; each one's Result, and the wall time of the run(s)."""
    folder.mkdir(parents=True)
    # pytest >= 8.2 reads arguments from @file, one a line; older ones get chunks.
    at_file = tuple(int(p) for p in version("pytest").split(".")[:2]) >= (8, 2)
    chunks = [nodes] if at_file else [nodes[i : i + 200] for i in range(0, len(nodes), 200)]
    by_key = {junit_key(node): node for node in nodes}
    results = {node: Result() for node in nodes}
    wall = 0.0
    for number, chunk in enumerate(chunks):
        xml, ids = folder / f"junit{number}.xml", folder / f"ids{number}.txt"
        ids.write_text("".join(f"{node}\n" for node in chunk))
        args = [f"@{ids}"] if at_file else chunk
        command = [*PYTEST, "-q", "--junitxml", str(xml), "--basetemp", str(folder / "tmp")]
        with (folder / f"output{number}.txt").open("w") as output:
            start = time.perf_counter()
            subprocess.run(
                [*command, *args], check=False, cwd=side.root, env=side_env(side), stdout=output,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            wall += time.perf_counter() - start
        if not xml.exists():
            raise SystemExit(f"{side.name}: pytest wrote no {xml}; see {folder}/output*.txt")
        for case in ET.parse(xml).iter("testcase"):
            node = by_key.get((case.get("classname", ""), case.get("name", "")))
            if node is None:
                continue
            result = results[node]
            result.seconds += float(case.get("time", 0))
            result.outcome = "passed"
            for tag in ("failure", "error", "skipped"):
                found = case.find(tag)
                if found is not None:
                    result.outcome = "skipped" if tag == "skipped" else "failed"
                    why = found.get("message") or found.text or tag
                    result.reason = (why.strip().splitlines() or [tag])[0][:160]
                    break
    return results, wall


def sample_load(samples: list[float], stop: threading.Event) -> None:
    while not stop.wait(5):
        samples.append(os.getloadavg()[0])


def row(name: str, nodes: list[str], base: dict[str, Result], now: dict[str, Result]) -> str:
    skipped = [sum(side[n].outcome == "skipped" for n in nodes) for side in (base, now)]
    seconds = [sum(side[n].seconds for n in nodes) for side in (base, now)]
    ratio = f"{seconds[1] / seconds[0]:6.2f}" if seconds[0] else "     -"
    return (
        f"{name:<44} {len(nodes):>5} {skipped[0]:>4}/{skipped[1]:<4}"
        f" {seconds[0]:>9.1f} {seconds[1]:>9.1f} {ratio}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default=BASE_COMMIT, help="the older commit (%(default)s)")
    parser.add_argument("--base-tree", type=Path, help="its worktree (/tmp/crunch-base-<base>)")
    parser.add_argument("--only", help="only node ids under this path, e.g. tests/server")
    parser.add_argument("--keep", type=Path, help="write the results to this JSON file")
    options = parser.parse_args()
    base = base_version(options.base, options.base_tree)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: the browser tests skip at both sides.")
    base_ids, now_ids = collect(base), collect(CURRENT)
    if options.only:
        prefix = options.only.rstrip("/")
        base_ids, now_ids = (
            [n for n in ids if n == prefix or n.startswith((prefix + "/", prefix + "::"))]
            for ids in (base_ids, now_ids)
        )
    present = set(now_ids)
    common = [node for node in base_ids if node in present]
    gone = [node for node in base_ids if node not in present]
    groups: dict[str, list[str]] = defaultdict(list)
    for node in common:
        groups[group_of(node)].append(node)

    results: dict[str, dict[str, Result]] = {"base": {}, "now": {}}
    walls = {"base": 0.0, "now": 0.0}
    load: list[float] = [os.getloadavg()[0]]
    stop = threading.Event()
    threading.Thread(target=sample_load, args=(load, stop), daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="suite-time-") as temp:
        for number, (group, nodes) in enumerate(groups.items()):
            for label, side in (("base", base), ("now", CURRENT)):
                print(f"{label:>4}: {group} ({len(nodes)} tests) ...", file=sys.stderr)
                folder = Path(temp) / f"{number}-{label}"
                found, wall = run(side, nodes, folder)
                results[label].update(found)
                walls[label] += wall
    stop.set()
    load.append(os.getloadavg()[0])

    old, new = results["base"], results["now"]
    print(f"\nTests at both {options.base} and this checkout ({CURRENT.root}):\n")
    heads = f"{'tests':>5} {'skipped':<9} {'base s':>9} {'now s':>9} {'ratio':>6}"
    print(f"{'group / file':<44} {heads}")
    for group, nodes in groups.items():
        print(row(group, nodes, old, new))
        files: dict[str, list[str]] = defaultdict(list)
        for node in nodes:
            files[file_of(node)].append(node)
        if list(files) != [group]:
            for name, members in files.items():
                print(row("  " + name.removeprefix(group + "/"), members, old, new))
    print(row("total (tests' own seconds)", common, old, new))
    wall_ratio = walls["now"] / walls["base"] if walls["base"] else float("nan")
    print(f"{'total (wall time of the pytest runs)':<60} {walls['base']:>9.1f} "
          f"{walls['now']:>9.1f} {wall_ratio:6.2f}")  # fmt: skip
    print(f"\nnode ids compared: {len(common)} (collected: {len(base_ids)} at base, "
          f"{len(now_ids)} now; {len(now_ids) - len(common)} new)")  # fmt: skip
    print(f"at base only (renamed or removed): {len(gone)}")
    for node in gone[:SHOWN]:
        print(f"  {node}")
    if len(gone) > SHOWN:
        print(f"  ... and {len(gone) - SHOWN} more")
    failed = [
        (label, node, result)
        for label, side in results.items()
        for node, result in side.items()
        if result.outcome in ("failed", "missing")
    ]
    print(f"\nfailed or not run: {len(failed)}")
    for label, node, result in failed:
        print(f"  {label:>4} {node}: {result.outcome}: {result.reason}")
    mean = sum(load) / len(load)
    print(f"\n1-minute load average over the run: min {min(load):.2f}, mean {mean:.2f}, "
          f"max {max(load):.2f} ({len(load)} samples)")  # fmt: skip
    if options.keep:
        options.keep.write_text(json.dumps({
            "base": options.base, "compared": len(common), "gone": gone, "walls": walls,
            "load": load, "tests": {n: {k: asdict(results[k][n]) for k in results} for n in common},
        }, indent=1))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
