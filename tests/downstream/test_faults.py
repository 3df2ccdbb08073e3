"""A downstream server that crashes, hangs or changes its tools, and many calls at once."""

from __future__ import annotations

import os
import signal

import anyio
import pytest
from mcp.client.client import ConnectMode

from ptc_mcp.downstream import DownstreamPool
from ptc_mcp.errors import ToolCallError
from tests.downstream.servers import fixture_server, text_of

pytestmark = pytest.mark.anyio


async def test_a_killed_stdio_server_fails_the_pending_call_and_restarts_for_the_next_one() -> None:
    async with DownstreamPool({"fx": fixture_server()}) as pool:
        with anyio.fail_after(30):
            pid = int(text_of(await pool.call_tool("fx", "pid", {})))
            caught: list[ToolCallError] = []

            async def pending_call() -> None:
                try:
                    await pool.call_tool("fx", "sleep", {"seconds": 60})
                except ToolCallError as exc:
                    caught.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(pending_call)
                # The call is pending once the server is inside it; waiting on the sleep call alone would race.
                await pool.call_tool("fx", "echo", {"text": "sync"})
                os.kill(pid, signal.SIGKILL)

            assert [exc.error_type for exc in caught] == ["tool_error"]
            new_pid = int(text_of(await pool.call_tool("fx", "pid", {})))
    assert new_pid != pid


async def test_a_hanging_tool_times_out_with_a_timeout_error_and_the_server_keeps_working() -> None:
    async with DownstreamPool({"fx": fixture_server()}) as pool:
        with anyio.fail_after(20):
            with pytest.raises(ToolCallError) as caught:
                await pool.call_tool("fx", "sleep", {"seconds": 60}, timeout_s=0.3)
            assert text_of(await pool.call_tool("fx", "echo", {"text": "ok"})) == "ok"
    assert caught.value.error_type == "timeout"
    assert "timed out" in caught.value.message


async def test_the_servers_configured_timeout_applies_when_the_call_gives_none() -> None:
    async with DownstreamPool({"fx": fixture_server(timeout_s=0.3)}) as pool:
        with anyio.fail_after(20), pytest.raises(ToolCallError):
            await pool.call_tool("fx", "sleep", {"seconds": 60})


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_tools_list_changed_refreshes_the_catalog(mode: ConnectMode) -> None:
    async with DownstreamPool({"fx": fixture_server()}, mode=mode) as pool:
        changed = anyio.Event()
        pool.on_change(changed.set)
        version = pool.catalog_version
        with anyio.fail_after(20):
            await pool.call_tool("fx", "add_tool", {"name": "zeta"})
            await changed.wait()
        assert "fx.zeta" in {tool.qualified_name for tool in pool.tools()}
        assert pool.catalog_version > version


async def test_fifty_concurrent_calls_share_one_session_and_each_gets_its_own_answer() -> None:
    async with DownstreamPool({"fx": fixture_server()}) as pool:
        results: dict[int, str] = {}
        pids: set[str] = set()

        async def call(n: int) -> None:
            results[n] = text_of(await pool.call_tool("fx", "echo", {"text": f"call {n}"}))
            pids.add(text_of(await pool.call_tool("fx", "pid", {})))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for n in range(50):
                    tg.start_soon(call, n)
    assert results == {n: f"call {n}" for n in range(50)}
    assert len(pids) == 1
