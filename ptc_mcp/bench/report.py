"""Shared pieces of the benchmarks: statistics and writing a section of docs/benchmarks.md."""

from __future__ import annotations

import platform
import re
import statistics
from pathlib import Path

HEADER = "# Benchmarks\n\nMeasured with `ptc-mcp bench …`; each section is rewritten by its benchmark.\n"


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(samples),
        "p95": percentile(samples, 0.95),
        "min": min(samples),
        "n": float(len(samples)),
    }


def machine() -> str:
    return f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"


def write_section(path: str | Path, name: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    target = Path(path)
    text = target.read_text(encoding="utf-8") if target.exists() else HEADER
    block = f"<!-- {name}:start -->\n{body.rstrip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
