"""A stdio MCP server that misbehaves on request, for the fault cases: it crashes, hangs, or answers.

Run: ``python tests/security/faulty_server.py``.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server

_EMPTY: dict[str, Any] = {"type": "object", "properties": {}}
TOOLS = [
    types.Tool(name="pid", description="This server's process id.", input_schema=_EMPTY),
    types.Tool(name="hang", description="Never answers.", input_schema=_EMPTY),
    types.Tool(
        name="crash",
        description="Kills this server with SIGKILL after `delay_s` seconds.",
        input_schema={"type": "object", "properties": {"delay_s": {"type": "number"}}},
    ),
]


async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    if params.name == "hang":
        await anyio.sleep_forever()
    if params.name == "crash":
        await anyio.sleep(float((params.arguments or {}).get("delay_s", 0)))
        os.kill(os.getpid(), signal.SIGKILL)
    return types.CallToolResult(content=[types.TextContent(type="text", text=str(os.getpid()))])


server = Server("faulty", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
