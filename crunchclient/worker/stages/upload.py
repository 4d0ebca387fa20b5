"""UploadStage: send new and modified files (by MD5) and the .crunch/ records.

Files deleted by the workflow are listed in .crunch/deleted.txt, not deleted from
storage. A modified file replaces the stored one under the same name.
"""

from __future__ import annotations

import logging

from crunch.choices import Stage as StageNumber
from crunchclient import transfer
from crunchclient.transfer.progress import size_text
from crunchclient.transfer.upload import upload_after_setup
from crunchclient.worker.records import (
    DELETED,
    RECORDS,
    UPLOAD_CHECKSUMS,
    is_cache,
    is_record,
    write_json,
)
from crunchclient.worker.stages.base import Stage

logger = logging.getLogger(__name__)


class UploadStage(Stage):
    number = StageNumber.UPLOAD

    def run(self) -> str:
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
