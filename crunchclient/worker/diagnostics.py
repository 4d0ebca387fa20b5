"""Facts about the machine, sent with each status so failures can be traced to a node."""

from __future__ import annotations

import getpass
import os
import platform
import shutil
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import crunch
from crunchclient.server.bodies import Diagnostics


def collect(directory: Path | None = None) -> Diagnostics:
    """The diagnostic fields of a status, named as django-crunch 0.1 sends them."""
    uname = platform.uname()
    facts: dict[str, Any] = {
        "agent_user": agent_user(),
        "version": crunch.__version__,
        "revision": "",
        "system": uname.system,
        "system_release": uname.release,
        "system_version": uname.version[:1023],
        "machine": uname.machine,
        "hostname": socket.gethostname(),
        "ip_address": ip_address(),
        "mac_address": mac_address(),
        **memory(),
        **slurm_job(),
    }
    try:
        usage = shutil.disk_usage(directory or Path.cwd())
        facts.update(disk_total=usage.total, disk_free=usage.free)
    except OSError:
        pass
    return Diagnostics(**facts)


def slurm_job(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Slurm job and array task this client runs in, so the server shows who ran what.

    For an array task the job is the array's id (what ``crunch submit`` printed).
    """
    env = os.environ if environ is None else environ
    job = env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID", "")
    if not job:
        return {}
    return {"slurm_job_id": job, "slurm_array_task_id": env.get("SLURM_ARRAY_TASK_ID", "")}


def agent_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in containers without a passwd entry
        return str(os.getuid())


def ip_address() -> str:
    """The address this host uses for outgoing traffic (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def mac_address() -> str:
    node = uuid.getnode()
    return ":".join(f"{(node >> shift) & 0xFF:02x}" for shift in range(40, -1, -8))


def memory() -> dict[str, int]:
    """Total and available memory; psutil when installed, else sysconf (Linux, macOS)."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        return {"memory_total": int(vm.total), "memory_free": int(vm.available)}
    except ImportError:
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return {
            "memory_total": page * os.sysconf("SC_PHYS_PAGES"),
            "memory_free": page * os.sysconf("SC_AVPHYS_PAGES"),
        }
    except (ValueError, OSError, AttributeError):
        return {}
