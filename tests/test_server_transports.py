"""``ptc-mcp serve`` as a real subprocess over stdio, SSE and streamable HTTP, and real downstream transports.

Each server binds a free loopback port; waits are bounded polls. Downstream: the example server over stdio and
HTTP, ``mcp-server-time`` (PyPI) and ``@modelcontextprotocol/server-memory`` (npm, needs node).
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from ptc_mcp.app import open_app
from ptc_mcp.downstream.connection import CONNECT_TIMEOUT_S
from ptc_mcp.examples.expenses_data import over_budget_engineers
from ptc_mcp.server import build_server
from tests.conftest import EXPENSES_STDIO, TIME_STDIO, server_memory_missing, test_config
from tests.example_servers import example_server_url
from tests.mcp_calls import execute, structured

pytestmark = pytest.mark.anyio

WAIT_S = 60.0
TOKEN = "test-token-7c1f"
AUDIT_IDS = [row["id"] for row in over_budget_engineers()]
COUNT_ENGINEERS = "len(await expenses.get_team_members(department='engineering'))"


def write_config(folder: Path, **extra: Any) -> Path:
    path = folder / "config.json"
    document = {"mcpServers": {"expenses": EXPENSES_STDIO}, "sandbox": {"kind": "process"}, **extra}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serving(config: Path, transport: str, *extra: str) -> AsyncIterator[str]:
    """``ptc-mcp serve`` on a free loopback port; yields its base URL once it accepts connections."""
    port = free_port()
    command = [sys.executable, "-m", "ptc_mcp", "serve", "--config", str(config), "--transport", transport]
    process = await anyio.open_process(
        [*command, "--port", str(port), *extra], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    try:
        with anyio.fail_after(WAIT_S):
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"ptc-mcp serve exited with status {process.returncode}")
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                except OSError:
                    await anyio.sleep(0.05)  # a bounded poll: uvicorn prints nothing at log level warning
                    continue
                await stream.aclose()
                break
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.terminate()
        with anyio.fail_after(15):
            await process.wait()
        await process.aclose()


def authorized(token: str | None) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(WAIT_S))


async def test_serve_over_stdio_runs_the_audit_and_keeps_the_session(tmp_path: Path) -> None:
    from ptc_mcp.demo import audit_program

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "ptc_mcp", "serve", "--config", str(write_config(tmp_path))]
    )
    with anyio.fail_after(WAIT_S):
        async with Client(params, mode="legacy") as client:
            listed = await client.list_tools()
            audit = await execute(client, audit_program())
            second = await execute(client, "[row['id'] for row in over_budget]")
            noisy = await execute(client, 'import os\nos.write(1, b\'{"jsonrpc": "2.0", "id": 1}\\n\')\n\'clean\'')
    assert [tool.name for tool in listed.tools] == ["execute_program"]
    assert [row["id"] for row in structured(audit)["result"]] == AUDIT_IDS
    assert structured(second)["result"] == AUDIT_IDS
    assert structured(noisy)["result"] == "clean"  # bytes on the sandbox's fd 1 never reach the JSON-RPC stream


async def test_serve_over_streamable_http_requires_the_token(tmp_path: Path) -> None:
    async with serving(write_config(tmp_path), "http", "--auth-token", TOKEN) as base:
        url = f"{base}/mcp"
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        with anyio.fail_after(WAIT_S):
            async with authorized(None) as anonymous, authorized("wrong") as wrong:
                assert (await anonymous.post(url, json=body)).status_code == 401
                assert (await wrong.post(url, json=body)).status_code == 401
            async with (
                authorized(TOKEN) as http,
                Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
            ):
                first = await execute(client, "n = " + COUNT_ENGINEERS + "\nn")
                second = await execute(client, "n * 2")
                huge = await execute(client, "#" * (20 * 1024 * 1024))
                after = await execute(client, "'still serving'")
    assert structured(first)["result"] == 8
    assert structured(second)["result"] == 16
    assert structured(huge)["error"]["type"] == "invalid_input"
    assert structured(after)["result"] == "still serving"


async def test_serve_over_http_on_the_stateless_protocol_continues_by_handle(tmp_path: Path) -> None:
    async with serving(write_config(tmp_path), "http") as base:
        with anyio.fail_after(WAIT_S):
            async with Client(f"{base}/mcp", mode="2026-07-28") as client:
                first = await execute(client, "n = 21")
                handle = structured(first)["session"]
                without = await execute(client, "n")
                with_handle = await execute(client, "n * 2", session=handle)
    assert structured(without)["error"]["type"] == "program_error"
    assert structured(with_handle)["result"] == 42


async def test_serve_over_sse_requires_the_token_and_runs_programs(tmp_path: Path) -> None:
    async with serving(write_config(tmp_path), "sse", "--auth-token", TOKEN) as base:
        with anyio.fail_after(WAIT_S):
            async with authorized(None) as anonymous:
                assert (await anonymous.get(f"{base}/sse")).status_code == 401
                assert (await anonymous.post(f"{base}/messages/", json={})).status_code == 401
            transport = sse_client(f"{base}/sse", headers={"Authorization": f"Bearer {TOKEN}"})
            async with Client(transport, mode="legacy") as client:
                first = await execute(client, "n = " + COUNT_ENGINEERS)
                second = await execute(client, "n")
    assert structured(second)["result"] == 8
    assert not first.is_error


async def test_the_example_server_over_http_is_a_downstream_server() -> None:
    async with example_server_url("http") as url:
        with anyio.fail_after(WAIT_S):
            async with (
                open_app(test_config({"remote": {"type": "http", "url": url}}), allow_unisolated=True) as app,
                Client(build_server(app), mode="legacy") as client,
            ):
                assert app.pool.failures == {}
                result = await execute(client, "len(await remote.get_team_members(department='engineering'))")
    assert structured(result)["result"] == 8


@pytest.mark.skipif(importlib.util.find_spec("mcp_server_time") is None, reason="mcp-server-time is not installed")
async def test_mcp_server_time_from_pypi_is_callable_from_a_program() -> None:
    with anyio.fail_after(WAIT_S):
        async with (
            open_app(test_config({"time": TIME_STDIO}), allow_unisolated=True) as app,
            Client(build_server(app), mode="legacy") as client,
        ):
            result = await execute(
                client,
                "r = await servers.time.convert_time(\n"
                "    source_timezone='UTC', time='12:00', target_timezone='Asia/Tokyo')\n"
                "r['target']['datetime'][11:16]",
            )
    assert structured(result)["result"] == "21:00"


@pytest.mark.node
@pytest.mark.skipif(server_memory_missing() is not None, reason=str(server_memory_missing()))
async def test_server_memory_from_npm_stores_and_reads_back_from_a_program(tmp_path: Path) -> None:
    memory = {
        # The installed binary, not `npx -y …`: npx resolving the package under load is one more thing to wait for.
        "command": "mcp-server-memory",
        "env": {"MEMORY_FILE_PATH": str(tmp_path / "memory.jsonl")},
    }
    code = (
        "entity = {'name': 'ptc-mcp', 'entityType': 'project', 'observations': ['calls tools from programs']}\n"
        "await memory.create_entities(entities=[entity])\n"
        "graph = await memory.read_graph()\n"
        "[e['observations'] for e in graph['entities'] if e['name'] == 'ptc-mcp']"
    )
    with anyio.fail_after(CONNECT_TIMEOUT_S + WAIT_S):  # start-up has its own bound; this one is outside it
        async with (
            open_app(test_config({"memory": memory}), allow_unisolated=True) as app,
            Client(build_server(app), mode="legacy") as client,
        ):
            assert app.pool.failures == {}
            result = await execute(client, code)
    assert structured(result)["result"] == [["calls tools from programs"]]
