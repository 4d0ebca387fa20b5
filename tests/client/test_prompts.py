"""Missing values are prompted for on a terminal; the token without echo."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.clientkit import CRUNCH, Crunch

pytestmark = pytest.mark.django_db(transaction=True)

# Runs the client on a pseudo-terminal, answers the prompt, prints the whole session.
ON_A_TERMINAL = textwrap.dedent(
    """
    import os, pty, sys
    crunch, answer = sys.argv[1], sys.argv[2].encode()
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(crunch, [crunch, "next", "--quiet"])
    seen = b""
    while b"Token: " not in seen:
        seen += os.read(fd, 1024)
    os.write(fd, answer + b"\\n")
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(seen.decode(errors="replace"))
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


def test_token_is_prompted_for_without_echo(crunch: Crunch) -> None:
    env = {k: v for k, v in crunch.env.items() if k != "CRUNCH_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-c", ON_A_TERMINAL, CRUNCH, crunch.token],
        env=env, cwd=crunch.work, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Token: " in result.stdout
    assert result.stdout.rstrip().endswith("Nothing pending.")
    assert crunch.token not in result.stdout  # not echoed
