"""Issue 22, point 20: what the server sends never drives the maintainer's terminal.

A worker's note, a dataset's name and a stored file's name hold a hidden link
(``ESC ]8;;URL BEL``), colours (``ESC [31m``, the one-byte CSI ``\\x9b``) and rich markup.
Every command that prints them, run as the real ``crunch`` script against a live server,
prints their text without one escape or control byte, and the markup as plain text.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from crunch.models import Dataset, Status
from tests.clientkit import Crunch

pytestmark = pytest.mark.django_db(transaction=True)

LINK = "\x1b]8;;http://evil/\x07click me\x1b]8;;\x07"
HOSTILE = f"{LINK} \x1b[31mred\x1b[0m \x9b2J\x07\x7f [/bold] [bold]loud"
SHOWN = "click me red  [/bold] [bold]loud"  # what is left of it: its text
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
FAILING = f"printf '%s\\n' '{HOSTILE}' >&2\nexit 3\n"


def clean(result: subprocess.CompletedProcess[str]) -> str:
    """The command's output, checked to hold no escape or control byte."""
    assert "Traceback" not in result.stderr, result.stderr
    for stream in (result.stdout, result.stderr):
        assert not CONTROL.search(stream), repr(stream)
    return result.stdout + result.stderr


def test_server_values_reach_the_terminal_without_escapes(crunch: Crunch) -> None:
    env = crunch.maintainer_env
    project = crunch.project("Words", FAILING, max_attempts=1)
    named = crunch.dataset(project["slug"], f"d1 {HOSTILE}", {f"in\x1b[31m{LINK}.txt": "x"})
    slug = named["slug"]
    assert Dataset.objects.get(slug=slug).name == f"d1 {HOSTILE}"

    # A worker's run fails: its note is the workflow's last words, escapes and all.
    crunch.run("next", "--quiet")
    note = Status.objects.filter(dataset__slug=slug, state=3).get().note
    assert LINK in note and "\x1b[31m" in note
    assert Dataset.objects.get(slug=slug).state == "failed"

    status = clean(crunch.run("status", "--project", "words", env=env))
    assert SHOWN in status
    listed = clean(crunch.run("ls", "--project", "words", env=env))
    assert SHOWN in listed
    why = clean(crunch.run("why", slug, env=env))
    assert SHOWN in why
    files = clean(crunch.run("files", slug, env=env))
    assert "inclick me.txt" in files
    download = clean(crunch.run("download", slug, "--dest", "fetched", "--verbosity", "2", env=env))
    assert "Downloaded 1 dataset(s)." in download
    retried = clean(crunch.run("retry", slug, env=env))
    assert "is pending again" in retried
