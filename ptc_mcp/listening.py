"""One way to open the listening sockets of ptc-mcp's HTTP servers (MCP transports, proxy, emulators, examples).

``TCP_NODELAY`` is set on the listener so accepted connections inherit it (Linux): without it, uvicorn's h11
server and a client's delayed ACK add ~40 ms to small request/response exchanges (Nagle's algorithm).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listening_socket(host: str, port: int, *, backlog: int = 128) -> socket.socket:
    """A bound, listening, non-blocking TCP socket (``port=0``: any free port; read it from ``getsockname()``)."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def url_host(host: str) -> str:
    """``host`` as it goes into a URL (IPv6 addresses in brackets)."""
    host = host.strip("[]")
    return f"[{host}]" if ":" in host else host


@asynccontextmanager
async def serving_asgi(app: Any, host: str = "127.0.0.1", port: int = 0, **options: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a new listening socket while the block runs; yields its base URL."""
    sock = listening_socket(host, port)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", **options)
    server = uvicorn.Server(config)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, [sock])
            with anyio.fail_after(10):
                while not server.started:
                    await anyio.sleep(0.01)  # bounded poll: uvicorn has no "started" event
            try:
                yield f"http://{url_host(host)}:{sock.getsockname()[1]}"
            finally:
                server.should_exit = True
    finally:
        sock.close()
