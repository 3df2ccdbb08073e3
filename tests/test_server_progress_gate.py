"""Which ``execute_program`` requests get a ``RunReporter`` (and so a progress pump): only those whose client can
hear something from it. ``ptc_mcp.server._progress_needs_token`` reads the SDK's private dispatch context; if
``test_jsonrpc_requests_are_told_from_in_process_ones`` fails, the SDK changed: find its public way."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client._memory import InMemoryTransport
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

from ptc_mcp.server import _progress_needs_token, run_reporter

pytestmark = pytest.mark.anyio

WAIT_S = 30.0
MODERN = "2026-07-28"


def probe() -> tuple[Server[Any], list[tuple[bool, bool]]]:
    """A server whose one tool records (reporter built?, progress needs a token?) for each call."""
    seen: list[tuple[bool, bool]] = []

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        seen.append((run_reporter(ctx, 1000) is not None, _progress_needs_token(ctx)))
        return types.CallToolResult(content=[types.TextContent(type="text", text="ok")])

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name="probe", input_schema={"type": "object"})])

    return Server("probe", on_call_tool=call_tool, on_list_tools=list_tools), seen


async def on_progress(progress: float, total: float | None, message: str | None) -> None:
    pass


async def test_jsonrpc_requests_are_told_from_in_process_ones() -> None:
    server, seen = probe()
    with anyio.fail_after(WAIT_S):
        async with Client(InMemoryTransport(server), mode=MODERN) as client:
            await client.call_tool("probe", {})
        async with Client(server, mode=MODERN) as client:
            await client.call_tool("probe", {})
    assert [needs_token for _, needs_token in seen] == [True, False]


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_a_jsonrpc_request_gets_a_reporter_only_when_its_client_can_hear_it(mode: str) -> None:
    server, seen = probe()
    with anyio.fail_after(WAIT_S):
        async with Client(InMemoryTransport(server), mode=mode) as client:
            await client.call_tool("probe", {})  # no progress token, no log level
            await client.call_tool("probe", {}, progress_callback=on_progress)
    async with Client(InMemoryTransport(server), mode=mode, log_level="info") as client:
        await client.call_tool("probe", {})  # a log level only: the program's output as log messages (2026-07-28)
    built = [reporter for reporter, _ in seen]
    assert built == [False, True, mode == MODERN]


async def test_an_in_process_request_without_a_token_still_gets_a_reporter() -> None:
    # The in-process transport hands the client's progress callback over with no token on the wire.
    server, seen = probe()
    with anyio.fail_after(WAIT_S):
        async with Client(server, mode=MODERN) as client:
            await client.call_tool("probe", {}, progress_callback=on_progress)
    assert seen == [(True, False)]
