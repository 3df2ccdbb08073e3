"""The sandbox backends side by side: session start (cold and from the warm pool), warm round trip, nested calls.

Measured at the ``SandboxBackend`` interface, with the same programs and a host-side tool that answers at once,
so the numbers are the backend's own cost. Rounds are interleaved across backends, so machine noise hits them
alike. ``docker`` uses the image built from this machine's Python (``ptc-mcp-sandbox:local``: nothing is pulled);
``agentcore`` runs against the local emulator through real boto3, and reports the ``executeCode`` steps a
program costs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from ptc_mcp.bench.report import summary
from ptc_mcp.output import OutputCollector
from ptc_mcp.sandboxes.base import RunReport, RunRequest, SandboxBackend, SandboxLimits, SandboxSession
from ptc_mcp.sandboxes.warm_pool import KeepsWarm

KINDS = ("process", "srt", "docker", "agentcore")
REFILL_WAIT_S = 30.0
CATALOG: dict[str, Any] = {
    "servers": [
        {
            "name": "bench",
            "global": "bench",
            "attr": "bench",
            "tools": [{"name": "echo", "attr": "echo", "signature": "(**arguments) -> dict", "doc": "Echo."}],
        }
    ]
}
NESTED = """
import time
samples = []
for i in range(10):
    started = time.perf_counter()
    await bench.echo(i=i)
    samples.append((time.perf_counter() - started) * 1000)
samples
"""
GATHERED = "len(await asyncio.gather(*[bench.echo(i=i) for i in range(10)]))"
SEQUENTIAL = "[await bench.echo(i=i) for i in range(10)][-1]"


async def _echo(name: str, arguments: dict[str, Any]) -> Any:
    return arguments


async def run(session: SandboxSession, code: str) -> RunReport:
    request = RunRequest(
        run_id=f"bench-{time.monotonic_ns()}",
        code=code,
        catalog=CATALOG,
        catalog_version="bench",
        max_output_bytes=32768,
    )
    report = await session.run(request, _echo, OutputCollector(32768))
    if not report.ok:
        raise RuntimeError(f"benchmark program failed: {report.exc_type}: {report.message}")
    return report


@dataclass
class Series:
    """The samples of one backend."""

    kind: str
    cold_start: list[float] = field(default_factory=list)
    pool_start_print: list[float] = field(default_factory=list)
    round_trip: list[float] = field(default_factory=list)
    nested_call: list[float] = field(default_factory=list)
    steps_gathered: list[int] = field(default_factory=list)
    steps_sequential: list[int] = field(default_factory=list)
    pool_misses: int = 0
    """Warm-pool starts that found the pool empty (``WarmPool.missed``): those samples are cold starts."""

    def report(self) -> dict[str, Any]:
        row: dict[str, Any] = {"backend": self.kind, "pool_misses": self.pool_misses}
        for name in ("cold_start", "pool_start_print", "round_trip", "nested_call"):
            samples: list[float] = getattr(self, name)
            row[f"{name}_ms"] = summary(samples) if samples else None
        if self.steps_gathered:
            row["steps_gather_10"] = max(self.steps_gathered)
            row["steps_sequential_10"] = max(self.steps_sequential)
        return row


@dataclass
class Backends:
    """For one kind: a backend without a warm pool (cold starts) and one with it (``None`` when it has none)."""

    cold: SandboxBackend
    warm: SandboxBackend | None


@asynccontextmanager
async def _process(limits: SandboxLimits) -> AsyncIterator[Backends]:
    from ptc_mcp.sandboxes.process.backend import ProcessBackend

    async with _kept_warm(ProcessBackend(limits), ProcessBackend(limits, warm_pool=2)) as backends:
        yield backends


@asynccontextmanager
async def _srt(limits: SandboxLimits) -> AsyncIterator[Backends]:
    from ptc_mcp.sandboxes.process.srt import SrtBackend

    async with _kept_warm(SrtBackend(limits), SrtBackend(limits, warm_pool=2)) as backends:
        yield backends


@asynccontextmanager
async def _kept_warm(cold: SandboxBackend, warm: SandboxBackend) -> AsyncIterator[Backends]:
    """A cold backend and one whose warm pool is kept filled while the measurement runs (as the executor does)."""
    async with anyio.create_task_group() as tasks:
        if isinstance(warm, KeepsWarm):
            tasks.start_soon(warm.keep_warm)
        try:
            yield Backends(cold, warm)
        finally:
            tasks.cancel_scope.cancel()
            await cold.aclose()
            await warm.aclose()


@asynccontextmanager
async def _docker(limits: SandboxLimits) -> AsyncIterator[Backends]:
    from ptc_mcp.sandboxes.docker.backend import DockerBackend
    from ptc_mcp.sandboxes.docker.image import build_local_image
    from ptc_mcp.sandboxes.docker.settings import parse_docker_settings

    image = await anyio.to_thread.run_sync(build_local_image)
    settings = parse_docker_settings({"image": image, "pull": "never"})
    async with _kept_warm(DockerBackend(settings, limits), DockerBackend(settings, limits, warm_pool=2)) as backends:
        yield backends


@asynccontextmanager
async def _agentcore(limits: SandboxLimits) -> AsyncIterator[Backends]:
    from ptc_mcp.emulators.agentcore_testing import emulated_agentcore_backend

    async with emulated_agentcore_backend() as (backend, _emulator):
        yield Backends(backend, None)


OPENERS: dict[str, Callable[[SandboxLimits], Any]] = {
    "process": _process,
    "srt": _srt,
    "docker": _docker,
    "agentcore": _agentcore,
}


async def _sample(kind: str, backends: Backends, series: Series) -> None:
    started = time.perf_counter()
    session = await backends.cold.start_session()
    series.cold_start.append((time.perf_counter() - started) * 1000)
    await session.aclose()
    if backends.warm is not None:
        pool = backends.warm.pool if isinstance(backends.warm, KeepsWarm) else None
        missed = 0 if pool is None else pool.missed
        await _refilled(backends.warm)
        started = time.perf_counter()
        session = await backends.warm.start_session()
        await run(session, "print(1)")
        series.pool_start_print.append((time.perf_counter() - started) * 1000)
        series.pool_misses += 0 if pool is None else pool.missed - missed
        await _refilled(backends.warm)  # a live session is measured alone, not beside the pool's refill
    else:
        session = await backends.cold.start_session()
    try:
        await run(session, "x = 1")  # the session is warm from here on
        for _ in range(5):
            started = time.perf_counter()
            await run(session, "print(1)")
            series.round_trip.append((time.perf_counter() - started) * 1000)
        series.nested_call.extend((await run(session, NESTED)).result or [])
        steps = getattr(session, "steps", None)
        if steps is not None:
            await run(session, GATHERED)
            series.steps_gathered.append(session.steps)  # type: ignore[attr-defined]
            await run(session, SEQUENTIAL)
            series.steps_sequential.append(session.steps)  # type: ignore[attr-defined]
    finally:
        await session.aclose()


async def _refilled(backend: SandboxBackend) -> None:
    """Wait (bounded) until the backend's warm pool is full again, as it would be between sessions."""
    pool = backend.pool if isinstance(backend, KeepsWarm) else None
    with anyio.move_on_after(REFILL_WAIT_S):
        while pool is not None and len(pool) < pool.size:
            await anyio.sleep(0.01)


async def measure_backends(kinds: tuple[str, ...], rounds: int, limits: SandboxLimits) -> dict[str, Any]:
    """Interleaved rounds over every available backend; unavailable ones are reported with the reason."""
    series = {kind: Series(kind) for kind in kinds}
    skipped: dict[str, str] = {}
    async with AsyncExitStack() as stack:
        opened: dict[str, Backends] = {}
        for kind in kinds:
            try:
                opened[kind] = await stack.enter_async_context(OPENERS[kind](limits))
                await _sample(kind, opened[kind], Series(kind))  # warm-up round, not counted
            except Exception as exc:  # a backend this machine cannot run is reported, not fatal
                skipped[kind] = f"{type(exc).__name__}: {exc}"[:300]
                opened.pop(kind, None)
        for _ in range(rounds):
            for kind, backends in opened.items():
                await _sample(kind, backends, series[kind])
        rows = [series[kind].report() for kind in opened]
    return {"rounds": rounds, "rows": rows, "skipped": skipped}


def markdown(report: dict[str, Any]) -> str:
    def cell(stats: dict[str, float] | None, digits: int = 1) -> str:
        return "n/a" if stats is None else f"{stats['p50']:.{digits}f} / {stats['p95']:.{digits}f}"

    lines = [
        "### Sandbox backends side by side",
        "",
        f"`SandboxBackend` level, {report['rounds']} interleaved rounds; p50 / p95 in ms. Targets: docker session "
        "from the warm pool runs `print(1)` in p50 ≤ 20 ms, cold docker session ≤ 600 ms.",
        "",
        "| backend | cold session start | warm-pool start + `print(1)` | `print(1)` in a live session "
        "| one nested call | `executeCode` steps: gather of 10 / 10 sequential |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        steps = f"{row['steps_gather_10']} / {row['steps_sequential_10']}" if "steps_gather_10" in row else "—"
        lines.append(
            f"| {row['backend']} | {cell(row['cold_start_ms'], 0)} | {cell(row['pool_start_print_ms'])} "
            f"| {cell(row['round_trip_ms'], 2)} | {cell(row['nested_call_ms'], 3)} | {steps} |"
        )
    for row in report["rows"]:
        if row.get("pool_misses"):
            lines.append(f"\n`{row['backend']}`: {row['pool_misses']} warm-pool start(s) found the pool empty (cold).")
    for kind, reason in report["skipped"].items():
        lines.append(f"\n`{kind}` was not measured: {reason}")
    lines.append(
        "\nagentcore runs against the local emulator (real boto3, loopback HTTP, a process-sandbox kernel): its "
        "times are the protocol's cost here, not AWS's; the steps are what a real session costs in `executeCode` calls."
    )
    return "\n".join(lines) + "\n"
