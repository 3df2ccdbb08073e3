"""``ptc-mcp bench load``: many remote clients at once against one server on the ``process`` backend.

``ptc-mcp serve --transport http`` runs as a child process on 127.0.0.1 with the bundled expense server
downstream. ``--clients`` official MCP clients connect over streamable HTTP at once; each runs ``--programs``
programs one after another in its own session, each program making ``--calls`` nested tool calls and returning a
value the bench checks. Reported: failures (any error result, wrong value or exception), throughput, latency
percentiles, and the server's footprint read from ``/proc`` before and after: resident memory, open file
descriptors and descendant processes (sandboxes, warm interpreters, the downstream server). "Before" is the idle
server; "after" is taken once the clients have disconnected and their sessions are closed (at once in legacy mode,
where the MCP session owns the interpreter; by idle expiry with ``--mode auto``), so leaks would show.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import anyio
from mcp import Client

from ptc_mcp.bench.procfs import Footprint, footprint
from ptc_mcp.bench.report import machine, percentile, write_section
from ptc_mcp.bench.served import process_sandbox_isolated, serve_subprocess

SETTLE_TIMEOUT_S = 60.0
PROGRAM = """
total = 0
for i in range({calls}):
    budget = await expenses.get_custom_budget(user_id=f"E{{i % 8 + 1}}")
    total += budget["travel_budget"] if budget else 0
total
"""


async def _expected_total(url: str, mode: str, calls: int) -> Any:
    async with Client(url, mode=mode) as client:
        result = await client.call_tool("execute_program", {"code": PROGRAM.format(calls=calls)})
        if result.is_error:
            raise RuntimeError(f"the warm-up program failed: {result.content}")
        return (result.structured_content or {}).get("result")


async def _idle(pid: int) -> Footprint:
    """The footprint once the server is idle: its descendant count (warm pool filling) unchanged for a second."""
    seen: list[int] = []
    with anyio.move_on_after(SETTLE_TIMEOUT_S):
        while len(seen) < 4 or len(set(seen[-4:])) > 1:
            seen.append(footprint(pid).descendants)
            await anyio.sleep(0.25)
    return footprint(pid)


async def _settle(pid: int, baseline: Footprint) -> tuple[Footprint, float]:
    """Wait (bounded) until the server's descendants are back to the baseline count; the footprint then."""
    started = time.monotonic()
    with anyio.move_on_after(SETTLE_TIMEOUT_S):
        while footprint(pid).descendants > baseline.descendants:
            await anyio.sleep(0.25)
    await anyio.sleep(0.5)  # let the warm pool finish any refill it had started
    return footprint(pid), time.monotonic() - started


async def run_load_bench(
    clients: int = 64,
    programs: int = 50,
    calls: int = 10,
    mode: str = "legacy",
    output: str | None = "docs/benchmarks.md",
) -> dict[str, Any]:
    latencies: list[float] = []
    failures: list[str] = []
    limits = {"max_concurrent_runs": 8, "max_queued_runs": max(32, clients), "timeout_s": 120}
    sandbox = {"max_sessions": clients + 8, "session_idle_s": 2}
    async with serve_subprocess("http", limits=limits, sandbox=sandbox) as served:
        before = await _idle(served.pid)
        expected = await _expected_total(served.url, mode, calls)
        peak = before

        async def client_loop(number: int) -> None:
            try:
                async with Client(served.url, mode=mode, read_timeout_seconds=300) as client:
                    session: str | None = None
                    for _ in range(programs):
                        arguments: dict[str, Any] = {"code": PROGRAM.format(calls=calls)}
                        if session:
                            arguments["session"] = session
                        started = time.perf_counter()
                        result = await client.call_tool("execute_program", arguments)
                        latencies.append((time.perf_counter() - started) * 1000)
                        content = result.structured_content or {}
                        session = content.get("session") or session
                        if result.is_error or content.get("result") != expected:
                            failures.append(f"client {number}: {content.get('error') or content.get('result')}")
            except Exception as exc:  # a failure of the bench's own client counts, with its reason
                failures.append(f"client {number}: {type(exc).__name__}: {exc}")

        async def sample() -> None:
            nonlocal peak
            while True:
                now = footprint(served.pid)
                peak = Footprint(
                    rss_mb=max(peak.rss_mb, now.rss_mb),
                    fds=max(peak.fds, now.fds),
                    descendants=max(peak.descendants, now.descendants),
                )
                await anyio.sleep(0.5)

        wall_started = time.perf_counter()
        async with anyio.create_task_group() as group:
            group.start_soon(sample)
            async with anyio.create_task_group() as load:
                for number in range(clients):
                    load.start_soon(client_loop, number)
            wall_s = time.perf_counter() - wall_started
            group.cancel_scope.cancel()
        after, settle_s = await _settle(served.pid, before)
        audit = served.audit_lines()
    total = clients * programs
    report: dict[str, Any] = {
        "machine": machine(),
        "load_average": round(os.getloadavg()[0], 2),
        "isolated": process_sandbox_isolated(),
        "mode": mode,
        "clients": clients,
        "programs_per_client": programs,
        "calls_per_program": calls,
        "programs": total,
        "completed": len(latencies),
        "failures": len(failures),
        "failure_examples": failures[:5],
        "wall_s": round(wall_s, 2),
        "programs_per_s": round(len(latencies) / wall_s, 1),
        "nested_calls_per_s": round(len(latencies) * calls / wall_s, 1),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.5), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies), 1),
        }
        if latencies
        else {},
        "server_before": before.as_dict(),
        "server_peak": peak.as_dict(),
        "server_after": after.as_dict(),
        "settle_s": round(settle_s, 1),
        "leaked_processes": after.descendants - before.descendants,
        "leaked_fds": after.fds - before.fds,
        "audit_run_lines": sum(1 for line in audit if line.get("event") == "run"),
        "audit_call_lines": sum(1 for line in audit if line.get("event") == "call"),
    }
    _print(report)
    if output:
        write_section(output, "load", _markdown(report))
    return report


def _print(report: dict[str, Any]) -> None:
    latency = report["latency_ms"]
    print(
        f"load: {report['clients']} clients x {report['programs_per_client']} programs x "
        f"{report['calls_per_program']} calls ({report['mode']}): {report['completed']}/{report['programs']} done, "
        f"{report['failures']} failures, {report['programs_per_s']} programs/s, "
        f"p50 {latency.get('p50')} ms, p99 {latency.get('p99')} ms; "
        f"server RSS {report['server_before']['rss_mb']} -> {report['server_after']['rss_mb']} MB, "
        f"leaked processes {report['leaked_processes']}, leaked fds {report['leaked_fds']}",
        file=sys.stderr,
    )
    for example in report["failure_examples"]:
        print(f"  failure: {example}", file=sys.stderr)


def _markdown(report: dict[str, Any]) -> str:
    b, p, a = report["server_before"], report["server_peak"], report["server_after"]
    latency = report["latency_ms"]
    return f"""## Load (`ptc-mcp bench load`)

{report["machine"]}; `process` backend (isolated: {report["isolated"]}). `ptc-mcp serve --transport http` as a child
process on 127.0.0.1 (`max_concurrent_runs` 8); {report["clients"]} official MCP clients (mode
`{report["mode"]}`) over streamable HTTP at once, each running {report["programs_per_client"]} programs in its
own session, each program making {report["calls_per_program"]} nested calls to the bundled expense server and
returning a sum the bench checks.

| measurement | value |
|---|---:|
| programs completed | {report["completed"]} of {report["programs"]} |
| **failures** (error results, wrong values, client exceptions) | **{report["failures"]}** |
| wall time | {report["wall_s"]} s |
| throughput | {report["programs_per_s"]} programs/s ({report["nested_calls_per_s"]} nested calls/s) |
| latency per program, p50 / p99 / max | {latency.get("p50")} / {latency.get("p99")} / {latency.get("max")} ms |
| audit lines written (runs / calls) | {report["audit_run_lines"]} / {report["audit_call_lines"]} |

Server process, from `/proc` (descendants: sandboxes, warm interpreters, the downstream server):

| | RSS (MB) | open fds | descendant processes |
|---|---:|---:|---:|
| before (idle, before the first program) | {b["rss_mb"]:.1f} | {b["fds"]:.0f} | {b["descendants"]:.0f} |
| peak during the load | {p["rss_mb"]:.1f} | {p["fds"]:.0f} | {p["descendants"]:.0f} |
| after (clients gone, sessions closed; {report["settle_s"]} s to settle) \
| {a["rss_mb"]:.1f} | {a["fds"]:.0f} | {a["descendants"]:.0f} |
| **leaked** | | **{report["leaked_fds"]}** | **{report["leaked_processes"]}** |

Latency here is queueing-dominated: {report["clients"]} clients share 8 run slots on {os.cpu_count()} cores,
with the clients themselves in one process on the same machine (1-minute load average when the load ended:
{report["load_average"]}).
"""
