"""Many runs at once: the server-wide limit and queue, per-session serialization, shared downstream sessions."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from ptc_mcp.executor import ExecuteRequest
from ptc_mcp.results import RunResult
from tests.conftest import OpenTestApp
from tests.test_capacity import until

pytestmark = pytest.mark.anyio


async def test_runs_past_the_limit_queue_and_past_the_queue_are_busy_at_once(open_test_app: OpenTestApp) -> None:
    results: list[RunResult] = []
    most_running = 0
    async with open_test_app(limits={"max_concurrent_runs": 2, "max_queued_runs": 2}) as app:

        async def run() -> None:
            results.append(await app.executor.execute(ExecuteRequest(code="await asyncio.sleep(0.4)")))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for _ in range(7):
                    group.start_soon(run)
                while len(results) < 7:
                    most_running = max(most_running, app.executor.running)
                    await anyio.sleep(0.01)
        assert app.executor.running == 0 and app.executor.queued == 0
    errors = sorted(result.error_type or "ok" for result in results)
    assert errors == ["busy", "busy", "busy", "ok", "ok", "ok", "ok"]
    assert most_running == 2


async def test_runs_of_one_session_are_serialized_and_wait_without_holding_a_run_slot(
    open_test_app: OpenTestApp,
) -> None:
    finished: list[str] = []
    async with open_test_app(limits={"max_concurrent_runs": 1, "max_queued_runs": 8}) as app:
        first = await app.executor.execute(ExecuteRequest(code="n = 0"))
        handle = first.session

        async def run(name: str, session: str | None, seconds: float = 0.3) -> None:
            code = f"n = globals().get('n', 0) + 1\nawait asyncio.sleep({seconds})\nn"
            result = await app.executor.execute(ExecuteRequest(code=code, session=session))
            assert result.status == "ok", result.error
            finished.append(f"{name}={result.result}")

        executor = app.executor
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                # a1 outlasts the rest of the set-up, which waits on the executor's counts, not on the clock.
                group.start_soon(run, "a1", handle, 3.0)
                await until(lambda: executor.running == 1)
                for queued, name in enumerate(("a2", "a3"), start=1):
                    group.start_soon(run, name, handle)
                    await until(lambda queued=queued: executor.queued == queued)
                group.start_soon(run, "b", None)
                await until(lambda: executor.queued == 3)
                assert finished == []  # all four were in place while a1 ran
    # a2 and a3 wait for session a, not for the one run slot: b runs right after a1.
    assert finished == ["a1=1", "b=1", "a2=2", "a3=3"]


async def test_parallel_programs_share_the_downstream_sessions(open_test_app: OpenTestApp) -> None:
    program = """
ids = [f"E{i % 8 + 1}" for i in range(10)]
budgets = await asyncio.gather(*[expenses.get_custom_budget(user_id=i) for i in ids])
[b["travel_budget"] if b else None for b in budgets]
"""
    async with open_test_app(limits={"max_concurrent_runs": 4}) as app:
        expected = (await app.executor.execute(ExecuteRequest(code=program))).result
        results: list[RunResult] = []

        async def run() -> None:
            results.append(await app.executor.execute(ExecuteRequest(code=program)))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for _ in range(8):
                    group.start_soon(run)
    assert all(result.status == "ok" and result.tool_calls == 10 for result in results), results
    assert all(result.result == expected for result in results)


async def test_the_audit_trail_has_a_line_per_run_and_per_call_without_argument_values(
    open_test_app: OpenTestApp, tmp_path: Path
) -> None:
    audit_file = tmp_path / "audit.jsonl"
    program = """
await expenses.get_team_members(department="SECRET-DEPARTMENT")
try:
    await expenses.get_expenses(employee_id="SECRET-ID-2", quarter="Q3")
except ToolError:
    pass
print("done")
"""
    async with open_test_app(audit={"file": str(audit_file)}) as app:
        result = await app.executor.execute(ExecuteRequest(code=program))
    text = audit_file.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert "SECRET" not in text
    calls = [line for line in lines if line["event"] == "call"]
    runs = [line for line in lines if line["event"] == "run"]
    assert [call["tool"] for call in calls] == ["expenses.get_team_members", "expenses.get_expenses"]
    assert calls[0]["outcome"] == "ok" and calls[0]["response_bytes"] > 0
    assert calls[1]["outcome"] == "tool_error"
    assert len(runs) == 1 and runs[0]["status"] == "ok" and runs[0]["tool_calls"] == 2
    assert {line["run"] for line in lines} == {runs[0]["run"]}
    assert runs[0]["session"] == (result.session or "")[:12]


async def test_argument_values_are_audited_only_when_enabled(open_test_app: OpenTestApp, tmp_path: Path) -> None:
    audit_file = tmp_path / "audit.jsonl"
    async with open_test_app(audit={"file": str(audit_file), "include_arguments": True}) as app:
        await app.executor.execute(ExecuteRequest(code='await expenses.get_custom_budget(user_id="E7")'))
    calls = [json.loads(line) for line in audit_file.read_text().splitlines() if '"call"' in line]
    assert calls[0]["arguments"] == {"user_id": "E7"}
