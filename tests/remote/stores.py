"""The shared stores for tests: a real ``redis-server`` on a free loopback port, the DynamoDB emulator, SQLite."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from ptc_mcp.config.remote import SessionMapConfig
from ptc_mcp.emulators.dynamodb import DynamoDbEmulator, running_dynamodb_emulator
from ptc_mcp.remote.session_map import SessionMap
from ptc_mcp.remote.shared_sessions import open_session_map
from ptc_mcp.remote.stores.dynamodb_map import create_session_table, dynamodb_client
from tests.remote.helpers import FAKE_AWS, free_port

STORES = ["sqlite", "redis", "dynamodb"]
TABLE = "ptc-mcp-sessions"


@asynccontextmanager
async def running_redis() -> AsyncIterator[str]:
    """``redis-server`` on a free loopback port, in memory only; yields its URL."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    import redis.asyncio as aioredis

    port = free_port()
    process = await anyio.open_process(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = aioredis.Redis.from_url(url)
    try:
        with anyio.fail_after(30):
            while True:
                try:
                    if await client.ping():
                        break
                except OSError:
                    pass
                except Exception as exc:  # redis.ConnectionError while it starts
                    if process.returncode is not None:
                        raise RuntimeError("redis-server exited") from exc
                await anyio.sleep(0.02)  # bounded poll: redis-server prints nothing we read
        yield url
    finally:
        await client.aclose()
        process.terminate()
        with anyio.move_on_after(10):
            await process.wait()
        await process.aclose()


@asynccontextmanager
async def running_dynamodb() -> AsyncIterator[tuple[str, DynamoDbEmulator]]:
    """The DynamoDB emulator with the session table created the way users create it."""
    async with running_dynamodb_emulator() as (endpoint, emulator):
        client = dynamodb_client(region="us-east-1", endpoint_url=endpoint)
        await create_session_table(client, TABLE)
        yield endpoint, emulator


@asynccontextmanager
async def store_config(kind: str, folder: Path) -> AsyncIterator[dict[str, Any]]:
    """A running store of ``kind`` and the ``remote.session_map`` section that points at it."""
    if kind == "sqlite":
        yield {"kind": "sqlite", "path": str(folder / "map.db")}
    elif kind == "redis":
        async with running_redis() as url:
            yield {"kind": "redis", "url": url}
    else:
        async with running_dynamodb() as (endpoint, _emulator):
            yield {"kind": "dynamodb", "table": TABLE, "region": "us-east-1", "endpoint_url": endpoint}


@asynccontextmanager
async def two_maps(kind: str, folder: Path) -> AsyncIterator[tuple[SessionMap, SessionMap]]:
    """Two map instances on one store: what two server instances see."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in FAKE_AWS.items():
            env.setenv(name, value)
        async with store_config(kind, folder) as section:
            config = SessionMapConfig.model_validate(section)
            opened: list[SessionMap] = [open_session_map(config, idle_s=900) for _ in range(2)]
            try:
                yield opened[0], opened[1]
            finally:
                for each in opened:
                    await each.aclose()


MapFactory = Callable[[], SessionMap]
