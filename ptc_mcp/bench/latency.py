"""``ptc-mcp bench latency``: warm round trip and the cost of one nested tool call, side by side.

Real MCP clients over stdio: one to ``ptc-mcp serve`` (with the example server downstream), one straight to the
example server. Each round measures, interleaved: a warm ``execute_program("print(1)")``, a direct call of
``expenses.get_custom_budget``, and the same call made from inside a program (timed inside the sandbox).

Then the same three series back to back: ``BURST`` calls of one series in a row. Interleaved, every process on the
path has idled while the others ran, and on a VM waking an idle process costs more than the work (the pipe floor
row); back to back, no process idles between calls, so those rows show what the software itself costs. An MCP
client between two model turns is the first case; a program's loop of calls, or a busy server, the second. The
back-to-back pass also times the same call through a minimal program and host (``ptc_mcp.bench.minimal_host``: the
SDK's client and nothing else on the path), the architecture's floor for what a nested call adds.

``--against COMMAND`` serves a second ptc-mcp (another checkout or version: ``COMMAND serve --config …``) with the
same config and measures it in the same rounds: on a shared, noisy machine that is the honest way to compare two
versions (a before/after table), since machine noise hits both alike. Each round takes the servers in a random
order (seeded), for its round trips and again for its nested calls. A fixed alternation was biased: the server
whose nested-call program ran last went first in the next round, its processes still warm, and in an A/A run (the
same checkout twice) that server's interleaved round trip measured 0.88 to 0.90 times the other server's.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client, StdioServerParameters

from ptc_mcp.bench.backends import KINDS, measure_backends
from ptc_mcp.bench.backends import markdown as backends_markdown
from ptc_mcp.bench.minimal_host import READY
from ptc_mcp.bench.procfs import cpu_s, descendants
from ptc_mcp.bench.report import machine, summary, write_section
from ptc_mcp.config import Config
from ptc_mcp.demo import demo_config
from ptc_mcp.errors import SandboxUnavailableError
from ptc_mcp.sandboxes import create_backend
from ptc_mcp.sandboxes.base import SandboxLimits

WARMUP = 20
NESTED_EVERY = 2
"""Every this many rounds, each server runs one program that times ``NESTED_CALLS`` nested calls."""
NESTED_CALLS = 5
NESTED_PROGRAM = """
import time
samples = []
for _ in range({calls}):
    started = time.perf_counter()
    await expenses.get_custom_budget(user_id="E7")
    samples.append((time.perf_counter() - started) * 1000)
samples
"""
THIS = "this"
ORDER_SEED = 14
"""Seeds the order in which each round takes the servers (the same sequence in every run)."""
MINIMAL_HOST = "ptc_mcp.bench.minimal_host"
START_S = 30
"""How long the minimal host may take to start (it starts the example server)."""
BURST = 30
"""Calls of one series in a row, in the back-to-back pass."""
ECHO_CHILD = """
import os
while True:
    data = os.read(0, 65536)
    if not data:
        break
    os.write(1, data)
"""
"""The other end of the pipe floor: a bare interpreter that writes back what it reads."""
TARGETS = {"round_trip_ms": "p50 ≤ 1.5 ms", "nested_overhead_ms": "p50 ≤ 0.2 ms"}


@dataclass
class Served:
    """One ptc-mcp server under measurement: how it is started and its samples."""

    label: str
    command: list[str]
    """What runs ``ptc-mcp`` (``serve --config …`` is appended)."""
    round_trip: list[float] = field(default_factory=list)
    nested: list[float] = field(default_factory=list)
    client: Any = None
    session: str | None = None
    pids: list[int] = field(default_factory=list)
    """The server and everything it started (sandbox, downstream server): whose CPU time a call costs."""
    cpu_round_trip_s: float = 0.0
    cpu_nested_s: float = 0.0
    burst_round_trip: list[float] = field(default_factory=list)
    burst_nested: list[float] = field(default_factory=list)

    def report(self, direct: list[float], direct_cpu_ms: float) -> dict[str, Any]:
        nested, direct_stats = summary(self.nested), summary(direct)
        round_trip_cpu_ms = self.cpu_round_trip_s * 1000 / len(self.round_trip)
        batches = len(self.nested) / NESTED_CALLS
        nested_cpu_ms = (self.cpu_nested_s * 1000 / batches - round_trip_cpu_ms) / NESTED_CALLS
        return {
            "label": self.label,
            "command": shlex.join(self.command),
            "round_trip_ms": summary(self.round_trip),
            "nested_call_ms": nested,
            # A difference of two independent series has a median difference but no p95 of its own (the p95s'
            # difference can even fall below it): the overhead is reported as a p50 only.
            "nested_overhead_ms": {"p50": nested["p50"] - direct_stats["p50"]},
            "cpu_ms": {
                "round_trip": round_trip_cpu_ms,
                "nested_call": nested_cpu_ms,
                "nested_overhead": nested_cpu_ms - direct_cpu_ms,
            },
        }

    def burst_report(self, direct: list[float]) -> dict[str, Any]:
        nested = summary(self.burst_nested)
        return {
            "label": self.label,
            "round_trip_ms": summary(self.burst_round_trip),
            "nested_call_ms": nested,
            "nested_overhead_ms": {"p50": nested["p50"] - summary(direct)["p50"]},
        }


def _p95(stats: dict[str, float], digits: int = 3) -> str:
    """A series' p95 for a table, or "—" for a measurement that has none (a difference of two series)."""
    return f"{stats['p95']:.{digits}f}" if "p95" in stats else "—"


def _ratio(old: float, new: float) -> str:
    """``new / old`` for a table, or "—" when either is at or below zero (a difference of two series can be): a
    ratio of such is no measure of anything."""
    return f"{new / old:.2f}" if old > 0 and new > 0 else "—"


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _cpu_s(pids: list[int]) -> float:
    """CPU time of this process (the client: it checks each result against the output schema) and of ``pids``."""
    return time.process_time() + cpu_s(pids)


async def _round_trip(server: Served, *, count_cpu: bool = True) -> float:
    """One warm ``print(1)``'s wall time; with ``count_cpu`` its CPU time too, read from ``/proc`` before and after
    (~0.13 ms for a server's ten processes here: the back-to-back pass does not count, or its calls would not be
    back to back)."""
    cpu = _cpu_s(server.pids) if count_cpu else 0.0
    started = time.perf_counter()
    result = await server.client.call_tool("execute_program", {"code": "print(1)", "session": server.session})
    elapsed = _ms(started)
    if count_cpu:
        server.cpu_round_trip_s += _cpu_s(server.pids) - cpu
    if result.is_error:
        raise RuntimeError(f"print(1) failed on {server.label}: {result.content}")
    return elapsed


async def _nested(server: Served, calls: int = NESTED_CALLS) -> list[float]:
    code = NESTED_PROGRAM.format(calls=calls)
    cpu = _cpu_s(server.pids)
    batch = await server.client.call_tool("execute_program", {"code": code, "session": server.session})
    server.cpu_nested_s += _cpu_s(server.pids) - cpu
    if batch.is_error:
        raise RuntimeError(f"the nested-call program failed on {server.label}: {batch.content}")
    samples: list[float] = (batch.structured_content or {}).get("result") or []
    return samples


class MinimalHost:
    """Calls through ``ptc_mcp.bench.minimal_host``: a program and a host process with nothing on the path but the
    SDK's client. The floor of what a nested call adds back to back."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._send = process.stdin
        self._receive = BufferedByteReceiveStream(process.stdout)

    @classmethod
    async def start(cls, stack: AsyncExitStack) -> MinimalHost:
        process = await stack.enter_async_context(await anyio.open_process([sys.executable, "-m", MINIMAL_HOST]))
        host = cls(process)
        with anyio.fail_after(START_S):
            ready = await host._line()
        if ready != READY.strip():
            raise RuntimeError(f"the minimal host did not start: {ready!r}")
        return host

    async def calls(self, count: int) -> list[float]:
        """``count`` calls back to back, each timed in the program."""
        await self._send.send(f"{count}\n".encode())
        samples: list[float] = json.loads(await self._line())
        return samples

    async def _line(self) -> bytes:
        return await self._receive.receive_until(b"\n", 1 << 20)


async def _back_to_back(
    servers: list[Served], direct_client: Any, minimal_host: MinimalHost, runs: int
) -> tuple[list[float], list[float]]:
    """``BURST`` calls of each series in a row, alternating which server goes first; the samples of the direct call
    and of the minimal host's."""
    direct: list[float] = []
    relayed: list[float] = []
    for burst in range(max(1, runs // BURST)):
        order = servers if burst % 2 == 0 else servers[::-1]
        for server in order:
            server.burst_round_trip.extend([await _round_trip(server, count_cpu=False) for _ in range(BURST)])
        for _ in range(BURST):
            started = time.perf_counter()
            await direct_client.call_tool("get_custom_budget", {"user_id": "E7"})
            direct.append(_ms(started))
        relayed.extend(await minimal_host.calls(BURST))
        for server in order:
            server.burst_nested.extend(await _nested(server, BURST))
    return direct, relayed


async def _pipe_floor(gap_ms: float, runs: int) -> dict[str, float]:
    """One message each way between two bare processes over pipes, after idling ``gap_ms`` (a direct call's time).

    A nested call adds two such trips (program → host, host → program) after the host and the sandbox waited for the
    downstream server; on a VM, waking an idle process costs more than the trip itself. No ptc-mcp code runs here:
    this is the machine's floor for what a nested call can add.
    """
    samples: list[float] = []
    async with await anyio.open_process([sys.executable, "-c", ECHO_CHILD]) as echo:
        assert echo.stdin is not None and echo.stdout is not None
        for _ in range(min(WARMUP, runs) + runs):
            await anyio.sleep(gap_ms / 1000)
            started = time.perf_counter()
            await echo.stdin.send(b"x\n")
            await echo.stdout.receive()
            samples.append(_ms(started))
        await echo.stdin.aclose()
    return summary(samples[min(WARMUP, runs) :])


async def run_latency_bench(
    runs: int = 300,
    output: str | None = "docs/benchmarks.md",
    backends: tuple[str, ...] = KINDS,
    rounds: int = 20,
    against: str | None = None,
    against_label: str = "before",
) -> dict[str, Any]:
    try:
        backend = create_backend(Config())
        kind, isolated = backend.kind, True
    except SandboxUnavailableError:
        kind, isolated = "process", False
    servers = [Served(THIS, [sys.executable, "-m", "ptc_mcp"])]
    if against:
        servers.insert(0, Served(against_label, shlex.split(against)))
    example = StdioServerParameters(command=sys.executable, args=["-m", "ptc_mcp.examples.expenses"])
    direct: list[float] = []
    direct_cpu_s = 0.0
    with tempfile.TemporaryDirectory(prefix="ptc-mcp-bench-") as folder:
        async with AsyncExitStack() as stack:
            for number, server in enumerate(servers):
                config_path = Path(folder) / f"config-{number}.json"
                config = demo_config(allow_unisolated=not isolated)
                # Measured with the audit trail on, as served.
                config["audit"] = {"file": str(Path(folder) / f"audit-{number}.log")}
                config_path.write_text(json.dumps(config), encoding="utf-8")
                command, *args = server.command
                # Started in the temporary folder: `python -m` puts the working directory first on sys.path, so from
                # a checkout an --against server would import this checkout's code instead of its own.
                params = StdioServerParameters(
                    command=command, args=[*args, "serve", "--config", str(config_path)], cwd=folder
                )
                started_before = set(descendants(os.getpid()))
                server.client = await stack.enter_async_context(Client(params))
                # The session handle keeps one warm interpreter, whatever protocol version the client negotiated.
                first = await server.client.call_tool("execute_program", {"code": "print(1)"})
                server.session = (first.structured_content or {}).get("session")
                server.pids = [pid for pid in descendants(os.getpid()) if pid not in started_before]
            started_before = set(descendants(os.getpid()))
            direct_client = await stack.enter_async_context(Client(example))
            minimal_host = await MinimalHost.start(stack)
            direct_pids = [pid for pid in descendants(os.getpid()) if pid not in started_before]
            warmup = min(WARMUP, runs)  # a scaled-down run (tests) warms up in proportion
            shuffled = random.Random(ORDER_SEED)
            for round_number in range(warmup + runs):
                order = shuffled.sample(servers, len(servers))
                times = {server.label: await _round_trip(server) for server in order}
                cpu = _cpu_s(direct_pids)
                started = time.perf_counter()
                await direct_client.call_tool("get_custom_budget", {"user_id": "E7"})
                direct_elapsed = _ms(started)
                if round_number < warmup:
                    for server in servers:  # only measured rounds count
                        server.cpu_round_trip_s = server.cpu_nested_s = 0.0
                    continue
                direct_cpu_s += _cpu_s(direct_pids) - cpu
                direct.append(direct_elapsed)
                for server in servers:
                    server.round_trip.append(times[server.label])
                if (round_number - warmup) % NESTED_EVERY == 0:
                    for server in shuffled.sample(servers, len(servers)):
                        server.nested.extend(await _nested(server))
            direct_cpu_ms = direct_cpu_s * 1000 / len(direct)
            reports = [server.report(direct, direct_cpu_ms) for server in servers]  # before the next pass adds CPU
            burst_direct, relayed = await _back_to_back(servers, direct_client, minimal_host, runs)
    burst_direct_stats, relayed_stats = summary(burst_direct), summary(relayed)
    report: dict[str, Any] = {
        "backend": kind,
        "isolated": isolated,
        "machine": machine(),
        "direct_call_ms": summary(direct),
        "pipe_floor_ms": await _pipe_floor(summary(direct)["p50"], runs),
        "direct_call_cpu_ms": direct_cpu_ms,
        **{key: value for key, value in reports[-1].items() if key not in ("label", "command")},
        "back_to_back": {
            "direct_call_ms": burst_direct_stats,
            "servers": [server.burst_report(burst_direct) for server in servers],
            "minimal_host_call_ms": relayed_stats,
            "minimal_host_adds_ms": {"p50": relayed_stats["p50"] - burst_direct_stats["p50"]},
        },
    }
    if against:
        report["servers"] = reports
    _print(report)
    if backends:
        report["backends"] = await measure_backends(backends, rounds, SandboxLimits())
        print(backends_markdown(report["backends"]), file=sys.stderr)
    if output:
        body = _markdown(report) + _back_to_back_markdown(report)
        body += "\n" + backends_markdown(report["backends"]) if backends else ""
        write_section(output, "latency", body)
    return report


def _rows(report: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(label, key, stats of the direct call or None) for each measurement."""
    return [
        ('warm `execute_program("print(1)")` round trip', "round_trip_ms", None),
        ("direct MCP call of `expenses.get_custom_budget`", "direct_call_ms", report["direct_call_ms"]),
        ("the same call from inside a program", "nested_call_ms", None),
        ("**time a nested call adds** (the p50s' difference)", "nested_overhead_ms", None),
    ]


PIPE_FLOOR_LABEL = "the floor: two bare processes, one message each way over pipes"
PIPE_FLOOR_NOTE = (
    "The floor is no ptc-mcp code: two bare interpreters exchange one line each way over pipes after idling as long "
    "as the direct call takes (`_pipe_floor`). A nested call adds two such trips (program → host → program), so on "
    "this machine nothing that runs the program in another process can add less."
)
MINIMAL_HOST_LABEL = "the floor: the same call through a minimal host (the SDK's client, nothing else)"
MINIMAL_HOST_ADDS_LABEL = "time the minimal host adds (the p50s' difference)"
MINIMAL_HOST_NOTE = (
    "The minimal host (`ptc_mcp.bench.minimal_host`) puts no ptc-mcp code on the path: a program process that times "
    "its calls as the runtime does (an asyncio loop reading the pipe), and a host process with the SDK's client that "
    "relays each call to the downstream server. What it adds over the direct call is the architecture's own cost "
    "back to back (two more trips between processes); what a nested call adds beyond that is ptc-mcp's host and "
    "runtime (the checks, the records, the protocol)."
)
CPU_ROWS = (
    ("CPU time of one round trip (client, server, sandbox)", "round_trip"),
    ("CPU time of one nested call (with the downstream server's)", "nested_call"),
    ("**CPU time a nested call adds** (over the direct call's)", "nested_overhead"),
)
CPU_NOTE = (
    "CPU time (ms per call, from `/proc`, the client process included: it checks every result against the "
    "output schema) is less sensitive to other work on the machine than wall time, which on a loaded machine is "
    "mostly waiting for a core; a busy machine still inflates both."
)


def _back_to_back_markdown(report: dict[str, Any]) -> str:
    """The back-to-back pass: one column per server (and the ratio of two), the direct call shared."""
    passed = report["back_to_back"]
    servers = passed["servers"]
    ratio_head, ratio_rule = (" ratio |", "---:|") if len(servers) == 2 else ("", "")
    lines = [
        "",
        f"Back to back: {BURST} calls of one series in a row, so no process on the path idles between two calls "
        "(the interleaved rows above pay a wake-up after idling in every process on the path, the direct call "
        "too). p50 / p95 in ms.",
        "",
        "| measurement | " + " | ".join(f"`{server['label']}`" for server in servers) + f" |{ratio_head} target |",
        "|---|" + "---:|" * len(servers) + f"{ratio_rule}---|",
    ]
    for label, key, shared in _rows(passed):
        if shared is not None:
            cells = [f"{shared['p50']:.3f} / {_p95(shared)}"] + ["(the same call)"] * (len(servers) - 1)
            cells += [""] * (2 if ratio_head else 1)
        else:
            stats = [server[key] for server in servers]
            cells = [f"{one['p50']:.3f} / {_p95(one)}" for one in stats]
            if ratio_head:
                cells.append(_ratio(stats[0]["p50"], stats[1]["p50"]))
            cells.append(TARGETS.get(key, ""))
        lines.append("| " + " | ".join([label, *cells]) + " |")
    relayed, adds = passed["minimal_host_call_ms"], passed["minimal_host_adds_ms"]
    blank = [""] * (len(servers) - 1 + (2 if ratio_head else 1))
    lines.append("| " + " | ".join([MINIMAL_HOST_LABEL, f"{relayed['p50']:.3f} / {_p95(relayed)}", *blank]) + " |")
    lines.append("| " + " | ".join([MINIMAL_HOST_ADDS_LABEL, f"{adds['p50']:.3f} / —", *blank]) + " |")
    return "\n".join(lines) + "\n\n" + MINIMAL_HOST_NOTE + "\n"


def _print_series(rows_of: dict[str, Any], servers: list[dict[str, Any]], prefix: str = "") -> None:
    """The rows of one pass, a line per server (the direct call, shared, once)."""
    for label, key, shared in _rows(rows_of):
        for server in servers:
            stats = shared or server[key]
            name = prefix + label.replace("*", "").replace("`", "") + ("" if shared else f" [{server['label']}]")
            print(f"{name:<64} p50 {stats['p50']:8.3f} ms   p95 {_p95(stats):>8} ms", file=sys.stderr)
            if shared:
                break


def _print(report: dict[str, Any]) -> None:
    print(f"backend: {report['backend']} (isolated: {report['isolated']}), {report['machine']}", file=sys.stderr)
    servers = report.get("servers") or [report | {"label": THIS}]
    _print_series(report, servers)
    floor = report["pipe_floor_ms"]
    print(f"{PIPE_FLOOR_LABEL:<64} p50 {floor['p50']:8.3f} ms   p95 {floor['p95']:8.3f} ms", file=sys.stderr)
    print(f"CPU of a direct call: {report['direct_call_cpu_ms']:.3f} ms", file=sys.stderr)
    for label, key in CPU_ROWS:
        for server in servers:
            name = label.replace("*", "") + f" [{server['label']}]"
            print(f"{name:<64} {server['cpu_ms'][key]:8.3f} ms", file=sys.stderr)
    passed = report["back_to_back"]
    _print_series(passed, passed["servers"], prefix="back to back: ")
    relayed, adds = passed["minimal_host_call_ms"], passed["minimal_host_adds_ms"]
    print(f"{'back to back: ' + MINIMAL_HOST_LABEL:<64} p50 {relayed['p50']:8.3f} ms", file=sys.stderr)
    print(f"{'back to back: ' + MINIMAL_HOST_ADDS_LABEL:<64} p50 {adds['p50']:8.3f} ms", file=sys.stderr)


def _markdown(report: dict[str, Any]) -> str:
    head = f"""## Latency (`ptc-mcp bench latency`)

Backend `{report["backend"]}` (isolated: {report["isolated"]}), {report["machine"]}. Real MCP clients over
stdio; the series are measured interleaved in one run, so machine noise hits them alike.
"""
    if "servers" in report:
        return head + _compared(report)
    rt, d, n, o = (report[key] for _, key, _ in _rows(report))
    f = report["pipe_floor_ms"]
    target_rt, target_o = TARGETS["round_trip_ms"], TARGETS["nested_overhead_ms"]
    return (
        head
        + f"""
| measurement | p50 (ms) | p95 (ms) | n | target |
|---|---:|---:|---:|---|
| warm `execute_program("print(1)")` round trip | {rt["p50"]:.2f} | {rt["p95"]:.2f} | {rt["n"]:.0f} | {target_rt} |
| direct MCP call of `expenses.get_custom_budget` | {d["p50"]:.3f} | {d["p95"]:.3f} | {d["n"]:.0f} | |
| the same call from inside a program | {n["p50"]:.3f} | {n["p95"]:.3f} | {n["n"]:.0f} | |
| **time a nested call adds** (the p50s' difference) | **{o["p50"]:.3f}** | — | | {target_o} |
| {PIPE_FLOOR_LABEL} | {f["p50"]:.3f} | {f["p95"]:.3f} | {f["n"]:.0f} | |

{PIPE_FLOOR_NOTE}

{CPU_NOTE} Direct call: {report["direct_call_cpu_ms"]:.3f} ms.

| CPU time | ms per call |
|---|---:|
"""
        + "".join(f"| {label} | {report['cpu_ms'][key]:.3f} |\n" for label, key in CPU_ROWS)
    )


def _compared(report: dict[str, Any]) -> str:
    before, after = report["servers"]
    lines = [
        "",
        f"Two servers in the same rounds, in a random order each round (seeded): `{before['label']}` "
        f"(`{before['command']}`) and `{after['label']}` (this checkout). p50 / p95 in ms; the ratio is of the p50s.",
        "",
        f"| measurement | {before['label']} | {after['label']} | ratio | target |",
        "|---|---:|---:|---:|---|",
    ]
    for label, key, shared in _rows(report):
        if shared is not None:
            lines.append(f"| {label} | {shared['p50']:.3f} / {shared['p95']:.3f} | (the same call) | | |")
            continue
        old, new = before[key], after[key]
        ratio = _ratio(old["p50"], new["p50"])
        lines.append(
            f"| {label} | {old['p50']:.3f} / {_p95(old)} | {new['p50']:.3f} / {_p95(new)} | {ratio} "
            f"| {TARGETS.get(key, '')} |"
        )
    floor = report["pipe_floor_ms"]
    lines += [
        f"| {PIPE_FLOOR_LABEL} | {floor['p50']:.3f} / {floor['p95']:.3f} | (the same) | | |",
        "",
        PIPE_FLOOR_NOTE,
        "",
        f"{CPU_NOTE} Direct call: {report['direct_call_cpu_ms']:.3f} ms.",
        "",
        f"| CPU time | {before['label']} | {after['label']} | ratio |",
        "|---|---:|---:|---:|",
    ]
    for label, key in CPU_ROWS:
        old_ms, new_ms = before["cpu_ms"][key], after["cpu_ms"][key]
        lines.append(f"| {label} | {old_ms:.3f} | {new_ms:.3f} | {_ratio(old_ms, new_ms)} |")
    return "\n".join(lines) + "\n"
