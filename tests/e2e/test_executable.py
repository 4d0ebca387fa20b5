"""The 'executable' workflow kind: the file runs itself, its '#!' line picks the interpreter;
a project whose kind's tool is missing is refused before anything is claimed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from crunch.models import Dataset
from tests.clientkit import SIX, Crunch, error_line, statuses

pytestmark = pytest.mark.django_db(transaction=True)

PYTHON_WORKFLOW = f"""\
#!{sys.executable}
import os
import pathlib
import sys

words = pathlib.Path("input.txt").read_text().split()
pathlib.Path("report.txt").write_text(
    f"{{len(words)}} {{os.environ['CRUNCH_DATASET']}} {{sys.version_info[0]}}\\n"
)
"""


def test_python_shebang_workflow_processes_datasets_through_loop(crunch: Crunch) -> None:
    project = crunch.project("Py", PYTHON_WORKFLOW, workflow_kind="executable")
    first = crunch.dataset(project["slug"], "one", {"input.txt": "a b c\n"})
    second = crunch.dataset(project["slug"], "two", {"input.txt": "d e\n"})
    result = crunch.run("loop", "--quiet")
    assert result.returncode == 0, result.stderr
    for dataset, words in ((first, 3), (second, 2)):
        assert statuses(dataset["slug"]) == SIX
        stored = crunch.stored(dataset)
        assert stored["report.txt"] == f"{words} {dataset['slug']} 3\n"
        assert stored[".crunch/workflow"].strip() == PYTHON_WORKFLOW.strip()
    work_file = crunch.work / "crunch-work" / "py" / "one" / ".crunch" / "workflow"
    assert work_file.stat().st_mode & 0o111 == 0o111


def assert_nothing_claimed(project: str) -> None:
    datasets = Dataset.objects.filter(project__slug=project)
    assert datasets.exists()
    for dataset in datasets:
        assert (dataset.state, dataset.attempts) == ("pending", 0), dataset.slug
        assert statuses(dataset.slug) == [], dataset.slug


def test_a_missing_interpreter_is_refused_before_claiming(crunch: Crunch, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-interpreter"
    project = crunch.project("Gone", f"#!{missing}\nprint(1)\n", workflow_kind="executable")
    crunch.dataset(project["slug"], "one")
    message = (
        "CommandError: Project 'gone' (workflow kind 'executable') needs "
        f"{str(missing)!r} (the workflow's '#!' line), which is not installed on this node: "
        "install it or change the workflow's first line."
    )
    for args in (["loop", "--project", "gone"], ["next", "--project", "gone"], ["run", "gone:one"]):
        result = crunch.run(*args)
        assert (result.returncode, error_line(result)) == (2, message), args
        assert_nothing_claimed("gone")


def test_snakemake_project_without_snakemake_is_refused_before_claiming(crunch: Crunch) -> None:
    project = crunch.project("Snake", "rule all:\n    input: []\n", workflow_kind="snakemake")
    crunch.dataset(project["slug"], "one")
    hide = "import sys; sys.modules['snakemake'] = None; from crunchclient.cli import main; sys.exit(main())"  # noqa: E501
    message = (
        "CommandError: Project 'snake' (workflow kind 'snakemake') needs Snakemake, which is "
        "not installed: pip install 'django-crunch[snakemake]'."
    )
    for args in (["loop", "--project", "snake"], ["run", "snake:one"], ["loop"]):
        result = crunch.run(*args, command=[sys.executable, "-c", hide])
        assert (result.returncode, error_line(result)) == (2, message), args
        assert_nothing_claimed("snake")
