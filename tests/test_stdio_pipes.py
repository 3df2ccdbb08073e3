"""The thread-free stdio streams (``ptc_mcp.stdio_pipes``): lines in, text out, fds 0 and 1 claimed and restored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import anyio
import anyio.lowlevel
import pytest

from ptc_mcp.stdio_pipes import READ_CHUNK, PipeLines, PipeWriter, pipes_allowed

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="the event-loop pipes are POSIX only"),
]


def _nonblocking_pipe() -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    return read_fd, write_fd


async def _lines_of(chunks: list[bytes]) -> list[str]:
    read_fd, write_fd = _nonblocking_pipe()
    lines: list[str] = []
    try:

        async def feed() -> None:
            writer = PipeWriter(write_fd)
            for chunk in chunks:  # one write each (ASCII), the reader running in between
                await writer.write(chunk.decode("ascii"))
                await anyio.lowlevel.checkpoint()
            os.close(write_fd)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(feed)
            async for line in PipeLines(read_fd):
                lines.append(line)
    finally:
        os.close(read_fd)
    return lines


async def test_lines_split_across_reads_and_the_last_line_without_a_newline() -> None:
    lines = await _lines_of([b'{"a":', b' 1}\n{"b"', b": 2}\r\n", b'{"c": 3}'])
    assert lines == ['{"a": 1}\n', '{"b": 2}\r\n', '{"c": 3}']


async def test_a_line_longer_than_one_read_arrives_whole() -> None:
    big = "x" * (READ_CHUNK * 3 + 17)
    lines = await _lines_of([f'"{big}"\n'.encode(), b"2\n"])
    assert [len(line) for line in lines] == [len(big) + 3, 2]
    assert json.loads(lines[0]) == big


async def test_undecodable_bytes_are_replaced_not_fatal() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b'"caf\xc3\xa9 \xff"\n')
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    try:
        lines = [line async for line in PipeLines(read_fd)]
    finally:
        os.close(read_fd)
    assert lines == ['"café \ufffd"\n']


async def test_a_write_larger_than_the_pipe_waits_for_the_reader() -> None:
    read_fd, write_fd = _nonblocking_pipe()
    text = "0123456789abcdef" * 65536  # 1 MiB: many times a pipe's capacity
    received = bytearray()
    try:

        async def read_all() -> None:
            while len(received) < len(text):
                try:
                    received.extend(os.read(read_fd, READ_CHUNK))
                except BlockingIOError:
                    await anyio.wait_readable(read_fd)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read_all)
            assert await PipeWriter(write_fd).write(text) == len(text)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert received.decode() == text


def test_only_pipes_and_sockets_are_served_on_the_event_loop() -> None:
    read_fd, write_fd = os.pipe()
    primary, secondary = os.openpty()
    with tempfile.TemporaryFile() as file:
        try:
            assert pipes_allowed(read_fd, write_fd)
            assert not pipes_allowed(read_fd, file.fileno())  # a file: the SDK's own streams
            assert not pipes_allowed(secondary, write_fd)  # a terminal: O_NONBLOCK would leak into its shell
            assert not pipes_allowed(read_fd, 10_000)  # not open
        finally:
            for fd in (read_fd, write_fd, primary, secondary):
                os.close(fd)


CLAIMING = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from ptc_mcp.stdio_pipes import claimed_pipes

    async def main():
        with claimed_pipes() as pipes:
            reader, writer = pipes
            line = await reader.__anext__()
            stray_stdin = os.read(0, 10)  # fd 0 is the null device while claimed
            os.write(1, b"stray\\n")  # fd 1 goes to stderr while claimed
            await writer.write(json.dumps({"echo": json.loads(line)}) + "\\n")
        print(json.dumps({"stray_stdin": stray_stdin.decode(), "blocking": os.get_blocking(1)}), flush=True)

    asyncio.run(main())
    """
)


def test_fds_0_and_1_are_claimed_while_serving_and_restored_after() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CLAIMING],
        input=b'{"n": 1}\n',
        capture_output=True,
        timeout=60,
        check=True,
    )
    wire, after = done.stdout.decode().splitlines()
    assert json.loads(wire) == {"echo": {"n": 1}}
    assert json.loads(after) == {"stray_stdin": "", "blocking": True}  # fd 1 is the wire again, blocking
    assert done.stderr == b"stray\n" and b"stray\n" not in done.stdout


def test_without_a_stderr_stray_output_goes_nowhere_and_the_wire_still_works() -> None:
    closing_stderr = CLAIMING.replace(
        "    with claimed_pipes() as pipes:", "    os.close(2)\n    with claimed_pipes() as pipes:"
    )
    assert closing_stderr != CLAIMING
    done = subprocess.run(
        [sys.executable, "-c", closing_stderr], input=b'{"n": 2}\n', capture_output=True, timeout=60, check=True
    )
    wire, after = done.stdout.decode().splitlines()
    assert json.loads(wire) == {"echo": {"n": 2}}  # the stray write went to the null device, not the wire
    assert json.loads(after)["stray_stdin"] == ""
    assert done.stderr == b""
