"""What a process holds, read from ``/proc``: resident memory, open file descriptors, descendant processes.

Used by the load and soak benchmarks (and their tests) to show that runs leave nothing behind, and by the latency
benchmark for the CPU time a call costs (which, unlike wall time, a busy machine barely changes).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Footprint:
    """One sample of a server process."""

    rss_mb: float
    fds: int
    descendants: int
    """Live (non-zombie) processes below the server: sandboxes, warm interpreters, downstream servers."""
    tree_pss_mb: float = 0.0
    """Proportional set size of the server and all its descendants (shared pages split between sharers); only
    when asked for (``footprint(pid, tree=True)``): reading it costs a page-table walk per process."""

    def as_dict(self) -> dict[str, float]:
        return {key: float(value) for key, value in asdict(self).items()}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields and fields[0] not in ("Z", "X"):
            parents[int(entry)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Live processes whose ancestry reaches ``pid``."""
    parents = _parents()
    found: list[int] = []
    for candidate in parents:
        seen = 0
        current = candidate
        while current in parents and seen < 64:
            current = parents[current]
            seen += 1
            if current == pid:
                found.append(candidate)
                break
    return sorted(found)


_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_s(pids: list[int]) -> float:
    """User and system CPU time the live processes ``pids`` have used so far (a gone one counts 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICKS_PER_S


def pss_mb(pid: int) -> float:
    """Proportional set size of one process (0 if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def footprint(pid: int, *, tree: bool = False) -> Footprint:
    below = descendants(pid)
    return Footprint(
        rss_mb=round(rss_mb(pid), 1),
        fds=open_fds(pid),
        descendants=len(below),
        tree_pss_mb=round(sum(pss_mb(each) for each in [pid, *below]), 1) if tree else 0.0,
    )
