"""Workflow kinds: how each kind of workflow file is written, run and checked.

Each kind is one class in ``KINDS``, keyed by ``crunch.choices.WorkflowKind``: adding a
kind is one class and one entry. ``check()`` runs before anything is claimed, so a node
without the kind's tool refuses the project instead of failing its datasets.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
from pathlib import Path
from typing import ClassVar

from crunch.choices import WorkflowKind
from crunchclient.exceptions import ConfigurationError


class Kind:
    """One kind of workflow. Subclasses set the class attributes and ``command()``."""

    kind: ClassVar[WorkflowKind]
    file_name: ClassVar[str]
    """The workflow's file name in the dataset's ``.crunch/`` folder."""
    executable: ClassVar[bool] = False
    """Whether the file is written with its execute bits set."""
    cache_folders: ClassVar[tuple[str, ...]] = ()
    """Folders (relative, ending in ``/``) the tool keeps in the dataset's folder that are
    neither data nor uploaded."""

    def command(
        self, path: Path, *, cores: int, workdir: Path, python: str, use_conda: bool = False
    ) -> list[str]:
        """The command that runs the workflow file ``path`` in ``workdir``."""
        raise NotImplementedError

    def names_file(self, path: Path) -> bool:
        """Whether a file of this name is of this kind (``crunch add-project --workflow``)."""
        return False

    def attempt_flags(self, attempt: int) -> list[str]:
        """What tells the tool which attempt of the dataset this run is (CRUNCH_ATTEMPT is
        in every kind's environment)."""
        return []

    def check(self, what: str, workflow: bytes | None = None) -> None:
        """Raise ConfigurationError when this node cannot run the workflow (its bytes if
        known); ``what`` names the cause in the message (``--workflow snakemake``)."""


class Script(Kind):
    kind = WorkflowKind.SCRIPT
    file_name = "script.sh"
    executable = True

    def command(
        self, path: Path, *, cores: int, workdir: Path, python: str, use_conda: bool = False
    ) -> list[str]:
        return ["bash", str(path)]

    def check(self, what: str, workflow: bytes | None = None) -> None:
        if shutil.which("bash") is None:
            raise ConfigurationError(
                f"{what} needs bash, which is not on the PATH: install bash "
                "or run on a node that has it."
            )


class Snakemake(Kind):
    kind = WorkflowKind.SNAKEMAKE
    file_name = "Snakefile"
    cache_folders = (".snakemake/",)

    def names_file(self, path: Path) -> bool:
        return path.name in ("Snakefile", "snakefile") or path.suffix == ".smk"

    def command(
        self, path: Path, *, cores: int, workdir: Path, python: str, use_conda: bool = False
    ) -> list[str]:
        command = [
            python, "-m", "snakemake", "--snakefile", str(path),
            "--directory", str(workdir), "--cores", str(cores),
        ]  # fmt: skip
        if use_conda:
            command.append("--use-conda")
        return command

    def attempt_flags(self, attempt: int) -> list[str]:
        """Snakemake's ``--attempt N`` (an option its own cluster jobs use, present in
        Snakemake 7, 8 and 9): ``attempt`` in a rule's ``resources`` starts at N, so
        ``mem_mb=lambda wildcards, attempt: 4000 * attempt`` asks for more on each of the
        dataset's attempts, as it does on Snakemake's own ``--retries``."""
        return ["--attempt", str(attempt)]

    def check(self, what: str, workflow: bytes | None = None) -> None:
        if importlib.util.find_spec("snakemake") is None:
            raise ConfigurationError(
                f"{what} needs Snakemake, which is not installed: "
                "pip install 'django-crunch[snakemake]'."
            )


RULE_CONTAINER = re.compile(rb"^\s*(?:container|containerized)\s*:", re.MULTILINE)


def names_rule_containers(workflow: bytes) -> bool:
    """Whether a Snakefile names containers for its rules (``container:`` directives):
    Snakemake then runs each rule in its image itself (``--sdm apptainer``)."""
    return RULE_CONTAINER.search(workflow) is not None


def rule_container_flags(command: list[str], cache: Path) -> list[str]:
    """A snakemake command that runs the rules' containers through Apptainer, images
    pulled once into ``cache`` (with --use-conda, both deployment methods)."""
    methods = ["apptainer"]
    if "--use-conda" in command:
        command = [part for part in command if part != "--use-conda"]
        methods.insert(0, "conda")
    return [*command, "--sdm", *methods, "--apptainer-prefix", str(cache)]


class Executable(Kind):
    """Run the file itself: its ``#!`` line picks the interpreter (Python, R, ...)."""

    kind = WorkflowKind.EXECUTABLE
    file_name = "workflow"
    executable = True

    def command(
        self, path: Path, *, cores: int, workdir: Path, python: str, use_conda: bool = False
    ) -> list[str]:
        return [str(path)]

    def check(self, what: str, workflow: bytes | None = None) -> None:
        if workflow is None:
            return  # the file comes with the project: checked when it is known
        first = workflow.split(b"\n", 1)[0].rstrip(b"\r")
        if not first.startswith(b"#!"):
            raise ConfigurationError(
                f"{what} needs a workflow whose first line is '#!INTERPRETER', not "
                f"{first[:80].decode('utf-8', 'replace')!r}: start the workflow with e.g. "
                "'#!/usr/bin/env python3'."
            )
        interpreter = interpreter_of(first[2:].decode("utf-8", "replace"))
        if interpreter is None:
            raise ConfigurationError(
                f"{what}: the workflow's first line {first.decode('utf-8', 'replace')!r} names "
                "no interpreter: start the workflow with e.g. '#!/usr/bin/env python3'."
            )
        found = shutil.which(interpreter) if "/" not in interpreter else interpreter
        if found is None or not os.access(found, os.X_OK) or not os.path.isfile(found):
            raise ConfigurationError(
                f"{what} needs {interpreter!r} (the workflow's '#!' line), which is not "
                "installed on this node: install it or change the workflow's first line."
            )


def interpreter_of(shebang: str) -> str | None:
    """The program a ``#!`` line runs: ``/usr/bin/env [-S] NAME`` gives NAME."""
    try:
        words = shlex.split(shebang)
    except ValueError:
        words = shebang.split()
    if not words:
        return None
    if Path(words[0]).name == "env":
        names = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        return names[0] if names else None
    return words[0]


KINDS: dict[str, Kind] = {kind.kind.value: kind for kind in (Script(), Snakemake(), Executable())}
"""{WorkflowKind value: its kind}."""


def get(name: str) -> Kind:
    """The kind named ``name`` (a ``WorkflowKind`` value); refuse one this client lacks."""
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigurationError(
            f"Workflow kind {name!r} is not known to this client (it knows "
            f"{', '.join(KINDS)}): upgrade django-crunch or pass --workflow KIND."
        ) from None


def kind_of_file(path: Path) -> str | None:
    """The kind a workflow file's name implies (a Snakefile), None when it implies none."""
    return next((name for name, kind in KINDS.items() if kind.names_file(path)), None)


def cache_folders() -> tuple[str, ...]:
    """Every kind's cache folders: never data, never uploaded, whatever kind ran."""
    return tuple(folder for kind in KINDS.values() for folder in kind.cache_folders)
