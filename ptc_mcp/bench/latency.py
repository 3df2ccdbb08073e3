"""``ptc-mcp bench latency``: warm round trip and the cost of one nested tool call, side by side.

Two real MCP clients over stdio: one to ``ptc-mcp serve`` (with the example server downstream), one straight
to the example server. Each round measures, interleaved: a warm ``execute_program("print(1)")``, a direct call
of ``expenses.get_custom_budget``, and the same call made from inside a program (timed inside the sandbox).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

from ptc_mcp.bench.backends import KINDS, measure_backends
from ptc_mcp.bench.backends import markdown as backends_markdown
from ptc_mcp.bench.report import machine, summary, write_section
from ptc_mcp.config import Config
from ptc_mcp.demo import demo_config
from ptc_mcp.errors import SandboxUnavailableError
from ptc_mcp.sandboxes import create_backend
from ptc_mcp.sandboxes.base import SandboxLimits

WARMUP = 20
NESTED_PROGRAM = """
import time
samples = []
for _ in range({calls}):
    started = time.perf_counter()
    await expenses.get_custom_budget(user_id="E7")
    samples.append((time.perf_counter() - started) * 1000)
samples
"""


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


async def run_latency_bench(
    runs: int = 300,
    output: str | None = "docs/benchmarks.md",
    backends: tuple[str, ...] = KINDS,
    rounds: int = 20,
) -> dict[str, Any]:
    try:
        backend = create_backend(Config())
        kind, isolated = backend.kind, True
    except SandboxUnavailableError:
        kind, isolated = "process", False
    example = StdioServerParameters(command=sys.executable, args=["-m", "ptc_mcp.examples.expenses"])
    round_trip: list[float] = []
    direct: list[float] = []
    nested: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ptc-mcp-bench-") as folder:
        config_path = Path(folder) / "config.json"
        config = demo_config(allow_unisolated=not isolated)
        config["audit"] = {"file": str(Path(folder) / "audit.log")}  # measured with the audit trail on, as served
        config_path.write_text(json.dumps(config), encoding="utf-8")
        ptc = StdioServerParameters(
            command=sys.executable, args=["-m", "ptc_mcp", "serve", "--config", str(config_path)]
        )
        async with Client(ptc) as ptc_client, Client(example) as direct_client:
            # The session handle keeps one warm interpreter, whatever protocol version the client negotiated.
            first = await ptc_client.call_tool("execute_program", {"code": "print(1)"})
            session = (first.structured_content or {}).get("session")
            for round_number in range(WARMUP + runs):
                started = time.perf_counter()
                result = await ptc_client.call_tool("execute_program", {"code": "print(1)", "session": session})
                elapsed = _ms(started)
                if result.is_error:
                    raise RuntimeError(f"print(1) failed: {result.content}")
                started = time.perf_counter()
                await direct_client.call_tool("get_custom_budget", {"user_id": "E7"})
                direct_elapsed = _ms(started)
                if round_number < WARMUP:
                    continue
                round_trip.append(elapsed)
                direct.append(direct_elapsed)
                if round_number % 10 == 0:
                    batch = await ptc_client.call_tool(
                        "execute_program", {"code": NESTED_PROGRAM.format(calls=10), "session": session}
                    )
                    nested.extend((batch.structured_content or {}).get("result") or [])
    report: dict[str, Any] = {
        "backend": kind,
        "isolated": isolated,
        "machine": machine(),
        "round_trip_ms": summary(round_trip),
        "direct_call_ms": summary(direct),
        "nested_call_ms": summary(nested),
        "nested_overhead_ms": {
            "p50": summary(nested)["p50"] - summary(direct)["p50"],
            "p95": summary(nested)["p95"] - summary(direct)["p95"],
        },
    }
    _print(report)
    if backends:
        report["backends"] = await measure_backends(backends, rounds, SandboxLimits())
        print(backends_markdown(report["backends"]), file=sys.stderr)
    if output:
        body = _markdown(report) + ("\n" + backends_markdown(report["backends"]) if backends else "")
        write_section(output, "latency", body)
    return report


def _print(report: dict[str, Any]) -> None:
    print(f"backend: {report['backend']} (isolated: {report['isolated']}), {report['machine']}", file=sys.stderr)
    rows = [
        ("warm execute_program('print(1)') round trip", report["round_trip_ms"]),
        ("direct MCP call of expenses.get_custom_budget", report["direct_call_ms"]),
        ("the same call from inside a program", report["nested_call_ms"]),
        ("time a nested call adds", report["nested_overhead_ms"]),
    ]
    for label, stats in rows:
        print(f"{label:<48} p50 {stats['p50']:8.3f} ms   p95 {stats['p95']:8.3f} ms", file=sys.stderr)


def _markdown(report: dict[str, Any]) -> str:
    rt, d, n, o = (
        report["round_trip_ms"],
        report["direct_call_ms"],
        report["nested_call_ms"],
        report["nested_overhead_ms"],
    )
    return f"""## Latency (`ptc-mcp bench latency`)

Backend `{report["backend"]}` (isolated: {report["isolated"]}), {report["machine"]}. Real MCP clients over
stdio; the series are measured interleaved in one run, so machine noise hits them alike.

| measurement | p50 (ms) | p95 (ms) | n | target |
|---|---:|---:|---:|---|
| warm `execute_program("print(1)")` round trip | {rt["p50"]:.2f} | {rt["p95"]:.2f} | {rt["n"]:.0f} | p50 ≤ 15 ms |
| direct MCP call of `expenses.get_custom_budget` | {d["p50"]:.3f} | {d["p95"]:.3f} | {d["n"]:.0f} | |
| the same call from inside a program | {n["p50"]:.3f} | {n["p95"]:.3f} | {n["n"]:.0f} | |
| **time a nested call adds** | **{o["p50"]:.3f}** | {o["p95"]:.3f} | | p50 ≤ 1 ms |
"""
