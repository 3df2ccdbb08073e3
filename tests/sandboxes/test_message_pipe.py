"""The runtime's messages read from a real pipe by a reader callback (``MessagePipe``), behind the real
``RuntimeChannel``: whole lines whatever the chunking, calls answered concurrently straight from the callback, what
follows a run's ``done`` left for the next run, and the pipe's end failing the run, not the server. The test plays
the runtime: it reads the host's messages from a list and writes its own lines into the pipe. Last, the host's side
of the other direction (``PipeSender``) over a real pipe."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import ByteSendStream

from ptc_mcp.errors import SandboxFailure
from ptc_mcp.sandboxes.base import RunRequest
from ptc_mcp.sandboxes.stream import MessagePipe, PipeSender, RuntimeChannel

pytestmark = pytest.mark.anyio


class HostLines:
    """Where the channel writes its messages to the runtime (here: a list the test reads)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.changed = anyio.Event()

    async def send(self, item: bytes) -> None:
        self.messages.extend(json.loads(line) for line in item.splitlines())
        self.changed.set()
        self.changed = anyio.Event()

    async def until(self, count: int) -> list[dict[str, Any]]:
        with anyio.fail_after(5):
            while len(self.messages) < count:
                await self.changed.wait()
        return self.messages


class Output:
    def __init__(self) -> None:
        self.text = ""

    def write(self, stream: str, text: str) -> None:
        self.text += text


class RuntimeEnd:
    """The runtime's end of the messages pipe."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def write(self, data: bytes) -> None:
        assert self._fd is not None
        os.write(self._fd, data)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@pytest.fixture
def channel() -> Iterator[tuple[RuntimeChannel, HostLines, RuntimeEnd]]:
    read_fd, write_fd = os.pipe()
    host, end = HostLines(), RuntimeEnd(write_fd)
    channel = RuntimeChannel(cast(ByteSendStream, host), MessagePipe(read_fd))
    try:
        yield channel, host, end
    finally:
        channel.close()
        end.close()


def line(**message: Any) -> bytes:
    return json.dumps(message).encode() + b"\n"


async def no_tools(name: str, arguments: dict[str, Any]) -> Any:
    raise AssertionError("no call is made")


def request(run_id: str) -> RunRequest:
    return RunRequest(run_id=run_id, code="...", catalog={}, catalog_version="v1", max_output_bytes=1000)


async def test_the_handshake_reads_a_ready_line_that_arrives_in_pieces(
    channel: tuple[RuntimeChannel, HostLines, RuntimeEnd],
) -> None:
    runtime, _, end = channel
    ready = line(type="ready", python="3.11.7", pid=7)

    async def trickle() -> None:
        for byte in ready:
            end.write(bytes([byte]))
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(trickle)
        with anyio.fail_after(5):
            line_read = await runtime._next_line()
    assert json.loads(line_read)["python"] == "3.11.7"


async def test_calls_are_answered_concurrently_and_done_ends_the_run(
    channel: tuple[RuntimeChannel, HostLines, RuntimeEnd],
) -> None:
    runtime, host, end = channel
    both_started = anyio.Event()
    started: list[str] = []

    async def call_tool(name: str, arguments: dict[str, Any]) -> Any:
        started.append(name)
        if len(started) == 2:
            both_started.set()
        await both_started.wait()  # neither answer comes before both calls are in flight
        return {"tool": name, **arguments}

    async def runtime_side() -> None:
        await host.until(1)  # the run message
        calls = line(type="call", id="r1", call=1, tool="a.x", args={"n": 1}) + line(
            type="call", id="r1", call=2, tool="a.y", args={"n": 2}
        )
        output = line(type="output", id="r1", stream="stdout", data="hello ")
        for chunk in (calls[:7], calls[7:50], calls[50:] + output[:3], output[3:]):  # lines split anywhere
            end.write(chunk)
        results = await host.until(3)
        assert {message["call"] for message in results[1:]} == {1, 2}
        end.write(line(type="done", id="r1", ok=True, result=3, tool_calls=2))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(runtime_side)
        output = Output()
        with anyio.fail_after(5):
            report = await runtime.run(request("r1"), call_tool, output)
    assert report.ok and report.result == 3 and report.tool_calls == 2
    assert sorted(started) == ["a.x", "a.y"]
    assert output.text == "hello "
    answers = {message["call"]: message for message in host.messages if message["type"] == "result"}
    assert answers[1]["value"] == {"tool": "a.x", "n": 1} and answers[2]["value"] == {"tool": "a.y", "n": 2}


async def test_what_follows_a_runs_done_is_left_for_the_next_run(
    channel: tuple[RuntimeChannel, HostLines, RuntimeEnd],
) -> None:
    runtime, _, end = channel
    # One write: the first run's done, then a stale line of that run and the second run's output and done.
    end.write(
        line(type="done", id="r1", ok=True, result=1)
        + line(type="output", id="r1", stream="stdout", data="stale")
        + line(type="output", id="r2", stream="stdout", data="second")
        + line(type="done", id="r2", ok=True, result=2),
    )
    first, second = Output(), Output()
    with anyio.fail_after(5):
        one = await runtime.run(request("r1"), no_tools, first)
        two = await runtime.run(request("r2"), no_tools, second)
    assert (one.result, first.text) == (1, "")
    assert (two.result, second.text) == (2, "second")


async def test_the_end_of_the_pipe_fails_the_run_and_every_later_one(
    channel: tuple[RuntimeChannel, HostLines, RuntimeEnd],
) -> None:
    runtime, _, end = channel
    end.write(line(type="output", id="r1", stream="stdout", data="partial"))
    end.close()  # the interpreter exited: its end of the pipe is closed
    output = Output()
    with pytest.raises(SandboxFailure, match="exited"), anyio.fail_after(5):
        await runtime.run(request("r1"), no_tools, output)
    assert output.text == "partial"  # what came before the end still reached the run
    with pytest.raises(SandboxFailure, match="exited"), anyio.fail_after(5):
        await runtime.run(request("r2"), no_tools, Output())


async def test_the_sender_waits_for_a_full_pipe_and_reports_its_end() -> None:
    """``PipeSender`` writes the host's messages straight into the pipe; past its buffer it waits for the reader."""
    read_fd, write_fd = os.pipe()
    sender = PipeSender(write_fd)
    message = b"x" * (1 << 20) + b"\n"  # far past a pipe's buffer (64 KiB here)
    received = bytearray()

    def read_all() -> None:
        while len(received) < len(message):
            received.extend(os.read(read_fd, 1 << 16))

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(anyio.to_thread.run_sync, read_all)
            with anyio.fail_after(10):
                await sender.send(message)
        assert bytes(received) == message
        os.close(read_fd)
        read_fd = -1
        with pytest.raises(anyio.BrokenResourceError):  # the interpreter is gone
            await sender.send(b"more\n")
        await sender.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await sender.send(b"after close\n")
    finally:
        sender.close()
        if read_fd >= 0:
            os.close(read_fd)
