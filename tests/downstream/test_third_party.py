"""Third-party MCP servers over stdio: the Python mcp-server-time and the npm server-memory."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import anyio
import pytest

from ptc_mcp.config import StdioServerConfig
from ptc_mcp.downstream import DownstreamPool
from ptc_mcp.downstream.connection import CONNECT_TIMEOUT_S
from tests.conftest import server_memory_missing

pytestmark = pytest.mark.anyio


@pytest.mark.skipif(importlib.util.find_spec("mcp_server_time") is None, reason="mcp-server-time is not installed")
async def test_mcp_server_time_tells_the_time_in_utc() -> None:
    config = StdioServerConfig(command=sys.executable, args=["-m", "mcp_server_time", "--local-timezone", "UTC"])
    with anyio.fail_after(CONNECT_TIMEOUT_S + 60):  # start-up has its own bound; this one is outside it
        async with DownstreamPool({"time": config}) as pool:
            assert pool.failures == {}
            assert "get_current_time" in {tool.tool.name for tool in pool.tools()}
            result = await pool.call_tool("time", "get_current_time", {"timezone": "UTC"})
    assert not result.is_error
    assert json.loads(result.content[0].text)["timezone"] == "UTC"  # type: ignore[union-attr]


@pytest.mark.node
@pytest.mark.skipif(server_memory_missing() is not None, reason=str(server_memory_missing()))
async def test_server_memory_from_npm_stores_and_reads_back_an_entity(tmp_path: Path) -> None:
    config = StdioServerConfig(
        # The installed binary, not `npx -y …`: npx resolving the package under load is one more thing to wait for.
        command="mcp-server-memory",
        env={"MEMORY_FILE_PATH": str(tmp_path / "memory.jsonl")},
    )
    entity = {"name": "ptc-mcp", "entityType": "project", "observations": ["calls tools from programs"]}
    with anyio.fail_after(CONNECT_TIMEOUT_S + 60):  # start-up has its own bound; this one is outside it
        async with DownstreamPool({"memory": config}) as pool:
            assert pool.failures == {}
            created = await pool.call_tool("memory", "create_entities", {"entities": [entity]})
            graph = await pool.call_tool("memory", "read_graph", {})
    assert not created.is_error
    assert not graph.is_error
    assert "calls tools from programs" in json.dumps(graph.model_dump(mode="json"))
