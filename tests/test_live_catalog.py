"""Live catalogs: a downstream server adds a tool while ``ptc-mcp serve`` runs, and ptc-mcp's own client hears of it.

The official MCP client talks to ``ptc-mcp serve`` (a subprocess, over stdio) whose downstream is the fixture
server (tests/downstream/fixture_server.py), which adds a tool and announces it in both protocol eras. Handshake-era
clients get ``notifications/tools/list_changed``; 2026-07-28 clients get an event on ``subscriptions/listen``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import test_config
from tests.downstream.servers import FIXTURE_SERVER
from tests.mcp_calls import execute, structured
from tests.remote.helpers import serving_in_process

pytestmark = pytest.mark.anyio

WAIT_S = 60.0


def write_config(folder: Path) -> Path:
    path = folder / "config.json"
    document = {
        "mcpServers": {"fx": {"command": sys.executable, "args": [str(FIXTURE_SERVER)]}},
        "sandbox": {"kind": "process"},
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def serve(config: Path) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "ptc_mcp", "serve", "--config", str(config)])


async def description(client: Client) -> str:
    listed = await client.list_tools()
    return listed.tools[0].description or ""


async def test_a_handshake_era_client_is_notified_and_then_sees_the_new_tool(tmp_path: Path) -> None:
    notified = anyio.Event()

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            notified.set()

    with anyio.fail_after(WAIT_S):
        async with Client(serve(write_config(tmp_path)), mode="legacy", message_handler=on_message) as client:
            before = await description(client)
            assert "zeta" not in before
            added = await execute(client, "await fx.add_tool(name='zeta')")
            assert structured(added)["result"] == "added"
            await notified.wait()
            after = await description(client)
            called = await execute(client, "await fx.zeta()")
    assert "fx.zeta" in after or "zeta(" in after
    assert structured(called)["result"] == "zeta"


async def test_a_2026_client_gets_a_tools_changed_event_on_its_subscription(tmp_path: Path) -> None:
    with anyio.fail_after(WAIT_S):
        async with Client(serve(write_config(tmp_path)), mode="auto") as client:
            assert client.protocol_version == "2026-07-28"
            assert "zeta" not in await description(client)
            async with client.listen(tools_list_changed=True) as subscription:
                added = await execute(client, "await fx.add_tool(name='zeta')")
                assert structured(added)["result"] == "added"
                async for _event in subscription:
                    break
            after = await description(client)
            called = await execute(client, "await fx.zeta()")
    assert "zeta" in after
    assert structured(called)["result"] == "zeta"


async def test_a_client_over_streamable_http_is_told_on_its_get_stream(tmp_path: Path) -> None:
    notified = anyio.Event()

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            notified.set()

    config = test_config({"fx": {"command": sys.executable, "args": [str(FIXTURE_SERVER)]}})
    async with serving_in_process(config) as (base, _app, _state):
        with anyio.fail_after(WAIT_S):
            async with Client(
                streamable_http_client(f"{base}/mcp"), mode="legacy", message_handler=on_message
            ) as client:
                capabilities = client.server_capabilities
                assert capabilities.tools is not None and capabilities.tools.list_changed
                assert "zeta" not in await description(client)
                await execute(client, "await fx.add_tool(name='zeta')")
                await notified.wait()
                assert "zeta" in await description(client)
