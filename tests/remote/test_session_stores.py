"""Every shared store keeps the session map's promises: exclusive leases with fencing, takeovers that count as
changes, idle expiry that returns the state, and no handle or identity in the clear. SQLite on disk, a real
``redis-server``, and DynamoDB through its local emulator (real boto3 over HTTP)."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import anyio
import pytest

from ptc_mcp.config.remote import SessionMapConfig
from ptc_mcp.emulators.dynamodb import running_dynamodb_emulator
from ptc_mcp.remote.session_map import SessionMap, SessionMapError, digest
from ptc_mcp.remote.stores.dynamodb_map import DynamoDbSessionMap
from ptc_mcp.remote.stores.redis_map import RedisSessionMap
from ptc_mcp.remote.stores.sqlite import SqliteSessionMap
from tests.remote.helpers import FAKE_AWS, free_port, write_config
from tests.remote.stores import STORES, TABLE, running_dynamodb, running_redis, two_maps

pytestmark = pytest.mark.anyio

STATE = {"backend": "agentcore", "session_id": "s-1"}


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 signs its requests; only the emulator accepts these."""
    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)


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
async def test_concurrent_takes_of_one_session_never_overlap_and_lose_no_update(kind: str, tmp_path: Path) -> None:
    async with two_maps(kind, tmp_path) as (first, second):
        await first.create("ptc_handle", None)
        holding: list[str] = []
        overlaps: list[list[str]] = []
        runs = 0

        async def worker(name: str, store: SessionMap) -> None:
            nonlocal runs
            for _ in range(5):
                with anyio.fail_after(30):
                    while (lease := await store.acquire("ptc_handle", name, lease_s=30)) is None:
                        await anyio.sleep(0.005)  # bounded poll: another worker holds it
                holding.append(name)
                if len(holding) > 1:
                    overlaps.append(list(holding))
                count = (lease.record.state or {}).get("count", 0)
                await anyio.sleep(0.002)
                holding.remove(name)
                runs += 1
                assert await store.release("ptc_handle", name, lease.fence, {"count": count + 1}) > 0

        async with anyio.create_task_group() as group:
            for index in range(6):
                group.start_soon(worker, f"holder-{index}", first if index % 2 else second)
        record = await first.lookup("ptc_handle")
    assert overlaps == []
    assert record is not None and record.state == {"count": 30} and runs == 30  # no read-modify-write was lost


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


async def test_dynamodb_throttling_is_retried_with_backoff_until_it_passes(tmp_path: Path) -> None:
    async with running_dynamodb() as (endpoint, emulator):
        sessions = DynamoDbSessionMap(TABLE, region="us-east-1", endpoint_url=endpoint, max_attempts=8)
        emulator.throttle_next = 4
        await sessions.create("ptc_handle", None)  # four throttled answers, then it lands
        assert emulator.throttled == 4
        assert await sessions.lookup("ptc_handle") is not None
        emulator.throttle_next = 100
        few = DynamoDbSessionMap(TABLE, region="us-east-1", endpoint_url=endpoint, max_attempts=2)
        with pytest.raises(SessionMapError, match="ProvisionedThroughputExceeded"):
            await few.lookup("ptc_handle")


async def test_a_missing_dynamodb_table_names_the_command_that_creates_it() -> None:
    async with running_dynamodb_emulator() as (endpoint, _emulator):
        sessions = DynamoDbSessionMap("no-such-table", region="us-east-1", endpoint_url=endpoint)
        with pytest.raises(SessionMapError, match="ptc-mcp session-map create-table --table no-such-table"):
            await sessions.lookup("ptc_handle")


async def test_an_unreachable_redis_is_a_session_map_error() -> None:
    sessions = RedisSessionMap(f"redis://127.0.0.1:{free_port()}/0", expire_s=60, timeout_s=2)
    with pytest.raises(SessionMapError, match="Redis"):
        await sessions.lookup("ptc_handle")
    await sessions.aclose()


async def test_the_create_table_command_makes_an_on_demand_table_with_ttl_and_can_be_repeated() -> None:
    async with running_dynamodb_emulator() as (endpoint, emulator):
        command = [sys.executable, "-m", "ptc_mcp", "session-map", "create-table", "--table", "fleet-sessions"]
        command += ["--region", "us-east-1", "--endpoint-url", endpoint]
        outputs = []
        for _ in range(2):
            done = await anyio.run_process(command, env={**os.environ, **FAKE_AWS}, check=False)
            assert done.returncode == 0, done.stderr.decode()
            outputs.append(json.loads(done.stdout))
        table = emulator.tables["fleet-sessions"]
    assert [output["created"] for output in outputs] == [True, False]
    assert table.key == "pk" and table.ttl_attribute == "expires_at"


async def test_the_bench_command_reports_lease_latency(tmp_path: Path) -> None:
    async with running_redis() as url:
        config = write_config(tmp_path, {"mcpServers": {}, "remote": {"session_map": {"kind": "redis", "url": url}}})
        command = [sys.executable, "-m", "ptc_mcp", "session-map", "bench", "--config", str(config), "--runs", "20"]
        done = await anyio.run_process(command, check=False)
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["store"] == "redis" and report["runs"] == 20 and report["run_p50_ms"] > 0


def test_each_store_names_the_key_it_is_missing_at_start_up() -> None:
    for kind, key in (("sqlite", "path"), ("redis", "url"), ("dynamodb", "table")):
        with pytest.raises(ValueError, match=f"remote.session_map.{key}"):
            SessionMapConfig.model_validate({"kind": kind})
    with pytest.raises(ValueError, match="url"):
        SessionMapConfig.model_validate({"kind": "redis", "url": "http://cache:6379"})
    with pytest.raises(ValueError, match="lease_s"):
        SessionMapConfig.model_validate({"kind": "redis", "url": "redis://cache:6379/0", "lease_s": 0.1})
