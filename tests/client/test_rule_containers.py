"""Snakefiles that name a container per rule run them through Snakemake's own Apptainer
support (issue 26); the project's container otherwise wraps the whole run."""

from __future__ import annotations

from pathlib import Path

from crunchclient.settings import kinds

PER_RULE = b"""rule count:
    input: "input.txt"
    output: "count.txt"
    container: "docker://busybox:1.36"
    shell: "wc -w < {input} > {output}"
"""


def test_a_snakefile_naming_rule_containers_is_told_from_one_that_does_not():
    assert kinds.names_rule_containers(PER_RULE)
    assert kinds.names_rule_containers(b'containerized: "docker://x/y:1"\nrule a:\n  shell: "x"')
    assert not kinds.names_rule_containers(b'rule a:\n    shell: "echo container: no"\n')


def test_snakemake_gets_its_deployment_flags_and_keeps_conda():
    command = ["python", "-m", "snakemake", "--cores", "2", "--use-conda"]

    flags = kinds.rule_container_flags(command, Path("/cache/snakemake"))

    assert flags == [
        "python", "-m", "snakemake", "--cores", "2",
        "--sdm", "conda", "apptainer", "--apptainer-prefix", "/cache/snakemake",
    ]  # fmt: skip
