"""Issue 26, must show 2 and 3: a project's workflow runs in its container image, for real,
through Charliecloud (``ch-run``, unprivileged, inside the sandbox); a project whose image
or runtime is missing is refused before anything is claimed; SIGTERM leaves no process.

The image is built in the test from local parts only: Debian's static busybox, its
applets as links, the few /etc files ``ch-run`` needs, and a file only the image has.
Podman, Docker and Apptainer are checked as command lines (tests/client/test_runners.py):
they do not run on these machines. Without ch-run, bwrap or busybox-static the tests are
skipped, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

import pytest

from crunch.models import Dataset, Status
from tests.clientkit import BIN, SIX, Crunch, error_line, statuses
from tests.e2e.nodekit import pgrep, stop_and_check, tool

pytestmark = pytest.mark.django_db(transaction=True)

APPLETS = ("sh", "cat", "cp", "ls", "echo", "tr", "grep", "env", "sleep", "wc", "mkdir", "true")
ONLY_IN_IMAGE = "only in the image 3e1d\n"
INSIDE = "#!/bin/sh\ncp /etc/only-in-image found.txt\nls / > root.txt\n"
CHARLIECLOUD = ("--runtime", "charliecloud")  # a docker or podman found first cannot run it


def busybox() -> Path:
    """Debian's static busybox (``busybox-static``): it runs in an image with no libc."""
    path = Path("/bin/busybox")
    if not path.is_file() or b"ld-linux" in path.read_bytes()[:8192]:
        missing = "a static /bin/busybox is missing: apt-get install busybox-static"
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    return path


def build_image(root: Path) -> Path:
    """A Charliecloud image directory: busybox, its applets, /etc, and /etc/only-in-image."""
    tool("ch-run", "charliecloud")
    tool("bwrap", "bubblewrap")
    source = busybox()
    (root / "bin").mkdir(parents=True)
    shutil.copy2(source, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    for folder in ("etc", "tmp", "proc", "dev", "sys", "home", "usr/bin"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "usr" / "bin" / "env").symlink_to("../../bin/busybox")  # '#!/usr/bin/env sh'
    etc = root / "etc"
    etc.joinpath("passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    etc.joinpath("group").write_text("root:x:0:\n")
    etc.joinpath("hosts").write_text("127.0.0.1 localhost\n")
    etc.joinpath("resolv.conf").write_text("nameserver 127.0.0.1\n")
    etc.joinpath("only-in-image").write_text(ONLY_IN_IMAGE)
    return root


@pytest.fixture
def image(outside: Path) -> Path:
    return build_image(outside / "image")


def test_the_workflow_runs_inside_the_image(node: Crunch, image: Path) -> None:
    project = node.project("Boxed", INSIDE, workflow_kind="executable", container=str(image))
    dataset = node.dataset(project["slug"], "one", {"in.txt": "x"})
    assert not Path("/etc/only-in-image").exists()  # the host has no such file
    result = node.run("loop", "--quiet", "--project", project["slug"], *CHARLIECLOUD)
    assert result.returncode == 0, result.stderr
    assert statuses(dataset["slug"]) == SIX
    stored = node.stored(dataset)
    assert stored["found.txt"] == ONLY_IN_IMAGE
    assert "only-in-image" not in stored["root.txt"]  # / is the image's, not the host's
    start = Status.objects.get(dataset__slug=dataset["slug"], stage=2, state=1)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", start.image_digest), start.image_digest
    assert start.workflow_sha256  # beside the workflow's own
    page = dataset_page(dataset["slug"])
    assert start.image_digest[:19] in page and start.image_digest in page


def dataset_page(slug: str) -> str:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_superuser("page-reader", "r@example.org", "pw")
    client = Client()
    client.force_login(user)
    response = client.get(Dataset.objects.get(slug=slug).get_absolute_url())
    assert response.status_code == 200
    return response.content.decode()


def test_an_image_under_the_home_is_found(node: Crunch) -> None:
    image = build_image(Path(node.env["HOME"]) / "images" / "busybox")
    project = node.project("Home", INSIDE, workflow_kind="executable", container=str(image))
    dataset = node.dataset(project["slug"], "one")
    result = node.run("loop", "--quiet", "--project", project["slug"], *CHARLIECLOUD)
    assert result.returncode == 0, result.stderr
    assert node.stored(dataset)["found.txt"] == ONLY_IN_IMAGE


def test_an_image_directory_goes_to_charliecloud_without_runtime(
    node: Crunch, image: Path, outside: Path
) -> None:
    tools = outside / "bin"  # a podman that would refuse any image, found before ch-run
    tools.mkdir()
    fake = tools / "podman"
    fake.write_text("#!/bin/sh\necho 'podman: not usable here' >&2\nexit 125\n")
    fake.chmod(0o755)
    project = node.project("Auto", INSIDE, workflow_kind="executable", container=str(image))
    dataset = node.dataset(project["slug"], "one")
    env = {**node.env, "PATH": f"{tools}:{os.environ['PATH']}"}
    result = node.run("loop", "--quiet", "--project", project["slug"], env=env)
    assert result.returncode == 0, result.stderr
    assert node.stored(dataset)["found.txt"] == ONLY_IN_IMAGE


def assert_nothing_claimed(slug: str) -> None:
    row = Dataset.objects.get(slug=slug)
    assert (row.state, row.attempts, row.claim_id) == ("pending", 0, None)
    assert statuses(slug) == []


def test_a_missing_image_is_refused_before_claiming(node: Crunch, outside: Path) -> None:
    tool("ch-run", "charliecloud")
    gone = outside / "no-such-image"
    project = node.project("Gone", INSIDE, workflow_kind="executable", container=str(gone))
    dataset = node.dataset(project["slug"], "one")
    result = node.run("loop", "--quiet", "--project", project["slug"], "--runtime", "charliecloud")
    assert result.returncode == 2, result.stderr
    assert error_line(result) == (
        f"CommandError: The project's image {str(gone)!r} does not exist on this node: copy or "
        "build it there, or run the project on a node that has it."
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert_nothing_claimed(dataset["slug"])


def test_a_missing_runtime_is_refused_before_claiming(node: Crunch, image: Path) -> None:
    if shutil.which("podman"):
        pytest.skip("podman is installed here: the test needs a node without it")
    project = node.project("Podman", INSIDE, workflow_kind="executable", container=str(image))
    dataset = node.dataset(project["slug"], "one")
    result = node.run("loop", "--quiet", "--project", project["slug"], "--runtime", "podman")
    assert result.returncode == 2, result.stderr
    assert error_line(result) == "CommandError: --runtime podman: podman is not on the PATH."
    assert len(result.stderr.strip().splitlines()) == 1
    # no runtime at all on the PATH: the client's own folder only
    bare = node.run(
        "loop", "--quiet", "--project", project["slug"], "--isolation", "none",
        env={**node.env, "PATH": str(BIN)},
    )  # fmt: skip
    assert bare.returncode == 2, bare.stderr
    assert error_line(bare).startswith(
        "CommandError: The project runs in a container, but no container runtime is on the "
        "PATH that runs its image"
    )
    assert "install charliecloud (ch-run)" in error_line(bare)  # an image folder is its
    assert_nothing_claimed(dataset["slug"])


def test_sigterm_during_a_charliecloud_workflow_leaves_nothing(node: Crunch, image: Path) -> None:
    marker = f"8{secrets.randbelow(10**6):06d}"
    workflow = f"#!/bin/sh\nsleep {marker}1 &\nsleep {marker}2\n"
    project = node.project("Boxed", workflow, workflow_kind="executable", container=str(image))
    dataset = node.dataset(project["slug"], "one")
    stop_and_check(node, dataset["slug"], marker, *CHARLIECLOUD)
    assert pgrep(marker) == []
