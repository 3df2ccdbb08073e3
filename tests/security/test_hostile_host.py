"""The host-side guarantees of docs/security.md ("What comes back is hostile too"), one at a time.

The output budget over every field, discovery calls (bounded, validated, budgeted, off the event loop, under the
run's timeout), an audit trail that data cannot mute and a failing sink cannot silence, the run's status from the
host's view, and host failures as typed results. End-to-end attacks over stdio and HTTP: test_hostile_data.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptc_mcp.audit import AuditLog
from ptc_mcp.bench.synthetic import synthetic_tools
from ptc_mcp.bridge import CallRecord, ToolBridge
from ptc_mcp.budget import fair_share, fit_run
from ptc_mcp.catalog.model import DownstreamTool
from ptc_mcp.catalog.policy import ToolPolicy
from ptc_mcp.config import LimitsConfig
from ptc_mcp.executor import ExecuteRequest, Executor
from ptc_mcp.output import OutputCollector
from ptc_mcp.results import RunError
from ptc_mcp.sandboxes.base import SandboxBackend, SandboxLimits
from ptc_mcp.sandboxes.process.backend import ProcessBackend
from tests.security.replayed_runtime import ReplayedBackend

pytestmark = pytest.mark.anyio

WAIT_S = 60.0
RUN = "{RUN}"


class Catalog:
    """A ``ToolSource`` of the 2,030 synthetic tools (the biggest catalog the project generates); calls answer
    with their arguments, or fail as the host's own bug would (``RuntimeError``) for ``fail``."""

    catalog_version = 1
    failures: dict[str, str] = {}

    def __init__(self) -> None:
        self._tools = [*synthetic_tools(2030), DownstreamTool("fx", types.Tool(name="fail", input_schema={}))]

    def tools(self) -> list[DownstreamTool]:
        return self._tools

    async def call_tool(self, server: str, tool: str, arguments: Any = None, timeout_s: Any = None) -> Any:
        if tool == "fail":
            raise RuntimeError("a bug in the host's downstream code")
        return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(arguments))])


@asynccontextmanager
async def executor_on(backend: SandboxBackend, audit: AuditLog | None = None, **limits: Any) -> AsyncIterator[Executor]:
    settings = {"timeout_s": 20, "max_output_bytes": 1024, "max_tool_calls": 10, **limits}
    bridge = ToolBridge(Catalog(), ToolPolicy(["*"], []))
    async with Executor(backend, bridge, LimitsConfig(**settings), audit=audit) as executor:
        yield executor


@asynccontextmanager
async def real_executor(audit: AuditLog | None = None, **limits: Any) -> AsyncIterator[Executor]:
    """On the real ``process`` backend (bubblewrap when present, else a plain child: these cases test the host)."""
    backend = ProcessBackend(SandboxLimits(), warm_pool=0)
    try:
        async with executor_on(backend, audit, **limits) as executor:
            yield executor
    finally:
        await backend.aclose()


# --- one output budget ---------------------------------------------------------------------------------------


@given(st.integers(0, 10_000), st.lists(st.integers(0, 10_000), max_size=6))
def test_a_fair_share_never_exceeds_the_budget_or_what_anyone_wants(budget: int, wants: list[int]) -> None:
    grants = fair_share(budget, wants)
    assert sum(grants) <= budget
    assert all(0 <= grant <= want for grant, want in zip(grants, wants, strict=True))
    if sum(wants) <= budget:
        assert grants == wants


@given(
    st.integers(0, 20_000),
    st.integers(0, 20_000),
    st.integers(0, 20_000),
    st.integers(0, 20_000),
    st.integers(0, 20_000),
    st.integers(0, 20_000),
)
@settings(max_examples=60)
def test_every_field_a_run_returns_fits_one_budget(
    stdout: int, stderr: int, message: int, exc_type: int, traceback: int, result: int
) -> None:
    cap = 4096
    output = OutputCollector(cap, flood_factor=10**6)
    output.write("stdout", "o" * stdout)
    output.write("stderr", "e" * stderr)
    error = RunError(type="program_error", message="m" * message, exc_type="E" * exc_type, traceback="t" * traceback)
    fitted = fit_run(cap, output, ["r" * result], "R" * result, error)
    assert fitted.returned_bytes <= cap
    fields = [fitted.stdout, fitted.stderr, fitted.result_repr, *_error_fields(fitted.error)]
    size = sum(len(text.encode()) for text in fields if text)
    size += len(json.dumps(fitted.result).encode()) if fitted.result is not None else 0
    assert size <= cap + 5 * 80  # plus at most one short marker per field
    assert fitted.dropped_bytes >= stdout + stderr + message + exc_type + traceback + result - cap


def _error_fields(error: RunError | None) -> list[str | None]:
    return [] if error is None else [error.message, error.exc_type, error.traceback]


def test_the_error_survives_a_flood_through_the_traceback_and_a_cut_json_result_is_left_out_whole() -> None:
    output = OutputCollector(1024)
    output.write("stdout", "x" * 5000)
    error = RunError(type="program_error", message="the cause", exc_type="ValueError", traceback="t" * 10**6)
    fitted = fit_run(1024, output, None, None, error)
    assert fitted.error is not None
    assert (fitted.error.exc_type, fitted.error.message) == ("ValueError", "the cause")
    assert fitted.error.traceback is not None and fitted.error.traceback.startswith("[")  # its tail is kept
    assert "output truncated at 1024 bytes" in fitted.stdout
    big = fit_run(1024, OutputCollector(1024), ["v" * 100] * 100, "[...]", None)
    assert big.result is None and big.result_repr == "[...]"


async def test_a_forged_done_cannot_return_more_than_the_budget_or_claim_a_host_status(tmp_path: Path) -> None:
    flood = "f" * 3_000_000
    done = {"type": "done", "id": RUN, "ok": False, "result_repr": flood, "tool_calls": 10**9}
    done["error"] = {"type": "timeout", "exc_type": flood, "message": flood, "traceback": flood}
    audit = AuditLog(file=tmp_path / "audit.jsonl")
    async with executor_on(ReplayedBackend([done]), audit) as executor:
        result = await executor.execute(ExecuteRequest(code="forge"))
    assert result.error_type == "program_error"  # the host never takes `timeout` from the program
    assert result.tool_calls == 0
    [line] = [json.loads(text) for text in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert line["error_type"] == "program_error"
    assert line["output_bytes"] <= 1024
    assert line["output_dropped_bytes"] >= 3 * 3_000_000 - 1024  # a failed run's result_repr is not taken at all


# --- discovery -----------------------------------------------------------------------------------------------


async def test_discovery_is_validated_bounded_counted_in_the_budget_and_audited(tmp_path: Path) -> None:
    program = """
outcomes = []
for call in (lambda: tools.search("x", limit=float("inf")), lambda: tools.search("x", limit=0),
             lambda: tools.search("q" * 5_000_000), lambda: tools.describe("d" * 5_000_000),
             lambda: tools.search("invoice", limit=2)):
    try:
        outcomes.append(len(call()))
    except TypeError:
        outcomes.append("TypeError")
for _ in range(100):
    try:
        tools.search("invoice")
    except ToolError as exc:
        outcomes.append(exc.error_type)
        break
outcomes
"""
    audit = AuditLog(file=tmp_path / "audit.jsonl", include_arguments=True)
    async with real_executor(audit, max_tool_calls=10) as executor:
        with anyio.fail_after(WAIT_S):
            result = await executor.execute(ExecuteRequest(code=program))
    assert result.result == ["TypeError"] * 4 + [2, "tool_call_limit"], result
    lines = [json.loads(text) for text in (tmp_path / "audit.jsonl").read_text().splitlines()]
    calls = [line for line in lines if line["event"] == "call"]
    assert [line["outcome"] for line in calls] == ["invalid_arguments"] * 4 + ["ok"] * 6 + ["tool_call_limit"]
    assert {line["tool"] for line in calls} == {"@search", "@describe"}
    assert all(len(json.dumps(line)) < 8192 for line in lines)  # megabyte queries never reach the trail
    assert lines[-1]["call_attempts"] == 11


async def test_discovery_keeps_the_event_loop_free_and_the_runs_timeout_holds() -> None:
    program = 'query = " ".join(f"invoice{i} budget report" for i in range(60))[:1000]\n'
    program += "while True:\n    tools.search(query, limit=50)\n    try:\n        tools.describe('billing.nope')\n"
    program += "    except ToolError:\n        pass\n"
    gaps: list[float] = []
    async with real_executor(max_tool_calls=10**9) as executor:
        executor.bridge.snapshot  # noqa: B018 - built once per catalog version, before the clock starts
        done = anyio.Event()

        async def tick() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await anyio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        async with anyio.create_task_group() as group:
            group.start_soon(tick)
            started = time.perf_counter()
            with anyio.fail_after(WAIT_S):
                result = await executor.execute(ExecuteRequest(code=program, timeout_s=3))
            elapsed = time.perf_counter() - started
            done.set()
    assert result.error_type == "timeout"
    assert elapsed < 3 + 5  # the timeout held (a grace for killing the sandbox on a loaded machine)
    # A loop that discovery blocked would tick a few times in the 3 s; one stall of the machine inflates one gap,
    # not the 99th percentile of some hundreds.
    assert len(gaps) >= 50, f"the event loop ticked {len(gaps)} times in {elapsed:.1f} s"
    slow = sorted(gaps)[int(len(gaps) * 0.99)]
    assert slow < 0.5, f"the event loop stalled: 99th percentile gap {slow:.2f} s"


# --- the audit trail -----------------------------------------------------------------------------------------


def _record(tool: str = "fx.echo") -> CallRecord:
    return CallRecord(tool=tool, duration_ms=1.0, outcome="ok", request_bytes=10, response_bytes=10)


def test_data_cannot_mute_the_audit_trail(tmp_path: Path) -> None:
    audit = AuditLog(file=tmp_path / "audit.jsonl", include_arguments=True)
    hostile: dict[str, Any] = {"s\ud800": "\udfff", "nan": float("nan"), "obj": object(), "sep": "a\u2028b\x85c"}
    audit.call(session="ptc_x", run_id="r", record=_record(), arguments=hostile)
    circular: list[Any] = []
    circular.append(circular)
    audit.call(session="ptc_x", run_id="r", record=_record(), arguments={"loop": circular})
    audit.call(session="ptc_x", run_id="r", record=_record("after"))
    audit.close()
    lines = (tmp_path / "audit.jsonl").read_bytes().decode("utf-8").splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["arguments"]["s\ufffd"] == "\ufffd"
    assert "arguments_unwritable" in second
    assert third["tool"] == "after"
    assert not audit.failing


def test_a_failing_sink_is_reported_loudly_retried_and_its_backlog_written_once_it_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the audit directory should be")
    audit = AuditLog(file=blocker / "audit.jsonl")
    with caplog.at_level(logging.ERROR, logger="ptc_mcp.audit"):
        for number in range(3):
            audit.call(session="ptc_x", run_id=f"r{number}", record=_record())
    assert audit.failing
    assert any("AUDIT TRAIL FAILING" in record.getMessage() for record in caplog.records)
    blocker.unlink()
    audit.call(session="ptc_x", run_id="r3", record=_record())
    audit.close()
    assert not audit.failing
    runs = [json.loads(line)["run"] for line in (blocker / "audit.jsonl").read_text().splitlines()]
    assert runs == ["r0", "r1", "r2", "r3"]


async def test_fail_closed_refuses_runs_while_the_sink_fails_and_serves_again_once_it_works(tmp_path: Path) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("not a directory")
    audit = AuditLog(file=blocker / "audit.jsonl", fail_closed=True)
    done = {"type": "done", "id": RUN, "ok": True, "result": 1}
    async with executor_on(ReplayedBackend([done]), audit) as executor:
        first = await executor.execute(ExecuteRequest(code="1"))  # its run line cannot be written
        refused = await executor.execute(ExecuteRequest(code="1"))
        blocker.unlink()
        again = await executor.execute(ExecuteRequest(code="1"))
    assert first.result == 1
    assert refused.error_type == "busy"
    assert refused.error is not None and "audit.fail_closed" in refused.error.message
    assert again.result == 1
    lines = [json.loads(line) for line in (blocker / "audit.jsonl").read_text().splitlines()]
    assert [line["status"] for line in lines] == ["ok", "ok"]  # the first run's line was held, then written


# --- host failures are typed results -------------------------------------------------------------------------


async def test_a_host_bug_while_answering_a_call_fails_that_call_only(tmp_path: Path) -> None:
    calls = [
        {"type": "call", "id": RUN, "call": 1, "tool": "fx.fail", "args": {}},
        {"type": "done", "id": RUN, "ok": True, "result": "went on"},
    ]
    async with executor_on(ReplayedBackend(calls)) as executor:
        result = await executor.execute(ExecuteRequest(code="x"))
    assert result.result == "went on"

    program = "try:\n    await call_tool('fx.fail', {})\nexcept ToolError as exc:\n    kind = exc.error_type\nkind"
    async with real_executor() as executor:
        with anyio.fail_after(WAIT_S):
            real = await executor.execute(ExecuteRequest(code=program))
    assert real.result == "tool_error", real


class BrokenBackend:
    """A backend whose sessions fail with a host bug (not a ``PtcError``) in the middle of a run."""

    kind = "broken"
    isolated = True

    async def start_session(self) -> Any:
        return self

    alive = True

    async def run(self, *args: Any) -> Any:
        raise ZeroDivisionError("a bug on the host")

    async def aclose(self) -> None:
        pass


async def test_a_host_bug_during_a_run_is_a_sandbox_failure_result_not_a_protocol_error() -> None:
    async with executor_on(BrokenBackend()) as executor:
        result = await executor.execute(ExecuteRequest(code="1"))
    assert result.error_type == "sandbox_failure"
    assert result.error is not None and "ZeroDivisionError" in result.error.message


async def test_made_up_tool_names_are_audited_but_never_mint_metric_labels() -> None:
    from ptc_mcp.remote.metrics import Metrics

    calls = [{"type": "call", "id": RUN, "call": n, "tool": f"made{n}.up", "args": {}} for n in range(1, 6)]
    audit = AuditLog.silent()
    metrics = Metrics()
    audit.observe(metrics.observe)
    lines: list[dict[str, Any]] = []
    audit.observe(lines.append)
    async with executor_on(ReplayedBackend([*calls, {"type": "done", "id": RUN, "ok": True}]), audit) as executor:
        await executor.execute(ExecuteRequest(code="x"))
    assert [line["outcome"] for line in lines if line["event"] == "call"] == ["tool_error"] * 5
    text = metrics.render()
    assert "made" not in text
    assert 'ptc_mcp_tool_calls_total{server="(none)",outcome="tool_error"} 5' in text
