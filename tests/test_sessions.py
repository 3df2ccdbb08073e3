"""``SessionStore.bind``: the one call that resolves a request's session and binds a new one to its connection."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest

from ptc_mcp.results import RunResult
from ptc_mcp.sessions import SESSION_STATE_KEY, ConnectionSlot, LocalDirectory, SessionStore

pytestmark = pytest.mark.anyio


def store() -> SessionStore:
    return SessionStore(idle_s=100, max_sessions=4, unclaimed_idle_s=1)


def ran_in(handle: str | None) -> RunResult:
    return RunResult(status="ok", session=handle)


async def test_a_connection_keeps_the_session_its_first_run_started_and_releases_it_when_it_ends() -> None:
    sessions = store()
    assert isinstance(sessions.directory, LocalDirectory)
    async with AsyncExitStack() as connection:
        slot = ConnectionSlot({}, on_close=connection.callback)
        first = sessions.bind(None, "alice", slot)
        assert first.handle is None  # the run starts a session
        session = await sessions.create("alice")
        session.unclaimed = True
        assert first.finish(ran_in(session.handle)) is False  # the connection keeps it: nothing to tell the client
        assert slot.state[SESSION_STATE_KEY] == session.handle
        assert not session.unclaimed
        again = sessions.bind(None, "alice", slot)
        assert again.handle == session.handle and again.notice is None
        assert again.finish(ran_in(session.handle)) is False
    # The connection ended: the session expires like one nobody keeps, but its handle still works.
    assert session.unclaimed
    assert sessions.get(session.handle, "alice") is session


async def test_a_connection_whose_session_was_closed_starts_afresh_and_is_told_why() -> None:
    sessions = store()
    slot = ConnectionSlot({})
    session = await sessions.create(None)
    sessions.bind(None, None, slot).finish(ran_in(session.handle))
    await sessions.close(session.handle, "closed to make room")
    binding = sessions.bind(None, None, slot)
    assert binding.handle is None and SESSION_STATE_KEY not in slot.state
    fresh = await sessions.create(None)
    result = ran_in(fresh.handle)
    assert binding.finish(result) is False
    assert result.notice is not None and "closed to make room" in result.notice
    assert slot.state[SESSION_STATE_KEY] == fresh.handle


async def test_another_callers_session_is_not_the_connections() -> None:
    sessions = store()
    slot = ConnectionSlot({})
    session = await sessions.create("alice")
    sessions.bind(None, "alice", slot).finish(ran_in(session.handle))
    assert sessions.bind(None, "mallory", slot).handle is None


async def test_a_handle_the_request_passed_is_used_and_never_bound_to_the_connection() -> None:
    sessions = store()
    slot = ConnectionSlot({})
    session = await sessions.create(None)
    binding = sessions.bind(session.handle, None, slot)
    assert binding.handle == session.handle
    assert binding.finish(ran_in(session.handle)) is False
    assert slot.state == {}


async def test_without_a_connection_a_new_session_is_announced_to_the_client() -> None:
    sessions = store()
    session = await sessions.create(None)
    assert sessions.bind(None, None, None).finish(ran_in(session.handle)) is True
    assert sessions.bind(session.handle, None, None).finish(ran_in(session.handle)) is False
    assert sessions.bind(None, None, None).finish(ran_in(None)) is False  # stateless: no session at all
