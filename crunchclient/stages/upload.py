"""UploadStage: send new and modified files (by MD5) and the .crunch/ records.

Files deleted by the workflow are listed in .crunch/deleted.txt, not deleted from
storage. A modified file replaces the stored one under the same name.
"""

from __future__ import annotations

import logging

from crunchclient import transfer
from crunchclient.connection import UPLOAD
from crunchclient.stages.base import RECORDS, Stage
from crunchclient.stages.setup import is_record, write_json

logger = logging.getLogger(__name__)

UPLOAD_CHECKSUMS = "upload_md5_checksums.json"
DELETED = "deleted.txt"


def is_cache(path: str) -> bool:
    """Tool caches that are never uploaded (Snakemake's bookkeeping)."""
    return path.startswith(".snakemake/")


class UploadStage(Stage):
    number = UPLOAD

    def run(self) -> str:
        context = self.context
        config = context.config
        if not config.upload:
            return "Skipped (--no-upload)."
        after = transfer.checksum_tree(context.workdir, exclude=is_record, jobs=config.jobs)
        before = context.setup_checksums
        changed = [path for path, md5 in after.items() if before.get(path) != md5]
        deleted = sorted(path for path in before if path not in after)
        write_json(context.records / UPLOAD_CHECKSUMS, after)
        (context.records / DELETED).write_text(
            "".join(f"{path}\n" for path in deleted), encoding="utf-8"
        )
        records = transfer.checksum_tree(context.records, exclude=is_cache, jobs=config.jobs)
        paths = changed + [f"{RECORDS}/{path}" for path in records]
        result = transfer.upload_files(
            config.storage, context.prefix, context.workdir, paths,
            jobs=config.jobs, quiet=config.quiet,
            checksums={**after, **{f"{RECORDS}/{p}": md5 for p, md5 in records.items()}},
        )  # fmt: skip
        logger.info(
            "%s: uploaded %d file(s), %d byte(s); %d deleted by the workflow",
            context.slug, result.files, result.bytes, len(deleted),
        )  # fmt: skip
        return f"{len(changed)} new or modified file(s) uploaded; {len(deleted)} deleted."
