"""DownstreamPool: start-up, the tool catalog, failures, refresh."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import anyio
import pytest

from ptc_mcp.config import StdioServerConfig
from ptc_mcp.downstream import DownstreamPool, DownstreamTool
from ptc_mcp.errors import ToolCallError
from tests.downstream.servers import FIXTURE_SERVER, expenses_stdio, fixture_server, text_of

pytestmark = pytest.mark.anyio


async def test_tools_of_every_page_are_listed_in_server_then_tool_order() -> None:
    async with DownstreamPool({"fx": fixture_server(), "expenses": expenses_stdio()}) as pool:
        names = [tool.qualified_name for tool in pool.tools()]
    # The fixture lists two tools per page, so seven tools take four pages.
    fixture = ["fx.add", "fx.add_tool", "fx.echo", "fx.env", "fx.fail", "fx.pid", "fx.sleep"]
    expenses = ["expenses.get_custom_budget", "expenses.get_expenses", "expenses.get_team_members"]
    assert names == expenses + fixture
    assert pool.failures == {}


async def test_calls_return_the_servers_results() -> None:
    async with DownstreamPool({"fx": fixture_server()}) as pool:
        with anyio.fail_after(10):
            result = await pool.call_tool("fx", "add", {"a": 2, "b": 3})
    assert result.structured_content == {"sum": 5}
    assert not result.is_error


async def test_a_tool_that_fails_gives_an_error_result_not_an_exception() -> None:
    async with DownstreamPool({"fx": fixture_server()}) as pool:
        with anyio.fail_after(10):
            result = await pool.call_tool("fx", "fail", {})
    assert result.is_error


async def test_a_server_that_fails_to_start_is_named_in_failures_and_the_others_keep_working() -> None:
    servers = {
        "missing": StdioServerConfig(command="/nonexistent/ptc-mcp-test-server"),
        "exits": StdioServerConfig(command=sys.executable, args=["-c", "raise SystemExit(3)"]),
        "fx": fixture_server(),
    }
    with anyio.fail_after(30):
        async with DownstreamPool(servers) as pool:
            assert set(pool.failures) == {"missing", "exits"}
            assert {tool.server for tool in pool.tools()} == {"fx"}
            assert text_of(await pool.call_tool("fx", "echo", {"text": "still here"})) == "still here"


async def test_calling_an_unknown_server_raises_a_tool_error() -> None:
    async with DownstreamPool({}) as pool:
        with pytest.raises(ToolCallError) as caught:
            await pool.call_tool("nope", "anything", {})
    assert caught.value.error_type == "tool_error"


async def test_refresh_connects_a_server_that_failed_at_start_up(tmp_path: Path) -> None:
    script = tmp_path / "late_server.py"
    config = StdioServerConfig(command=sys.executable, args=[str(script)])
    with anyio.fail_after(30):
        async with DownstreamPool({"late": config}) as pool:
            assert "late" in pool.failures
            version = pool.catalog_version
            shutil.copy(FIXTURE_SERVER, script)
            await pool.refresh()
            assert pool.failures == {}
            assert pool.catalog_version > version
            assert DownstreamTool in {type(tool) for tool in pool.tools()}
            assert "late.echo" in {tool.qualified_name for tool in pool.tools()}


async def test_stdio_servers_get_their_configured_env_and_not_the_hosts_other_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PTC_TEST_HOST_SECRET", "do-not-leak")
    async with DownstreamPool({"fx": fixture_server(env={"PTC_TEST_SETTING": "configured"})}) as pool:
        with anyio.fail_after(10):
            configured = text_of(await pool.call_tool("fx", "env", {"name": "PTC_TEST_SETTING"}))
            secret = text_of(await pool.call_tool("fx", "env", {"name": "PTC_TEST_HOST_SECRET"}))
            path = text_of(await pool.call_tool("fx", "env", {"name": "PATH"}))
    assert (configured, secret) == ("configured", "None")
    assert path != "None"
