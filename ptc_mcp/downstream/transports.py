"""Open the client transport for one configured downstream server.

A transport is what the MCP SDK calls one: an async context manager that yields a (read, write) stream pair.
Stdio servers get the SDK's safe default environment (``PATH``, ``HOME``, ...) with the configured ``env`` on
top, as Claude Desktop does; their stderr goes to ours, never to stdout, through a pipe that keeps its last lines
(``StderrTail``), so a server that fails to start is reported with its own reason. A server whose ``command`` is
``ptc-mcp`` (``ptc-mcp example expenses``) runs with the interpreter that runs this ptc-mcp, whatever ``PATH``
says: an MCP client that started ptc-mcp by its absolute path often has no ``ptc-mcp`` on its ``PATH``.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TextIO

import anyio
import httpx2
from mcp.client._transport import TransportStreams
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client

from ptc_mcp.config import HttpServerConfig, ServerConfig, SseServerConfig, StdioServerConfig

__all__ = ["StderrTail", "open_transport", "stdio_environment", "stdio_parameters"]

CONNECT_TIMEOUT_S = 30.0
"""HTTP connect/write timeout; reads wait longer because a server may hold a response stream open."""
SSE_READ_TIMEOUT_S = 300.0
STDERR_TAIL_BYTES = 2048


def stdio_environment(config: StdioServerConfig) -> dict[str, str]:
    """The environment a stdio server starts with: the SDK's inherited defaults, then the configured ``env``."""
    return get_default_environment() | config.env


SELF_COMMAND = "ptc-mcp"
"""A stdio server with this ``command`` is this ptc-mcp installation (``sys.executable -m ptc_mcp``)."""


def stdio_parameters(config: StdioServerConfig) -> StdioServerParameters:
    """The SDK's launch parameters for a stdio server."""
    command, args = config.command, list(config.args)
    if command == SELF_COMMAND:
        command, args = sys.executable, ["-m", "ptc_mcp", *args]
    return StdioServerParameters(command=command, args=args, env=dict(config.env), cwd=config.cwd)


def _errlog() -> TextIO:
    # The child's stderr must be a real file descriptor; a replaced sys.stderr (pytest capsys) may have none.
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return sys.__stderr__ if sys.__stderr__ is not None else sys.stderr
    return sys.stderr


class StderrTail:
    """Forwards a stdio server's stderr to ours and keeps its last ``STDERR_TAIL_BYTES``."""

    def __init__(self, limit: int = STDERR_TAIL_BYTES) -> None:
        self._limit = limit
        self._tail = b""

    def text(self, max_lines: int = 5) -> str:
        """The last lines the server wrote (``""``: nothing), joined with `` | `` to fit on one line."""
        lines = [line.strip() for line in self._tail.decode("utf-8", "replace").splitlines() if line.strip()]
        return " | ".join(lines[-max_lines:])

    def clear(self) -> None:
        self._tail = b""

    def _keep(self, chunk: bytes) -> None:
        out = _errlog()
        try:
            out.write(chunk.decode("utf-8", "replace"))
            out.flush()
        except (OSError, ValueError):
            pass
        self._tail = (self._tail + chunk)[-self._limit :]

    def drain(self, fd: int) -> bool:
        """Read what the pipe holds now without blocking; ``False`` at end of file."""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self._keep(chunk)

    async def pump(self, fd: int) -> None:
        while self.drain(fd):
            await anyio.wait_readable(fd)


@asynccontextmanager
async def _stdio_transport(config: StdioServerConfig, tail: StderrTail) -> AsyncIterator[TransportStreams]:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    errlog = os.fdopen(write_fd, "w")
    tail.clear()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(tail.pump, read_fd)
            try:
                async with stdio_client(stdio_parameters(config), errlog=errlog) as streams:
                    yield streams
            finally:
                tail.drain(read_fd)  # what a server that just died wrote is in the pipe already
                tg.cancel_scope.cancel()
    finally:
        errlog.close()
        os.close(read_fd)


@asynccontextmanager
async def _http_transport(config: HttpServerConfig, auth: httpx2.Auth | None) -> AsyncIterator[TransportStreams]:
    timeout = httpx2.Timeout(CONNECT_TIMEOUT_S, read=SSE_READ_TIMEOUT_S)
    async with (
        httpx2.AsyncClient(headers=dict(config.headers), timeout=timeout, auth=auth) as http_client,
        streamable_http_client(config.url, http_client=http_client) as streams,
    ):
        yield streams


@asynccontextmanager
async def _sse_transport(config: SseServerConfig, auth: httpx2.Auth | None) -> AsyncIterator[TransportStreams]:
    async with sse_client(
        config.url,
        headers=dict(config.headers),
        timeout=CONNECT_TIMEOUT_S,
        sse_read_timeout=SSE_READ_TIMEOUT_S,
        auth=auth,
    ) as streams:
        yield streams


@asynccontextmanager
async def open_transport(
    config: ServerConfig, auth: httpx2.Auth | None = None, stderr: StderrTail | None = None
) -> AsyncIterator[TransportStreams]:
    """Open the transport ``config`` describes; closing it stops the server process (stdio) or the HTTP client.

    ``auth`` (``ptc_mcp.downstream.oauth``) signs every HTTP request of an ``http`` or ``sse`` server. ``stderr``
    keeps the tail of a stdio server's stderr (which goes to ours either way).
    """
    if isinstance(config, StdioServerConfig) and sys.platform == "win32":  # no waiting on pipes there
        async with stdio_client(stdio_parameters(config), errlog=_errlog()) as streams:
            yield streams
    elif isinstance(config, StdioServerConfig):
        async with _stdio_transport(config, stderr or StderrTail()) as streams:
            yield streams
    elif isinstance(config, SseServerConfig):
        async with _sse_transport(config, auth) as streams:
            yield streams
    else:
        async with _http_transport(config, auth) as streams:
            yield streams
