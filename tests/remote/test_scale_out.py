"""Scale-out: two ``ptc-mcp serve`` instances behind a round-robin balancer, with the agentcore backend (through
its local emulator) and a shared SQLite session map, so any instance continues any session.

Each request goes to the next instance in turn, so one client's calls alternate between the two processes; the
program's variables live in the (emulated) AgentCore session, and the shared map tells each instance which one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client

from ptc_mcp.emulators.agentcore import running_emulator
from tests.conftest import EXPENSES_STDIO
from tests.remote.balancer import RoundRobin, round_robin
from tests.remote.helpers import FAKE_AWS, WAIT_S, serving_subprocess, write_config

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CLIENTS = 16
CALLS_PER_CLIENT = 4


@asynccontextmanager
async def two_instances_behind_a_balancer(tmp_path: Path) -> AsyncIterator[tuple[str, RoundRobin, Any]]:
    async with AsyncExitStack() as stack:
        endpoint, emulator = await stack.enter_async_context(running_emulator())
        document = {
            "mcpServers": {"expenses": EXPENSES_STDIO},
            "sandbox": {"kind": "agentcore", "agentcore": {"endpoint_url": endpoint, "region": "us-east-1"}},
            "limits": {"timeout_s": 30, "max_concurrent_runs": 16},
            "audit": {"enabled": False},
            "remote": {"stateless_http": True, "session_map": {"kind": "sqlite", "path": str(tmp_path / "map.db")}},
        }
        config = write_config(tmp_path, document)
        bases = []
        for _ in range(2):
            base, _process = await stack.enter_async_context(serving_subprocess(config, env=FAKE_AWS))
            bases.append(base)
        url, balancer = await stack.enter_async_context(round_robin(bases))
        yield f"{url}/mcp", balancer, emulator


async def execute(client: Client, code: str, **arguments: Any) -> types.CallToolResult:
    with anyio.fail_after(WAIT_S):
        return await client.call_tool("execute_program", {"code": code, **arguments})


def value(result: types.CallToolResult) -> Any:
    assert result.structured_content is not None, result
    assert not result.is_error, (result.structured_content or {}).get("error")
    return result.structured_content["result"]


async def test_a_sessions_variables_survive_calls_that_land_on_different_instances(tmp_path: Path) -> None:
    async with (
        two_instances_behind_a_balancer(tmp_path) as (url, balancer, emulator),
        Client(url, mode="2026-07-28") as client,
    ):
        first = await execute(client, "n = 1\nn")
        handle = first.structured_content["session"]  # type: ignore[index]
        values = [value(first)]
        for _ in range(5):
            values.append(value(await execute(client, "n += 1\nn", session=handle)))
        joined = value(
            await execute(client, "len(await expenses.get_team_members(department='engineering')) + n", session=handle)
        )
    calls = [entry.upstream for entry in balancer.log if entry.rpc_method == "tools/call"]
    assert values == [1, 2, 3, 4, 5, 6]
    assert joined == 8 + 6
    assert set(calls) == {0, 1}, calls  # the session's calls were served by both instances
    assert len(emulator.service.sessions) == 1  # one AgentCore session throughout: re-attached, never restarted


async def test_two_instances_serve_a_concurrent_load_with_zero_failures(tmp_path: Path) -> None:
    failures: list[str] = []
    finals: dict[int, Any] = {}

    async def one_client(index: int, url: str) -> None:
        mode = "legacy" if index % 2 else "2026-07-28"
        try:
            async with Client(url, mode=mode) as client:  # type: ignore[arg-type]
                first = await execute(
                    client, f"n = {index}\nrows = await expenses.get_team_members(department='engineering')\nlen(rows)"
                )
                handle = first.structured_content["session"]  # type: ignore[index]
                value(first)
                result = first
                for _ in range(CALLS_PER_CLIENT - 1):
                    result = await execute(client, "n += 1\nn", session=handle)
                finals[index] = value(result)
        except Exception as exc:  # counted, and shown by the assertion
            while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]
            failures.append(f"client {index} ({mode}): {type(exc).__name__}: {exc}")

    async with two_instances_behind_a_balancer(tmp_path) as (url, balancer, _emulator):
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for index in range(CLIENTS):
                group.start_soon(one_client, index, url)
        elapsed = time.perf_counter() - started
    served = Counter(entry.upstream for entry in balancer.log if entry.rpc_method == "tools/call")
    statuses = Counter(entry.status for entry in balancer.log)
    assert failures == []
    assert finals == {index: index + CALLS_PER_CLIENT - 1 for index in range(CLIENTS)}
    assert sum(served.values()) == CLIENTS * CALLS_PER_CLIENT
    assert min(served.values()) >= CLIENTS  # round robin: both instances took a fair share
    assert all(status < 500 for status in statuses), statuses
    print(
        f"\n{CLIENTS * CALLS_PER_CLIENT} calls from {CLIENTS} clients in {elapsed:.2f} s; per instance: {dict(served)}"
    )
