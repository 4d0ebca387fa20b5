"""A real Snakemake workflow through the client: one that passes, two that fail."""

from __future__ import annotations

import pytest

from crunch.models import Dataset
from tests.clientkit import SIX, Crunch, error_line, statuses

pytestmark = pytest.mark.django_db(transaction=True)

SNAKEFILE = """\
rule all:
    input: "report.txt"

rule count:
    input: "input.txt"
    output: "report.txt"
    shell: "wc -w < {input} > {output}"
"""

FAILING = """\
rule all:
    input: "report.txt"

rule count:
    output: "report.txt"
    shell: "echo 'no reference genome' >&2; exit 4"
"""


def test_snakemake_workflow_passes(crunch: Crunch) -> None:
    project = crunch.project("Snake", SNAKEFILE, workflow_kind="snakemake")
    dataset = crunch.dataset(project["slug"], "one", {"input.txt": "a b c d\n"})
    result = crunch.run("next", "--quiet", "--cores", "1")
    assert result.returncode == 0, result.stderr
    assert statuses(dataset["slug"]) == SIX
    stored = crunch.stored(dataset)
    assert stored["report.txt"].strip() == "4"
    assert ".crunch/Snakefile" in stored
    assert not any(path.startswith(".snakemake/") for path in stored)


@pytest.mark.parametrize(
    ("snakefile", "in_note"),
    [(FAILING, "no reference genome"), ('rule all:\n    input: "x",,\n', "SyntaxError in file")],
    ids=["failing-rule", "syntax-error"],
)
def test_failing_snakemake_is_a_workflow_fail(crunch: Crunch, snakefile: str, in_note: str) -> None:
    crunch.project("Snake", snakefile, workflow_kind="snakemake", max_attempts=1)
    crunch.dataset("snake", "one", {"input.txt": "a\n"})
    result = crunch.run("next", "--quiet")
    assert result.returncode == 10
    assert error_line(result).startswith(
        "CommandError: Dataset 'snake:one' failed at Workflow: The workflow exited with code 1. "
        "Last lines of stderr: ... "
    )
    assert statuses("snake:one") == [(1, 1), (1, 2), (2, 1), (2, 3)]
    dataset = Dataset.objects.get(slug="snake:one")
    assert dataset.state == "failed"
    assert in_note in dataset.note, dataset.note


def test_workflow_option_runs_a_script_project_with_snakemake(crunch: Crunch) -> None:
    project = crunch.project("Forced", SNAKEFILE)  # kind "script", but the text is a Snakefile
    dataset = crunch.dataset(project["slug"], "one", {"input.txt": "x y\n"})
    result = crunch.run("next", "--workflow", "snakemake", "--quiet")
    assert result.returncode == 0, result.stderr
    assert crunch.stored(dataset)["report.txt"].strip() == "2"
