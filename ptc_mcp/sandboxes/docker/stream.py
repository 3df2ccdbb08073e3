"""A container's attached stdio as an anyio byte stream.

Without a TTY the engine multiplexes stdout and stderr on the attach connection: every chunk is a frame with an
8-byte header (stream type: 1 stdout, 2 stderr; three zero bytes; payload size, big-endian u32). Writes go to
the container's stdin raw. ``FrameDemux`` parses frames (no I/O, so the blocking start-up handshake and the
async stream share it); ``AttachedStream`` drives the socket without threads (non-blocking, woken by the event
loop), hands stdout to ``RuntimeChannel`` and stderr to a callback.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import ByteStream

from ptc_mcp.errors import SandboxFailure
from ptc_mcp.sandboxes.protocol import MAX_MESSAGE_BYTES

STDOUT, STDERR = 1, 2
_HEADER = struct.Struct(">BxxxI")
_RECV_BYTES = 1 << 16
STDERR_TAIL_BYTES = 4096


def raw_socket(handle: Any) -> socket.socket:
    """The socket behind what ``APIClient.attach_socket`` returned (a ``SocketIO`` or a TLS socket)."""
    if isinstance(handle, socket.socket):
        return handle
    inner = getattr(handle, "_sock", None)
    if isinstance(inner, socket.socket):
        return inner
    raise SandboxFailure(
        f"the Docker connection gave a {type(handle).__name__}, not a socket: ssh:// engines are not supported; "
        "use a unix socket (forward one with `ssh -L`) or tcp:// with TLS"
    )


class FrameDemux:
    """Splits the multiplexed attach stream into stdout bytes and stderr chunks."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.stdout = bytearray()
        self.stderr_tail = bytearray()
        """The last stderr bytes seen while nobody listened (kept for failure messages)."""
        self.stderr_bytes = 0
        """Every stderr byte so far (a warm container that writes while idle is not handed out)."""
        self.on_stderr: Callable[[bytes], None] | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(self._buffer)
            if size > MAX_MESSAGE_BYTES:
                raise SandboxFailure(f"the container sent a stream frame of {size} bytes")
            end = _HEADER.size + size
            if len(self._buffer) < end:
                return
            payload = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            if kind == STDOUT:
                self.stdout += payload
            elif kind == STDERR:
                self._stderr(payload)

    def _stderr(self, payload: bytes) -> None:
        self.stderr_bytes += len(payload)
        if self.on_stderr is not None:
            self.on_stderr(payload)
            return
        self.stderr_tail += payload
        del self.stderr_tail[:-STDERR_TAIL_BYTES]

    def take_line(self) -> bytes | None:
        end = self.stdout.find(b"\n")
        if end < 0:
            return None
        line = bytes(self.stdout[: end + 1])
        del self.stdout[: end + 1]
        return line

    @property
    def idle(self) -> bool:
        return not self._buffer and not self.stdout


class AttachedStream(ByteStream):
    """stdin (raw writes) and demultiplexed stdout of one container, as an anyio ``ByteStream``."""

    def __init__(self, handle: Any, demux: FrameDemux) -> None:
        self._handle = handle  # holds the SDK's HTTP response: dropping it would close the socket
        self._sock = raw_socket(handle)
        self._sock.setblocking(False)
        self.demux = demux
        self.at_eof = False
        self._closed = False

    def poll_open(self) -> bool:
        """Between runs: take what already arrived (without waiting) and say whether the container is still there."""
        if self._closed or self.at_eof:
            return False
        try:
            data = self._sock.recv(_RECV_BYTES)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return True
        except OSError:
            data = b""
        if data:
            try:
                self.demux.feed(data)
            except SandboxFailure:
                data = b""
        self.at_eof = not data
        return not self.at_eof

    async def receive(self, max_bytes: int = _RECV_BYTES) -> bytes:
        stdout = self.demux.stdout
        while not stdout:
            await self.pump()
        chunk = bytes(stdout[:max_bytes])
        del stdout[:max_bytes]
        return chunk

    async def pump(self) -> None:
        """Read and demultiplex one more chunk (stdout is kept for the next reader, stderr goes to its callback)."""
        if self._closed:
            raise anyio.ClosedResourceError
        data = await self._recv()
        if not data:
            self.at_eof = True
            raise anyio.EndOfStream
        self.demux.feed(data)

    async def _recv(self) -> bytes:
        while True:
            try:
                return self._sock.recv(_RECV_BYTES)
            except (BlockingIOError, ssl.SSLWantReadError):
                await anyio.wait_readable(self._sock)
            except ssl.SSLWantWriteError:
                await anyio.wait_writable(self._sock)
            except OSError as exc:
                self.at_eof = True
                raise anyio.BrokenResourceError from exc

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        while view:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                sent = self._sock.send(view)
            except (BlockingIOError, ssl.SSLWantWriteError):
                await anyio.wait_writable(self._sock)
                continue
            except ssl.SSLWantReadError:
                await anyio.wait_readable(self._sock)
                continue
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            view = view[sent:]

    async def send_eof(self) -> None:
        if not isinstance(self._sock, ssl.SSLSocket):
            self._sock.shutdown(socket.SHUT_WR)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        anyio.notify_closing(self._sock)
        self._sock.close()
        close = getattr(self._handle, "close", None)
        if close is not None:
            close()
