"""``ptc-mcp bench load``: many remote clients at once against one server on the ``process`` backend.

``ptc-mcp serve --transport http`` runs as a child process on 127.0.0.1 with the bundled expense server
downstream, on the default settings (sized from this machine) unless told otherwise. ``--clients`` official MCP
clients connect over streamable HTTP at once; each runs ``--programs`` programs one after another in its own
session, passing its session handle back, each program making ``--calls`` nested tool calls and returning a value
the bench checks. ``--clients 32,64,128`` runs each count against a fresh server and reports them side by side.
Reported: the settings in force, failures (any error result, wrong value or exception), throughput, latency
percentiles, and the server's footprint read from ``/proc`` before and after: resident memory (also of the server
with every sandbox, as PSS), open file descriptors and descendant processes (sandboxes, warm interpreters, the
downstream server). "Before" is the idle server; "after" is taken once the clients have disconnected and their
sessions are closed (at once in legacy mode, where the MCP session owns the interpreter; by idle expiry with
``--mode auto``, which shortens ``sandbox.session_idle_s`` to 2 s for that), so leaks would show.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio
from mcp import Client

from ptc_mcp.bench.procfs import Footprint, footprint
from ptc_mcp.bench.report import machine, percentile, write_section
from ptc_mcp.bench.served import process_sandbox_isolated, serve_subprocess, served_config

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
    return footprint(pid, tree=True)


async def _settle(pid: int, baseline: Footprint) -> tuple[Footprint, float]:
    """Wait (bounded) until the server's descendants are back to the baseline count; the footprint then."""
    started = time.monotonic()
    with anyio.move_on_after(SETTLE_TIMEOUT_S):
        while footprint(pid).descendants > baseline.descendants:
            await anyio.sleep(0.25)
    await anyio.sleep(0.5)  # let the warm pool finish any refill it had started
    return footprint(pid, tree=True), time.monotonic() - started


TREE_SAMPLE_EVERY = 4
"""Sample the whole tree's PSS every 4th footprint (2 s): reading it walks every process's page tables."""


def bench_sections(mode: str, limits: dict[str, Any] | None, sandbox: dict[str, Any] | None) -> dict[str, Any]:
    """The config sections the bench overrides: only what it was told, plus a short idle expiry.

    A connection's session outlives the connection (its handle can continue it), so in every mode the "after"
    footprint is taken once the sessions expired."""
    sandbox = dict(sandbox or {})
    sandbox.setdefault("session_idle_s", 2)
    return {"limits": dict(limits or {}), "sandbox": sandbox}


def settings_in_force(sections: dict[str, Any]) -> dict[str, Any]:
    """The settings the served config has, and which of them were sized from the machine (with the arithmetic)."""
    config = served_config(**sections)
    return {
        "max_concurrent_runs": config.limits.max_concurrent_runs,
        "max_queued_runs": config.limits.max_queued_runs,
        "max_sessions": config.sandbox.max_sessions,
        "timeout_s": config.limits.timeout_s,
        "memory_mb": config.limits.memory_mb,
        "session_idle_s": config.sandbox.session_idle_s,
        "warm_pool": config.sandbox.warm_pool,
        "sized": config.sized,
    }


async def run_load_bench(
    clients: int = 64,
    programs: int = 50,
    calls: int = 10,
    mode: str = "legacy",
    output: str | None = "docs/benchmarks.md",
    *,
    limits: dict[str, Any] | None = None,
    sandbox: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One client count; the section written holds this run only (``run_load_benches`` for several)."""
    report = await _run_one(clients, programs, calls, mode, bench_sections(mode, limits, sandbox))
    _print(report)
    if output:
        write_section(output, "load", _markdown([report]))
    return report


async def run_load_benches(
    client_counts: Sequence[int],
    programs: int = 50,
    calls: int = 10,
    mode: str = "legacy",
    output: str | None = "docs/benchmarks.md",
    *,
    limits: dict[str, Any] | None = None,
    sandbox: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Each client count against a fresh server, one after another; one section with them side by side."""
    reports = []
    for clients in client_counts:
        report = await _run_one(clients, programs, calls, mode, bench_sections(mode, limits, sandbox))
        _print(report)
        reports.append(report)
    if output:
        write_section(output, "load", _markdown(reports))
    return {"runs": reports}


async def _run_one(clients: int, programs: int, calls: int, mode: str, sections: dict[str, Any]) -> dict[str, Any]:
    latencies: list[float] = []
    failures: list[str] = []
    settings = settings_in_force(sections)
    async with serve_subprocess("http", **sections) as served:
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
            for number in range(sys.maxsize):
                now = footprint(served.pid, tree=number % TREE_SAMPLE_EVERY == 0)
                peak = Footprint(
                    rss_mb=max(peak.rss_mb, now.rss_mb),
                    fds=max(peak.fds, now.fds),
                    descendants=max(peak.descendants, now.descendants),
                    tree_pss_mb=max(peak.tree_pss_mb, now.tree_pss_mb),
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
        peak = Footprint(  # sampled every 0.5 s (the tree every 2 s): the ends count too
            rss_mb=max(peak.rss_mb, before.rss_mb, after.rss_mb),
            fds=max(peak.fds, before.fds, after.fds),
            descendants=max(peak.descendants, before.descendants, after.descendants),
            tree_pss_mb=max(peak.tree_pss_mb, before.tree_pss_mb, after.tree_pss_mb),
        )
        audit = served.audit_lines()
    total = clients * programs
    return {
        "machine": machine(),
        "settings": settings,
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
    settings = report["settings"]
    names = ("max_concurrent_runs", "max_queued_runs", "max_sessions", "timeout_s")
    used = ", ".join(f"{name} {settings[name]}" + (" (sized)" if name in settings["sized"] else "") for name in names)
    print(f"  settings: {used}", file=sys.stderr)
    for example in report["failure_examples"]:
        print(f"  failure: {example}", file=sys.stderr)


def _settings_text(settings: dict[str, Any]) -> str:
    """The settings in force as a markdown list, with the arithmetic of those sized from the machine."""
    sized = settings["sized"]
    lines = [
        f"- `{name}` {settings[name]}" + (f": {sized[name]}" if name in sized else " (set for the bench)")
        for name in ("max_concurrent_runs", "max_queued_runs", "max_sessions")
    ]
    lines.append(
        f"- `timeout_s` {settings['timeout_s']:g}, `memory_mb` {settings['memory_mb']},"
        f" `session_idle_s` {settings['session_idle_s']:g}, `warm_pool` {settings['warm_pool']}"
    )
    return "\n".join(lines)


def _markdown(reports: list[dict[str, Any]]) -> str:
    first = reports[0]
    if all(report["settings"] == first["settings"] for report in reports):
        settings = _settings_text(first["settings"])
    else:
        settings = "\n".join(f"{r['clients']} clients:\n\n{_settings_text(r['settings'])}\n" for r in reports)
    sized = first["settings"]["sized"]
    on = f"the defaults, sized from this machine ({sized['memory']})" if sized else "these settings"

    def row(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(str(cell(report)) for report in reports) + " |"

    def latency(report: dict[str, Any]) -> str:
        ms = report["latency_ms"]
        return f"{ms.get('p50')} / {ms.get('p99')} / {ms.get('max')} ms"

    def triple(key: str, fmt: str) -> Any:
        return lambda r: " / ".join(format(r[f"server_{when}"][key], fmt) for when in ("before", "peak", "after"))

    rows = [
        "| | " + " | ".join(f"{report['clients']} clients" for report in reports) + " |",
        "|---|" + "---:|" * len(reports),
        row("programs completed", lambda r: f"{r['completed']} of {r['programs']}"),
        row("**failures** (error results, wrong values, client exceptions)", lambda r: f"**{r['failures']}**"),
        row("wall time", lambda r: f"{r['wall_s']} s"),
        row("throughput (programs/s; nested calls/s)", lambda r: f"{r['programs_per_s']}; {r['nested_calls_per_s']}"),
        row("latency per program, p50 / p99 / max", latency),
        row("server RSS, before / peak / after (MB)", triple("rss_mb", ".1f")),
        row("server + every sandbox, PSS, before / peak / after (MB)", triple("tree_pss_mb", ".0f")),
        row("open fds, before / peak / after", triple("fds", ".0f")),
        row("descendant processes, before / peak / after", triple("descendants", ".0f")),
        row("**leaked** fds / processes", lambda r: f"**{r['leaked_fds']} / {r['leaked_processes']}**"),
        row("audit lines (runs / calls)", lambda r: f"{r['audit_run_lines']} / {r['audit_call_lines']}"),
        row("1-minute load average at the end", lambda r: r["load_average"]),
    ]
    table = "\n".join(rows)
    return f"""## Load (`ptc-mcp bench load`)

{first["machine"]}, {os.cpu_count()} cores; `process` backend (isolated: {first["isolated"]}).
`ptc-mcp serve --transport http` as a child process on 127.0.0.1, on {on}:

{settings}

The official MCP client (mode `{first["mode"]}`): that many clients over streamable HTTP at once, each running
{first["programs_per_client"]} programs in its own session (passing its handle back), each program making
{first["calls_per_program"]} nested calls to the bundled expense server and returning a sum the bench checks; a
fresh server for each column.

{table}

Latency here is queueing-dominated: the clients share `max_concurrent_runs` run slots on {os.cpu_count()} cores,
with the clients themselves in one process on the same machine. PSS splits shared pages between the processes
that share them, so the tree's figure is what the server and its interpreters cost the machine together.
"""
