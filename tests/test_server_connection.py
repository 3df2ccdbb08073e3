"""The one place the server reads the SDK's private parts (``ptc_mcp.server._connection``) still works.

A connection's implicit session lives in the SDK's ``Connection`` (its ``state``, released by its ``exit_stack``).
mcp 2.x gives request handlers no public way to it; if these tests fail, the SDK changed: use its public way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

from ptc_mcp.server import _connection

pytestmark = pytest.mark.anyio

WAIT_S = 30.0


def test_request_contexts_still_have_no_public_connection() -> None:
    # When this fails, the SDK exposes the connection: read it there and drop the private access.
    assert "connection" not in {field.name for field in dataclasses.fields(ServerRequestContext)}


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_handler_reaches_its_requests_connection_and_its_state_lasts_on_handshake_connections(
    mode: str,
) -> None:
    seen: list[Connection] = []

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        connection = _connection(ctx)
        assert isinstance(connection, Connection)
        seen.append(connection)
        calls = connection.state.get("calls", 0) + 1
        connection.state["calls"] = calls
        return types.CallToolResult(content=[types.TextContent(type="text", text=str(calls))])

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name="count", input_schema={"type": "object"})])

    server: Server[Any] = Server("probe", on_call_tool=call_tool, on_list_tools=list_tools)
    with anyio.fail_after(WAIT_S):
        async with Client(server, mode=mode) as client:
            first = await client.call_tool("count", {})
            second = await client.call_tool("count", {})
    assert len(seen) == 2
    counts = [
        block.text for result in (first, second) for block in result.content if isinstance(block, types.TextContent)
    ]
    if mode == "legacy":  # one connection for the whole session: what an implicit session is kept on
        assert seen[0] is seen[1] and counts == ["1", "2"]
    else:  # 2026-07-28: a fresh connection per request, so the server keeps no session on it
        assert counts == ["1", "1"]
