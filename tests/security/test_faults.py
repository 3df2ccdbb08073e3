"""SECURITY.md, "Faults": a downstream server that crashes or hangs, and a sandbox killed from outside."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from tests.security.conftest import Secured, error_type

pytestmark = pytest.mark.anyio

FAULTY = {"command": sys.executable, "args": [str(Path(__file__).with_name("faulty_server.py"))]}

CRASH_MID_PROGRAM = """
import asyncio
first = await faulty.pid()

async def outcome(call):
    try:
        await call
        return "answered"
    except ToolError as exc:
        return exc.error_type

# Both calls leave together (one step on agentcore); the server dies while the hang call is pending.
pending, crash = await asyncio.gather(outcome(faulty.hang()), outcome(faulty.crash(delay_s=0.5)))
second = await faulty.pid()
{"pending": pending, "crash": crash, "restarted": first != second}
"""


@pytest.mark.servers({"faulty": {**FAULTY, "timeout_s": 30}})
async def test_a_downstream_crash_fails_the_pending_call_with_tool_error_and_later_calls_reconnect(
    secured: Secured,
) -> None:
    result = await secured.run(CRASH_MID_PROGRAM)
    assert result["status"] == "ok", result
    assert result["result"] == {"pending": "tool_error", "crash": "tool_error", "restarted": True}
    await secured.assert_serving()


HANG = """
import time
started = time.monotonic()
try:
    await faulty.hang()
    outcome = "answered"
except ToolError as exc:
    outcome = [exc.error_type, "timed out" in exc.message, round(time.monotonic() - started)]
after = await faulty.pid()
outcome
"""


@pytest.mark.servers({"faulty": {**FAULTY, "timeout_s": 1}})
async def test_a_hanging_downstream_call_times_out_with_a_typed_error_the_program_can_catch(secured: Secured) -> None:
    result = await secured.run(HANG)
    assert result["status"] == "ok", result
    kind, says_timed_out, seconds = result["result"]
    assert (kind, says_timed_out) == ("timeout", True)  # the nested call timed out; the run did not
    assert 1 <= seconds <= 5
    uncaught = await secured.run("await faulty.hang()")
    assert error_type(uncaught) == "tool_error"  # uncaught, it ends the run as a failed tool call
    await secured.assert_serving()


async def test_a_sandbox_killed_from_outside_mid_run_is_a_sandbox_failure_and_the_next_run_is_fresh(
    secured: Secured,
) -> None:
    first = await secured.run("marker = 'old sandbox'\n'started'")
    assert first["status"] == "ok", first
    [session] = secured.backend.sessions
    results: list[dict[str, object]] = []
    searched = anyio.Event()  # the program's first call is audited: the run is under way in that sandbox
    secured.app.executor.audit.observe(lambda line: searched.set() if line["event"] == "call" else None)

    async def run_forever() -> None:
        results.append(await secured.run("tools.search('anything')\nwhile True: pass"))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run_forever)
            await searched.wait()
            await secured.backend.under_test.kill_from_outside(session)
    [result] = results
    assert error_type(result) == "sandbox_failure", result
    assert not session.alive
    after = await secured.run("'marker' in globals()")
    assert after["status"] == "ok" and after["result"] is False  # a fresh interpreter
    assert len(secured.backend.sessions) == 2
    await secured.assert_serving()
