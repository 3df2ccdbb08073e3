"""The floor of a nested call, for ``bench latency``: a program and a host that do nothing but the call.

``python -m ptc_mcp.bench.minimal_host`` is the program: it starts the host (``… host``) on two pipes, then for
each number N on its stdin makes N calls through it back to back and prints their times (ms, a JSON list). Like
ptc-mcp's runtime it waits for each answer on an asyncio event loop that reads the pipe (``add_reader``). The host
connects the MCP SDK's client to the example server, as ptc-mcp's host does, and for each line it reads calls
``expenses.get_custom_budget(user_id="E7")`` and writes one line back: no policy, budget, argument or JSON checks,
call records, audit, protocol messages or result shaping. So what a call through them adds over a direct call is
what the architecture itself costs on this machine (two more trips between processes, two more to wake), and what
ptc-mcp's nested call adds beyond that is its own host and runtime.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

from mcp import Client, StdioServerParameters

EXAMPLE = StdioServerParameters(command=sys.executable, args=["-m", "ptc_mcp.examples.expenses"])
READY = b"ready\n"


async def host() -> None:
    """Answer each line on stdin with one downstream call, until stdin ends."""
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    pending = bytearray()
    calls: set[asyncio.Task[None]] = set()
    async with Client(EXAMPLE) as client:

        async def answer() -> None:
            result = await client.call_tool("get_custom_budget", {"user_id": "E7"})
            os.write(1, b"error\n" if result.is_error else b"ok\n")

        def readable() -> None:
            data = os.read(0, 65536)
            if not data:
                loop.remove_reader(0)
                ended.set()
                return
            pending.extend(data)
            for _ in range(pending.count(b"\n")):
                task = loop.create_task(answer())
                calls.add(task)
                task.add_done_callback(calls.discard)
            del pending[: pending.rfind(b"\n") + 1]

        loop.add_reader(0, readable)
        os.write(1, READY)
        await ended.wait()


class Program:
    """Calls through the host: each waits for its answer line on the event loop, as the runtime's calls do."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send_fd: int, receive_fd: int) -> None:
        self._loop = loop
        self._send_fd = send_fd
        self._receive_fd = receive_fd
        self._buffer = bytearray()
        self._waiting: list[asyncio.Future[bytes]] = []
        loop.add_reader(receive_fd, self._readable)

    def _readable(self) -> None:
        data = os.read(self._receive_fd, 65536)
        if not data:
            raise SystemExit("the minimal host ended")
        self._buffer.extend(data)
        while (end := self._buffer.find(b"\n")) >= 0 and self._waiting:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._waiting.pop(0).set_result(line)

    async def line(self) -> bytes:
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._waiting.append(future)
        return await future

    async def calls(self, count: int) -> list[float]:
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            os.write(self._send_fd, b"call\n")
            answer = await self.line()
            samples.append((time.perf_counter() - started) * 1000)
            if answer != b"ok":
                raise SystemExit(f"the minimal host's call failed: {answer!r}")
        return samples


def program() -> None:
    """Start the host, say ``ready``, then time N calls for each number N read from stdin."""
    to_host, from_host = os.pipe(), os.pipe()
    with subprocess.Popen(
        [sys.executable, "-m", __spec__.name, "host"], stdin=to_host[0], stdout=from_host[1]
    ) as started:
        os.close(to_host[0])
        os.close(from_host[1])
        loop = asyncio.new_event_loop()
        calls = Program(loop, to_host[1], from_host[0])
        if loop.run_until_complete(calls.line()) != READY.strip():
            raise SystemExit("the minimal host did not start")
        sys.stdout.write(READY.decode())
        sys.stdout.flush()
        for request in sys.stdin:
            samples = loop.run_until_complete(calls.calls(int(request)))
            sys.stdout.write(json.dumps(samples) + "\n")
            sys.stdout.flush()
        os.close(to_host[1])  # the host's stdin ends: it stops
        started.wait()


if __name__ == "__main__":
    if sys.argv[1:] == ["host"]:
        asyncio.run(host())
    else:
        program()
