"""The S3 half of benchmarks/transfer.py: crunch's transfers beside boto3's own managed
transfers, against moto's server in a process of its own."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.harness import moto_server
from benchmarks.timing import Table, best_pair, clear, timed


def s3_benchmarks(
    work: Path, cases: dict[str, Path], labels: dict[str, str], table: Table,
    args: argparse.Namespace,
) -> None:  # fmt: skip
    """Upload, download and a second setup of each case in ``args.s3_cases``."""
    import boto3
    from boto3.s3.transfer import TransferConfig, create_transfer_manager
    from storages.backends.s3 import S3Storage

    from crunchclient.transfer import download_tree, upload_tree

    with moto_server() as endpoint:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        bucket = "crunch-transfer"
        client.create_bucket(Bucket=bucket)
        storage = S3Storage(
            bucket_name=bucket, endpoint_url=endpoint, region_name="us-east-1",
            access_key="testing", secret_key="testing", file_overwrite=True,
        )  # fmt: skip

        def plain_upload(source: Path, prefix: str) -> None:
            """boto3's own managed transfer: every file submitted to one manager."""
            with create_transfer_manager(client, TransferConfig()) as manager:
                futures = [
                    manager.upload(
                        str(path), bucket, f"{prefix}/{path.relative_to(source).as_posix()}"
                    )
                    for path in source.rglob("*")
                    if path.is_file()
                ]
                for future in futures:
                    future.result()

        def plain_download(prefix: str, dest: Path) -> None:
            keys = [
                item["Key"]
                for page in client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=f"{prefix}/"
                )
                for item in page.get("Contents", ())
            ]
            with create_transfer_manager(client, TransferConfig()) as manager:
                futures = []
                for key in keys:
                    target = dest / key[len(prefix) + 1 :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    futures.append(manager.download(bucket, key, str(target)))
                for future in futures:
                    future.result()

        def delete_prefix(prefix: str) -> None:
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"{prefix}/"
            ):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
                if keys:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": keys})

        for case, source in cases.items():
            if case not in args.s3_cases:
                continue
            label = labels[case]
            t_ours, t_base = best_pair(
                lambda: upload_tree(storage, f"ours/{case}", source, jobs=args.jobs, quiet=True),
                lambda: plain_upload(source, f"plain/{case}"),
                lambda: delete_prefix(f"ours/{case}"),
                lambda: delete_prefix(f"plain/{case}"),
                args.repeat,
            )
            table.add(
                label, "S3 upload incl. checksums", t_ours, t_base, "boto3 TransferManager", 1.3
            )
            delete_prefix(f"plain/{case}")
            dest = work / "s3down" / case
            dest_plain = work / "s3plain" / case
            checksums: dict[str, str] = {}
            t_ours, t_base = best_pair(
                lambda: checksums.update(
                    download_tree(storage, f"ours/{case}", dest, jobs=args.jobs, quiet=True)
                ),
                lambda: plain_download(f"ours/{case}", dest_plain),
                lambda: clear(dest),
                lambda: clear(dest_plain),
                args.repeat,
            )
            table.add(label, "S3 download", t_ours, t_base, "boto3 TransferManager", 1.3)
            t_second = min(
                timed(
                    lambda: download_tree(
                        storage, f"ours/{case}", dest, jobs=args.jobs, known=checksums, quiet=True
                    ),
                    lambda: None,
                )
                for _ in range(args.repeat)
            )
            table.add(label, "S3 2nd setup vs 1st", t_second, t_ours, "1st setup", 0.2)
            delete_prefix(f"ours/{case}")
            clear(dest)
            clear(dest_plain)
