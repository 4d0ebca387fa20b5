"""A Charliecloud image made from local parts only: Debian's busybox-static in a folder.

No registry and no builder: ``/bin/busybox`` (Debian ``busybox-static``) becomes the
image's ``/bin/busybox`` with its applets as links, beside the files ``ch-run`` binds the
host's over (``/etc/passwd``, ``/etc/group``, ``/etc/hosts``, ``/etc/resolv.conf``) and
the folders it mounts on. ``bash`` in it is a two-line shim to busybox's ``sh``, so a
script workflow (``bash script.sh``) runs unchanged.

The sandbox hides /tmp and the home, and ch-run reads the image from inside it: the
image lives under /var/tmp. ch-run binds the (sandbox's) /tmp at the guest's /tmp, so a
dataset folder under /tmp exists in the guest; one elsewhere would have to exist in the
image.
"""

from __future__ import annotations

import getpass
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
IMAGE_PARENT = Path("/var/tmp")
"""Outside /tmp and the home, which the sandbox hides."""
APPLETS = ("sh", "true", "cat", "ls", "env", "echo", "id")
MOUNT_POINTS = ("dev", "proc", "sys", "tmp", "home", "mnt", "root")
BASH_SHIM = '#!/bin/sh\nexec /bin/sh "$@"\n'


def missing() -> str | None:
    """Why a busybox image cannot run on this machine; None when it can."""
    if shutil.which("ch-run") is None:
        return "ch-run is not on the PATH (Debian: apt-get install charliecloud)"
    if not BUSYBOX.is_file():
        return f"{BUSYBOX} is missing (Debian: apt-get install busybox-static)"
    with BUSYBOX.open("rb") as handle:
        if b"ld-linux" in handle.read(8192):
            return f"{BUSYBOX} is linked dynamically (Debian: apt-get install busybox-static)"
    if not IMAGE_PARENT.is_dir() or not os.access(IMAGE_PARENT, os.W_OK):
        return f"{IMAGE_PARENT} is not a writable folder"
    return None


@contextmanager
def busybox_image() -> Iterator[Path]:
    """A fresh image folder under /var/tmp, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="crunch-busybox-", dir=IMAGE_PARENT))
    try:
        yield build(folder / "image")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def build(image: Path) -> Path:
    """Lay the image out at ``image``; return it."""
    for name in ("bin", "etc", *MOUNT_POINTS):
        (image / name).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, image / "bin" / "busybox")
    for applet in APPLETS:
        (image / "bin" / applet).symlink_to("busybox")
    bash = image / "bin" / "bash"
    bash.write_text(BASH_SHIM)
    bash.chmod(0o755)
    passwd, group = "root:x:0:0:root:/root:/bin/sh\n", "root:x:0:\n"
    if (uid := os.getuid()) != 0:
        user, gid = getpass.getuser(), os.getgid()
        passwd += f"{user}:x:{uid}:{gid}::/tmp:/bin/sh\n"
        group += f"{user}:x:{gid}:\n"
    (image / "etc" / "passwd").write_text(passwd)
    (image / "etc" / "group").write_text(group)
    (image / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (image / "etc" / "resolv.conf").write_text("")
    return image
