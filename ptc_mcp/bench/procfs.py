"""What a process holds, read from ``/proc``: resident memory, open file descriptors, descendant processes.

Used by the load and soak benchmarks (and their tests) to show that runs leave nothing behind.
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


def footprint(pid: int) -> Footprint:
    return Footprint(rss_mb=round(rss_mb(pid), 1), fds=open_fds(pid), descendants=len(descendants(pid)))
