"""The client's log says each thing once: one line per stage with counts that agree, a
failure once, and the notice of the secrets kept from the workflow once per process,
naming only real secrets. Through the real ``crunch`` against a live server."""

from __future__ import annotations

import re

import pytest

from crunch.models import Dataset
from tests.clientkit import Crunch

pytestmark = pytest.mark.django_db(transaction=True)

TIME = re.compile(r"^\d\d:\d\d:\d\d ")
SECONDS = re.compile(r"\b\d+\.\ds\b")
NOT_SECRETS = {
    "AWS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    "AWS_REGION": "eu-west-3",
    "AWS_DEFAULT_REGION": "eu-west-3",
    "AWS_PROFILE": "crunch-profile",
    "AWS_S3_ENDPOINT_URL": "https://s3.example.org",
}
NOTICE = "Not giving the workflow"


def lines(text: str) -> list[str]:
    """The lines printed, without their time, and with every duration as 1.0s."""
    return [SECONDS.sub("1.0s", TIME.sub("", line)) for line in text.splitlines()]


def about(printed: list[str], slug: str) -> list[str]:
    return [line for line in printed if line.startswith(f"{slug}: ")]


def test_a_loop_prints_one_line_per_stage_and_the_secrets_notice_once(crunch: Crunch) -> None:
    project = crunch.project("Words", "echo hi > out.txt\n")
    slugs = [
        crunch.dataset(project["slug"], name, {"in.txt": "x", "sub/two.txt": "yy"})["slug"]
        for name in ("a", "b", "c")
    ]
    env = {**crunch.env, **NOT_SECRETS, "AWS_SECRET_ACCESS_KEY": "client-secret-0001"}

    result = crunch.run("loop", env=env)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress line repeats the stages' off a terminal
    printed = lines(result.stdout)
    for slug in slugs:
        assert about(printed, slug) == [
            f"{slug}: Setup succeeded: 2 file(s) downloaded (3 B), 0 already in place.",
            f"{slug}: Workflow succeeded: Finished in 1.0s.",
            f"{slug}: Upload succeeded: 1 new or modified file(s) uploaded, 3 B sent; "
            "2 unchanged, 0 deleted by the workflow.",
        ]
        assert printed.count(f"Dataset {slug!r} completed in 1.0s.") == 1
    notices = [line for line in printed if NOTICE in line]
    assert notices == [
        f"{NOTICE} AWS_SECRET_ACCESS_KEY, CRUNCH_TOKEN (--pass-env NAME gives it one)"
    ]
    assert not any(name in result.stdout for name in NOT_SECRETS)
    assert printed[-1].startswith("Processed 3 dataset(s): 3 completed, 0 failed, in ")


def test_a_retried_dataset_counts_the_files_it_kept(crunch: Crunch) -> None:
    """The second attempt downloads nothing: its Setup line says so, not '2 downloaded'."""
    project = crunch.project(
        "Twice", "test -f ran || { touch ran; echo first try >&2; exit 1; }\n",
        max_attempts=2, retry_delay=0,
    )  # fmt: skip
    slug = crunch.dataset(project["slug"], "a", {"in.txt": "x", "sub/two.txt": "yy"})["slug"]

    result = crunch.run("loop")

    assert result.returncode == 0, result.stderr  # completed at its second attempt
    printed = lines(result.stdout + result.stderr)
    failure = (
        f"Dataset {slug!r} failed at Workflow (it will be retried): The workflow exited "
        "with code 1. Last lines of stderr: ... first try"
    )
    assert [line for line in printed if "failed at" in line] == [failure]
    assert [line for line in about(printed, slug) if "Setup" in line] == [
        f"{slug}: Setup succeeded: 2 file(s) downloaded (3 B), 0 already in place.",
        f"{slug}: Setup succeeded: 0 file(s) downloaded (0 B), 2 already in place.",
    ]
    # The marker the first try left is new; the 2 files Setup found are unchanged.
    assert (
        f"{slug}: Upload succeeded: 1 new or modified file(s) uploaded, 0 B sent; "
        "2 unchanged, 0 deleted by the workflow."
    ) in printed
    assert Dataset.objects.get(slug=slug).state == "completed"


def test_crunch_run_prints_a_failure_once(crunch: Crunch) -> None:
    project = crunch.project("Bad", "echo oops >&2\nexit 3\n", max_attempts=1)
    slug = crunch.dataset(project["slug"], "z")["slug"]

    result = crunch.run("run", slug)

    assert result.returncode == 10
    printed = lines(result.stdout + result.stderr)
    said = f"Dataset {slug!r} failed at Workflow: The workflow exited with code 3."
    assert [line for line in printed if said in line] == [
        f"CommandError: {said} Last lines of stderr: ... oops"
    ]
    assert "Uploaded" not in result.stdout  # the failed run's log went up without a line
    assert Dataset.objects.get(slug=slug).state == "failed"
