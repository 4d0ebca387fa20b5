"""UploadStage: send new and modified files (by MD5) and the .crunch/ records.

Files deleted by the workflow are listed in .crunch/deleted.txt, not deleted from
storage. A modified file replaces the stored one under the same name.
"""

from __future__ import annotations

import logging

from crunch.choices import Stage as StageNumber
from crunchclient import transfer
from crunchclient.transfer.progress import size_text
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
        # hashed while it ran; the others are hashed as they are sent. The MD5s of Setup's
        # files still being computed are not waited for first: they are hashed, at normal
        # priority now, while the workflow's files are sent, and recorded after.
        checksums = context.setup_checksums
        checksums.hurry()
        known = context.write_setup_checksums() if checksums.done() else checksums.known
        after, result = transfer.upload_tree(
            context.storage, context.prefix, context.workdir, known=known,
            pending=checksums.pending, hashed=context.output_hashes, exclude=is_record,
            jobs=config.jobs, quiet=config.quiet,
        )  # fmt: skip
        setup = context.write_setup_checksums()
        after = dict(sorted({**after, **{rel: setup[rel] for rel in result.deferred}}.items()))
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
