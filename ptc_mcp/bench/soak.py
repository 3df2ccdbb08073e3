"""``ptc-mcp bench soak``: many sequential runs against one server, sampling what the server holds.

``ptc-mcp serve --transport http`` runs as a child process on 127.0.0.1 (``process`` backend, the bundled expense
server downstream). One official MCP client runs ``--runs`` programs one after another in one session; every
program makes a nested call and prints, and every 100th asks for ``reset`` so interpreters are also torn down and
replaced (from the warm pool) throughout. Every ``--sample-every`` runs the bench reads the server's resident
memory, open file descriptors and descendant processes from ``/proc``: flat lines mean nothing accumulates.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from mcp import Client

from ptc_mcp.bench.procfs import footprint
from ptc_mcp.bench.report import machine, percentile, write_section
from ptc_mcp.bench.served import process_sandbox_isolated, serve_subprocess

PROGRAM = """
n = globals().get("n", 0) + 1
budget = await expenses.get_custom_budget(user_id="E{user}")
print(n, budget["travel_budget"] if budget else None)
n
"""
RESET_EVERY = 100


async def run_soak_bench(
    runs: int = 10_000, sample_every: int = 500, output: str | None = "docs/benchmarks.md"
) -> dict[str, Any]:
    samples: list[dict[str, float]] = []
    latencies: list[float] = []
    failures: list[str] = []
    resets = 0
    async with serve_subprocess("http") as served, Client(served.url, mode="legacy") as client:
        session: str | None = None
        started = time.perf_counter()
        for number in range(runs):
            arguments: dict[str, Any] = {"code": PROGRAM.format(user=number % 8 + 1)}
            if session:
                arguments["session"] = session
            if number and number % RESET_EVERY == 0:
                arguments["reset"] = True
                resets += 1
            call_started = time.perf_counter()
            result = await client.call_tool("execute_program", arguments)
            latencies.append((time.perf_counter() - call_started) * 1000)
            content = result.structured_content or {}
            session = content.get("session") or session
            expected = number % RESET_EVERY + 1
            if result.is_error or content.get("result") != expected:
                failures.append(f"run {number}: {content.get('error') or content.get('result')} (expected {expected})")
            # Every N runs, counted so that a sample never falls right after a reset (a warm pool refill in flight).
            if number == 0 or (number + 1) % sample_every == 0 or number == runs - 1:
                samples.append({"run": float(number + 1), **footprint(served.pid).as_dict()})
        wall_s = time.perf_counter() - started
    report: dict[str, Any] = {
        "machine": machine(),
        "load_average": round(os.getloadavg()[0], 2),
        "isolated": process_sandbox_isolated(),
        "runs": runs,
        "resets": resets,
        "failures": len(failures),
        "failure_examples": failures[:5],
        "wall_s": round(wall_s, 1),
        "runs_per_s": round(runs / wall_s, 1),
        "latency_ms": {"p50": round(percentile(latencies, 0.5), 2), "p99": round(percentile(latencies, 0.99), 2)},
        "samples": samples,
        "drift": _drift(samples),
    }
    _print(report)
    if output:
        write_section(output, "soak", _markdown(report))
    return report


def _drift(samples: list[dict[str, float]]) -> dict[str, float]:
    """Last sample minus the one after the first tenth of the runs (start-up allocations excluded)."""
    if len(samples) < 2:
        return {}
    base = samples[min(len(samples) - 2, max(1, len(samples) // 10))]
    last = samples[-1]
    return {key: round(last[key] - base[key], 1) for key in ("rss_mb", "fds", "descendants")}


def _print(report: dict[str, Any]) -> None:
    print(
        f"soak: {report['runs']} runs ({report['resets']} resets) in {report['wall_s']} s, "
        f"{report['failures']} failures, p50 {report['latency_ms']['p50']} ms; drift {report['drift']}",
        file=sys.stderr,
    )
    for sample in report["samples"]:
        print(
            f"  after run {sample['run']:>6.0f}: RSS {sample['rss_mb']:6.1f} MB, fds {sample['fds']:4.0f}, "
            f"descendants {sample['descendants']:3.0f}",
            file=sys.stderr,
        )
    for example in report["failure_examples"]:
        print(f"  failure: {example}", file=sys.stderr)


def _markdown(report: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {s['run']:.0f} | {s['rss_mb']:.1f} | {s['fds']:.0f} | {s['descendants']:.0f} |" for s in report["samples"]
    )
    drift = report["drift"]
    return f"""## Soak (`ptc-mcp bench soak`)

{report["machine"]}; `process` backend (isolated: {report["isolated"]}). `ptc-mcp serve --transport http` as a
child process on 127.0.0.1; one official MCP client runs {report["runs"]} programs in a row in one session (each
makes a nested call and prints; every {RESET_EVERY}th resets the session, {report["resets"]} interpreter
replacements in all). **{report["failures"]} failures**; {report["wall_s"]} s, {report["runs_per_s"]} runs/s,
round trip p50 {report["latency_ms"]["p50"]} ms, p99 {report["latency_ms"]["p99"]} ms (1-minute load average at
the end: {report["load_average"]}).

Server process, sampled from `/proc` (descendants: the session's interpreter, the warm pool, the downstream
server):

| after run | RSS (MB) | open fds | descendant processes |
|---:|---:|---:|---:|
{rows}

Drift from the sample after the first tenth of the runs to the last: RSS {drift.get("rss_mb")} MB, fds
{drift.get("fds")}, processes {drift.get("descendants")}.
"""
