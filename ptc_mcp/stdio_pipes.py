"""Stdio without worker threads: the SDK's ``stdio_server`` fed from non-blocking pipes on the event loop.

The SDK's ``stdio_server()`` reads stdin and writes stdout through ``anyio.wrap_file``: every line read and every
message written (a write, then a flush) is a trip to a worker thread and back, three per request, ~165 µs each on
a small VM. When fds 0 and 1 are pipes or sockets (how every MCP client starts a stdio server), ptc-mcp claims
them the way the SDK does (fd 0 then reads the null device and fd 1 goes to stderr, so a child's or a library's
stray output misses the wire; both are restored on exit) and hands ``stdio_server`` two streams that read and
write private, non-blocking duplicates on the event loop. The SDK still parses, validates and frames every message.

Anything else (a terminal, a file, Windows) is served by the SDK's own streams: setting ``O_NONBLOCK`` on a
terminal would leak into the shell that shares it.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, cast

import anyio
from mcp.server.stdio import stdio_server

READ_CHUNK = 1 << 16


@asynccontextmanager
async def serve_stdio_streams() -> AsyncIterator[tuple[Any, Any]]:
    """``stdio_server()``'s ``(read_stream, write_stream)``, over the event-loop pipes when fds 0 and 1 allow it."""
    with claimed_pipes() as pipes:
        if pipes is None:
            async with stdio_server() as streams:
                yield streams
            return
        reader, writer = pipes
        # The SDK's documented injection point ("explicit streams skip the claim"): it iterates lines from stdin
        # and calls ``write``/``flush`` on stdout, which is all these two provide.
        async with stdio_server(stdin=cast(Any, reader), stdout=cast(Any, writer)) as streams:
            yield streams


def pipes_allowed(*fds: int) -> bool:
    """Whether every fd is a pipe or a socket (not a terminal or a file) on a POSIX system."""
    if sys.platform == "win32":
        return False
    try:
        return all(stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) for mode in (os.fstat(fd).st_mode for fd in fds))
    except OSError:
        return False


@contextmanager
def claimed_pipes(stdin_fd: int = 0, stdout_fd: int = 1) -> Iterator[tuple[PipeLines, PipeWriter] | None]:
    """Claim fds 0 and 1 for the wire (``None``: they are not both pipes or sockets; nothing was touched)."""
    if not pipes_allowed(stdin_fd, stdout_fd):
        yield None
        return
    import fcntl

    wire_in = fcntl.fcntl(stdin_fd, fcntl.F_DUPFD_CLOEXEC, 3)
    wire_out = fcntl.fcntl(stdout_fd, fcntl.F_DUPFD_CLOEXEC, 3)
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(null, stdin_fd)
        finally:
            os.close(null)
        try:
            os.dup2(2, stdout_fd)
        except OSError:  # no stderr (a client that closed it): stray output goes nowhere
            sink = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(sink, stdout_fd)
            finally:
                os.close(sink)
        os.set_blocking(wire_in, False)
        os.set_blocking(wire_out, False)
        yield PipeLines(wire_in), PipeWriter(wire_out)
    finally:
        for wire, fd in ((wire_in, stdin_fd), (wire_out, stdout_fd)):
            with suppress(OSError):  # the wire is ours alone; back to blocking for whoever holds it next
                os.set_blocking(wire, True)
            with suppress(OSError):  # only when the fd table itself is broken: nothing left to restore into
                os.dup2(wire, fd)
            os.close(wire)


class PipeLines:
    """The lines arriving on a non-blocking fd, as text (UTF-8, undecodable bytes replaced, like the SDK's)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._scanned = 0
        """How far ``_buffer`` is known to hold no newline: a long line is searched once, not once per chunk."""
        self._ended = False

    def __aiter__(self) -> PipeLines:
        return self

    async def __anext__(self) -> str:
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                self._scanned = 0
                return line.decode("utf-8", "replace")
            self._scanned = len(self._buffer)
            if self._ended:
                if not self._buffer:
                    raise StopAsyncIteration
                line = bytes(self._buffer)
                self._buffer.clear()
                self._scanned = 0
                return line.decode("utf-8", "replace")
            await self._read()

    async def _read(self) -> None:
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            await anyio.wait_readable(self._fd)
            return
        if data:
            self._buffer += data
        else:
            self._ended = True


class PipeWriter:
    """Writes text to a non-blocking fd in full before returning (one writer: the SDK's stdout task)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def write(self, text: str) -> int:
        data = memoryview(text.encode("utf-8", "replace"))
        while data:
            try:
                written = os.write(self._fd, data)
            except BlockingIOError:  # the client is not reading yet: wait for room, as a blocking write would
                await anyio.wait_writable(self._fd)
                continue
            data = data[written:]
        return len(text)

    async def flush(self) -> None:
        """Nothing is buffered: ``write`` returns once the kernel has every byte."""
