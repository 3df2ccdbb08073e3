"""Time limits that fit the clients, through the official Python SDK client in both protocol modes.

A program that computes without printing still sends progress heartbeats to a client that asked for progress; a
downstream call slower than its server's ``timeout_s`` raises ``ToolError`` with ``error_type == "timeout"``; the
declared input schema is plain JSON Schema. (The TypeScript SDK's view: tests/test_typescript_client.py.)
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import pytest
from mcp import Client

from ptc_mcp.progress import HEARTBEAT_S
from ptc_mcp.server import build_server
from tests.conftest import EXPENSES_STDIO, OpenTestApp
from tests.downstream.servers import FIXTURE_SERVER
from tests.mcp_calls import execute, structured

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_silent_program_sends_heartbeats_to_a_client_that_asked_for_progress(
    open_test_app: OpenTestApp, mode: str
) -> None:
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    code = f"import time\ntime.sleep({HEARTBEAT_S * 1.5})\n'done'"
    async with open_test_app() as app, Client(build_server(app), mode=mode) as client:
        with anyio.fail_after(60):
            result = await client.call_tool("execute_program", {"code": code}, progress_callback=on_progress)
    assert structured(result)["result"] == "done"
    assert [message for _, message in seen if message and "running for" in message]
    values = [progress for progress, _ in seen]
    assert values == sorted(values) and len(set(values)) == len(values)  # progress only grows


@pytest.mark.parametrize("mode", MODES)
async def test_a_downstream_call_slower_than_its_timeout_raises_a_timeout_tool_error(
    open_test_app: OpenTestApp, mode: str
) -> None:
    slow = {"command": sys.executable, "args": [str(FIXTURE_SERVER)], "timeout_s": 1}
    code = (
        "try:\n"
        "    await slow.sleep(seconds=30)\n"
        "except ToolError as error:\n"
        "    caught = (error.error_type, 'timed out' in error.message)\n"
        "caught"
    )
    async with open_test_app(servers={"slow": slow}) as app, Client(build_server(app), mode=mode) as client:
        assert app.pool.failures == {}
        result = await execute(client, code)
    assert structured(result)["result"] == ["timeout", True]


@pytest.mark.parametrize("mode", MODES)
async def test_the_input_schema_is_plain_json_schema_for_the_python_sdk(open_test_app: OpenTestApp, mode: str) -> None:
    async with (
        open_test_app(servers={"expenses": EXPENSES_STDIO}) as app,
        Client(build_server(app), mode=mode) as client,
    ):
        [tool] = (await client.list_tools()).tools
        integral = await execute(client, "'fast'", timeout_s=5)
        fractional = await execute(client, "'also'", timeout_s=5.5)
        refused = await execute(client, "1", timeout_s=0)
    schema: dict[str, Any] = tool.input_schema
    properties = schema["properties"]
    assert {name: prop["type"] for name, prop in properties.items()} == {
        "code": "string",
        "session": "string",
        "reset": "boolean",
        "timeout_s": "number",
    }
    assert properties["timeout_s"]["exclusiveMinimum"] == 0
    text = json.dumps(schema)
    assert "anyOf" not in text and "``" not in text and '"gt"' not in text
    assert structured(integral)["result"] == "fast" and structured(fractional)["result"] == "also"
    assert structured(refused)["error"]["type"] == "invalid_input"
