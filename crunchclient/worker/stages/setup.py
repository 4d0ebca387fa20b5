"""SetupStage: fetch the dataset's files and write the .crunch/ records and workflow."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from crunch.choices import Stage as StageNumber
from crunchclient import transfer
from crunchclient.exceptions import ConfigurationError, InputMissing
from crunchclient.server.wire import ProjectInfo
from crunchclient.settings import kinds
from crunchclient.settings.bootstrap import storage_location
from crunchclient.transfer.download import Fetched, fetch_counted
from crunchclient.transfer.hashing import Checksums
from crunchclient.transfer.progress import size_text
from crunchclient.worker.context import RunContext
from crunchclient.worker.records import (
    DATASET_RECORD,
    PROJECT_RECORD,
    SETUP_CHECKSUMS,
    is_record,
    read_json,
    write_file,
    write_json,
)
from crunchclient.worker.stages.base import Stage

logger = logging.getLogger(__name__)


def kind_of(config_kind: str | None, project: ProjectInfo) -> kinds.Kind:
    """The kind the workflow runs as: --workflow if given, else the project's."""
    return kinds.get(config_kind or project.workflow_kind)


def workflow_kind(context: RunContext) -> kinds.Kind:
    return kind_of(context.config.workflow, context.project)


def workflow_bytes(config_path: Path | None, project: ProjectInfo) -> bytes:
    """The workflow to run, as the file it is written to: the local --path file as it is,
    else the project's text in UTF-8 (whose SHA-256 the server knows); refuse an empty one."""
    if config_path is not None:
        try:
            return config_path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"Workflow file {str(config_path)!r} cannot be read ({exc.strerror}): check --path."
            ) from exc
    text = project.workflow
    if not text.strip():
        raise ConfigurationError(
            f"Project {project.slug!r} has no workflow: set one on the project "
            "(admin or API) or pass --path with a local workflow file."
        )
    return text.encode("utf-8")


def workflow_file(context: RunContext) -> Path:
    return context.records / workflow_kind(context).file_name


class SetupStage(Stage):
    number = StageNumber.SETUP

    def run(self) -> str:
        context = self.context
        config = context.config
        workflow = workflow_bytes(config.path, context.project)
        prefix = context.prefix  # refuses a folder outside the storage
        context.make_workdir()  # refuses one outside --directory
        context.records.mkdir(exist_ok=True)
        previous = read_json(context.records / SETUP_CHECKSUMS) or {}
        fetched: Fetched | None = None
        if config.download:
            # The workflow starts once the files are in place; large files' MD5s may
            # still be computing (see hashing.Checksums), and their record is written
            # when they are known.
            checksums, fetched = fetch_counted(
                context.storage, prefix, context.workdir,
                jobs=config.jobs, known=previous, quiet=config.quiet, tidy=True,
            )  # fmt: skip
        else:
            found = transfer.checksum_tree(context.workdir, exclude=is_record, jobs=config.jobs)
            checksums = Checksums(found)
        context.setup_checksums = checksums
        if config.download and not context.project.allow_empty:
            if not any(not is_record(path) for path in checksums.paths):
                raise InputMissing(
                    f"The dataset's folder {prefix!r} is missing or empty in "
                    f"{storage_location(context.storage)}: check its base_file_path and the "
                    "storage settings, or let the project's datasets start empty (allow_empty)."
                )
        if checksums.done():
            context.write_setup_checksums()
        write_json(context.records / DATASET_RECORD, context.dataset.raw)
        write_json(context.records / PROJECT_RECORD, context.project.raw)
        path = workflow_file(context)
        write_file(path, workflow)
        if workflow_kind(context).executable:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        context.check()
        if fetched is None:
            count = sum(not is_record(path) for path in checksums.paths)
            return f"{count} file(s) found in the folder (--no-download)."
        return setup_note(fetched)


def setup_note(fetched: Fetched) -> str:
    """What Setup did, in one line: the dataset's files (not the .crunch/ records that a
    previous run stored) downloaded and kept, which add up to the files in place."""
    copied = {rel: size for rel, size in fetched.copied.items() if not is_record(rel)}
    kept = sum(not is_record(rel) for rel in fetched.kept)
    return (
        f"{len(copied)} file(s) downloaded ({size_text(sum(copied.values()))}), "
        f"{kept} already in place."
    )
