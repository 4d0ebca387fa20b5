"""A workflow's output relayed on the client's own thread (crunchclient.worker.workflow.relay),
with real subprocesses: lines and long lines whole, secrets masked, stop flags obeyed."""

from __future__ import annotations

import io
import subprocess
import threading
import time
from pathlib import Path

import pytest

from crunchclient.settings.secrets import Masker
from crunchclient.worker.shutdown import OWN_GROUP
from crunchclient.worker.stages.workflow import Tail
from crunchclient.worker.workflow import relay
from crunchclient.worker.workflow.relay import Stream, relay_until_exit


def run(script: str, tmp_path: Path, *, stopping=lambda: False, secrets=frozenset()):
    """Run ``bash -c script``; (exit code, log bytes, screen stdout, screen stderr, tail)."""
    process = subprocess.Popen(
        ["bash", "-c", script], stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **OWN_GROUP,
    )  # fmt: skip
    out, err, tail, mask = io.StringIO(), io.StringIO(), Tail(), Masker(secrets)
    log_path = tmp_path / "workflow.log"
    with open(log_path, "ab") as log:
        assert process.stdout is not None and process.stderr is not None
        streams = {
            process.stdout: Stream(out, log, mask, None),
            process.stderr: Stream(err, log, mask, tail),
        }
        code = relay_until_exit(process, streams, stopping=stopping, slug="d1")
    return code, log_path.read_bytes(), out.getvalue(), err.getvalue(), tail.text()


def test_both_streams_reach_the_log_and_the_screen_and_stderr_is_kept(tmp_path):
    code, log, out, err, tail = run("echo one; echo two >&2; printf 'no end'; exit 3", tmp_path)

    assert code == 3
    assert out == "one\nno end" and err == "two\n"
    assert sorted(log.splitlines()) == [b"no end", b"one", b"two"]
    assert tail == "two"


def test_a_long_line_is_relayed_whole_in_chunks(tmp_path):
    code, log, out, _, _ = run("head -c 3000000 /dev/zero | tr '\\0' x; echo", tmp_path)

    assert code == 0
    assert log == b"x" * 3_000_000 + b"\n" and len(out) == 3_000_001


def test_secrets_are_masked_in_the_log_and_on_the_screen(tmp_path):
    secret = "s3cr3t-token-value"
    code, log, out, err, _ = run(
        f"echo 'token={secret}'; echo '{secret}' >&2", tmp_path, secrets=frozenset({secret})
    )

    assert code == 0 and secret.encode() not in log
    assert out == "token=***\n" and err == "***\n"


def test_a_stop_flag_stops_a_workflow_that_closed_its_output(tmp_path):
    asked = time.monotonic() + 0.5
    started = time.monotonic()
    code, *_ = run(
        "exec >/dev/null 2>&1; sleep 60", tmp_path, stopping=lambda: time.monotonic() > asked
    )

    assert code == -15  # SIGTERM
    assert time.monotonic() - started < 10


def test_a_workflow_that_ignores_sigterm_is_killed(tmp_path, monkeypatch):
    monkeypatch.setattr(relay, "GRACE", 0.5)
    script = "trap '' TERM; echo ready; while :; do sleep 0.1; done"
    asked = time.monotonic() + 0.5  # once the trap is set

    code, _, out, *_ = run(script, tmp_path, stopping=lambda: time.monotonic() > asked)

    assert code == -9 and out == "ready\n"


def test_a_child_holding_the_pipes_does_not_hold_the_workflow(tmp_path, monkeypatch):
    monkeypatch.setattr(relay, "GRACE", 0.5)
    started = time.monotonic()

    code, _, out, *_ = run("(sleep 4; echo late) & echo done", tmp_path)

    assert code == 0 and out == "done\n"
    assert time.monotonic() - started < 3


def test_no_thread_is_started_to_relay(tmp_path):
    before = set(threading.enumerate())
    seen: list[set[threading.Thread]] = []

    def stopping() -> bool:
        seen.append(set(threading.enumerate()) - before)
        return False

    code, *_ = run("for i in 1 2 3; do echo $i; sleep 0.15; done", tmp_path, stopping=stopping)

    assert code == 0 and seen and all(not started for started in seen)


@pytest.mark.parametrize("data", [b"\xff\xfe broken utf-8\n", b"caf\xc3", b"\xa9 split\n"])
def test_output_that_is_not_utf8_reaches_the_log_as_bytes(tmp_path, data):
    escaped = "".join(f"\\x{byte:02x}" for byte in data)

    code, log, out, *_ = run(f"printf '{escaped}'", tmp_path)

    assert code == 0 and log == data and out  # the screen gets replacement characters
