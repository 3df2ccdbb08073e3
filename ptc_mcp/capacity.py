"""Default capacity sized from the machine: programs running at once, calls waiting, sessions held.

Only settings the config leaves out are sized; the arithmetic (documented in docs/live-runs.md, "Capacity"):

- memory for ptc-mcp: 3/4 of the machine's (or the container's cgroup limit, if lower); the rest is left to the
  system, the server itself and the downstream servers.
- ``max_concurrent_runs`` = min(4 per CPU, half of that memory / ``limits.memory_mb``), between 1 and 64: a run
  alternates between Python and waiting for tools, so a few per core keep the cores busy, and every running
  interpreter may grow to its memory limit at the same time without exhausting the machine.
- ``max_sessions`` = (that memory - running interpreters at their limit) / 64 MB per session at rest, between 8
  and 4096, and at most what the open-file limit allows: an idle interpreter holds ~20 MB (measured: bubblewrap,
  Python and the runtime), the rest is room for the variables a session keeps.
- ``max_queued_runs`` = ``max_sessions``: one waiting call for every session the server can hold, so a client per
  session never gets ``busy``; more than that many callers at once do, at once.
"""

from __future__ import annotations

import functools
import math
import os
import resource
from dataclasses import dataclass
from pathlib import Path

MEMORY_SHARE = 0.75
"""Share of the machine's memory ptc-mcp plans to use."""
RUNS_PER_CPU = 4
RUNS_RANGE = (1, 64)
SESSION_MEMORY_MB = 64
"""Memory planned for a session at rest: its idle interpreter (~20 MB RSS measured) plus room for its variables."""
SESSIONS_RANGE = (8, 4096)
FILES_PER_SESSION = 8
"""Open files of the server per live session (measured 3 to 5: the interpreter's pipes), with headroom."""
FILES_RESERVED = 256
"""Open files kept for the server itself: listening sockets, clients' connections, downstream servers."""


@dataclass(frozen=True)
class Machine:
    """What capacity is sized from."""

    memory_mb: int
    cpus: int
    open_files: int
    """The hard ``RLIMIT_NOFILE``: ``raise_open_file_limit`` lifts the soft limit up to it."""


@dataclass(frozen=True)
class Capacity:
    """Sized settings and the arithmetic behind each, for ``check`` and the docs."""

    max_concurrent_runs: int
    max_queued_runs: int
    max_sessions: int
    arithmetic: dict[str, str]
    """How each sized setting was computed (keys: ``memory`` and the settings' names)."""


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cgroup_memory_mb() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        text = _read(path)
        if text and text.isdigit() and int(text) < 1 << 60:  # "max" and v1's huge number mean no limit
            return int(text) // (1024 * 1024)
    return None


def _cgroup_cpus() -> float | None:
    text = _read("/sys/fs/cgroup/cpu.max")  # v2: "<quota> <period>" or "max <period>"
    if text:
        quota, _, period = text.partition(" ")
        if quota.isdigit() and period.isdigit() and int(period) > 0:
            return int(quota) / int(period)
    quota_text, period_text = (
        _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
        _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
    )
    if quota_text and period_text and quota_text.isdigit() and period_text.isdigit() and int(period_text) > 0:
        return int(quota_text) / int(period_text)
    return None


@functools.lru_cache(maxsize=1)
def this_machine() -> Machine:
    """This machine (or container), read once."""
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    limit_mb = _cgroup_memory_mb()
    cpus = float(len(os.sched_getaffinity(0)))
    cgroup_cpus = _cgroup_cpus()
    if cgroup_cpus is not None:
        cpus = min(cpus, cgroup_cpus)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return Machine(
        memory_mb=min(total_mb, limit_mb) if limit_mb else total_mb,
        cpus=max(1, math.ceil(cpus)),
        open_files=hard if hard != resource.RLIM_INFINITY else 1 << 20,
    )


def raise_open_file_limit() -> int:
    """Lift the soft open-file limit to the hard one (as Go's runtime does); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
    return hard


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], value))


def size_capacity(
    machine: Machine, memory_mb: int, *, runs: int | None = None, sessions: int | None = None
) -> Capacity:
    """The capacity for ``machine`` when each interpreter may use ``memory_mb`` (``runs``, ``sessions``: as set)."""
    budget = int(machine.memory_mb * MEMORY_SHARE)
    arithmetic = {"memory": f"3/4 of {machine.memory_mb} MB = {budget} MB for ptc-mcp, {machine.cpus} CPUs"}
    if runs is None:
        runs = _clamp(min(RUNS_PER_CPU * machine.cpus, budget // 2 // memory_mb), RUNS_RANGE)
        arithmetic["max_concurrent_runs"] = (
            f"min({RUNS_PER_CPU} x {machine.cpus} CPUs, {budget // 2} MB / {memory_mb} MB per interpreter) = {runs}"
        )
    if sessions is None:
        by_memory = (budget - runs * memory_mb) // SESSION_MEMORY_MB
        by_files = (machine.open_files - FILES_RESERVED) // FILES_PER_SESSION
        sessions = _clamp(min(by_memory, by_files), SESSIONS_RANGE)
        arithmetic["max_sessions"] = (
            f"({budget} MB - {runs} runs x {memory_mb} MB) / {SESSION_MEMORY_MB} MB per session = {by_memory}"
            + (f", open files allow {by_files}" if by_files < by_memory else "")
            + (f" → {sessions}" if sessions != by_memory else "")
        )
    arithmetic["max_queued_runs"] = f"max_sessions = {sessions}"
    return Capacity(max_concurrent_runs=runs, max_queued_runs=sessions, max_sessions=sessions, arithmetic=arithmetic)
