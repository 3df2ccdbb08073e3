"""Cancelling a running ``execute_program`` from the official MCP client, on every transport and protocol era.

The client cancels the way an application does: by cancelling the task that awaits ``call_tool``. The SDK turns
that into ``notifications/cancelled`` (handshake era, and the dual-era stream loop) or closes the response stream
(2026-07-28 over HTTP); either way the server's handler is cancelled, and the run must stop within a second,
taking the processes it started with it, and the session must work again (from a fresh interpreter).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters

from ptc_mcp.bench.served import bench_config, serve_subprocess
from ptc_mcp.server import build_server
from tests.conftest import OpenTestApp

pytestmark = pytest.mark.anyio

MARKER = "4242.5"
SLEEPER = f"""
import subprocess, time
child = subprocess.Popen(["sleep", "{MARKER}"])
print("sleeping", flush=True)
time.sleep(60)
"""


def marker_processes() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if cmdline == f"sleep\0{MARKER}\0".encode() and state not in ("Z", "X"):
            found.append(int(entry))
    return found


ClientFactory = Callable[..., AbstractAsyncContextManager[Client]]


@asynccontextmanager
async def in_memory(open_test_app: OpenTestApp, mode: str, **options: Any) -> AsyncIterator[Client]:
    async with open_test_app() as app, Client(build_server(app), mode=mode, **options) as client:
        yield client


@asynccontextmanager
async def over_stdio(mode: str, **options: Any) -> AsyncIterator[Client]:
    with tempfile.TemporaryDirectory(prefix="ptc-mcp-cancel-") as name:
        config = Path(name) / "config.json"
        config.write_text(json.dumps(bench_config(Path(name))), encoding="utf-8")
        server = StdioServerParameters(command=sys.executable, args=["-m", "ptc_mcp", "serve", "--config", str(config)])
        async with Client(server, mode=mode, **options) as client:
            yield client


@asynccontextmanager
async def over_http(mode: str, **options: Any) -> AsyncIterator[Client]:
    async with serve_subprocess("http") as served, Client(served.url, mode=mode, **options) as client:
        yield client


async def cancel_a_sleeping_run(client: Client, started: anyio.Event) -> float:
    """Start SLEEPER, wait until it prints, cancel the call; seconds from the cancel until the call returned."""

    async def report(progress: float, total: float | None, message: str | None) -> None:
        if message and " 0 lines" not in message:  # it printed "sleeping"
            started.set()

    first = await client.call_tool("execute_program", {"code": "x = 41"})
    handle = (first.structured_content or {})["session"]
    cancelled_at = 0.0
    async with anyio.create_task_group() as group:

        async def run() -> None:
            await client.call_tool("execute_program", {"code": SLEEPER, "session": handle}, progress_callback=report)

        group.start_soon(run)
        with anyio.fail_after(30):
            await started.wait()
            # A progress heartbeat can come before the program's first line on a loaded machine: wait for the child.
            while not marker_processes():
                await anyio.sleep(0.05)
        cancelled_at = time.monotonic()
        group.cancel_scope.cancel()
    returned_after = time.monotonic() - cancelled_at

    # Everything the run started is gone within a second of the cancel.
    while marker_processes() and time.monotonic() - cancelled_at < 1.0:
        await anyio.sleep(0.02)
    assert marker_processes() == [], "the program's child outlived the cancel by more than 1 s"

    # The session works again, from a fresh interpreter (documented: a cancelled run resets its session).
    with anyio.fail_after(30):
        after = await client.call_tool("execute_program", {"code": "print('x' in globals())", "session": handle})
    assert not after.is_error, after.content
    assert (after.structured_content or {})["stdout"] == "False\n"
    return returned_after


def log_setter(started: anyio.Event) -> Callable[[types.LoggingMessageNotificationParams], Any]:
    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        if isinstance(params.data, dict) and "sleeping" in params.data.get("text", ""):
            started.set()

    return on_log


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_cancelling_a_sleeping_run_in_memory_stops_it_within_a_second(
    open_test_app: OpenTestApp, mode: str
) -> None:
    started = anyio.Event()
    async with in_memory(open_test_app, mode, logging_callback=log_setter(started), log_level="info") as client:
        assert await cancel_a_sleeping_run(client, started) < 1.0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_cancelling_a_sleeping_run_over_stdio_stops_it_within_a_second(mode: str) -> None:
    started = anyio.Event()
    async with over_stdio(mode, logging_callback=log_setter(started), log_level="info") as client:
        assert await cancel_a_sleeping_run(client, started) < 1.0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_cancelling_a_sleeping_run_over_streamable_http_stops_it_within_a_second(mode: str) -> None:
    started = anyio.Event()
    async with over_http(mode, logging_callback=log_setter(started), log_level="info") as client:
        assert await cancel_a_sleeping_run(client, started) < 1.0
