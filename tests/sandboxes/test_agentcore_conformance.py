"""The backend conformance suite (``test_conformance.py``) on ``agentcore``, against the local emulator.

The suite's tests are imported here and run with this module's ``backend`` fixture: an ``AgentCoreBackend`` that
reaches the emulator through real boto3 and the bedrock-agentcore SDK. What a session leaves behind is checked on
the emulated session's interpreter process (``process`` sandbox) and on its AgentCore status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ptc_mcp.emulators.agentcore import AgentCoreEmulator
from ptc_mcp.emulators.agentcore_testing import emulated_agentcore_backend
from ptc_mcp.sandboxes.base import SandboxSession
from ptc_mcp.sandboxes.process.backend import ProcessSession
from ptc_mcp.sandboxes.process.isolation import bubblewrap_status
from tests.sandboxes.conftest import BackendUnderTest, Leftovers, _process_kill_from_outside, _process_watch
from tests.sandboxes.test_conformance import *  # noqa: F403  (the suite's tests, run here on agentcore)


def _interpreter_of(emulator: AgentCoreEmulator, session: SandboxSession) -> ProcessSession:
    kernel = emulator.service.sessions[session.session_id].kernel  # type: ignore[attr-defined]
    assert kernel is not None, "the emulated session has no interpreter"
    return kernel.process


@pytest.fixture
async def backend() -> AsyncIterator[BackendUnderTest]:
    usable, reason = bubblewrap_status()
    if not usable:
        pytest.skip(f"the emulator's sessions would not be isolated here: {reason}")
    async with emulated_agentcore_backend() as (agentcore, emulator):

        async def watch(session: SandboxSession) -> Leftovers:
            emulated = emulator.service.sessions[session.session_id]  # type: ignore[attr-defined]
            processes = await _process_watch(_interpreter_of(emulator, session))

            async def leftovers() -> list[str]:
                found = await processes()
                if emulated.status != "TERMINATED":
                    found.append(f"AgentCore session {emulated.session_id} is {emulated.status}")
                return found

            return leftovers

        async def kill_from_outside(session: SandboxSession) -> None:
            await _process_kill_from_outside(_interpreter_of(emulator, session))

        yield BackendUnderTest("agentcore", agentcore, watch, kill_from_outside)
