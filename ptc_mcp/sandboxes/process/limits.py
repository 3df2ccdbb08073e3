"""Resource limits of a sandboxed interpreter, applied by a tiny prelude that runs before it.

``anyio.open_process`` takes no ``preexec_fn``, so the host cannot call ``setrlimit`` between fork and exec.
Instead the launch argv starts the interpreter twice: a short standard-library prelude
(``python -I -S -c PRELUDE <real argv>``) lowers the limits of its own process, turns on ``no_new_privs``, sets a
private umask and ``exec``s the real argv. Limits survive ``exec`` and are inherited by every child.

Inside bubblewrap the prelude runs *after* the user namespace exists. Since Linux 5.14 ``RLIMIT_NPROC`` is
counted per (user namespace, uid), so the limit then counts the tasks of this sandbox only, whatever host uid
it runs as.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from ptc_mcp.sandboxes.base import SandboxLimits

MB = 1024 * 1024

CPU_GRACE_S = 5
"""Hard CPU limit minus soft: SIGXCPU at the soft limit, SIGKILL at the hard one."""

_PRELUDE = """\
import os, sys, resource as r
for n, s, h in {limits!r}:
    k = getattr(r, n)
    ch = r.getrlimit(k)[1]
    if ch != r.RLIM_INFINITY:
        s, h = min(s, ch), min(h, ch)
    r.setrlimit(k, (s, h))
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)
except Exception:
    pass
os.umask(0o077)
os.execv(sys.argv[1], sys.argv[1:])
"""
# 38 is PR_SET_NO_NEW_PRIVS: setuid binaries can no longer raise privileges (bubblewrap sets it too).
# The prelude must run on any Python 3.9+, so it keeps to the oldest syntax.


@dataclass(frozen=True)
class ResourceLimit:
    """One ``setrlimit`` the prelude applies: ``name`` is the ``resource`` module constant."""

    name: str
    soft: int
    hard: int


def resource_limits(limits: SandboxLimits, *, nproc: int) -> list[ResourceLimit]:
    """The rlimits of a sandboxed interpreter; ``nproc`` is the already-adjusted task limit (see ``plan_launch``)."""
    return [
        ResourceLimit("RLIMIT_AS", limits.memory_mb * MB, limits.memory_mb * MB),
        ResourceLimit("RLIMIT_NPROC", nproc, nproc),
        ResourceLimit("RLIMIT_NOFILE", limits.max_open_files, limits.max_open_files),
        ResourceLimit("RLIMIT_FSIZE", limits.max_file_size_mb * MB, limits.max_file_size_mb * MB),
        ResourceLimit("RLIMIT_CPU", limits.cpu_seconds, limits.cpu_seconds + CPU_GRACE_S),
        ResourceLimit("RLIMIT_CORE", 0, 0),
    ]


def prelude_code(rlimits: list[ResourceLimit]) -> str:
    """The ``-c`` program that applies ``rlimits`` and execs ``sys.argv[1:]``."""
    for limit in rlimits:
        getattr(resource, limit.name)  # fail here, on the host, rather than in every sandbox
    table = [(limit.name, limit.soft, limit.hard) for limit in rlimits]
    return _PRELUDE.format(limits=table)


def wrap_argv(interpreter: str, argv: list[str], rlimits: list[ResourceLimit]) -> list[str]:
    """``argv`` (whose first item is an absolute path) preceded by the rlimit prelude run by ``interpreter``."""
    return [interpreter, "-I", "-S", "-c", prelude_code(rlimits), *argv]
