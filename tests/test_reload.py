"""Reloading ``mcpServers`` while serving: the pool adds, removes and restarts servers; sessions survive.

``DownstreamPool.reconfigure`` is shown with the fixture server over stdio; ``ptc-mcp serve`` as a subprocess shows
the two triggers, SIGHUP and an edit of the config file, with the official MCP client connected throughout.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client

from ptc_mcp.downstream import DownstreamPool
from ptc_mcp.errors import ToolCallError
from ptc_mcp.reload import POLL_ENV
from tests.downstream.servers import FIXTURE_SERVER, fixture_server, text_of
from tests.mcp_calls import execute, structured
from tests.remote.helpers import serving_subprocess

pytestmark = pytest.mark.anyio

WAIT_S = 60.0
FX = {"command": sys.executable, "args": [str(FIXTURE_SERVER)]}


async def test_reconfigure_keeps_unchanged_servers_and_adds_removes_and_restarts_the_others() -> None:
    async with DownstreamPool({"keep": fixture_server(), "drop": fixture_server(), "change": fixture_server()}) as pool:
        with anyio.fail_after(WAIT_S):
            pids = {name: text_of(await pool.call_tool(name, "pid")) for name in ("keep", "change")}
            version = pool.catalog_version
            result = await pool.reconfigure(
                {"keep": fixture_server(), "change": fixture_server(env={"X": "1"}), "new": fixture_server()}
            )
            assert (result.added, result.removed, result.restarted) == (["new"], ["drop"], ["change"])
            assert pool.catalog_version > version
            assert text_of(await pool.call_tool("keep", "pid")) == pids["keep"]
            assert text_of(await pool.call_tool("change", "pid")) != pids["change"]
            assert text_of(await pool.call_tool("change", "env", {"name": "X"})) == "1"
            assert text_of(await pool.call_tool("new", "echo", {"text": "hi"})) == "hi"
            with pytest.raises(ToolCallError):
                await pool.call_tool("drop", "pid")
        assert sorted(pool.servers) == ["change", "keep", "new"]
        assert {tool.server for tool in pool.tools()} == {"change", "keep", "new"}


def write_config(path: Path, servers: dict[str, Any]) -> None:
    path.write_text(json.dumps({"mcpServers": servers, "sandbox": {"kind": "process"}}), encoding="utf-8")


class Notified:
    def __init__(self) -> None:
        self.event = anyio.Event()

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.event.set()


async def test_sighup_adds_a_server_and_the_session_keeps_its_variables(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    write_config(config, {"fx": FX})
    notified = Notified()
    async with serving_subprocess(config, env={POLL_ENV: "0"}) as (base, process):
        with anyio.fail_after(WAIT_S):
            async with Client(streamable_http_client(f"{base}/mcp"), mode="legacy", message_handler=notified) as client:
                await client.list_tools()
                assert structured(await execute(client, "x = 41"))["error"] is None
                write_config(config, {"fx": FX, "more": FX})
                process.send_signal(signal.SIGHUP)
                await notified.event.wait()
                listed = await client.list_tools()
                after = await execute(client, "(x + 1, await more.echo(text='hi'))")
    assert "more." in (listed.tools[0].description or "")
    assert structured(after)["result"] == [42, "hi"]


async def test_an_edited_config_file_is_applied_without_a_signal(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    write_config(config, {"fx": FX, "gone": FX})
    notified = Notified()
    params = StdioServerParameters(command=sys.executable, args=["-m", "ptc_mcp", "serve", "--config", str(config)])
    params.env = {POLL_ENV: "0.2"}
    with anyio.fail_after(WAIT_S):
        async with Client(params, mode="legacy", message_handler=notified) as client:
            assert "gone." in ((await client.list_tools()).tools[0].description or "")
            await execute(client, "y = 'kept'")
            write_config(config, {"fx": FX})
            await notified.event.wait()
            description = (await client.list_tools()).tools[0].description or ""
            after = await execute(client, "y")
            missing = await execute(client, "await gone.echo(text='hi')")
    assert "gone." not in description
    assert structured(after)["result"] == "kept"
    assert structured(missing)["error"] is not None


async def test_a_reloaded_client_file_still_leaves_out_the_excluded_entry(tmp_path: Path) -> None:
    config = tmp_path / "claude_desktop_config.json"
    itself = {"command": "ptc-mcp-not-installed-here", "args": ["serve", "--config", str(config)]}

    def write(servers: dict[str, Any]) -> None:
        document = {"globalShortcut": "Ctrl+Space", "mcpServers": {"ptc": itself, **servers}}
        config.write_text(json.dumps({**document, "sandbox": {"kind": "process"}}), encoding="utf-8")

    write({"fx": FX})
    notified = Notified()
    command = ["-m", "ptc_mcp", "serve", "--config", str(config), "--exclude", "ptc"]
    params = StdioServerParameters(command=sys.executable, args=command, env={POLL_ENV: "0.2"})
    with anyio.fail_after(WAIT_S):
        async with Client(params, mode="legacy", message_handler=notified) as client:
            await client.list_tools()
            write({"fx": FX, "more": FX})
            await notified.event.wait()
            description = (await client.list_tools()).tools[0].description or ""
    assert "more." in description
    assert "ptc" not in description.replace("ptc-mcp", "")  # neither started nor reported unavailable
