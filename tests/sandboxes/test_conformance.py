"""The conformance suite: what every isolating sandbox backend must do, through the ``SandboxBackend`` interface.

Each test runs once per backend of ``tests/sandboxes/conftest.py``'s ``BACKENDS`` (unavailable ones skip).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import pytest

from ptc_mcp.catalog.model import DownstreamTool
from ptc_mcp.catalog.runtime_catalog import build_runtime_catalog, catalog_version
from ptc_mcp.errors import SandboxFailure, ToolCallError
from ptc_mcp.output import OutputCollector
from ptc_mcp.sandboxes.base import RunReport, RunRequest, SandboxSession, StreamName
from tests.sandboxes.conftest import BackendUnderTest

pytestmark = pytest.mark.anyio

WAIT_S = 60.0
GRACE_S = 3.0
"""How long past its deadline a run may take to end, including killing everything it started."""
CAP = 4096

_ADD = types.Tool(
    name="add",
    input_schema={
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
)
_FAIL = types.Tool(name="fail", input_schema={"type": "object", "properties": {}})
CATALOG = build_runtime_catalog([DownstreamTool("calc", _ADD), DownstreamTool("calc", _FAIL)])


class Calculator:
    """A ``ToolCallHandler`` with ``calc.add`` and ``calc.fail``; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, name: str, arguments: dict[str, Any]) -> Any:
        self.calls += 1
        if name == "calc.add":
            return arguments["a"] + arguments["b"]
        raise ToolCallError("tool_error", "the calculator is broken")


class WatchedOutput(OutputCollector):
    """An output collector that says when the program printed for the first time."""

    def __init__(self, cap: int = CAP) -> None:
        super().__init__(cap)
        self.printed = anyio.Event()

    def write(self, stream: StreamName, text: str) -> None:
        self.printed.set()
        super().write(stream, text)


def request(code: str) -> RunRequest:
    return RunRequest(
        run_id=secrets.token_hex(8),
        code=code,
        catalog=CATALOG,
        catalog_version=catalog_version(CATALOG),
        max_output_bytes=CAP,
    )


@asynccontextmanager
async def session_of(under_test: BackendUnderTest) -> AsyncIterator[SandboxSession]:
    with anyio.fail_after(WAIT_S):
        session = await under_test.backend.start_session()
    try:
        yield session
    finally:
        await session.aclose()


async def run(
    session: SandboxSession, code: str, output: OutputCollector | None = None, handler: Calculator | None = None
) -> RunReport:
    with anyio.fail_after(WAIT_S):
        return await session.run(request(code), handler or Calculator(), output or OutputCollector(CAP))


async def test_a_run_returns_its_output_and_the_value_of_its_last_expression(backend: BackendUnderTest) -> None:
    output = OutputCollector(CAP)
    async with session_of(backend) as session:
        report = await run(session, "print('hello')\n{'sum': 1 + 2}", output)
    assert report.ok
    assert report.result == {"sum": 3}
    assert output.text("stdout") == "hello\n"


async def test_variables_persist_within_a_session_and_not_across_sessions(backend: BackendUnderTest) -> None:
    async with session_of(backend) as first, session_of(backend) as second:
        await run(first, "x = 41")
        same = await run(first, "x + 1")
        other = await run(second, "x")
    assert same.result == 42
    assert not other.ok
    assert other.error_type == "program_error"
    assert other.exc_type == "NameError"


async def test_tool_calls_reach_the_host_sequentially_and_in_parallel(backend: BackendUnderTest) -> None:
    calculator = Calculator()
    code = (
        "total = 0\n"
        "for i in range(20):\n"
        "    total = await calc.add(a=total, b=i)\n"
        "parallel = await asyncio.gather(*[calc.add(a=i, b=i) for i in range(30)])\n"
        "total, sum(parallel)"
    )
    async with session_of(backend) as session:
        report = await run(session, code, handler=calculator)
    assert report.ok, report
    assert report.result == [190, 870]
    assert calculator.calls == 50


class Searcher(Calculator):
    """``Calculator`` that also answers ``tools.search`` (a blocking call in the program), with a page of one."""

    async def __call__(self, name: str, arguments: dict[str, Any]) -> Any:
        if name == "@search":
            self.calls += 1
            return {"matches": [{"name": "calc.add"}], "total": 1}
        return await super().__call__(name, arguments)


async def test_a_blocking_call_is_answered_while_an_async_call_is_in_flight(backend: BackendUnderTest) -> None:
    # tools.search blocks the program's thread (and its event loop) until the host answers; the answer to the
    # call started before it arrives meanwhile and must still reach the task awaiting it.
    code = (
        "pending = asyncio.ensure_future(calc.add(a=1, b=2))\n"
        "await asyncio.sleep(0)\n"
        "found = tools.search('add')\n"
        "await pending, found.total, await calc.add(a=3, b=4)"
    )
    async with session_of(backend) as session:
        report = await run(session, code, handler=Searcher())
    assert report.ok, report
    assert report.result == [3, 1, 7]


async def test_a_program_sent_again_runs_again_with_the_state_it_finds(backend: BackendUnderTest) -> None:
    again = "count += 1\nif count == 3:\n    raise ValueError(count)\ncount"
    async with session_of(backend) as session:
        await run(session, "count = 0")
        reports = [await run(session, again) for _ in range(3)]
    assert [report.result for report in reports[:2]] == [1, 2]
    assert reports[2].exc_type == "ValueError"
    assert "line 3" in (reports[2].traceback or "")


async def test_calls_left_unawaited_end_with_their_run_and_the_session_goes_on(backend: BackendUnderTest) -> None:
    calculator = Calculator()
    async with session_of(backend) as session:
        left = await run(
            session, "for i in range(5):\n    asyncio.ensure_future(calc.add(a=i, b=i))\n'left'", handler=calculator
        )
        after = await run(session, "await calc.add(a=20, b=22)", handler=calculator)
    assert left.ok and left.result == "left"
    assert after.ok and after.result == 42


async def test_a_failing_tool_call_raises_a_catchable_tool_error(backend: BackendUnderTest) -> None:
    code = "try:\n    await calc.fail()\nexcept ToolError as exc:\n    caught = exc.error_type\ncaught"
    async with session_of(backend) as session:
        caught = await run(session, code)
        uncaught = await run(session, "await calc.fail()")
    assert caught.result == "tool_error"
    assert not uncaught.ok
    assert uncaught.error_type == "tool_error"


async def test_an_exception_is_a_program_error_with_a_traceback_of_the_program_only(backend: BackendUnderTest) -> None:
    async with session_of(backend) as session:
        report = await run(session, "def f():\n    raise ValueError('boom')\nf()")
    assert not report.ok
    assert (report.error_type, report.exc_type, report.message) == ("program_error", "ValueError", "boom")
    assert report.traceback is not None
    assert 'File "<program>", line 2, in f' in report.traceback
    assert "ptc_runtime" not in report.traceback


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("print('started', flush=True)\nwhile True: pass", id="busy-loop"),
        pytest.param("import time\nprint('started', flush=True)\ntime.sleep(10**6)", id="sleep"),
        pytest.param(
            # Programs run on a worker thread, so signal.signal() is refused; libc's signal() is not.
            "import ctypes, signal\nctypes.CDLL(None).signal(int(signal.SIGTERM), 1)\n"
            "print('started', flush=True)\nwhile True: pass",
            id="ignores-sigterm",
        ),
        pytest.param(
            "import subprocess, sys\n"
            "child = 'import os, signal; os.setsid(); signal.signal(signal.SIGTERM, signal.SIG_IGN)'\n"
            "child += '\\nwhile True: pass'\n"
            "subprocess.Popen([sys.executable, '-c', child])\nprint('started', flush=True)\nwhile True: pass",
            id="escaped-child-ignoring-sigterm",
        ),
    ],
)
async def test_a_run_past_its_deadline_is_stopped_and_closing_leaves_nothing_behind(
    backend: BackendUnderTest, code: str
) -> None:
    output = WatchedOutput()
    ended: list[RunReport] = []

    async with session_of(backend) as session:
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                ended.append(await session.run(request(code), Calculator(), output))

            tg.start_soon(run)
            # The deadline falls once the program runs (on a loaded machine a fixed one could fall before it printed).
            with anyio.fail_after(WAIT_S):
                await output.printed.wait()
            check = await backend.watch(session)
            stopped = time.monotonic()
            tg.cancel_scope.cancel()
        assert ended == []  # the program was still running: the cancel stopped it
        await session.aclose()
        assert time.monotonic() - stopped < GRACE_S
        assert not session.alive
        assert await check() == []


async def test_a_new_session_works_after_one_was_stopped_mid_run(backend: BackendUnderTest) -> None:
    async with session_of(backend) as stopped:
        with anyio.move_on_after(0.5):
            await stopped.run(request("while True: pass"), Calculator(), OutputCollector(CAP))
    async with session_of(backend) as fresh:
        report = await run(fresh, "'fresh'")
    assert report.result == "fresh"


async def test_printing_ten_megabytes_is_capped_and_ends_as_output_limit(
    backend: BackendUnderTest,
) -> None:
    output = OutputCollector(CAP)
    async with session_of(backend) as session:
        report = await run(session, "print('x' * (10 * 1024 * 1024))", output)
        after = await run(session, "'still here'")
    stdout = output.text("stdout")
    assert report.error_type == "output_limit"
    assert report.output_dropped > 0
    assert len(stdout.encode()) <= CAP
    assert stdout.startswith("x" * 1000)
    assert after.result == "still here"


async def test_a_sandbox_killed_from_outside_mid_run_is_a_sandbox_failure(backend: BackendUnderTest) -> None:
    output = WatchedOutput()
    failures: list[SandboxFailure] = []

    async def run_until_killed() -> None:
        try:
            await session.run(request("print('running', flush=True)\nwhile True: pass"), Calculator(), output)
        except SandboxFailure as failure:
            failures.append(failure)

    async with session_of(backend) as session:
        with anyio.fail_after(WAIT_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_until_killed)
                await output.printed.wait()
                leftovers = await backend.watch(session)
                await backend.kill_from_outside(session)
        assert [failure.error_type for failure in failures] == ["sandbox_failure"]
        assert not session.alive
        await session.aclose()
        assert await leftovers() == []
    async with session_of(backend) as fresh:
        assert (await run(fresh, "1 + 1")).result == 2
