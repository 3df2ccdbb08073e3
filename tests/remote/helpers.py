"""Serving ptc-mcp for the remote tests: in this process (uvicorn on a loopback port) or as subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import uvicorn

from ptc_mcp.app import App, open_app
from ptc_mcp.config import Config
from ptc_mcp.listening import listening_socket
from ptc_mcp.remote.health import ServingState
from ptc_mcp.remote.serve import remote_app
from ptc_mcp.remote.shared_sessions import shared_directory
from ptc_mcp.server import build_server

WAIT_S = 60.0
ISSUER = "https://issuer.example.invalid"
RESOURCE = "http://127.0.0.1/mcp"
SECRET = "s3cret-for-tests-only-0123456789abcdef"
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "emulator", "AWS_SECRET_ACCESS_KEY": "emulator", "AWS_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_token(
    *,
    scope: str = "ptc:execute",
    audience: str = RESOURCE,
    issuer: str = ISSUER,
    expires_in: float = 300,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload = {"iss": issuer, "aud": audience, "sub": "alice", "client_id": "agent-7", "scope": scope}
    payload |= {"iat": now, "exp": int(now + expires_in), **claims}
    return jwt.encode(payload, SECRET, algorithm="HS256")


OAUTH = {
    "mode": "oauth",
    "issuer": ISSUER,
    "audience": [RESOURCE],
    "resource_server_url": RESOURCE,
    "shared_secret": SECRET,
    "required_scopes": ["ptc:execute"],
}


@asynccontextmanager
async def serving_in_process(
    config: Config, transport: str = "http", auth_token: str | None = None
) -> AsyncIterator[tuple[str, App, ServingState]]:
    """The app served by uvicorn in this event loop on a free loopback port; yields (base URL, App, state)."""
    async with open_app(config, allow_unisolated=True, session_directory=shared_directory) as app:
        asgi, state = remote_app(app, build_server(app), transport, "127.0.0.1", auth_token)  # type: ignore[arg-type]
        sock = listening_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(asgi, log_level="warning", lifespan="on"))
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, [sock])
            with anyio.fail_after(WAIT_S):
                while not server.started:
                    await anyio.sleep(0.01)
            state.ready = True
            try:
                yield f"http://127.0.0.1:{port}", app, state
            finally:
                server.should_exit = True


def write_config(folder: Path, document: dict[str, Any], name: str = "config.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@asynccontextmanager
async def serving_subprocess(
    config: Path, *extra: str, env: dict[str, str] | None = None, port: int | None = None
) -> AsyncIterator[tuple[str, anyio.abc.Process]]:
    """``ptc-mcp serve --transport http`` as a subprocess; yields (base URL, process) once ``/readyz`` answers."""
    port = port or free_port()
    command = [sys.executable, "-m", "ptc_mcp", "serve", "--config", str(config), "--transport", "http"]
    process = await anyio.open_process(
        [*command, "--port", str(port), *extra],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=None,
        env={**os.environ, **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx2.AsyncClient(timeout=5.0) as http:
            with anyio.fail_after(WAIT_S):
                while True:
                    if process.returncode is not None:
                        raise RuntimeError(f"ptc-mcp serve exited with status {process.returncode}")
                    try:
                        if (await http.get(f"{base}/readyz")).status_code == 200:
                            break
                    except httpx2.TransportError:
                        pass
                    await anyio.sleep(0.05)  # bounded poll: the server prints nothing when it is up
        yield base, process
    finally:
        if process.returncode is None:
            process.terminate()
        with anyio.fail_after(30):
            await process.wait()
        await process.aclose()
