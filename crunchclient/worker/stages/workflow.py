"""WorkflowStage: run the workflow file as its kind says (settings/kinds.py), show and keep
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
from typing import Any

from crunch.choices import FailReason, WorkflowKind
from crunch.choices import Stage as StageNumber
from crunchclient import transfer
from crunchclient.exceptions import ClientError
from crunchclient.settings import kinds
from crunchclient.settings.secrets import Masker, workflow_env
from crunchclient.worker import failures, gpus
from crunchclient.worker.context import NOTE_BYTES
from crunchclient.worker.failures import Failed, Failure, OutOfTime
from crunchclient.worker.groups import WATCHDOG_PROCESS, end_group, orphan_guard
from crunchclient.worker.records import RECORDS, RESULTS_RECORD, WORKFLOW_LOG, is_record
from crunchclient.worker.results import clear_stale
from crunchclient.worker.shutdown import OWN_GROUP
from crunchclient.worker.stages.base import Stage, tail_bytes
from crunchclient.worker.stages.setup import workflow_file, workflow_kind
from crunchclient.worker.workflow.memcage import MemoryCage
from crunchclient.worker.workflow.outputs import OutputHashes
from crunchclient.worker.workflow.relay import Stream, relay_until_exit

logger = logging.getLogger(__name__)

TAIL_LINES = 20  # lines of stderr kept for the Fail note
WATCH_AFTER = 0.1  # seconds a workflow runs before its files are watched (outputs.py)
TAIL_BYTES = NOTE_BYTES - 256  # the most of them the note holds, beside its first line


class WorkflowExited(Failed, ClientError):
    """The workflow exited with a non-zero code."""

    def __init__(self, message: str, failure: Failure) -> None:
        super().__init__(message)
        self.failure = failure


class WorkflowTimedOut(Failed, ClientError):
    """The workflow ran past --timeout and was stopped."""

    failure = Failure(FailReason.TIME_LIMIT, failures.TIMEOUT)


def duration_text(seconds: float) -> str:
    """Seconds as --timeout reads them: 5s, 90s, 5m, 2h, 1h30m."""
    if seconds < 120 or seconds % 60:
        return f"{seconds:g}s"
    hours, minutes = divmod(int(seconds) // 60, 60)
    if not hours:
        return f"{minutes}m"
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


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


class WorkflowStage(Stage):
    number = StageNumber.WORKFLOW
    timed_out = False  # stopped for running past --timeout
    out_of_time = False  # stopped at the loop's --time-limit

    def command(self) -> list[str]:
        context = self.context
        config = context.config
        runner = context.runner
        contained = bool(runner and runner.container)
        kind = workflow_kind(context)
        path = workflow_file(context)
        command = kind.command(
            path, cores=config.cores, workdir=context.workdir,
            python="python3" if contained else config.python, use_conda=config.use_conda,
        )  # fmt: skip
        if context.claim.attempt:
            command += kind.attempt_flags(context.claim.attempt)
        if kind.kind == WorkflowKind.SNAKEMAKE and runner and not contained:
            if kinds.names_rule_containers(path.read_bytes()):
                # The Snakefile names an image per rule: Snakemake runs each one itself.
                command = kinds.rule_container_flags(command, runner.cache / "snakemake")
        return command

    def start_fields(self) -> dict[str, Any]:
        """The SHA-256 of the file we run and the image's digest, so the server knows
        which workflow ran, and in what."""
        digest = hashlib.sha256(workflow_file(self.context).read_bytes()).hexdigest()
        runner = self.context.runner
        if runner is not None and runner.container:
            if runner.digest is None:
                runner.check()
            return {"workflow_sha256": digest, "image_digest": runner.digest}
        return {"workflow_sha256": digest}

    def run(self) -> str:
        context = self.context
        command = self.command()
        results = context.records / RESULTS_RECORD
        context.stale_results = clear_stale(results)
        env = {
            **workflow_env(context.config, os.environ),
            "CRUNCH_CORES": str(context.config.cores),
            "CRUNCH_DATASET": context.slug,
            # Which run of the dataset this is, and why the one before failed ("" if none).
            "CRUNCH_ATTEMPT": str(context.claim.attempt or 1),
            "CRUNCH_LAST_REASON": context.claim.last_reason,
            # Every runner binds the dataset's folder at its own path: the workflow sees this.
            "CRUNCH_RESULTS": str(results),
            **gpus.workflow_env(context.config),
        }
        if context.runner is not None:
            launch = context.runner.launch(command, env, context.workdir)
            command, env = launch.argv, launch.env
            logger.debug("Running the workflow in %s: %s", launch.where, command)
        cage = self.cage()
        if cage is not None:
            command = cage.wrap(command)
        started = time.monotonic()
        # Upload needs the MD5 of every file the workflow writes: hash them meanwhile.
        outputs = OutputHashes(
            context.workdir, inputs=set(context.setup_checksums.paths), exclude=is_record
        )
        tail = Tail()
        counter = failures.OomCounter()
        oom_before = counter.read() if cage is None else cage.oom_kills()
        oom_after: int | None = None
        try:
            code = self.run_process(command, env, tail, outputs if context.config.upload else None)
        finally:
            outputs.stop()
            context.output_hashes = outputs.digests()
            if cage is not None:
                oom_after = cage.oom_kills()
                cage.remove()
        if cage is None:
            oom_after = counter.read()
        context.check()
        if self.out_of_time:
            raise OutOfTime(
                f"The loop's --time-limit ended while the workflow of {context.slug!r} ran: "
                "stopped."
            )
        lines = tail.text()
        if self.timed_out:
            limit = duration_text(context.config.timeout or 0)
            raise WorkflowTimedOut(
                f"The workflow ran past --timeout {limit} and was stopped."
                + (f" Last lines of stderr:\n{lines}" if lines else "")
            )
        if code != 0:
            failure = failures.of_exit(
                code, oom_before=oom_before, oom_after=oom_after, stderr=bytes(tail.data),
                own_cgroup=cage is not None or context.runner is None
                or context.runner.shares_cgroup,
            )  # fmt: skip
            raise WorkflowExited(
                f"The workflow exited with code {code}"
                + (
                    f". Last lines of stderr:\n{lines}"
                    if lines
                    else " and wrote nothing to stderr."
                ),
                failure,
            )
        return f"Finished in {time.monotonic() - started:.1f}s."

    def cage(self) -> MemoryCage | None:
        """The cgroup that enforces --memory where no container runtime does (memcage.py)."""
        context = self.context
        runner = context.runner
        if not context.config.memory or context.memory is None:
            return None
        if runner is not None and runner.container:
            return None  # the runtime enforces it (podman, docker, apptainer)
        return MemoryCage.make(context.memory, f"{context.config.slot or 0}-{context.dataset.id}")

    def failed(self) -> None:
        """Send ``.crunch/workflow.log`` of a failed run, so the dataset's page shows it."""
        context = self.context
        if not context.config.upload or not (context.records / WORKFLOW_LOG).is_file():
            return
        transfer.upload_tree(
            context.storage, f"{context.prefix}/{RECORDS}", context.records,
            exclude=lambda rel: rel != WORKFLOW_LOG, jobs=1, quiet=True,
        )  # fmt: skip

    def run_process(
        self, command: list[str], env: dict[str, str], tail: Tail,
        outputs: OutputHashes | None = None,
    ) -> int:  # fmt: skip
        """Run the workflow, relaying its output to the screen and the log (and the last
        lines of stderr to tail); stop it when a signal arrives, the claim is lost or it
        runs past --timeout (then ``timed_out``). Its files are watched by ``outputs`` once
        it has run WATCH_AFTER seconds: a short workflow costs no watching. Its exit code."""
        context = self.context
        timeout = context.config.timeout
        now = time.monotonic()
        deadline = now + timeout if timeout is not None else None
        watch_at = now + WATCH_AFTER if outputs is not None else None

        def stopping() -> bool:
            nonlocal watch_at
            if watch_at is not None and time.monotonic() >= watch_at:
                assert outputs is not None
                outputs.start()
                watch_at = None
            if context.shutdown.requested or context.lost.is_set():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                self.timed_out = True
            if context.ends_at is not None and time.monotonic() >= context.ends_at:
                self.out_of_time = True
            return self.timed_out or self.out_of_time

        command, preexec = orphan_guard(command, env.get("PATH", os.defpath))
        with open(context.records / WORKFLOW_LOG, "ab") as log:
            process = subprocess.Popen(
                command, cwd=context.workdir, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                preexec_fn=preexec, **OWN_GROUP,  # noqa: PLW1509 (one prctl call, or none)
            )  # fmt: skip
            WATCHDOG_PROCESS.watch(process.pid)  # its group ends with the client, however
            context.shutdown.children.add(process)
            mask = Masker(context.config.secrets)
            assert process.stdout is not None and process.stderr is not None
            streams = {
                process.stdout: Stream(sys.stdout, log, mask, None),
                process.stderr: Stream(sys.stderr, log, mask, tail),
            }
            try:
                return relay_until_exit(
                    process, streams, slug=context.slug,
                    stopping=stopping,
                )  # fmt: skip
            finally:
                context.shutdown.children.discard(process)
                if process.poll() is None:  # relaying itself failed
                    process.kill()
                    process.wait()
                end_group(process.pid)  # its background children go with it
                WATCHDOG_PROCESS.unwatch(process.pid)
