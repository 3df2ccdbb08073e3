"""Serving the MCP server over stdio, SSE and streamable HTTP.

HTTP and SSE bind to loopback unless told otherwise. Auth goes through the ``mcp`` SDK's bearer middleware with a
``TokenVerifier`` from ``ptc_mcp.auth`` (static tokens, or an OAuth 2.1 resource server): 401 without a
valid token, 403 without the required scopes. Host/Origin checks and the request size limit come from the
config's ``remote`` section. Logs go to stderr only: in stdio mode stdout belongs to JSON-RPC.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import uvicorn
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.routes import build_resource_metadata_url, create_protected_resource_routes
from mcp.server.auth.settings import AuthSettings
from mcp.server.lowlevel import Server
from mcp.server.sse import SseServerTransport
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ptc_mcp.auth import token_verifier
from ptc_mcp.config.remote import DEFAULT_MAX_REQUEST_BODY_BYTES, RemoteConfig
from ptc_mcp.errors import ConfigError
from ptc_mcp.listening import listening_socket
from ptc_mcp.server import initialization_options
from ptc_mcp.stdio_pipes import serve_stdio_streams

log = logging.getLogger(__name__)

Transport = Literal["stdio", "sse", "http"]
MAX_REQUEST_BODY_BYTES = DEFAULT_MAX_REQUEST_BODY_BYTES
"""Large enough that an oversized program reaches execute_program and is refused there as ``invalid_input``."""

LOOPBACK = ("127.0.0.1", "localhost", "::1")


async def serve_stdio(server: Server[Any]) -> None:
    async with serve_stdio_streams() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, initialization_options(server))


def security_settings(host: str, remote: RemoteConfig | None = None) -> TransportSecuritySettings | None:
    """Host/Origin checks (DNS-rebinding protection): the configured lists, or loopback names on loopback."""
    remote = remote or RemoteConfig()
    if remote.allowed_hosts or remote.allowed_origins:
        if not remote.allowed_hosts:
            raise ConfigError("remote.allowed_origins needs remote.allowed_hosts too (the Host check comes first)")
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=list(remote.allowed_hosts),
            allowed_origins=list(remote.allowed_origins),
        )
    if host not in LOOPBACK:
        return None
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )


def _auth_settings(remote: RemoteConfig) -> AuthSettings:
    auth = remote.auth
    if auth.mode == "oauth":
        # Validated from strings, so a path-less issuer keeps its exact spelling (RFC 8414 compares it verbatim).
        return AuthSettings.model_validate(
            {
                "issuer_url": auth.issuer,
                "resource_server_url": auth.resource_server_url,
                "required_scopes": list(auth.required_scopes) or None,
                "validate_token_resource": False if auth.resource_server_url else None,  # the verifier checks `aud`
            }
        )
    # Static bearer tokens have no authorization server: the issuer is never advertised (no resource URL).
    return AuthSettings.model_validate(
        {
            "issuer_url": "http://127.0.0.1",
            "resource_server_url": None,
            "required_scopes": list(auth.required_scopes) or None,
        }
    )


class _Endpoint:
    """An ASGI callable as a Starlette route endpoint (a plain function would be taken for a request handler)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def sse_app(
    server: Server[Any],
    host: str,
    *,
    remote: RemoteConfig | None = None,
    verifier: TokenVerifier | None = None,
    routes: list[BaseRoute] | None = None,
) -> Starlette:
    remote = remote or RemoteConfig()
    transport = SseServerTransport(
        "/messages/",
        security_settings=security_settings(host, remote),
        max_request_body_size=remote.max_request_body_bytes,
    )

    async def handle_sse(scope: Scope, receive: Receive, send: Send) -> None:
        async with transport.connect_sse(scope, receive, send) as (read, write):
            await server.run(read, write, initialization_options(server))
        await Response()(scope, receive, send)

    sse_endpoint: ASGIApp = handle_sse
    messages: ASGIApp = transport.handle_post_message
    middleware: list[Middleware] = []
    extra: list[BaseRoute] = []
    if verifier is not None:
        settings = _auth_settings(remote)
        metadata_url = (
            build_resource_metadata_url(settings.resource_server_url) if settings.resource_server_url else None
        )
        scopes = settings.required_scopes or []
        sse_endpoint = RequireAuthMiddleware(sse_endpoint, scopes, metadata_url)
        messages = RequireAuthMiddleware(messages, scopes, metadata_url)
        middleware = [
            Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(verifier)),
            Middleware(AuthContextMiddleware),
        ]
        if settings.resource_server_url:
            extra = list(
                create_protected_resource_routes(
                    resource_url=settings.resource_server_url,
                    authorization_servers=[settings.issuer_url],
                    scopes_supported=settings.required_scopes,
                )
            )
    return Starlette(
        routes=[
            Route("/sse", endpoint=_Endpoint(sse_endpoint), methods=["GET"]),
            Mount("/messages/", app=messages),
            *extra,
            *(routes or []),
        ],
        middleware=middleware,
    )


def http_app(
    server: Server[Any],
    transport: Literal["sse", "http"],
    host: str,
    auth_token: str | None = None,
    *,
    remote: RemoteConfig | None = None,
    routes: Callable[[TokenVerifier | None, list[str]], list[BaseRoute]] | None = None,
) -> ASGIApp:
    """The ASGI app for SSE (``/sse``) or streamable HTTP (``/mcp``), behind the configured auth.

    ``auth_token`` (``--auth-token``) adds a static bearer token to ``remote.auth``. ``routes(verifier, scopes)``
    returns extra routes (health, metrics), served outside the auth requirement.
    """
    remote = remote or RemoteConfig()
    verifier = token_verifier(remote.auth, [auth_token] if auth_token else None)
    extra = routes(verifier, list(remote.auth.required_scopes)) if routes else []
    if transport == "sse":
        return sse_app(server, host, remote=remote, verifier=verifier, routes=extra)
    return server.streamable_http_app(
        host=host,
        transport_security=security_settings(host, remote),
        max_request_body_size=remote.max_request_body_bytes,
        stateless_http=remote.stateless_http,
        auth=_auth_settings(remote) if verifier is not None else None,
        token_verifier=verifier,
        custom_starlette_routes=[route for route in extra if isinstance(route, Route)],
    )


async def serve_http(
    server: Server[Any], transport: Literal["sse", "http"], host: str, port: int, auth_token: str | None
) -> None:
    """Serve ``server`` with the default remote settings (``ptc_mcp.remote.serve`` serves a whole ``App``)."""
    if host not in LOOPBACK and not auth_token:
        log.warning("serving on %s without --auth-token: anyone who can reach this port can run code", host)
    config = uvicorn.Config(http_app(server, transport, host, auth_token), log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve(sockets=[listening_socket(host, port)])
