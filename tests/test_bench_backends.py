"""The backends benchmark measures what it says, on a real backend."""

from __future__ import annotations

import anyio
import pytest

from ptc_mcp.bench.backends import markdown, measure_backends
from ptc_mcp.sandboxes.base import SandboxLimits


@pytest.mark.anyio
async def test_one_round_on_the_process_backend_reports_every_measurement() -> None:
    with anyio.fail_after(120):
        report = await measure_backends(("process",), 1, SandboxLimits())
    assert report["skipped"] == {}
    (row,) = report["rows"]
    assert row["backend"] == "process"
    for name in ("cold_start_ms", "pool_start_print_ms", "round_trip_ms", "nested_call_ms"):
        assert row[name]["p50"] > 0, name
    assert row["nested_call_ms"]["n"] == 10  # ten calls timed inside the program
    assert "| process |" in markdown(report)
