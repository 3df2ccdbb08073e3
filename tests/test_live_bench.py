"""The latency, load and soak benchmarks, scaled down, against real `ptc-mcp serve` children."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from ptc_mcp.bench.latency import BURST, MINIMAL_HOST_LABEL, run_latency_bench
from ptc_mcp.bench.load import run_load_bench
from ptc_mcp.bench.soak import run_soak_bench
from ptc_mcp.cli import build_parser

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_small_load_has_no_failures_and_leaves_no_processes_or_descriptors(mode: str, tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    report = await run_load_bench(clients=4, programs=3, calls=3, mode=mode, output=str(output))
    assert report["failures"] == 0, report["failure_examples"]
    assert report["completed"] == 12
    assert report["leaked_processes"] == 0 and report["leaked_fds"] == 0
    assert report["audit_run_lines"] == 12 + 1  # and the warm-up program
    assert report["audit_call_lines"] == (12 + 1) * 3
    assert "<!-- load:start -->" in output.read_text()
    # On the defaults, sized from this machine, and the report says so.
    settings = report["settings"]
    assert {"max_concurrent_runs", "max_queued_runs", "max_sessions"} <= set(settings["sized"])
    assert f"`max_sessions` {settings['max_sessions']}: (" in output.read_text()


async def test_a_short_soak_samples_the_server_and_writes_its_section(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    report = await run_soak_bench(runs=120, sample_every=40, output=str(output))
    assert report["failures"] == 0, report["failure_examples"]
    assert report["resets"] == 1
    assert [sample["run"] for sample in report["samples"]] == [1, 40, 80, 120]
    assert "<!-- soak:start -->" in output.read_text()


async def test_the_latency_bench_measures_another_server_in_the_same_rounds(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    against = shlex.join([sys.executable, "-m", "ptc_mcp"])
    report = await run_latency_bench(runs=4, output=str(output), backends=(), against=against, against_label="old")
    old, new = report["servers"]
    assert (old["label"], new["label"]) == ("old", "this")
    for server in (old, new):
        assert server["round_trip_ms"]["n"] == 4
        assert server["nested_call_ms"]["n"] >= 5
        assert server["cpu_ms"]["round_trip"] > 0  # the server's process tree and the client, from /proc
    assert report["round_trip_ms"] == new["round_trip_ms"]
    text = output.read_text()
    assert "| measurement | old | this | ratio | target |" in text
    assert f"`old` (`{against}`)" in text
    assert "| CPU time | old | this | ratio |" in text
    floor = report["pipe_floor_ms"]  # the machine's floor, no ptc-mcp code: two bare processes over pipes
    assert floor["n"] == 4 and 0 < floor["p50"] < report["direct_call_ms"]["p50"]
    assert f"| the floor: two bare processes, one message each way over pipes | {floor['p50']:.3f} /" in text
    # What a nested call adds is a difference of two series: a p50, never a p95 (which could fall below it).
    for server in (old, new):
        overhead = server["nested_overhead_ms"]
        assert overhead == {"p50": server["nested_call_ms"]["p50"] - report["direct_call_ms"]["p50"]}
    # Then each series back to back (BURST calls in a row), both servers again, the direct call shared.
    passed = report["back_to_back"]
    assert [server["label"] for server in passed["servers"]] == ["old", "this"]
    assert passed["direct_call_ms"]["n"] == BURST
    for server in passed["servers"]:
        assert server["round_trip_ms"]["n"] == BURST and server["nested_call_ms"]["n"] == BURST
        assert server["nested_overhead_ms"] == {
            "p50": server["nested_call_ms"]["p50"] - passed["direct_call_ms"]["p50"]
        }
    assert "| measurement | `old` | `this` | ratio | target |" in text
    # The floor back to back: the same call through a minimal program and host (another two processes).
    relayed, adds = passed["minimal_host_call_ms"], passed["minimal_host_adds_ms"]
    assert relayed["n"] == BURST and relayed["p50"] > 0
    assert adds == {"p50": relayed["p50"] - passed["direct_call_ms"]["p50"]}
    assert f"| {MINIMAL_HOST_LABEL} | {relayed['p50']:.3f} /" in text
    assert f"| time the minimal host adds (the p50s' difference) | {adds['p50']:.3f} / — |" in text
    assert f"| {passed['direct_call_ms']['p50']:.3f} / " in text
    before, after = old["nested_overhead_ms"]["p50"], new["nested_overhead_ms"]["p50"]
    ratio = f"{after / before:.2f}" if before > 0 and after > 0 else "—"  # no ratio of a difference at or below 0
    assert f"| {before:.3f} / — | {after:.3f} / — | {ratio} |" in text


async def test_the_latency_bench_alone_tables_one_server_and_the_overhead_as_a_p50(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    report = await run_latency_bench(runs=4, output=str(output), backends=())
    assert "servers" not in report and report["round_trip_ms"]["n"] == 4
    overhead = report["nested_overhead_ms"]
    assert overhead == {"p50": report["nested_call_ms"]["p50"] - report["direct_call_ms"]["p50"]}
    text = output.read_text()
    assert "| measurement | p50 (ms) | p95 (ms) | n | target |" in text
    assert f"| **time a nested call adds** (the p50s' difference) | **{overhead['p50']:.3f}** | — |" in text
    (alone,) = report["back_to_back"]["servers"]
    assert alone["label"] == "this" and alone["round_trip_ms"]["n"] == BURST
    assert "| measurement | `this` | target |" in text


def test_the_cli_scales_the_benchmarks_down() -> None:
    args = build_parser().parse_args(["bench", "load", "--clients", "2", "--programs", "3", "--mode", "auto"])
    assert (args.bench, args.clients, args.programs, args.calls, args.mode) == ("load", [2], 3, 10, "auto")
    assert (args.max_concurrent_runs, args.max_queued_runs, args.max_sessions) == (None, None, None)
    args = build_parser().parse_args(["bench", "load", "--clients", "32,64,128", "--max-sessions", "40"])
    assert (args.clients, args.max_sessions) == ([32, 64, 128], 40)
    args = build_parser().parse_args(["bench", "latency", "--against", "old/bin/ptc-mcp", "--against-label", "v1"])
    assert (args.against, args.against_label) == ("old/bin/ptc-mcp", "v1")
    args = build_parser().parse_args(["bench", "soak", "--runs", "50", "--sample-every", "10"])
    assert (args.runs, args.sample_every) == (50, 10)
