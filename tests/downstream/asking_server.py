"""A stdio MCP server whose tool asks its client a question, in either protocol era.

``ask(tag, together)`` waits until ``together`` calls of it are in flight at once (so tests can make questions of
several clients overlap without sleeping), then asks "question for <tag>" through elicitation: a server→client
request on handshake-era connections, an ``InputRequiredResult`` on 2026-07-28 ones. It returns the answer's
action and content. Run: ``python tests/downstream/asking_server.py``.
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

ASK = types.Tool(
    name="ask",
    description="Ask the user a question tagged `tag`, once `together` calls are waiting.",
    input_schema={
        "type": "object",
        "properties": {"tag": {"type": "string"}, "together": {"type": "integer"}},
        "required": ["tag", "together"],
    },
)
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"answer": {"type": "string"}}}

waiting = 0
changed = anyio.Event()


async def _gather(together: int) -> None:
    global waiting, changed
    waiting += 1
    changed.set()
    changed = anyio.Event()
    while waiting < together:
        await changed.wait()


async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[ASK])


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult | types.InputRequiredResult:
    args = params.arguments or {}
    message = f"question for {args['tag']}"
    answer: types.ElicitResult | None = None
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        response = (params.input_responses or {}).get("q")
        if not isinstance(response, types.ElicitResult):
            await _gather(int(args["together"]))
            request = types.ElicitRequest(
                params=types.ElicitRequestFormParams(message=message, requested_schema=SCHEMA)
            )
            return types.InputRequiredResult(input_requests={"q": request})
        answer = response
    else:
        await _gather(int(args["together"]))
        try:
            answer = await ctx.session.elicit_form(message, SCHEMA, related_request_id=ctx.request_id)
        except Exception as exc:
            return types.CallToolResult(content=[types.TextContent(type="text", text=str(exc))], is_error=True)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=answer.action)],
        structured_content={"action": answer.action, "content": answer.content},
    )


server = Server("asking", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
