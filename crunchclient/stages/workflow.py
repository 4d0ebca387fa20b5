"""WorkflowStage: run the workflow file as its kind says (workflows.py), show and keep
its output.

The workflow is code from the server: it gets the client's environment without the
client's secrets, and its output is kept with those secrets masked.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from crunch.choices import Stage as StageNumber
from crunchclient import transfer
from crunchclient.config import ClientConfig
from crunchclient.exceptions import ClientError
from crunchclient.groups import WATCHDOG_PROCESS, die_with_parent, end_group
from crunchclient.outputs import OutputHashes
from crunchclient.records import RECORDS, WORKFLOW_LOG, is_record
from crunchclient.relay import Stream, relay_until_exit
from crunchclient.shutdown import OWN_GROUP
from crunchclient.stages.base import NOTE_BYTES, Stage, tail_bytes
from crunchclient.stages.setup import workflow_file, workflow_kind

logger = logging.getLogger(__name__)

TAIL_LINES = 20  # lines of stderr kept for the Fail note
TAIL_BYTES = NOTE_BYTES - 256  # the most of them the note holds, beside its first line
MASK_MIN = 8  # secrets this long or longer are masked in the output; shorter ones would
# mask ordinary words (the environment loses them all, whatever their length)
HIDDEN = ("CRUNCH_TOKEN",)
HIDDEN_PREFIXES = ("AWS_",)


class WorkflowExited(ClientError):
    """The workflow exited with a non-zero code."""


def workflow_env(config: ClientConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The client's environment without its secrets, unless passed with --pass-env."""
    keep = set(config.pass_env)
    long = [secret for secret in config.secrets if len(secret) >= MASK_MIN]
    env: dict[str, str] = {}
    hidden: list[str] = []
    for name, value in environ.items():
        secret = (
            name in HIDDEN or name.startswith(HIDDEN_PREFIXES) or value in config.secrets
            or any(part in value for part in long)
        )  # fmt: skip
        if secret and name not in keep:
            hidden.append(name)
        else:
            env[name] = value
    if hidden:
        logger.info(
            "Not giving the workflow %s (--pass-env NAME gives it one)", ", ".join(sorted(hidden))
        )
    for name in sorted(keep - set(environ)):
        logger.warning("--pass-env %s: the client has no such environment variable", name)
    return env


class Tail:
    """The last bytes of a stream, for the Fail note: never more than a few notes' worth."""

    def __init__(self, keep: int = 4 * NOTE_BYTES) -> None:
        self.data = bytearray()
        self.keep = keep

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.keep:
            del self.data[: len(self.data) - self.keep]

    def text(self, lines: int = TAIL_LINES, limit: int = TAIL_BYTES) -> str:
        """Its last lines, at most limit bytes, cut between two characters."""
        kept = bytes(self.data).rstrip().splitlines()[-lines:]
        return tail_bytes(b"\n".join(kept), limit).strip()


class Masker:
    """Replaces the client's secrets in the workflow's output by ``***``."""

    def __init__(self, secrets: frozenset[str]) -> None:
        self.secrets = sorted(
            (s.encode() for s in secrets if len(s) >= MASK_MIN), key=len, reverse=True
        )

    def __call__(self, data: bytes) -> bytes:
        for secret in self.secrets:
            if secret in data:
                data = data.replace(secret, b"***")
        return data


class WorkflowStage(Stage):
    number = StageNumber.WORKFLOW

    def command(self) -> list[str]:
        context = self.context
        config = context.config
        return workflow_kind(context).command(
            workflow_file(context), cores=config.cores, workdir=context.workdir,
            python=config.python, use_conda=config.use_conda,
        )  # fmt: skip

    def start_fields(self) -> dict[str, Any]:
        """The SHA-256 of the file we run, so the server knows which workflow ran."""
        digest = hashlib.sha256(workflow_file(self.context).read_bytes()).hexdigest()
        return {"workflow_sha256": digest}

    def run(self) -> str:
        context = self.context
        command = self.command()
        env = {
            **workflow_env(context.config, os.environ),
            "CRUNCH_CORES": str(context.config.cores),
            "CRUNCH_DATASET": context.slug,
        }
        started = time.monotonic()
        # Upload needs the MD5 of every file the workflow writes: hash them meanwhile.
        outputs = OutputHashes(
            context.workdir, inputs=set(context.setup_checksums.paths), exclude=is_record
        )
        if context.config.upload:
            outputs.start()
        tail = Tail()
        try:
            code = self.execute(command, env, tail)
        finally:
            outputs.stop()
            context.output_hashes = outputs.digests()
        context.check()
        if code != 0:
            lines = tail.text()
            raise WorkflowExited(
                f"The workflow exited with code {code}"
                + (
                    f". Last lines of stderr:\n{lines}"
                    if lines
                    else " and wrote nothing to stderr."
                )
            )
        return f"Finished in {time.monotonic() - started:.1f}s."

    def failed(self) -> None:
        """Send ``.crunch/workflow.log`` of a failed run, so the dataset's page shows it."""
        context = self.context
        if not context.config.upload or not (context.records / WORKFLOW_LOG).is_file():
            return
        transfer.upload_tree(
            context.config.storage, f"{context.prefix}/{RECORDS}", context.records,
            exclude=lambda rel: rel != WORKFLOW_LOG, jobs=1, quiet=True,
        )  # fmt: skip

    def execute(self, command: list[str], env: dict[str, str], tail: Tail) -> int:
        """Run the workflow, relaying its output to the screen and the log (and the last
        lines of stderr to tail); stop it when a signal arrives or the claim is lost.
        Its exit code."""
        context = self.context
        with open(context.records / WORKFLOW_LOG, "ab") as log:
            process = subprocess.Popen(
                command, cwd=context.workdir, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                preexec_fn=die_with_parent(), **OWN_GROUP,
            )  # fmt: skip
            WATCHDOG_PROCESS.watch(process.pid)  # its group ends with the client, however
            context.shutdown.child = process
            mask = Masker(context.config.secrets)
            assert process.stdout is not None and process.stderr is not None
            streams = {
                process.stdout: Stream(sys.stdout, log, mask, None),
                process.stderr: Stream(sys.stderr, log, mask, tail),
            }
            try:
                return relay_until_exit(
                    process, streams, slug=context.slug,
                    stopping=lambda: context.shutdown.requested or context.lost.is_set(),
                )  # fmt: skip
            finally:
                context.shutdown.child = None
                if process.poll() is None:  # relaying itself failed
                    process.kill()
                    process.wait()
                end_group(process.pid)  # its background children go with it
                WATCHDOG_PROCESS.unwatch(process.pid)
