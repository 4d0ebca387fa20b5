"""WorkflowStage: run script.sh or the Snakefile as a subprocess, show and keep its output."""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO

from crunchclient.connection import WORKFLOW
from crunchclient.exceptions import ClientError
from crunchclient.outputs import OutputHashes
from crunchclient.shutdown import OWN_GROUP, kill_group
from crunchclient.stages.base import Stage
from crunchclient.stages.setup import is_record, workflow_file, workflow_kind

logger = logging.getLogger(__name__)

LOG = "workflow.log"
TAIL_LINES = 20  # lines of stderr kept for the Fail note
POLL = 0.1  # seconds between checks of the stop flags while the workflow runs
GRACE = 5.0  # seconds a terminated workflow gets before it is killed


class WorkflowExited(ClientError):
    """The workflow exited with a non-zero code."""


class WorkflowStage(Stage):
    number = WORKFLOW

    def command(self) -> list[str]:
        context = self.context
        path = workflow_file(context)
        if workflow_kind(context) == "snakemake":
            command = [
                context.config.python, "-m", "snakemake", "--snakefile", str(path),
                "--directory", str(context.workdir), "--cores", str(context.config.cores),
            ]  # fmt: skip
            if context.config.use_conda:
                command.append("--use-conda")
            return command
        return ["bash", str(path)]

    def run(self) -> str:
        context = self.context
        command = self.command()
        env = {
            **os.environ,
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
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        try:
            code = self.execute(command, env, tail)
        finally:
            outputs.stop()
            context.output_hashes = outputs.digests()
        context.check()
        if code != 0:
            lines = "\n".join(tail).rstrip()
            raise WorkflowExited(
                f"The workflow exited with code {code}"
                + (
                    f". Last lines of stderr:\n{lines}"
                    if lines
                    else " and wrote nothing to stderr."
                )
            )
        return f"Finished in {time.monotonic() - started:.1f}s."

    def execute(self, command: list[str], env: dict[str, str], tail: collections.deque[str]) -> int:
        """Run the workflow, relaying its output to the screen and the log (and the last
        lines of stderr to tail); return its exit code."""
        context = self.context
        with open(context.records / LOG, "ab") as log:
            process = subprocess.Popen(
                command, cwd=context.workdir, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **OWN_GROUP,
            )  # fmt: skip
            context.shutdown.child = process
            lock = threading.Lock()
            streams = ((process.stdout, sys.stdout, None), (process.stderr, sys.stderr, tail))
            readers = [
                threading.Thread(target=relay, args=(source, screen, log, lock, keep), daemon=True)
                for source, screen, keep in streams
            ]  # fmt: skip
            for reader in readers:
                reader.start()
            try:
                return self.wait(process)
            finally:
                context.shutdown.child = None
                for reader in readers:
                    reader.join(timeout=GRACE)

    def wait(self, process: subprocess.Popen[bytes]) -> int:
        """Wait for the workflow; stop it when a signal arrives or the claim is lost."""
        context = self.context
        while True:
            try:
                return process.wait(timeout=POLL)
            except subprocess.TimeoutExpired:
                pass
            if context.shutdown.requested or context.lost.is_set():
                logger.warning("%s: stopping the workflow (pid %s)", context.slug, process.pid)
                kill_group(process, signal.SIGTERM)
                try:
                    return process.wait(timeout=GRACE)
                except subprocess.TimeoutExpired:
                    kill_group(process, signal.SIGKILL)
                    return process.wait()


def relay(
    source: IO[bytes] | None, screen: IO[str], log: IO[bytes], lock: threading.Lock,
    tail: collections.deque[str] | None,
) -> None:  # fmt: skip
    """Copy a stream line by line to the screen (live) and the log; keep the stderr tail."""
    if source is None:
        return
    for line in iter(source.readline, b""):
        text = line.decode("utf-8", "replace")
        with lock:
            log.write(line)
            log.flush()
        try:
            screen.write(text)
            screen.flush()
        except (OSError, ValueError):
            pass
        if tail is not None:
            tail.append(text.rstrip("\n"))
    source.close()
