"""The shared session map: leases serialize a session's runs across instances; handles and owners are hashed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from ptc_mcp.errors import ConfigError
from ptc_mcp.remote.settings import SessionMapConfig
from ptc_mcp.remote.shared_sessions import SqliteSessionMap, digest, session_sharing
from ptc_mcp.sandboxes import create_backend
from tests.conftest import test_config

pytestmark = pytest.mark.anyio


async def test_a_lease_is_exclusive_until_released_or_expired(tmp_path: Path) -> None:
    first, second = SqliteSessionMap(tmp_path / "map.db"), SqliteSessionMap(tmp_path / "map.db")  # two "instances"
    await first.create("ptc_handle", "alice")
    held = await first.acquire("ptc_handle", "instance-a", lease_s=60)
    refused = await second.acquire("ptc_handle", "instance-b", lease_s=60)
    version = await first.release("ptc_handle", "instance-a", {"backend": "agentcore", "session_id": "s-1"})
    taken = await second.acquire("ptc_handle", "instance-b", lease_s=0.001)
    assert held is not None and held.version == 0 and held.state is None
    assert refused is None
    assert version == 1
    assert taken is not None and taken.version == 1 and taken.state == {"backend": "agentcore", "session_id": "s-1"}
    await anyio.sleep(0.01)
    stolen_after_expiry = await first.acquire("ptc_handle", "instance-a", lease_s=60)  # b's lease ran out
    assert stolen_after_expiry is not None
    assert await second.release("ptc_handle", "instance-b", None) == 1  # b lost its lease: its write is ignored


async def test_idle_sessions_are_reaped_with_their_state_and_leased_ones_are_not(tmp_path: Path) -> None:
    sessions = SqliteSessionMap(tmp_path / "map.db")
    for handle in ("idle", "busy"):
        await sessions.create(handle, None)
        await sessions.acquire(handle, "a", lease_s=60)
        await sessions.release(handle, "a", {"session_id": handle})
    await sessions.acquire("busy", "a", lease_s=60)
    reaped = await sessions.reap_idle(idle_s=-1)
    assert reaped == [(digest("idle"), {"session_id": "idle"})]
    assert await sessions.lookup("idle") is None and await sessions.lookup("busy") is not None


async def test_the_map_stores_no_handle_or_identity_in_the_clear(tmp_path: Path) -> None:
    sessions = SqliteSessionMap(tmp_path / "map.db")
    await sessions.create("ptc_secret_handle", "agent-7:alice@https://issuer")
    dump = "\n".join(sqlite3.connect(tmp_path / "map.db").iterdump())
    assert "ptc_secret_handle" not in dump and "alice" not in dump


def test_a_shared_map_is_refused_for_backends_whose_interpreters_live_in_the_process() -> None:
    backend = create_backend(test_config(), allow_unisolated=True)
    with pytest.raises(ConfigError, match="sticky"):
        session_sharing(SessionMapConfig(kind="sqlite", path="/tmp/unused.db"), backend, 60)
