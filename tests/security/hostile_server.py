"""A stdio MCP server of an attacker's choosing, for the hostile-data cases: it sends what a server may send.

Run: ``python tests/security/hostile_server.py``. Its tools return JSON text that decodes to lone surrogates,
floods, hangs, and echo their arguments (so a test sees what actually reached the server).
"""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server

_ANY: dict[str, Any] = {"type": "object"}
TOOLS = [
    types.Tool(name="echo", description="Returns its arguments as JSON text.", input_schema=_ANY),
    types.Tool(
        name="slow_echo",
        description="Waits `delay_s` seconds, then returns its arguments.",
        input_schema={"type": "object", "properties": {"delay_s": {"type": "number"}}},
    ),
    types.Tool(name="surrogate_text", description="JSON text that decodes to lone surrogates.", input_schema=_ANY),
    types.Tool(name="surrogate_error", description="Fails with JSON-escaped surrogates.", input_schema=_ANY),
    types.Tool(
        name="flood",
        description="Returns `size` bytes of text.",
        input_schema={"type": "object", "properties": {"size": {"type": "integer"}}},
    ),
    types.Tool(
        name="typed",
        description="Takes one integer.",
        input_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    ),
    types.Tool(name="hang", description="Never answers.", input_schema=_ANY),
    types.Tool(
        name="wire_answer",
        description="Answers with a lone surrogate escape on the wire (JSON no MCP SDK accepts), then never again.",
        input_schema=_ANY,
    ),
    types.Tool(
        name="wire_surrogate",
        description="Writes a notification with a lone surrogate escape to the wire, then answers.",
        input_schema=_ANY,
    ),
    types.Tool(name="denied", description="Denied by the test's policy.", input_schema=_ANY),
]


async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


def _text(text: str, *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=error)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    arguments = params.arguments or {}
    if params.name == "slow_echo":
        await anyio.sleep(float(arguments.get("delay_s", 0)))
    if params.name in ("echo", "slow_echo", "typed", "denied"):
        return _text(json.dumps(arguments))
    if params.name == "surrogate_text":
        return _text('{"lone \\ud800": ["\\udfff", "pair \\ud83d\\ude00"]}')
    if params.name == "surrogate_error":
        return _text('"\\udc80 failed"', error=True)
    if params.name == "flood":
        return _text("f" * int(arguments.get("size", 0)))
    if params.name == "wire_surrogate":
        # Past the SDK's own writer (which would refuse it): the raw line, as a hand-written server could send it.
        line = b'{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"\\ud800"}}\n'
        os.write(1, line)
        return _text('"after \\ud800"')
    if params.name == "wire_answer":
        answer = {"jsonrpc": "2.0", "id": ctx.request_id, "result": {"content": [{"type": "text", "text": "@"}]}}
        os.write(1, json.dumps(answer).replace("@", "\\ud800").encode() + b"\n")
        await anyio.sleep_forever()
    if params.name == "hang":
        await anyio.sleep_forever()
    return _text(f"unknown tool {params.name}", error=True)


server = Server("hostile", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
