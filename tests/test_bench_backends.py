"""The backends benchmark measures what it says, on a real backend."""

from __future__ import annotations

import anyio
import pytest

from ptc_mcp.bench.backends import markdown, measure_backends
from ptc_mcp.sandboxes.base import SandboxLimits


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kind", ["process", pytest.param("srt", marks=pytest.mark.srt), pytest.param("docker", marks=pytest.mark.docker)]
)
async def test_one_round_on_a_backend_with_a_warm_pool_reports_every_measurement(kind: str) -> None:
    with anyio.fail_after(120):
        report = await measure_backends((kind,), 1, SandboxLimits())
    if kind in report["skipped"]:
        pytest.skip(f"{kind} is not usable here: {report['skipped'][kind]}")
    assert report["skipped"] == {}
    (row,) = report["rows"]
    assert row["backend"] == kind
    for name in ("cold_start_ms", "pool_start_print_ms", "round_trip_ms", "nested_call_ms"):
        assert row[name]["p50"] > 0, name
    assert row["nested_call_ms"]["n"] == 10  # ten calls timed inside the program
    assert row["pool_misses"] == 0, "every warm-pool sample took a warm interpreter"
    assert f"| {kind} |" in markdown(report)
