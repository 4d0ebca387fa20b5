"""UploadStage: send new and modified files (by MD5) and the .crunch/ records; the results
the workflow reported go with its Success.

Files deleted by the workflow are listed in .crunch/deleted.txt, not deleted from
storage. A modified file replaces the stored one under the same name.

An invalid results file (worker/results.py) fails the dataset here, at Upload, once its
files and records (the bad file too, to be read) are stored: its workflow succeeded, and
nothing it made is lost to a mistake in what it reported. The server refusing the
results (a key's kind changed) fails it at Upload too, after the same upload.
"""

from __future__ import annotations

import logging
from typing import Any

from crunch.choices import Stage as StageNumber
from crunchclient import transfer
from crunchclient.transfer.progress import size_text
from crunchclient.transfer.upload import upload_after_setup
from crunchclient.worker.records import (
    DELETED,
    RECORDS,
    RESULTS_RECORD,
    UPLOAD_CHECKSUMS,
    is_cache,
    is_record,
    write_file,
    write_json,
)
from crunchclient.worker.results import InvalidResultsFile, read_results
from crunchclient.worker.stages.base import Stage

logger = logging.getLogger(__name__)


class UploadStage(Stage):
    number = StageNumber.UPLOAD
    results: dict[str, Any] | None = None

    def success_fields(self) -> dict[str, Any]:
        """The results, when the workflow reported some (or an earlier run did: then none
        replace them)."""
        return {} if self.results is None else {"results": self.results}

    def run(self) -> str:
        invalid: InvalidResultsFile | None = None
        try:
            self.results = read_results(self.context.records / RESULTS_RECORD)
        except InvalidResultsFile as exc:
            invalid = exc
        if self.results is None and self.context.stale_results:
            # An earlier run reported results and this one none: the server's are cleared,
            # and the stored record says so rather than keep the earlier run's.
            write_file(self.context.records / RESULTS_RECORD, b"{}\n")
            self.results = {}
        note = self.upload()
        if invalid is not None:
            raise invalid
        if self.results:
            note += f" {len(self.results)} result(s) reported."
        return note

    def upload(self) -> str:
        context = self.context
        config = context.config
        if not config.upload:
            context.write_setup_checksums()
            return "Skipped (--no-upload)."
        # One pass: files as Setup left them are not read again, nor the workflow's files
        # hashed while it ran; the others are hashed as they are sent. Setup's MD5s still
        # being computed are finished meanwhile, and recorded after.
        setup, after, result = upload_after_setup(
            context.storage, context.prefix, context.workdir, context.setup_checksums,
            record=context.write_setup_checksums, hashed=context.output_hashes,
            exclude=is_record, jobs=config.jobs, quiet=config.quiet,
        )  # fmt: skip
        deleted = sorted(path for path in setup if path not in after)
        write_json(context.records / UPLOAD_CHECKSUMS, after)
        (context.records / DELETED).write_text(
            "".join(f"{path}\n" for path in deleted), encoding="utf-8"
        )
        transfer.upload_tree(
            context.storage, f"{context.prefix}/{RECORDS}", context.records,
            exclude=is_cache, jobs=config.jobs, quiet=True,
        )  # fmt: skip
        early = f" ({result.hashed_before} hashed while the workflow ran)"
        return (
            f"{result.files} new or modified file(s) uploaded"
            f"{early if result.hashed_before else ''}, {size_text(result.bytes)} sent; "
            f"{result.skipped} unchanged, {len(deleted)} deleted by the workflow."
        )
