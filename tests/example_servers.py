"""Start the example expense server as a real subprocess on a free loopback port, for transport tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import anyio
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from ptc_mcp.examples.expenses import READY_PREFIX

START_TIMEOUT_S = 30.0


async def _drain(process: Process, first_lines: list[str], ready: anyio.Event) -> None:
    """Read the server's stderr: find the readiness line, then keep the pipe from filling up."""
    assert process.stderr is not None
    buffer = ""
    async for chunk in TextReceiveStream(process.stderr):
        buffer += chunk
        *lines, buffer = buffer.split("\n")
        if not ready.is_set():
            first_lines.extend(lines)
            if any(line.startswith(READY_PREFIX) for line in lines):
                ready.set()
    ready.set()  # the server exited: let the waiter report it


@asynccontextmanager
async def example_server_url(transport: Literal["http", "sse"], *extra_args: str) -> AsyncIterator[str]:
    """Run ``python -m ptc_mcp.examples.expenses`` on 127.0.0.1 with a system-chosen port; yield its URL."""
    command = [sys.executable, "-m", "ptc_mcp.examples.expenses", "--transport", transport, "--port", "0", *extra_args]
    process = await anyio.open_process(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    lines: list[str] = []
    ready = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_drain, process, lines, ready)
            with anyio.fail_after(START_TIMEOUT_S):
                await ready.wait()
            urls = [line.removeprefix(READY_PREFIX) for line in lines if line.startswith(READY_PREFIX)]
            if not urls:
                raise RuntimeError("the example server exited before listening:\n" + "\n".join(lines))
            try:
                yield urls[0]
            finally:
                tg.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
        with anyio.fail_after(10):
            await process.wait()
        await process.aclose()
