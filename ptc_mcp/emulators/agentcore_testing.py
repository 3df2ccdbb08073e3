"""An ``agentcore`` backend wired to a local emulator, for tests (yours too): no AWS account needed.

async with emulated_agentcore_backend() as (backend, emulator):
    session = await backend.start_session()
    report = await session.run(request, call_tool, output)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import boto3

from ptc_mcp.emulators.agentcore import AgentCoreEmulator, running_emulator
from ptc_mcp.sandboxes.agentcore.backend import AgentCoreBackend, AgentCoreSettings

__all__ = ["emulated_agentcore_backend", "fake_credentials_session"]


def fake_credentials_session(region: str = "us-east-1") -> boto3.Session:
    """A boto3 session with made-up credentials: requests are signed, and only the emulator accepts them."""
    return boto3.Session(aws_access_key_id="emulator", aws_secret_access_key="emulator", region_name=region)


@asynccontextmanager
async def emulated_agentcore_backend(
    *, run_timeout_s: float = 60.0, emulator: AgentCoreEmulator | None = None, **settings: Any
) -> AsyncIterator[tuple[AgentCoreBackend, AgentCoreEmulator]]:
    """Serve an emulator on loopback and yield an ``AgentCoreBackend`` that talks to it through real boto3."""
    async with running_emulator(emulator=emulator) as (url, running):
        backend = AgentCoreBackend(
            AgentCoreSettings.model_validate({"endpoint_url": url, **settings}),
            run_timeout_s=run_timeout_s,
            boto_session=fake_credentials_session(),
        )
        try:
            yield backend, running
        finally:
            await backend.aclose()
