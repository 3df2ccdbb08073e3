"""The ``agentcore`` backend through the local emulator: real boto3 and SDK, the runtime driven in steps."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from ptc_mcp.config import Config
from ptc_mcp.emulators.agentcore import AgentCoreEmulator, Fault
from ptc_mcp.emulators.agentcore_testing import emulated_agentcore_backend
from ptc_mcp.errors import ConfigError, RunLimitExceeded, SandboxFailure, ToolCallError
from ptc_mcp.sandboxes import create_backend
from ptc_mcp.sandboxes.agentcore.backend import AgentCoreBackend, AgentCoreSession
from ptc_mcp.sandboxes.base import RunReport, RunRequest, StreamName

pytestmark = pytest.mark.anyio

WAIT_S = 60.0
CATALOG = {
    "servers": [
        {
            "name": "calc",
            "global": "calc",
            "tools": [{"name": "add", "attr": "add", "signature": "(a: int, b: int) -> int", "doc": "a + b"}],
        },
        {"name": "store", "global": "store", "tools": [{"name": "get", "attr": "get", "doc": "a record"}]},
    ]
}


class Tools:
    """The host side of the tools: ``calc.add``, ``store.get`` (fails for missing keys), discovery."""

    def __init__(self, output: Recorder | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.output = output
        self.output_seen_at_calls: list[str] = []

    async def __call__(self, name: str, arguments: dict[str, Any]) -> Any:
        self.calls.append((name, arguments))
        if self.output is not None:
            self.output_seen_at_calls.append(self.output.text())
        if name == "calc.add":
            return arguments["a"] + arguments["b"]
        if name == "store.get":
            if arguments.get("key") == "missing":
                raise ToolCallError("tool_error", "no such record")
            return {"key": arguments.get("key"), "value": len(str(arguments.get("key")))}
        if name == "@search":
            return [{"name": "calc.add", "summary": "a + b"}]
        raise ToolCallError("tool_denied", f"unknown tool {name}")


class Recorder:
    """An ``OutputSink`` that keeps the output as it arrives."""

    def __init__(self) -> None:
        self.arrived: list[tuple[StreamName, str]] = []

    def write(self, stream: StreamName, text: str) -> None:
        self.arrived.append((stream, text))

    def text(self) -> str:
        return "".join(text for _, text in self.arrived)


@pytest.fixture
async def agentcore() -> AsyncIterator[tuple[AgentCoreBackend, AgentCoreEmulator]]:
    async with emulated_agentcore_backend() as pair:
        yield pair


@pytest.fixture
async def session(agentcore: tuple[AgentCoreBackend, AgentCoreEmulator]) -> AsyncIterator[AgentCoreSession]:
    backend, _ = agentcore
    with anyio.fail_after(WAIT_S):
        started = await backend.start_session()
    try:
        yield started
    finally:
        await started.aclose()


async def run(
    session: AgentCoreSession, code: str, tools: Tools | None = None, output: Recorder | None = None
) -> RunReport:
    request = RunRequest(secrets.token_hex(8), code, CATALOG, "v1", 4096)
    with anyio.fail_after(WAIT_S):
        return await session.run(request, tools or Tools(), output or Recorder())


async def test_two_hundred_calls_in_a_loop_sum_their_results_one_step_each(session: AgentCoreSession) -> None:
    tools = Tools()
    code = "total = 0\nfor i in range(200):\n    total += await calc.add(a=i, b=1)\ntotal"
    report = await run(session, code, tools)
    assert report.ok, report
    assert report.result == sum(range(200)) + 200
    assert report.tool_calls == len(tools.calls) == 200
    assert session.steps == 201


async def test_fifty_gathered_calls_travel_in_one_step(session: AgentCoreSession) -> None:
    tools = Tools()
    report = await run(
        session, "import asyncio\nsum(await asyncio.gather(*[calc.add(a=i, b=i) for i in range(50)]))", tools
    )
    assert report.ok, report
    assert report.result == 2 * sum(range(50))
    assert len(tools.calls) == 50
    assert session.steps == 2  # the run plus one step of 50 calls; their results come back in the next


async def test_branches_and_early_exit_follow_the_tool_results(session: AgentCoreSession) -> None:
    tools = Tools()
    code = """
found = None
for key in ["a", "bb", "ccc", "dddd", "eeeee"]:
    record = await store.get(key=key)
    if record["value"] >= 3:
        found = key
        break
    else:
        print("skip", key)
if found is None:
    raise SystemExit("nothing found")
print("found", found)
raise SystemExit(0)
print("never printed")
"""
    output = Recorder()
    report = await run(session, code, tools, output)
    assert report.ok, report
    assert [arguments["key"] for _, arguments in tools.calls] == ["a", "bb", "ccc"]
    assert output.text() == "skip a\nskip bb\nfound ccc\n"


async def test_an_exception_in_the_program_is_a_program_error_with_a_traceback(session: AgentCoreSession) -> None:
    report = await run(session, "value = await calc.add(a=1, b=2)\n\ndef broken():\n    return value / 0\n\nbroken()")
    assert not report.ok
    assert (report.error_type, report.exc_type) == ("program_error", "ZeroDivisionError")
    assert report.traceback is not None
    assert 'File "<program>", line 4, in broken' in report.traceback
    assert "ptc_runtime" not in report.traceback


async def test_a_tool_error_is_catchable_in_the_program(session: AgentCoreSession) -> None:
    code = """
try:
    await store.get(key="missing")
except ToolError as error:
    print("caught:", error.message)
(await store.get(key="ok"))["value"]
"""
    output = Recorder()
    report = await run(session, code, output=output)
    assert report.ok, report
    assert report.result == 2
    assert output.text() == "caught: no such record\n"


async def test_an_uncaught_tool_error_ends_the_run_as_tool_error(session: AgentCoreSession) -> None:
    report = await run(session, 'await store.get(key="missing")')
    assert (report.ok, report.error_type, report.exc_type) == (False, "tool_error", "ToolError")


async def test_output_reaches_the_sink_step_by_step(session: AgentCoreSession) -> None:
    output = Recorder()
    tools = Tools(output)
    code = "for i in range(3):\n    print('before', i)\n    await calc.add(a=i, b=0)"
    report = await run(session, code, tools, output)
    assert report.ok, report
    assert tools.output_seen_at_calls == ["before 0\n", "before 0\nbefore 1\n", "before 0\nbefore 1\nbefore 2\n"]


async def test_variables_persist_across_runs_of_a_session_but_not_across_sessions(
    agentcore: tuple[AgentCoreBackend, AgentCoreEmulator], session: AgentCoreSession
) -> None:
    assert (await run(session, "kept = await calc.add(a=20, b=22)")).ok
    assert (await run(session, "kept")).result == 42
    backend, _ = agentcore
    other = await backend.start_session()
    try:
        report = await run(other, "kept")
        assert report.exc_type == "NameError"
    finally:
        await other.aclose()


async def test_synchronous_discovery_calls_work_in_steps(session: AgentCoreSession) -> None:
    report = await run(session, "tools.search('add')[0]['name']")
    assert report.result == "calc.add"


async def test_a_program_busy_longer_than_a_step_keeps_going(
    agentcore: tuple[AgentCoreBackend, AgentCoreEmulator],
) -> None:
    async with emulated_agentcore_backend(step_wait_s=0.2) as (backend, _):
        session = await backend.start_session()
        try:
            output = Recorder()
            # Busy for ten steps' waits: the call and `done` take two steps and the start one, so at least one step
            # ends empty unless the host takes over 1.8 s between two steps (0.7 s, three waits, did fail under load).
            code = "import time\nprint('working')\ntime.sleep(2.0)\nawait calc.add(a=1, b=1)"
            report = await run(session, code, output=output)
            assert (report.ok, report.result) == (True, 2)
            assert session.steps >= 4  # empty steps while the program computes, then the call, then done
            assert output.text() == "working\n"
        finally:
            await session.aclose()


async def test_throttling_and_transient_errors_are_retried(
    agentcore: tuple[AgentCoreBackend, AgentCoreEmulator], session: AgentCoreSession
) -> None:
    _, emulator = agentcore
    emulator.faults.extend(
        [
            Fault("ThrottlingException"),
            Fault("ThrottlingException", where="stream"),
            Fault("InternalServerException", where="stream"),
        ]
    )
    report = await run(session, "await calc.add(a=2, b=3)")
    assert (report.ok, report.result) == (True, 5)
    assert not emulator.faults


async def test_a_limit_raised_by_the_host_ends_the_run_as_itself(session: AgentCoreSession) -> None:
    async def over_budget(name: str, arguments: dict[str, Any]) -> Any:
        raise RunLimitExceeded("tool_call_limit", "too many calls")

    code = "import asyncio\nawait asyncio.gather(calc.add(a=1, b=1), calc.add(a=2, b=2))"
    request = RunRequest("limit", code, CATALOG, "v1", 4096)
    with anyio.fail_after(WAIT_S), pytest.raises(RunLimitExceeded):
        await session.run(request, over_budget, Recorder())


async def test_cancelling_a_run_and_closing_stops_the_agentcore_session(
    agentcore: tuple[AgentCoreBackend, AgentCoreEmulator],
) -> None:
    backend, emulator = agentcore
    session = await backend.start_session()
    emulated = emulator.service.sessions[session.session_id]
    assert emulated.kernel is not None
    process = emulated.kernel.process
    with anyio.move_on_after(1.5) as deadline:
        await session.run(RunRequest("spin", "while True:\n    pass", CATALOG, "v1", 4096), Tools(), Recorder())
    assert deadline.cancelled_caught
    with anyio.fail_after(WAIT_S):
        await session.aclose()
    assert emulated.status == "TERMINATED"
    assert not process.alive
    assert not session.alive


async def test_a_session_killed_from_outside_is_a_sandbox_failure(
    agentcore: tuple[AgentCoreBackend, AgentCoreEmulator], session: AgentCoreSession
) -> None:
    _, emulator = agentcore
    kernel = emulator.service.sessions[session.session_id].kernel
    assert kernel is not None
    await kernel.aclose()
    with pytest.raises(SandboxFailure):
        await run(session, "1 + 1")
    assert not session.alive


async def test_a_start_that_aws_refuses_is_a_sandbox_failure(
    agentcore: tuple[AgentCoreBackend, AgentCoreEmulator],
) -> None:
    backend, emulator = agentcore
    emulator.faults.append(Fault("AccessDeniedException"))
    with anyio.fail_after(WAIT_S), pytest.raises(SandboxFailure, match="access denied"):
        await backend.start_session()


async def test_closing_the_backend_stops_every_session(agentcore: tuple[AgentCoreBackend, AgentCoreEmulator]) -> None:
    backend, emulator = agentcore
    sessions = [await backend.start_session() for _ in range(3)]
    with anyio.fail_after(WAIT_S):
        await backend.aclose()
    assert [emulator.service.sessions[s.session_id].status for s in sessions] == ["TERMINATED"] * 3


def test_settings_are_validated_and_errors_name_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # Credentials from the environment, so boto3's chain never asks an instance-metadata service.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    def config(**agentcore: Any) -> Config:
        return Config.model_validate({"sandbox": {"kind": "agentcore", "agentcore": agentcore}})

    with pytest.raises(ConfigError, match=r"sandbox\.agentcore\.regoin"):
        create_backend(config(regoin="us-east-1"))
    with pytest.raises(ConfigError, match=r"sandbox\.agentcore\.session_timeout_s"):
        create_backend(config(region="us-east-1", session_timeout_s=10))
    with pytest.raises(ConfigError, match=r"sandbox\.agentcore\.endpoint_url"):
        create_backend(config(region="us-east-1", endpoint_url="ftp://x"))
    backend = create_backend(config(region="eu-west-1", code_interpreter_id="custom-abc"))
    assert backend.kind == "agentcore" and backend.isolated
    info = backend.info()  # type: ignore[attr-defined]
    assert (info.details["region"], info.details["code_interpreter"]) == ("eu-west-1", "custom-abc")


async def test_a_run_left_in_the_interpreter_by_a_dead_instance_is_cancelled_by_the_next_run() -> None:
    async with emulated_agentcore_backend(step_wait_s=3.0) as (backend, _emulator):
        first = await backend.start_session()
        state = first.session_state()
        assert state is not None
        await first.run(RunRequest("set", "x = 41", CATALOG, "v1", 4096), Tools(), Recorder())
        called = anyio.Event()

        async def never_answers(name: str, arguments: dict[str, Any]) -> Any:
            called.set()
            await anyio.sleep_forever()

        async with anyio.create_task_group() as group:  # the instance dies while its run waits for a tool result
            group.start_soon(
                first.run,
                RunRequest("dead", "await calc.add(a=1, b=2)", CATALOG, "v1", 4096),
                never_answers,
                Recorder(),
            )
            with anyio.fail_after(WAIT_S):
                await called.wait()
            group.cancel_scope.cancel()
        first.detach()
        second = await backend.resume_session(state)  # another instance takes the session over
        with anyio.fail_after(WAIT_S):
            report = await second.run(RunRequest("next", "x + 1", CATALOG, "v1", 4096), Tools(), Recorder())
        await second.aclose()
    assert report.ok and report.result == 42
    assert second.steps <= 2  # it did not wait behind the dead run: no idle steps
