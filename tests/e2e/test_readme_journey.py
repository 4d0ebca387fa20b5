"""A newcomer's first hour, run from the tutorial's own commands (issue 23, must show 2).

The commands are read from docs/tutorial.md's "Run a server" and "From folders to results"
blocks, so the tutorial cannot drift from what works: a server started as it says, its
tokens and storage settings, a project of 20 folders, two loops at once, a dataset that
fails once and is retried, then status, why, logs and download. Only what a test must
change is changed: the port, the folders' place, and answers a person would type.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.clientkit import BIN, ROOT, clean_env, free_port

README = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
"""The tutorial (once the README's first sections; the name stays for the diff's sake)."""


def block(heading: str) -> list[str]:
    """The commands of the first ``sh`` block under ``heading``, without their comments."""
    section = README.split(f"\n## {heading}\n", 1)[1]
    code = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in code.splitlines() if line.strip()]


def comment(heading: str, command: str) -> str:
    section = README.split(f"\n## {heading}\n", 1)[1]
    line = next(line for line in section.splitlines() if line.startswith(command))
    return line.split("  #", 1)[1].strip() if "  #" in line else ""


# The folders' workflow: counts words; site-7 fails on its first attempt only.
COUNT_SH = """\
if [ "$(cat name.txt)" = site-7 ] && [ ! -e "{marker}" ]; then
  touch "{marker}"; echo "site-7 is not ready yet" >&2; exit 1
fi
echo "counting $(cat name.txt)"
wc -w < input.txt > count.txt
printf '{{"words": %d}}\\n' "$(cat count.txt)" > "$CRUNCH_RESULTS"
"""


class Journey:
    """Runs tutorial lines in a folder of the newcomer's, as their shell would."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = clean_env(
            PATH=f"{BIN}:/usr/bin:/bin", CRUNCH_SQLITE=str(home / "db.sqlite3"),
            CRUNCH_MEDIA_ROOT=str(home / "media"), DJANGO_SUPERUSER_PASSWORD="a-long-passphrase",
        )  # fmt: skip
        self.tokens: dict[str, str] = {}
        self.url = ""

    def line(self, text: str) -> str:
        """A tutorial line as the test runs it: this venv's Python, the repo's manage.py."""
        text = text.replace(".venv/bin/python", shlex.quote(sys.executable))
        text = text.replace("manage.py", shlex.quote(str(ROOT / "manage.py")))
        for name, value in self.tokens.items():
            text = text.replace(f"<{name} token>", value)
        return text.replace("http://127.0.0.1:8000", self.url) if self.url else text

    def run(self, text: str, expect: int = 0, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["bash", "-c", self.line(text)], cwd=self.home, env={**self.env, **(env or {})},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == expect, (text, result.stdout, result.stderr)
        return result.stdout + result.stderr

    def start(self, text: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["bash", "-c", self.line(text)], cwd=self.home, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def export(self, text: str) -> None:
        """``export A=B C=D``, with the placeholders filled in."""
        for pair in shlex.split(self.line(text))[1:]:
            name, _, value = pair.partition("=")
            self.env[name] = value


@pytest.fixture
def journey(tmp_path: Path) -> Journey:
    return Journey(tmp_path)


def test_a_newcomers_first_hour_as_the_readme_tells_it(journey: Journey, tmp_path: Path) -> None:
    server_lines = block("Run a server")
    assert server_lines[0].startswith("python -m venv .venv")  # installed: this test's venv
    port = free_port()
    server: subprocess.Popen[str] | None = None
    try:
        for line in server_lines[1:]:
            if "createsuperuser" in line:
                journey.run(f"{line} --no-input --username admin --email admin@example.org")
            elif "crunch_token" in line:
                role = "maintainer" if "maintainer" in line else "worker"
                journey.tokens[role] = journey.run(line).strip()
            elif "runserver" in line:
                server = journey.start(
                    line.replace("127.0.0.1:8000", f"127.0.0.1:{port} --noreload")
                )
                journey.url = f"http://127.0.0.1:{port}"
                wait_for_server(journey.url)
            else:
                journey.run(line)
        assert server is not None
        assert (journey.home / "media").is_dir()  # made by crunch_storage_check
        assert (
            f'location = "{journey.home / "media"}"' in (journey.home / "storage.toml").read_text()
        )
        work_through_the_folders(journey, tmp_path)
    finally:
        if server is not None:
            server.terminate()
            server.communicate(timeout=30)


def wait_for_server(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/api/", timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.3)
    raise AssertionError("the tutorial's server did not start")


# The tutorial's steps in its order, one after the other: split, it would not read as the page.
def work_through_the_folders(journey: Journey, tmp_path: Path) -> None:  # noqa: C901, PLR0912, PLR0915
    heading = "From folders to results"
    data = tmp_path / "data"
    for i in range(20):
        folder = data / f"site-{i}"
        folder.mkdir(parents=True)
        (folder / "input.txt").write_text("word " * (i + 1))
        (folder / "name.txt").write_text(f"site-{i}")
    (journey.home / "count.sh").write_text(COUNT_SH.format(marker=tmp_path / "site-7-tried"))
    worker = {"CRUNCH_TOKEN": journey.tokens["worker"]}
    loops: list[subprocess.Popen[str]] = []
    for line in block(heading):
        said = comment(heading, line)
        if line.startswith("export "):
            journey.export(line)
        elif said.startswith(("or:", "again:")):
            continue  # other ways to register the same folders
        elif line.startswith("crunch add-project"):
            assert journey.run(line).strip() == "words"
        elif line.startswith("crunch import"):
            out = journey.run(line.replace("~/data/*/", f"{data}/*/"))
            assert "20 new" in out, out
        elif "--dry-run" in line:
            out = journey.run(line)
            assert "words:site-0" in out and not (journey.home / "words").exists()
        elif "crunch loop" in line:  # "on each machine, as many as you like": two at once
            # --bind: the sandboxed workflow keeps its first-attempt marker in tmp_path.
            loops = [journey.start(f"{line} --directory w{i} --bind {tmp_path}") for i in range(2)]
            ended = [loop.communicate(timeout=600) for loop in loops]
            codes = sorted(loop.returncode for loop in loops)
            assert codes == [0, 10], ended  # the loop that failed site-7 says so
            said_loop = "".join(out + err for out, err in ended)
            assert re.search(r"1 waiting to retry at \d\d:\d\d UTC", said_loop), said_loop
        elif line.startswith("crunch status"):
            out = journey.run(line)
            assert "19 completed, 0 failed" in out and "Failed, waiting to retry: 1" in out
            assert "site-7 is not ready yet" in out  # the failure shows while it waits
        elif line.startswith("crunch ls") and "--where" in line:
            rows = [row.split() for row in journey.run(line).splitlines()]
            words = [int(row[-1]) for row in rows if row and row[-1].isdigit()]
            assert words and words == sorted(words, reverse=True) and min(words) > 5, rows
        elif line.startswith("crunch ls"):
            journey.run(line)
        elif line.startswith("crunch export"):
            journey.run(line)
            table = (journey.home / "words.csv").read_text().splitlines()
            assert table[0].endswith(",words") and len(table) == 21, table
        elif line.startswith("crunch why"):
            out = journey.run(line)
            assert "not to be retried before" in out, out
            move = out.split("To move it: ", 1)[1].strip()
            assert move == "crunch run words:site-7"
            journey.run(f"{move} --bind {tmp_path}", env=worker)  # why's command: it succeeds
        elif line.startswith("crunch logs"):
            assert "counting site-7" in journey.run(line)
        elif line.startswith("crunch project set"):
            assert journey.run(line).strip() == "Project 'words': max attempts 3 -> 5."
        elif line.startswith("crunch release"):
            out = journey.run(line, expect=3)  # nothing runs now: nothing to release
            assert "not running" in out
        elif line.startswith("crunch download"):
            journey.run(line)
            counts = sorted((journey.home / "results").glob("words/*/count.txt"))
            assert len(counts) == 20
            assert (journey.home / "results/words/site-7/count.txt").read_text().strip() == "8"
        else:
            raise AssertionError(f"The tutorial has a new command this test does not know: {line}")
