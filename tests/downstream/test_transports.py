"""The example server through the pool over each real transport: stdio, streamable HTTP, SSE."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import pytest
import uvicorn
from mcp.server.mcpserver import Context, MCPServer

from ptc_mcp.config import HttpServerConfig, ServerConfig, SseServerConfig
from ptc_mcp.downstream import DownstreamPool
from tests.downstream.servers import expenses_stdio
from tests.example_servers import example_server_url

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def expenses_config(transport: str) -> AsyncIterator[ServerConfig]:
    if transport == "stdio":
        yield expenses_stdio()
        return
    async with example_server_url("sse" if transport == "sse" else "http") as url:
        headers = {"X-Ptc-Test": "1"}
        yield (
            SseServerConfig(type="sse", url=url, headers=headers)
            if transport == "sse"
            else HttpServerConfig(url=url, headers=headers)
        )


@pytest.mark.parametrize("transport", ["stdio", "http", "sse"])
async def test_the_example_server_lists_and_answers_over_each_transport(transport: str) -> None:
    with anyio.fail_after(60):
        async with expenses_config(transport) as config, DownstreamPool({"expenses": config}) as pool:
            assert pool.failures == {}
            names = [tool.tool.name for tool in pool.tools()]
            budget = await pool.call_tool("expenses", "get_custom_budget", {"user_id": "E5"})
            members = await pool.call_tool("expenses", "get_team_members", {"department": "engineering"})
    assert names == ["get_custom_budget", "get_expenses", "get_team_members"]
    assert budget.structured_content is not None
    assert budget.structured_content["result"]["travel_budget"] == 12000.0
    assert members.structured_content is not None
    assert len(members.structured_content["result"]) == 8


async def test_an_http_server_that_is_not_there_is_a_start_up_failure() -> None:
    # A port on loopback that nothing listens on: bind one, then close it.
    with anyio.fail_after(30):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()
        async with DownstreamPool({"gone": HttpServerConfig(url=f"http://127.0.0.1:{port}/mcp")}) as pool:
            assert "gone" in pool.failures


@asynccontextmanager
async def header_echo_server(transport: str) -> AsyncIterator[str]:
    """An in-process MCP server on a loopback socket whose one tool returns a request header."""
    server = MCPServer("headers", log_level="WARNING")

    @server.tool()
    def header(name: str, ctx: Context) -> str:
        """The value of one request header."""
        return (ctx.headers or {}).get(name.lower(), "")

    app = server.sse_app() if transport == "sse" else server.streamable_http_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    http_server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(http_server.serve, sockets=[sock]))
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/{'sse' if transport == 'sse' else 'mcp'}"
        finally:
            http_server.should_exit = True


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_configured_headers_reach_an_http_server(transport: str) -> None:
    with anyio.fail_after(30):
        async with header_echo_server(transport) as url:
            headers = {"X-Api-Key": "from-config"}
            config: ServerConfig = (
                SseServerConfig(type="sse", url=url, headers=headers)
                if transport == "sse"
                else HttpServerConfig(url=url, headers=headers)
            )
            async with DownstreamPool({"h": config}) as pool:
                result = await pool.call_tool("h", "header", {"name": "X-Api-Key"})
    assert result.structured_content == {"result": "from-config"}
