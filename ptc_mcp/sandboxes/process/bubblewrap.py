"""Finding, probing and building the command line of bubblewrap (``bwrap``) for the ``process`` backend.

The sandbox gets new user, pid, network, ipc, uts and cgroup namespaces (network: only ``lo``, no route), no
capabilities, no further user namespaces, a read-only view of the system directories the interpreter needs and
nothing else of the host, a fresh ``/proc``, a minimal ``/dev``, and size-capped tmpfs mounts on ``/tmp`` and
``/dev/shm``. bwrap runs unprivileged: when the server is root, ``plan_launch`` drops to a per-session uid before
bwrap starts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
"""The only ``PATH`` a sandbox sees, and where bwrap and interpreters are looked for when not found otherwise."""

SANDBOX_UID = 1000
SANDBOX_GID = 1000
"""Ids inside the user namespace (they map to the unprivileged host uid/gid bwrap runs as)."""

SYSTEM_TOP_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Mirrored read-only (or as symlinks on merged-/usr systems) next to ``/usr``."""

SYSTEM_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives")
"""The few bits of ``/etc`` the dynamic loader and Python use; nothing else of ``/etc`` is visible."""

PROBE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Bubblewrap:
    """An installed bwrap and the options this version supports."""

    path: str
    version: str
    has_size: bool
    """``--size`` for ``--tmpfs`` (bwrap 0.8.0+). Without it tmpfs mounts cannot be capped."""
    has_disable_userns: bool
    """``--disable-userns`` (bwrap 0.8.0+): no nested user namespaces, so no ``unshare`` inside."""
    setuid: bool


def find_bubblewrap() -> Bubblewrap | None:
    """The bwrap on the server's ``PATH`` (or the standard directories), with its features; ``None`` if absent."""
    path = shutil.which("bwrap") or shutil.which("bwrap", path=SAFE_PATH)
    if path is None:
        return None
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}
    try:
        version = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env, check=False
        ).stdout.strip()
        helptext = subprocess.run(
            [path, "--help"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"(\d+\.\d+(?:\.\d+)?)", version)
    return Bubblewrap(
        path=path,
        version=match.group(1) if match else version,
        has_size="--size" in helptext,
        has_disable_userns="--disable-userns" in helptext,
        setuid=bool(os.stat(path).st_mode & 0o4000),
    )


def _system_mounts() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in SYSTEM_TOP_DIRS:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for item in SYSTEM_ETC_FILES:
        args += ["--ro-bind-try", item, item]
    return args


def bwrap_argv(
    bwrap: Bubblewrap,
    command: Sequence[str],
    *,
    extra_ro_dirs: Sequence[str] = (),
    tmp_mb: int,
    shm_mb: int,
    tmp_bind: str | None = None,
) -> list[str]:
    """The full argv that runs ``command`` (absolute path first) inside a fresh sandbox.

    ``extra_ro_dirs`` are host directories bound read-only at the same path (the interpreter's installation
    prefix when it lives outside ``/usr``). ``tmp_bind`` is a host directory to use as ``/tmp`` instead of a
    tmpfs, for bwrap versions that cannot cap a tmpfs (``/dev/shm`` then stays read-only).
    """
    args = [
        bwrap.path,
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_GID),
        "--hostname",
        "sandbox",
    ]
    if bwrap.has_disable_userns:
        args.append("--disable-userns")
    args += _system_mounts()
    for directory in extra_ro_dirs:
        args += ["--ro-bind", directory, directory]
    args += ["--proc", "/proc", "--dev", "/dev"]
    if tmp_bind is not None:
        args += ["--bind", tmp_bind, "/tmp"]
    else:
        args += _capped_tmpfs(bwrap, "/tmp", tmp_mb)
        args += _capped_tmpfs(bwrap, "/dev/shm", shm_mb)
    # bwrap leaves its root tmpfs and /dev writable; only the capped mounts above may take writes.
    args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp", "--", *command]
    return args


def _capped_tmpfs(bwrap: Bubblewrap, where: str, size_mb: int) -> list[str]:
    size = ["--size", str(size_mb * 1024 * 1024)] if bwrap.has_size else []
    return [*size, "--tmpfs", where]


def probe(bwrap: Bubblewrap, *, user: int | None, group: int | None, command: Sequence[str]) -> str | None:
    """Run ``command`` in a real sandbox once, as ``user``; ``None`` when it works, else why not (one line)."""
    argv = bwrap_argv(bwrap, command, tmp_mb=1, shm_mb=1)
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"},
            cwd="/",
            user=user,
            group=group,
            extra_groups=[] if user is not None else None,
            start_new_session=True,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"bwrap did not start a sandbox within {PROBE_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return f"cannot run {bwrap.path}: {exc.strerror}"
    if done.returncode == 0:
        return None
    message = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return f"{message}{_userns_hint()}"


def _userns_hint() -> str:
    """Why unprivileged user namespaces may be refused on this kernel, if a sysctl says so."""
    checks = [
        ("/proc/sys/user/max_user_namespaces", "0", "user namespaces are disabled (sysctl user.max_user_namespaces=0)"),
        (
            "/proc/sys/kernel/unprivileged_userns_clone",
            "0",
            "unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone=0)",
        ),
        (
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1",
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1): "
            "install an AppArmor profile for bwrap",
        ),
    ]
    for path, bad, reason in checks:
        try:
            if Path(path).read_text().strip() == bad:
                return f" ({reason})"
        except OSError:
            continue
    return ""
