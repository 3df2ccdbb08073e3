"""Capacity that degrades gracefully: new sessions queue for room, closed sessions say why, defaults fit the machine."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from mcp import Client

from ptc_mcp.capacity import Machine, size_capacity, this_machine
from ptc_mcp.config import effective_limits, parse_config
from ptc_mcp.executor import ExecuteRequest, Executor
from ptc_mcp.results import RunResult
from ptc_mcp.server import build_server
from tests.conftest import OpenTestApp
from tests.mcp_calls import error_type, execute, structured

pytestmark = pytest.mark.anyio

WAIT_S = 60.0
FOREVER = "while True:\n    await asyncio.sleep(0.05)"
ONE_SESSION = {"max_sessions": 1}


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    with anyio.fail_after(WAIT_S):
        while not condition():
            await anyio.sleep(0.01)


async def run_into(results: list[RunResult], executor: Executor, request: ExecuteRequest) -> None:
    results.append(await executor.execute(request))


async def test_a_new_session_waits_for_room_then_starts_and_the_evicted_session_says_why(
    open_test_app: OpenTestApp,
) -> None:
    with anyio.fail_after(WAIT_S):
        async with open_test_app(servers={}, sandbox=ONE_SESSION, limits={"max_concurrent_runs": 2}) as app:
            executor = app.executor
            first = await executor.execute(ExecuteRequest(code="x = 41"))
            assert first.session
            newcomer: list[RunResult] = []
            running = anyio.CancelScope()

            async def run_forever() -> None:
                with running:
                    await executor.execute(ExecuteRequest(code=FOREVER, session=first.session))

            async with anyio.create_task_group() as group:
                group.start_soon(run_forever)
                await until(lambda: executor.running == 1)
                group.start_soon(run_into, newcomer, executor, ExecuteRequest(code="y = 1\ny"))
                # The only session is running: the new one is queued, neither refused nor started.
                await until(lambda: executor.sessions.waiting_for_room)
                assert executor.queued == 1 and not newcomer
                running.cancel()  # the running program ends (cancelled): its session is idle now
            again = await executor.execute(ExecuteRequest(code="x + 1", session=first.session))
            assert len(executor.sessions) == 1
    (started,) = newcomer
    assert started.status == "ok" and started.result == 1
    assert started.session and started.session != first.session
    assert again.error_type == "invalid_input"
    assert again.error is not None
    assert "closed to make room: the server holds at most 1 session (sandbox.max_sessions)" in again.error.message
    assert "variables are gone" in again.error.message


async def test_a_new_session_is_busy_only_when_the_queue_is_full(open_test_app: OpenTestApp) -> None:
    limits = {"max_concurrent_runs": 1, "max_queued_runs": 1}
    with anyio.fail_after(WAIT_S):
        async with open_test_app(servers={}, sandbox=ONE_SESSION, limits=limits) as app:
            executor = app.executor
            results: list[RunResult] = []
            async with anyio.create_task_group() as group:
                group.start_soon(executor.execute, ExecuteRequest(code=FOREVER))
                await until(lambda: executor.running == 1)
                group.start_soon(run_into, results, executor, ExecuteRequest(code="1"))
                await until(lambda: executor.sessions.waiting_for_room)
                refused = await executor.execute(ExecuteRequest(code="2"))  # one running, one waiting: full
                assert refused.error_type == "busy" and not results
                group.cancel_scope.cancel()
    assert refused.error is not None and "1 programs are running and 1 are waiting" in refused.error.message


async def test_the_time_limit_counts_the_wait_for_room(open_test_app: OpenTestApp) -> None:
    with anyio.fail_after(WAIT_S):
        async with open_test_app(servers={}, sandbox=ONE_SESSION) as app:
            executor = app.executor
            async with anyio.create_task_group() as group:
                group.start_soon(executor.execute, ExecuteRequest(code=FOREVER))
                await until(lambda: executor.running == 1)
                late = await executor.execute(ExecuteRequest(code="1", timeout_s=1))
                assert len(executor.sessions) == 1  # the waiting session never held a place
                group.cancel_scope.cancel()
    assert late.error_type == "timeout"
    assert late.error is not None and "did not start within its time limit of 1 s" in late.error.message


async def test_a_handshake_era_connection_whose_session_was_evicted_is_told_its_variables_are_gone(
    open_test_app: OpenTestApp,
) -> None:
    with anyio.fail_after(WAIT_S):
        async with open_test_app(servers={}, sandbox=ONE_SESSION) as app:
            server = build_server(app)
            async with Client(server, mode="legacy") as first, Client(server, mode="legacy") as second:
                assert not (await execute(first, "x = 41")).is_error
                assert not (await execute(second, "y = 1")).is_error  # takes the only place: the first is evicted
                after = await execute(first, "'x' in globals()")
    assert not after.is_error, after
    assert structured(after)["result"] is False
    notice = structured(after)["notice"]
    assert "this connection's session was closed to make room: the server holds at most 1 session" in notice
    assert "variables of earlier programs are gone" in notice
    assert "[note: " in after.content[0].text  # type: ignore[union-attr]


async def test_a_stateless_protocol_client_passing_an_evicted_handle_learns_why(open_test_app: OpenTestApp) -> None:
    with anyio.fail_after(WAIT_S):
        async with (
            open_test_app(servers={}, sandbox=ONE_SESSION) as app,
            Client(build_server(app), mode="2026-07-28") as client,
        ):
            handle = structured(await execute(client, "x = 41"))["session"]
            assert not (await execute(client, "y = 1")).is_error  # a new session: the first one makes room
            again = await execute(client, "x", session=handle)
    assert error_type(again) == "invalid_input"
    assert "closed to make room" in structured(again)["error"]["message"]


async def test_a_session_closed_for_idleness_says_so(open_test_app: OpenTestApp) -> None:
    with anyio.fail_after(WAIT_S):
        async with open_test_app(servers={}, sandbox={"session_idle_s": 30}) as app:
            first = await app.executor.execute(ExecuteRequest(code="x = 1"))
            kept = await app.executor.execute(ExecuteRequest(code="x", session=first.session))
            session = app.executor.sessions.get(first.session or "", None)
            assert session is not None and kept.result == 1
            session.last_used -= 60
            assert await app.executor.sessions.expire_idle() == 1
            gone = await app.executor.execute(ExecuteRequest(code="x", session=first.session))
            stranger = await app.executor.execute(ExecuteRequest(code="x", session=first.session, owner="mallory"))
    assert gone.error is not None and "closed after 30 s without a call (sandbox.session_idle_s)" in gone.error.message
    assert stranger.error is not None and "unknown or expired" in stranger.error.message  # no news for others


def test_defaults_are_sized_from_the_machine_with_the_arithmetic_shown() -> None:
    config = parse_config({}, environ={})
    expected = size_capacity(this_machine(), config.limits.memory_mb)
    assert config.limits.max_concurrent_runs == expected.max_concurrent_runs
    assert config.sandbox.max_sessions == expected.max_sessions
    assert config.limits.max_queued_runs == expected.max_sessions
    lines = effective_limits(config)
    assert lines[0].startswith(f"limits: {expected.max_concurrent_runs} programs at once")
    assert any(line.strip().startswith("max_sessions: (") for line in lines)


def test_settings_in_the_config_win_and_the_rest_are_sized_around_them() -> None:
    config = parse_config({"limits": {"max_concurrent_runs": 3, "memory_mb": 1024}}, environ={})
    expected = size_capacity(this_machine(), 1024, runs=3)
    assert config.limits.max_concurrent_runs == 3
    assert config.sandbox.max_sessions == expected.max_sessions
    assert "max_concurrent_runs" not in config.sized and "max_sessions" in config.sized
    given = parse_config(
        {"limits": {"max_concurrent_runs": 3, "max_queued_runs": 5}, "sandbox": {"max_sessions": 7}}, environ={}
    )
    assert (given.limits.max_queued_runs, given.sandbox.max_sessions, given.sized) == (5, 7, {})


@pytest.mark.parametrize(
    ("machine", "runs", "sessions"),
    [
        pytest.param(Machine(memory_mb=24 * 1024, cpus=2, open_files=1 << 20), 8, 224, id="24GB-2cpu"),
        pytest.param(Machine(memory_mb=8 * 1024, cpus=2, open_files=1 << 20), 6, 48, id="8GB-2cpu"),
        pytest.param(Machine(memory_mb=2 * 1024, cpus=4, open_files=1 << 20), 1, 16, id="2GB-small"),
        pytest.param(Machine(memory_mb=64 * 1024, cpus=16, open_files=1024), 48, 96, id="64GB-fd-bound"),
    ],
)
def test_the_sizing_arithmetic(machine: Machine, runs: int, sessions: int) -> None:
    sized = size_capacity(machine, 512)
    assert (sized.max_concurrent_runs, sized.max_sessions, sized.max_queued_runs) == (runs, sessions, sessions)
