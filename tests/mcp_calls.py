"""Calling ``execute_program`` through a real MCP client, and reading its structured result."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp import Client

WAIT_S = 60.0
"""Every call is bounded: a hang fails the test instead of stalling the suite."""


async def execute(client: Client, code: Any, **arguments: Any) -> types.CallToolResult:
    with anyio.fail_after(WAIT_S):
        return await client.call_tool("execute_program", {"code": code, **arguments})


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None, result
    return result.structured_content


def error_type(result: types.CallToolResult) -> str | None:
    error = structured(result)["error"]
    return None if error is None else error["type"]
