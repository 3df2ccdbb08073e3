"""The direct channel of a local engine: the protocol over a unix socket instead of the engine's attach stream.

Over the attach stream every message crosses two more processes each way (the container's shim and dockerd, which
frames it). On a local engine the host instead listens on a unix socket in a private directory bind-mounted
read-only into the container at ``CHANNEL_DIR``, and names it in the runtime's environment (``CHANNEL_ENV``). The
runtime connects twice at start, before any program runs: first the protocol's connection, then the one its fds 1
and 2 go to (``Connected``). The host accepts exactly these two connections, each from the container's uid, then
closes the listener and removes the socket and its directories, so nothing can connect again. A unix socket through
a mount is not network: the container still has none (``network_mode: none``).

The start-up payload still goes in over the attach stream. The second connection carries what the interpreter and
its children write to their real fds 1 and 2; the host reads it like a local interpreter's pipe
(``stream.RawPipe``), so a run's end mark comes straight from the container, not through the shim and dockerd as
stderr frames. When the runtime cannot connect (a remote engine, Docker Desktop's VM, gVisor, SELinux) it says
``ready`` on stdout and everything stays on the attach stream, as before.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import struct
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from ptc_mcp.errors import SandboxFailure
from ptc_mcp.sandboxes.docker.stream import FrameDemux
from ptc_mcp.sandboxes.protocol import CHANNEL_ENV

CHANNEL_DIR = "/run/ptc-channel"
SOCKET_NAME = "socket"
_PEERCRED = struct.Struct("3i")  # pid, uid, gid
_RECV_BYTES = 1 << 16
CONNECTIONS = 2
"""What the runtime connects, in this order: the protocol, then its fds 1 and 2."""


def is_local_engine(api: Any) -> bool:
    """The engine listens on a unix socket and runs on this machine (its name is this host's name): a path made
    here is the same path for the engine. A socket forwarded from another machine, or the engine of a host whose
    socket a containerised server mounted, has another name; Docker Desktop's VM passes this test, and there the
    runtime's connect fails and it falls back to the attach stream."""
    if api.base_url != "http+docker://localhost" or not hasattr(socket, "SO_PEERCRED"):
        return False
    try:
        return bool(api.info().get("Name") == socket.gethostname())
    except Exception:  # an engine that does not answer here fails elsewhere, with a better message
        return False


@dataclass
class ChannelListener:
    """A listening socket in ``<private 0700 dir>/c/socket``; ``c`` is what the container sees."""

    parent: str
    directory: str
    listener: socket.socket
    uid: int

    def container_options(self) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
        """The bind (read-only) and the environment entry that tell the runtime where to connect."""
        binds = {self.directory: {"bind": CHANNEL_DIR, "mode": "ro"}}
        return binds, {CHANNEL_ENV: f"{CHANNEL_DIR}/{SOCKET_NAME}"}

    def close(self) -> None:
        """Stop listening and remove the socket and both directories (the container keeps its empty mount)."""
        self.listener.close()
        shutil.rmtree(self.parent, ignore_errors=True)


def open_listener(user: str) -> ChannelListener:
    """Listen for the container's runtime, reachable only by the container's uid (and the host's own user).

    The parent directory is the host user's, mode 0700: no other host user gets in. As root, the mounted directory
    and the socket are handed to the container's uid (0700, 0600); otherwise they stay the host user's and the
    container's uid gets search on the directory and write on the socket (0711, 0666), which only the container
    can use (the parent keeps everyone else out)."""
    uid, gid = (int(part) for part in user.split(":"))
    parent = tempfile.mkdtemp(prefix="ptc-channel-")
    try:
        directory = os.path.join(parent, "c")
        os.mkdir(directory, 0o700)
        path = os.path.join(directory, SOCKET_NAME)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            listener.listen(CONNECTIONS)
            if os.geteuid() == 0:
                os.chown(directory, uid, gid)
                os.chown(path, uid, gid)
                os.chmod(path, 0o600)
            elif uid != os.geteuid():
                os.chmod(directory, 0o711)
                os.chmod(path, 0o666)
        except BaseException:
            listener.close()
            raise
    except BaseException:
        shutil.rmtree(parent, ignore_errors=True)
        raise
    return ChannelListener(parent, directory, listener, uid)


@dataclass
class Connected:
    """The runtime's two connections on the direct channel."""

    protocol: socket.socket
    raw: socket.socket
    """Where the interpreter's fds 1 and 2 write (the host only reads it)."""

    def close(self) -> None:
        self.protocol.close()
        self.raw.close()


def handshake(
    sock: socket.socket, demux: FrameDemux, payload: bytes, timeout_s: float, channel: ChannelListener | None
) -> tuple[bytes, Connected | None]:
    """Send ``payload`` on the attach stream; the ``ready`` line from the direct channel (with its connections) when
    the runtime connects, else from stdout (and ``None``). The listener, if any, is closed either way."""
    deadline = time.monotonic() + timeout_s
    waiting_on = [sock] if channel is None else [sock, channel.listener]
    accepted: list[socket.socket] = []
    try:
        sock.settimeout(timeout_s)
        sock.sendall(payload)
        while (line := demux.take_line()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            readable, _, _ = select.select(waiting_on, [], [], remaining)
            if channel is not None and channel.listener in readable:
                accepted.append(_accept(channel))
                if len(accepted) == CONNECTIONS:
                    channel.close()  # these two only: nothing can connect after the runtime did
                    return _first_line(accepted[0], deadline), Connected(*accepted)
            if sock in readable:
                data = sock.recv(_RECV_BYTES)
                if not data:
                    raise EOFError
                demux.feed(data)
        if accepted:
            raise SandboxFailure("the runtime connected the direct channel once, then said ready on its stdout")
        return line, None
    except BaseException:
        for conn in accepted:
            conn.close()
        raise
    finally:
        if channel is not None:
            channel.close()


def _accept(channel: ChannelListener) -> socket.socket:
    conn, _ = channel.listener.accept()
    _pid, uid, _gid = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    if uid != channel.uid:
        conn.close()
        raise SandboxFailure(f"the direct channel was connected by uid {uid}, not the container's ({channel.uid})")
    return conn


def _first_line(conn: socket.socket, deadline: float) -> bytes:
    """The runtime's ``ready`` line: it sends nothing else before the host's first message."""
    data = bytearray()
    while (end := data.find(b"\n")) < 0:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if len(data) > _RECV_BYTES:
            raise SandboxFailure("the runtime's first line on the direct channel is too long")
        conn.settimeout(remaining)
        chunk = conn.recv(_RECV_BYTES)
        if not chunk:
            raise EOFError
        data += chunk
    if end + 1 != len(data):
        raise SandboxFailure("the runtime sent more than its ready line on the direct channel")
    conn.settimeout(None)
    return bytes(data)
