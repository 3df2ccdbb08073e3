"""OAuth 2.1 for remote downstream servers, through the ``mcp`` SDK's client auth.

The SDK's ``OAuthClientProvider`` (an ``httpx2.Auth``) does discovery (protected resource and authorization server
metadata), client registration (a client ID metadata document where the server supports it, else dynamic
registration), PKCE, the token exchange and refreshing an expired token; ``ClientCredentialsOAuthProvider`` does
the machine-to-machine grant. This module adds what a long-running proxy needs on top:

- ``TokenStore``: the SDK's ``TokenStorage``, one file per server and resource URL in a directory only the user can
  read (0700/0600). Tokens go nowhere else: not to logs, the audit trail, results or the sandbox.
- ``ServingOAuthProvider``: the authorization-code client for ``serve`` and ``check``, which cannot ask a person:
  it refreshes a little before expiry, refreshes once after a 401, and otherwise raises ``LoginRequired``
  (run ``ptc-mcp login NAME``).
- ``oauth_auth``: the right ``httpx2.Auth`` for a server entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp.client.auth import OAuthClientProvider, OAuthTokenError
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.auth.oauth2 import OAuthContext
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthMetadata,
    OAuthToken,
    ProtectedResourceMetadata,
)
from mcp.shared.auth_utils import resource_url_from_server_url

from ptc_mcp import __version__
from ptc_mcp.config import HttpServerConfig, OAuthConfig, SseServerConfig
from ptc_mcp.config.paths import TOKEN_DIR_ENV, default_token_dir
from ptc_mcp.errors import PtcError

__all__ = [
    "TOKEN_DIR_ENV",
    "LoginRequired",
    "ServingOAuthProvider",
    "TokenStore",
    "client_metadata",
    "default_token_dir",
    "oauth_auth",
]

REFRESH_MARGIN_S = 60.0
"""Refresh this long before an access token expires (at most a quarter of its lifetime), so no call meets expiry."""

RemoteServerConfig = HttpServerConfig | SseServerConfig


class LoginRequired(PtcError):
    """A server needs a person to log in (no tokens, or the refresh token no longer works)."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"server {server!r} needs a login ({reason}): run `ptc-mcp login {server} --config <file>`")
        self.server = server
        self.reason = reason


class _QuietLoginRequired(logging.Filter):
    """The SDK logs every auth-flow failure with a traceback; a needed login is expected, and the connection says
    so in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], LoginRequired))


logging.getLogger("mcp.client.auth.oauth2").addFilter(_QuietLoginRequired())


class TokenStore:
    """Tokens and client registration of one server at one resource URL, in one file only the user can read."""

    def __init__(self, server: str, url: str, directory: Path | None = None) -> None:
        self.server = server
        self.resource = resource_url_from_server_url(url)
        self.directory = directory if directory is not None else default_token_dir()
        digest = hashlib.sha256(self.resource.encode()).hexdigest()[:16]
        self.path = self.directory / f"{server}-{digest}.json"

    # The files are tiny: reading and writing them on a worker thread keeps the event loop free all the same.

    async def get_tokens(self) -> OAuthToken | None:
        tokens = (await anyio.to_thread.run_sync(self._read)).get("tokens")
        return OAuthToken.model_validate(tokens) if tokens else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        expires_at = time.time() + int(tokens.expires_in) if tokens.expires_in is not None else None
        await self._update(tokens=tokens.model_dump(mode="json", exclude_none=True), expires_at=expires_at)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        info = (await anyio.to_thread.run_sync(self._read)).get("client_info")
        return OAuthClientInformationFull.model_validate(info) if info else None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        await self._update(client_info=client_info.model_dump(mode="json", exclude_none=True))

    async def expires_at(self) -> float | None:
        """When the stored access token expires (seconds since the epoch), if the server said."""
        value = (await anyio.to_thread.run_sync(self._read)).get("expires_at")
        return float(value) if value is not None else None

    async def set_discovery(self, context: OAuthContext) -> None:
        """Remember where the authorization server is (``login`` found it), so a refresh after a restart can go
        straight to its token endpoint."""
        discovered = {
            "authorization_server": context.auth_server_url,
            "oauth_metadata": context.oauth_metadata.model_dump(mode="json", exclude_none=True)
            if context.oauth_metadata
            else None,
            "resource_metadata": context.protected_resource_metadata.model_dump(mode="json", exclude_none=True)
            if context.protected_resource_metadata
            else None,
        }
        await self._update(discovery=discovered)

    async def load_discovery(self, context: OAuthContext) -> None:
        """Put what ``set_discovery`` remembered into ``context``."""
        discovered = (await anyio.to_thread.run_sync(self._read)).get("discovery") or {}
        if discovered.get("oauth_metadata"):
            context.oauth_metadata = OAuthMetadata.model_validate(discovered["oauth_metadata"])
        if discovered.get("resource_metadata"):
            context.protected_resource_metadata = ProtectedResourceMetadata.model_validate(
                discovered["resource_metadata"]
            )
        context.auth_server_url = discovered.get("authorization_server")

    async def has_tokens(self) -> bool:
        return await self.get_tokens() is not None

    def clear(self) -> bool:
        """Forget everything stored for this server (``logout``); whether there was anything."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    async def _update(self, **fields: Any) -> None:
        def update() -> None:
            self._write(self._read() | fields)

        await anyio.to_thread.run_sync(update)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # unreadable or torn: as good as no tokens, so `check` says to log in again
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.directory.stat().st_mode & 0o077:
            self.directory.chmod(0o700)  # an existing directory others can read: close it before writing secrets
        document = {"server": self.server, "resource": self.resource} | data
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)  # atomic: a reader sees the old file or the new one, never half


def refresh_margin(lifetime_s: float) -> float:
    return min(REFRESH_MARGIN_S, lifetime_s / 4)


class _EarlyExpiryContext(OAuthContext):
    """The SDK's context, with tokens counted as expired ``refresh_margin`` before they are."""

    def update_token_expiry(self, token: OAuthToken) -> None:
        super().update_token_expiry(token)
        if self.token_expiry_time is not None and token.expires_in is not None:
            self.token_expiry_time -= refresh_margin(float(token.expires_in))


class _StoredState(OAuthClientProvider):
    """Counts tokens as expired a little early, and loads what the SDK keeps only in memory from the store.

    The SDK computes expiry only for tokens it fetched itself, and discovers the authorization server only after a
    401, so after a restart it would send an expired token, or refresh at a guessed ``/token`` on the MCP server's
    origin; with the stored expiry and discovery it refreshes first, at the right endpoint.
    """

    def _early_expiry(self) -> None:
        context = self.context
        self.context = _EarlyExpiryContext(
            server_url=context.server_url,
            client_metadata=context.client_metadata,
            storage=context.storage,
            redirect_handler=context.redirect_handler,
            callback_handler=context.callback_handler,
            client_metadata_url=context.client_metadata_url,
        )

    async def _initialize(self) -> None:
        await super()._initialize()
        storage = self.context.storage
        tokens = self.context.current_tokens
        if isinstance(storage, TokenStore) and self.context.oauth_metadata is None:
            await storage.load_discovery(self.context)
        if isinstance(storage, TokenStore) and tokens is not None:
            # Also on a reload (after a failed refresh), so tokens from a new `login` come with their own expiry.
            expires_at = await storage.expires_at()
            self.context.token_expiry_time = None
            if expires_at is not None and tokens.expires_in is not None:
                self.context.token_expiry_time = expires_at - refresh_margin(float(tokens.expires_in))


class ServingOAuthProvider(_StoredState):
    """The authorization-code client when no person is there: refresh, or ``LoginRequired``.

    After a 401 the SDK starts a new authorization; here that becomes one refresh with the stored refresh token
    (the SDK then retries the request once with the new token), and without one, or when the refresh is refused,
    ``LoginRequired``.
    """

    def __init__(self, server: str, url: str, metadata: OAuthClientMetadata, store: TokenStore, **options: Any) -> None:
        super().__init__(url, metadata, store, **options)
        self._early_expiry()
        self.server = server
        self.login_needed: LoginRequired | None = None
        """Why the last attempt needed a login; the connection clears it once it is open again."""

    async def _initialize(self) -> None:
        await super()._initialize()
        if self.context.current_tokens is None:
            # Without a login there is nothing to try; stopping here also keeps the SDK from registering a client
            # it could not use.
            raise self._needs_login("not logged in")

    async def _perform_authorization(self) -> httpx2.Request:
        if self.context.can_refresh_token():
            return await self._refresh_token()
        raise self._needs_login("no valid tokens")

    async def _handle_token_response(self, response: httpx2.Response) -> None:
        try:
            await super()._handle_token_response(response)
        except OAuthTokenError:
            # The body may echo what was sent; it stays out of the message (and so out of logs and results).
            raise self._needs_login(f"the refresh was refused with HTTP {response.status_code}") from None

    def _needs_login(self, reason: str) -> LoginRequired:
        self.login_needed = LoginRequired(self.server, reason)
        # Read the store again next time: a `ptc-mcp login` meanwhile has put working tokens there.
        self._initialized = False
        return self.login_needed


class _ClientCredentials(_StoredState, ClientCredentialsOAuthProvider):
    """The SDK's client-credentials grant, refreshing a little before expiry."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self._early_expiry()


def client_metadata(oauth: OAuthConfig, redirect_uri: str) -> OAuthClientMetadata:
    """What ptc-mcp registers as (or publishes in its client ID metadata document)."""
    return OAuthClientMetadata(
        client_name="ptc-mcp",
        software_id="ptc-mcp",
        software_version=__version__,
        redirect_uris=[redirect_uri],  # pydantic validates the string
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="client_secret_post" if oauth.client_secret else "none",
        scope=" ".join(oauth.scopes) or None,
    )


def configured_client(oauth: OAuthConfig, redirect_uri: str) -> OAuthClientInformationFull | None:
    """The client registered by hand (``client_id``), as the SDK's registration record; ``None`` without one."""
    if oauth.client_id is None:
        return None
    return OAuthClientInformationFull(
        client_id=oauth.client_id,
        client_secret=oauth.client_secret,
        redirect_uris=[redirect_uri],
        grant_types=["authorization_code", "refresh_token"],
        token_endpoint_auth_method="client_secret_post" if oauth.client_secret else "none",
        scope=" ".join(oauth.scopes) or None,
    )


def redirect_uri(port: int) -> str:
    return f"http://127.0.0.1:{port}/callback"


def oauth_auth(
    name: str,
    config: RemoteServerConfig,
    *,
    token_dir: Path | None = None,
    redirect_handler: Callable[[str], Awaitable[None]] | None = None,
    callback_handler: Callable[[], Awaitable[AuthorizationCodeResult]] | None = None,
    redirect_port: int | None = None,
) -> httpx2.Auth | None:
    """The ``httpx2.Auth`` for ``config.auth`` (``None`` without one).

    With ``redirect_handler``/``callback_handler`` (``ptc-mcp login``) the authorization-code client may ask a
    person; without them it is a ``ServingOAuthProvider``.
    """
    oauth = config.auth
    if oauth is None:
        return None
    store = TokenStore(name, config.url, token_dir)
    scope = " ".join(oauth.scopes) or None
    if oauth.grant == "client_credentials":
        assert oauth.client_id is not None and oauth.client_secret is not None  # the config validates this
        return _ClientCredentials(
            config.url,
            store,
            oauth.client_id,
            oauth.client_secret,
            token_endpoint_auth_method="client_secret_post",
            scope=scope,
            issuer=oauth.issuer,
        )
    uri = redirect_uri(redirect_port if redirect_port is not None else oauth.redirect_port)
    metadata = client_metadata(oauth, uri)
    if redirect_handler is None or callback_handler is None:
        return ServingOAuthProvider(name, config.url, metadata, store, client_metadata_url=oauth.client_metadata_url)
    return OAuthClientProvider(
        config.url,
        metadata,
        store,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
        client_metadata_url=oauth.client_metadata_url,
    )
