"""Every shared store keeps the session map's promises: exclusive leases with fencing, takeovers that count as
changes, idle expiry that returns the state, and no handle or identity in the clear. SQLite on disk, a real
``redis-server``, and DynamoDB through its local emulator (real boto3 over HTTP)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import anyio
import pytest

from ptc_mcp.remote.session_map import digest
from ptc_mcp.remote.stores.dynamodb_map import DynamoDbSessionMap
from ptc_mcp.remote.stores.redis_map import RedisSessionMap
from ptc_mcp.remote.stores.sqlite import SqliteSessionMap
from tests.remote.stores import STORES, two_maps

pytestmark = pytest.mark.anyio

STATE = {"backend": "agentcore", "session_id": "s-1"}


@pytest.mark.parametrize("kind", STORES)
async def test_a_lease_is_exclusive_until_released_and_a_stale_holder_cannot_write(kind: str, tmp_path: Path) -> None:
    async with two_maps(kind, tmp_path) as (first, second):
        await first.create("ptc_handle", "alice")
        held = await first.acquire("ptc_handle", "instance-a", lease_s=60)
        refused = await second.acquire("ptc_handle", "instance-b", lease_s=60)
        assert held is not None and held.record.version == 0 and held.record.state is None
        assert refused is None
        assert await first.release("ptc_handle", "instance-a", held.fence, STATE) == 1
        taken = await second.acquire("ptc_handle", "instance-b", lease_s=60)
        assert taken is not None and taken.record.version == 1 and taken.record.state == STATE
        assert taken.fence == held.fence + 1
        assert await first.release("ptc_handle", "instance-a", held.fence, None) == -1  # not a's lease any more
        assert not await first.renew("ptc_handle", "instance-a", held.fence, 60)
        assert await second.renew("ptc_handle", "instance-b", taken.fence, 60)
        record = await first.lookup("ptc_handle")
        assert record is not None and record.owner == digest("alice") and record.state == STATE


@pytest.mark.parametrize("kind", STORES)
async def test_a_takeover_after_a_dead_holder_bumps_the_version(kind: str, tmp_path: Path) -> None:
    async with two_maps(kind, tmp_path) as (first, second):
        await first.create("ptc_handle", None)
        ran = await first.acquire("ptc_handle", "instance-a", lease_s=60)
        assert ran is not None
        assert await first.release("ptc_handle", "instance-a", ran.fence, STATE) == 1  # a ran it and knows v1
        dying = await second.acquire("ptc_handle", "instance-b", lease_s=1)  # b runs it, then is killed
        assert dying is not None and dying.record.version == 1
        with anyio.fail_after(10):
            while (taken := await first.acquire("ptc_handle", "instance-a", lease_s=60)) is None:
                await anyio.sleep(0.1)  # bounded poll: the lease runs out by the store's clock
        assert taken.record.version == 2  # a must not trust its cached interpreter from v1
        assert await second.release("ptc_handle", "instance-b", dying.fence, None) == -1  # the dead holder is fenced
        assert await first.release("ptc_handle", "instance-a", taken.fence, STATE) == 3


@pytest.mark.parametrize("kind", STORES)
async def test_concurrent_takes_of_one_session_let_exactly_one_in(kind: str, tmp_path: Path) -> None:
    async with two_maps(kind, tmp_path) as (first, second):
        await first.create("ptc_handle", None)
        for round_ in range(5):
            winners: list[str] = []

            async def take(name: str, store: object) -> None:
                lease = await store.acquire("ptc_handle", name, lease_s=60)  # type: ignore[attr-defined]
                if lease is not None:
                    winners.append(name)
                    assert await store.release("ptc_handle", name, lease.fence, None) > 0  # type: ignore[attr-defined]

            async with anyio.create_task_group() as group:
                for index in range(8):
                    group.start_soon(take, f"holder-{round_}-{index}", first if index % 2 else second)
            assert 1 <= len(winners) <= 8  # a winner may release before the next one tries: no overlap either way
        record = await first.lookup("ptc_handle")
        assert record is not None


@pytest.mark.parametrize("kind", STORES)
async def test_idle_sessions_are_reaped_with_their_state_and_leased_ones_are_not(kind: str, tmp_path: Path) -> None:
    async with two_maps(kind, tmp_path) as (sessions, _other):
        for handle in ("idle", "busy"):
            await sessions.create(handle, None)
            lease = await sessions.acquire(handle, "a", lease_s=60)
            assert lease is not None
            await sessions.release(handle, "a", lease.fence, {"session_id": handle})
        assert await sessions.acquire("busy", "a", lease_s=60) is not None
        reaped = await sessions.reap_idle(idle_s=-1)
        assert reaped == [(digest("idle"), {"session_id": "idle"})]
        assert await sessions.lookup("idle") is None and await sessions.lookup("busy") is not None


@pytest.mark.parametrize("kind", STORES)
async def test_the_store_holds_no_handle_or_identity_in_the_clear(kind: str, tmp_path: Path) -> None:
    async with two_maps(kind, tmp_path) as (sessions, _other):
        await sessions.create("ptc_secret_handle", "agent-7:alice@https://issuer")
        lease = await sessions.acquire("ptc_secret_handle", "a", lease_s=60)
        assert lease is not None
        await sessions.release("ptc_secret_handle", "a", lease.fence, STATE)
        if isinstance(sessions, SqliteSessionMap):
            dump = "\n".join(sqlite3.connect(sessions.path).iterdump())
        elif isinstance(sessions, RedisSessionMap):
            client = sessions._client
            keys = [str(key) for key in await client.keys("*")]
            values = [await client.hgetall(key) for key in keys if key.endswith(":s")]
            dump = json.dumps([keys, values])
        else:
            assert isinstance(sessions, DynamoDbSessionMap)
            dump = json.dumps((await sessions._call("scan"))["Items"])
        assert digest("ptc_secret_handle") in dump
        assert "ptc_secret_handle" not in dump and "alice" not in dump
