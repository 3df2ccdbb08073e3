"""A tiny stdio MCP server for the downstream tests, on the SDK's low-level ``Server``.

It lists its tools two per page (so pagination is exercised) and has tools that sleep, report the process id
and environment, and add a tool at run time (announcing it with ``tools/list_changed`` in both protocol eras).
Run: ``python tests/downstream/fixture_server.py``.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
from mcp.shared.subscriptions import ToolsListChanged

PAGE_SIZE = 2


def _tool(name: str, description: str, properties: dict[str, Any] | None = None) -> types.Tool:
    schema = {"type": "object", "properties": properties or {}, "required": sorted(properties or {})}
    return types.Tool(name=name, description=description, input_schema=schema)


tools: dict[str, types.Tool] = {
    tool.name: tool
    for tool in [
        _tool("echo", "Return the text.", {"text": {"type": "string"}}),
        _tool("add", "Add two numbers.", {"a": {"type": "number"}, "b": {"type": "number"}}),
        _tool("sleep", "Sleep, then return the seconds slept.", {"seconds": {"type": "number"}}),
        _tool("pid", "The server's process id."),
        _tool("env", "The value of an environment variable, or null.", {"name": {"type": "string"}}),
        _tool("add_tool", "Add a tool named `name` and announce the change.", {"name": {"type": "string"}}),
        _tool("fail", "Always fails with isError."),
    ]
}
bus = InMemorySubscriptionBus()


async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    names = sorted(tools)
    start = int(params.cursor) if params is not None and params.cursor else 0
    page = names[start : start + PAGE_SIZE]
    after = start + PAGE_SIZE
    return types.ListToolsResult(
        tools=[tools[name] for name in page], next_cursor=str(after) if after < len(names) else None
    )


def _text(value: Any) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=str(value))])


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    args = params.arguments or {}
    match params.name:
        case "echo":
            return _text(args["text"])
        case "add":
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=str(args["a"] + args["b"]))],
                structured_content={"sum": args["a"] + args["b"]},
            )
        case "sleep":
            await anyio.sleep(float(args["seconds"]))
            return _text(args["seconds"])
        case "pid":
            return _text(os.getpid())
        case "env":
            return _text(os.environ.get(args["name"]))
        case "add_tool":
            tools[args["name"]] = _tool(args["name"], "Added at run time.")
            await bus.publish(ToolsListChanged())
            await ctx.session.send_tool_list_changed()
            return _text("added")
        case "fail":
            return types.CallToolResult(content=[types.TextContent(type="text", text="it failed")], is_error=True)
    if params.name in tools:
        return _text(params.name)
    return types.CallToolResult(content=[types.TextContent(type="text", text="no such tool")], is_error=True)


server = Server("fixture", on_list_tools=list_tools, on_call_tool=call_tool, on_subscriptions_listen=ListenHandler(bus))


async def main() -> None:
    async with stdio_server() as (read_stream, write_stream):
        options = server.create_initialization_options(NotificationOptions(tools_changed=True))
        await server.run(read_stream, write_stream, options)


if __name__ == "__main__":
    anyio.run(main)
