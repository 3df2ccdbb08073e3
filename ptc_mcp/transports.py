"""Serving the MCP server over stdio, SSE and streamable HTTP.

HTTP and SSE bind to loopback unless told otherwise; with an auth token every HTTP request must carry
``Authorization: Bearer <token>``. Logs go to stderr only: in stdio mode stdout belongs to JSON-RPC.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any, Literal

import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.sse import SseServerTransport
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ptc_mcp.listening import listening_socket
from ptc_mcp.server import initialization_options

log = logging.getLogger(__name__)

Transport = Literal["stdio", "sse", "http"]
MAX_REQUEST_BODY_BYTES = 32 * 1024 * 1024
"""Large enough that an oversized program reaches execute_program and is refused there as ``invalid_input``."""

LOOPBACK = ("127.0.0.1", "localhost", "::1")


async def serve_stdio(server: Server[Any]) -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, initialization_options(server))


class BearerTokenMiddleware:
    """Refuses HTTP requests without ``Authorization: Bearer <token>`` (constant-time comparison)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            supplied = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(supplied, self._expected):
                response = JSONResponse(
                    {"error": "unauthorized", "error_description": "a valid bearer token is required"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="ptc-mcp"'},
                )
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def _security(host: str) -> TransportSecuritySettings | None:
    if host not in LOOPBACK:
        return None
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )


def sse_app(server: Server[Any], host: str) -> Starlette:
    transport = SseServerTransport(
        "/messages/", security_settings=_security(host), max_request_body_size=MAX_REQUEST_BODY_BYTES
    )

    async def handle_sse(request: Request) -> Response:
        async with transport.connect_sse(request.scope, request.receive, request._send) as (read, write):
            await server.run(read, write, initialization_options(server))
        return Response()

    return Starlette(
        routes=[
            Route("/sse", endpoint=handle_sse, methods=["GET"]),
            Mount("/messages/", app=transport.handle_post_message),
        ]
    )


def http_app(server: Server[Any], transport: Literal["sse", "http"], host: str, auth_token: str | None) -> ASGIApp:
    """The ASGI app for SSE (``/sse``) or streamable HTTP (``/mcp``), behind the bearer check when configured."""
    app: ASGIApp
    if transport == "sse":
        app = sse_app(server, host)
    else:
        app = server.streamable_http_app(
            host=host, transport_security=_security(host), max_request_body_size=MAX_REQUEST_BODY_BYTES
        )
    return BearerTokenMiddleware(app, auth_token) if auth_token else app


async def serve_http(
    server: Server[Any], transport: Literal["sse", "http"], host: str, port: int, auth_token: str | None
) -> None:
    if host not in LOOPBACK and not auth_token:
        log.warning("serving on %s without --auth-token: anyone who can reach this port can run code", host)
    config = uvicorn.Config(http_app(server, transport, host, auth_token), log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve(sockets=[listening_socket(host, port)])
