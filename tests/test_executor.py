"""The executor directly: session ownership and the stateless setting."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest

from ptc_mcp.executor import ExecuteRequest
from tests.conftest import OpenTestApp
from tests.downstream.servers import FIXTURE_SERVER

pytestmark = pytest.mark.anyio

WAIT_S = 60.0


async def test_a_session_handle_is_refused_to_another_owner(open_test_app: OpenTestApp) -> None:
    with anyio.fail_after(WAIT_S):
        async with open_test_app(servers={}) as app:
            first = await app.executor.execute(ExecuteRequest(code="x = 'alice'", owner="alice"))
            assert first.session
            by_bob = await app.executor.execute(ExecuteRequest(code="x", session=first.session, owner="bob"))
            anonymous = await app.executor.execute(ExecuteRequest(code="x", session=first.session))
            by_alice = await app.executor.execute(ExecuteRequest(code="x", session=first.session, owner="alice"))
    assert by_bob.error_type == "invalid_input"
    assert anonymous.error_type == "invalid_input"
    assert by_alice.result == "alice"


async def test_the_stateless_setting_gives_a_fresh_interpreter_every_call_and_no_handle(
    open_test_app: OpenTestApp,
) -> None:
    with anyio.fail_after(WAIT_S):
        async with open_test_app(servers={}, sandbox={"stateless": True}) as app:
            first = await app.executor.execute(ExecuteRequest(code="x = 1\nx"))
            second = await app.executor.execute(ExecuteRequest(code="x"))
            assert len(app.executor.sessions) == 0
    assert first.result == 1
    assert first.session is None
    assert second.error is not None
    assert second.error.exc_type == "NameError"


async def test_reset_discards_only_that_sessions_interpreter(open_test_app: OpenTestApp) -> None:
    with anyio.fail_after(WAIT_S):
        async with open_test_app(servers={}) as app:
            one = await app.executor.execute(ExecuteRequest(code="x = 1"))
            two = await app.executor.execute(ExecuteRequest(code="x = 2"))
            reset = await app.executor.execute(ExecuteRequest(code="'x' in globals()", session=one.session, reset=True))
            kept = await app.executor.execute(ExecuteRequest(code="x", session=two.session))
    assert reset.result is False
    assert kept.result == 2


async def test_a_session_nobody_continued_expires_sooner_than_one_that_was_continued(
    open_test_app: OpenTestApp,
) -> None:
    with anyio.fail_after(WAIT_S):
        async with open_test_app(servers={}, sandbox={"session_idle_s": 600, "unclaimed_session_idle_s": 30}) as app:
            abandoned = await app.executor.execute(ExecuteRequest(code="x = 1"))
            kept = await app.executor.execute(ExecuteRequest(code="y = 1"))
            await app.executor.execute(ExecuteRequest(code="y", session=kept.session))
            for session in (app.executor.sessions.get(h, None) for h in (abandoned.session, kept.session)):
                assert session is not None
                session.last_used -= 60  # a minute idle: past the unclaimed limit, far from the normal one
            assert await app.executor.sessions.expire_idle() == 1
            gone = await app.executor.execute(ExecuteRequest(code="x", session=abandoned.session))
            still = await app.executor.execute(ExecuteRequest(code="y", session=kept.session))
    assert gone.error_type == "invalid_input"
    assert still.result == 1


@pytest.mark.parametrize(
    ("ending", "program"),
    [
        ("done", "await fx.echo(text='a')\nawait fx.echo(text='b')"),
        ("a call left unawaited", "await fx.echo(text='a')\nasyncio.ensure_future(fx.sleep(seconds=60))"),
        ("the time limit, mid-call", "await fx.echo(text='a')\nawait fx.sleep(seconds=60)"),
    ],
)
async def test_a_runs_call_lines_are_written_before_its_run_line_however_it_ends(
    open_test_app: OpenTestApp, ending: str, program: str
) -> None:
    # Call lines are written one loop turn after the call (the answer goes first); the run's line still comes last.
    servers = {"fx": {"command": sys.executable, "args": [str(FIXTURE_SERVER)]}}
    async with open_test_app(servers=servers, limits={"timeout_s": 3}) as app:
        lines: list[dict[str, Any]] = []
        app.executor.audit.observe(lines.append)
        result = await app.executor.execute(ExecuteRequest(code=program))
    assert result.error_type == (None if ending != "the time limit, mid-call" else "timeout"), result
    events = [line["event"] for line in lines]
    assert events[-1] == "run", events
    assert events.count("run") == 1, events
    outcomes = [line["outcome"] for line in lines if line["event"] == "call"]
    assert outcomes == ["ok", "ok" if ending == "done" else "cancelled"], outcomes
