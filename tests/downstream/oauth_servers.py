"""A real OAuth 2.1 authorization server and an MCP server it protects, on loopback, for the OAuth tests.

Both are built on the ``mcp`` SDK's server-side auth pieces: the authorization server is the SDK's auth routes
(metadata, authorize, token, dynamic registration, revocation) over an in-memory ``OAuthAuthorizationServerProvider``
that approves every authorization at once (a person who always clicks "allow"), plus the client-credentials grant
(which the SDK's token handler does not serve) authenticated by the SDK's ``ClientAuthenticator``. The MCP server
is an ``MCPServer`` with the SDK's bearer middleware and protected resource metadata, verifying tokens with the
provider. They listen on two ports, so the authorization server is another origin, as it usually is.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

import anyio
import httpx2
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from mcp.server.auth.handlers.metadata import MetadataHandler
from mcp.server.auth.middleware.client_auth import AuthenticationError, ClientAuthenticator
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    ProviderTokenVerifier,
    RefreshToken,
    construct_redirect_uri,
)
from mcp.server.auth.routes import build_metadata, cors_middleware, create_auth_routes
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ptc_mcp.listening import listening_socket

START_S = 30.0
SCOPE = "mcp:tools"


@dataclass
class MemoryAuthorizationServer:
    """The provider behind the SDK's routes: clients, codes and tokens in memory; every request is approved."""

    access_ttl_s: int = 3600
    clients: dict[str, OAuthClientInformationFull] = field(default_factory=dict)
    codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    access: dict[str, AccessToken] = field(default_factory=dict)
    refresh: dict[str, RefreshToken] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    """Every access and refresh token ever issued (the tests look for them where they must not be)."""
    grants: list[str] = field(default_factory=list)
    """The grant type of every token issued, in order."""
    metadata_documents: ssl.SSLContext | None = None
    """Set: client IDs that are HTTPS URLs are client ID metadata documents, fetched with this TLS context."""
    fetched_documents: list[str] = field(default_factory=list)

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        if self.metadata_documents is not None and client_id.startswith("https://"):
            async with httpx2.AsyncClient(verify=self.metadata_documents, timeout=START_S) as http:
                response = await http.get(client_id)
            if response.status_code != 200:
                return None
            self.fetched_documents.append(client_id)
            document = OAuthClientInformationFull.model_validate(response.json())
            return document if document.client_id == client_id else None  # the document must name itself
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        assert client_info.client_id is not None
        self.clients[client_info.client_id] = client_info

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        code = AuthorizationCode(
            code=secrets.token_urlsafe(24),
            scopes=params.scopes or [SCOPE],
            expires_at=time.time() + 300,
            client_id=str(client.client_id),
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
            subject="alice",
        )
        self.codes[code.code] = code
        return construct_redirect_uri(str(params.redirect_uri), code=code.code, state=params.state)

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        return self.codes.get(authorization_code)

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        del self.codes[authorization_code.code]
        return self.issue(str(client.client_id), authorization_code.scopes, authorization_code.resource, "code")

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> RefreshToken | None:
        token = self.refresh.get(refresh_token)
        return token if token is not None and token.client_id == client.client_id else None

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        del self.refresh[refresh_token.token]  # rotation: a refresh token works once
        return self.issue(str(client.client_id), scopes or refresh_token.scopes, refresh_token.resource, "refresh")

    async def load_access_token(self, token: str) -> AccessToken | None:
        access = self.access.get(token)
        if access is None or (access.expires_at is not None and access.expires_at < time.time()):
            return None
        return access

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        self.access.pop(token.token, None)
        self.refresh.pop(token.token, None)

    def issue(
        self, client_id: str, scopes: list[str], resource: str | None, grant: str, refresh: bool = True
    ) -> OAuthToken:
        access = secrets.token_urlsafe(32)
        # Whole seconds in the token, exact expiry here: a 2 s token really ends 2 s after it was issued.
        self.access[access] = AccessToken(
            token=access,
            client_id=client_id,
            scopes=scopes,
            expires_at=int(time.time()) + self.access_ttl_s,
            resource=resource,
            subject="alice",
        )
        self.issued.append(access)
        self.grants.append(grant)
        refresh_token = None
        if refresh:
            refresh_token = secrets.token_urlsafe(32)
            self.refresh[refresh_token] = RefreshToken(
                token=refresh_token, client_id=client_id, scopes=scopes, resource=resource, subject="alice"
            )
            self.issued.append(refresh_token)
        return OAuthToken(
            access_token=access,
            token_type="Bearer",
            expires_in=self.access_ttl_s,
            refresh_token=refresh_token,
            scope=" ".join(scopes),
        )

    def revoke_all_refresh_tokens(self) -> None:
        """What an administrator (or a password change) does: every refresh token stops working."""
        self.refresh.clear()

    def expire_all_access_tokens(self) -> None:
        self.access.clear()


def _with_client_credentials(token_route: ASGIApp, provider: MemoryAuthorizationServer) -> ASGIApp:
    """The SDK's token endpoint, plus ``grant_type=client_credentials`` for confidential clients."""
    authenticator = ClientAuthenticator(provider)  # type: ignore[arg-type]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await token_route(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        form = parse_qs(body.decode())
        if form.get("grant_type") != ["client_credentials"]:
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await token_route(scope, replay, send)
            return

        async def once() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            client = await authenticator.authenticate_request(Request(scope, once))
        except AuthenticationError as exc:
            response = JSONResponse({"error": "invalid_client", "error_description": exc.message}, status_code=401)
        else:
            if "client_credentials" not in client.grant_types:
                response = JSONResponse({"error": "unauthorized_client"}, status_code=400)
            else:
                scopes = form.get("scope", [SCOPE])[0].split()
                resource = form.get("resource", [None])[0]
                token = provider.issue(str(client.client_id), scopes, resource, "client_credentials", refresh=False)
                response = JSONResponse(json.loads(token.model_dump_json(exclude_none=True)))
        await response(scope, once, send)

    return app


def authorization_server_app(provider: MemoryAuthorizationServer, issuer: str) -> Starlette:
    registration = ClientRegistrationOptions(enabled=True, valid_scopes=[SCOPE])
    revocation = RevocationOptions(enabled=True)
    routes = create_auth_routes(
        provider,  # type: ignore[arg-type]
        AnyHttpUrl(issuer),
        client_registration_options=registration,
        revocation_options=revocation,
    )
    for route in routes:
        if route.path == "/token":
            route.app = _with_client_credentials(route.app, provider)
        if route.path == "/.well-known/oauth-authorization-server" and provider.metadata_documents is not None:
            # The SDK's metadata, saying that client ID metadata documents are accepted (the SDK's routes do not).
            metadata = build_metadata(AnyHttpUrl(issuer), None, registration, revocation)
            metadata.client_id_metadata_document_supported = True
            route.app = cors_middleware(MetadataHandler(metadata).handle, ["GET", "OPTIONS"])
    return Starlette(routes=routes)


def protected_mcp_server(provider: MemoryAuthorizationServer, issuer: str, resource: str) -> MCPServer:
    server = MCPServer(
        "protected",
        token_verifier=ProviderTokenVerifier(provider),  # type: ignore[arg-type]
        auth=AuthSettings(
            issuer_url=AnyHttpUrl(issuer),
            resource_server_url=AnyHttpUrl(resource),
            required_scopes=[SCOPE],
            validate_token_resource=False,
        ),
    )

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @server.tool()
    async def add_tool(name: str, ctx: Context) -> str:
        """Add a tool named `name` and announce the change."""

        def added() -> str:
            return name

        server.add_tool(added, name=name, description="Added at run time.")
        await ctx.session.send_tool_list_changed()
        return "added"

    return server


@dataclass
class OAuthServers:
    issuer: str
    mcp_url: str
    provider: MemoryAuthorizationServer


async def _serve(app: ASGIApp, sock: Any, task_group: anyio.abc.TaskGroup) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task_group.start_soon(server.serve, [sock])
    with anyio.fail_after(START_S):
        while not server.started:
            await anyio.sleep(0.01)
    return server


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files in ``folder``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@asynccontextmanager
async def client_metadata_document(folder: Path, path: str, document: dict[str, Any]) -> AsyncIterator[DocumentAt]:
    """Publish ``document`` over HTTPS at ``https://127.0.0.1:PORT{path}`` (``{url}`` in it is replaced by that URL);
    yields the URL and a TLS context that trusts the server."""
    cert_file, key_file = self_signed_certificate(folder)
    sock = listening_socket("127.0.0.1", 0)
    url = f"https://127.0.0.1:{sock.getsockname()[1]}{path}"
    body = json.loads(json.dumps(document).replace("{url}", url))

    async def serve_document(scope: Scope, receive: Receive, send: Send) -> None:
        await JSONResponse(body)(scope, receive, send)

    config = uvicorn.Config(
        serve_document, log_level="warning", lifespan="off", ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)
    )
    context = ssl.create_default_context(cafile=str(cert_file))
    async with anyio.create_task_group() as tg:
        server = uvicorn.Server(config)
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(START_S):
            while not server.started:
                await anyio.sleep(0.01)
        try:
            yield DocumentAt(url, context)
        finally:
            server.should_exit = True


@dataclass
class DocumentAt:
    url: str
    context: ssl.SSLContext


@asynccontextmanager
async def oauth_servers(
    access_ttl_s: int = 3600,
    transport: Literal["http", "sse"] = "http",
    metadata_documents: ssl.SSLContext | None = None,
) -> AsyncIterator[OAuthServers]:
    """The authorization server and the protected MCP server (streamable HTTP at ``/mcp`` or SSE at ``/sse``), each
    on a free loopback port, in this event loop. With ``metadata_documents`` (a TLS context to fetch them with) the
    authorization server accepts client ID metadata documents."""
    as_sock = listening_socket("127.0.0.1", 0)
    mcp_sock = listening_socket("127.0.0.1", 0)
    issuer = f"http://127.0.0.1:{as_sock.getsockname()[1]}"
    mcp_url = f"http://127.0.0.1:{mcp_sock.getsockname()[1]}/{'mcp' if transport == 'http' else 'sse'}"
    provider = MemoryAuthorizationServer(access_ttl_s=access_ttl_s, metadata_documents=metadata_documents)
    server = protected_mcp_server(provider, issuer, mcp_url)
    mcp_app = server.streamable_http_app() if transport == "http" else server.sse_app()
    async with anyio.create_task_group() as tg:
        servers = [
            await _serve(authorization_server_app(provider, issuer), as_sock, tg),
            await _serve(mcp_app, mcp_sock, tg),
        ]
        try:
            yield OAuthServers(issuer=issuer, mcp_url=mcp_url, provider=provider)
        finally:
            for server in servers:
                server.should_exit = True
