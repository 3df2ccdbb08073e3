"""``ptc-mcp login`` and ``logout``: the authorization-code flow, once, by a person.

``login`` starts a one-shot HTTP listener on a loopback port (the redirect URI, ``http://127.0.0.1:PORT/callback``),
hands the SDK's ``OAuthClientProvider`` a redirect handler that shows the authorization URL (and opens a browser
where one exists) and a callback handler that waits for the redirect, then connects to the server: the SDK does
discovery, registration, PKCE and the token exchange, and the tokens land in the token store.
"""

from __future__ import annotations

import sys
import webbrowser
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import uvicorn
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import AuthorizationCodeResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ptc_mcp.downstream.oauth import RemoteServerConfig, TokenStore, configured_client, oauth_auth, redirect_uri
from ptc_mcp.downstream.transports import open_transport
from ptc_mcp.listening import listening_socket

__all__ = ["LOGIN_WAIT_S", "login", "logout", "show_url"]


LOGIN_WAIT_S = 300.0
"""How long ``login`` waits for the person to finish in the browser."""

OpenUrl = Callable[[str], Awaitable[None]]


async def show_url(url: str) -> None:
    """Print the authorization URL on stderr and open it in a browser where there is one."""
    sys.stderr.write(f"Open this URL to log in:\n\n  {url}\n\n")
    sys.stderr.flush()
    await anyio.to_thread.run_sync(webbrowser.open, url)  # False, quietly, where there is no browser


class _Callback:
    """The loopback listener that receives one authorization redirect."""

    def __init__(self) -> None:
        self.result: AuthorizationCodeResult | None = None
        self.error: str | None = None
        self.done = anyio.Event()

    async def handle(self, request: Request) -> PlainTextResponse:
        params = request.query_params
        if "error" in params:
            self.error = f"{params['error']}: {params.get('error_description', '')}".rstrip(": ")
            self.done.set()
            return PlainTextResponse("Login failed; see the terminal.", status_code=400)
        if "code" not in params:
            return PlainTextResponse("Missing code.", status_code=400)
        self.result = AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))
        self.done.set()
        return PlainTextResponse("ptc-mcp is logged in. You can close this window.")

    async def wait(self) -> AuthorizationCodeResult:
        with anyio.move_on_after(LOGIN_WAIT_S):
            await self.done.wait()
        if not self.done.is_set():
            raise TimeoutError(f"no redirect arrived within {LOGIN_WAIT_S:g} s; run the login again")
        if self.result is None:
            raise RuntimeError(f"the authorization server refused: {self.error}")
        return self.result


async def login(
    name: str, config: RemoteServerConfig, *, open_url: OpenUrl = show_url, token_dir: Path | None = None
) -> int:
    """Log in to server ``name`` (its stored tokens are replaced); returns how many tools it lists."""
    oauth = config.auth
    if oauth is None or oauth.grant != "authorization_code":
        raise ValueError(f'server {name!r} has no "auth": {{"type": "oauth"}} with the authorization-code grant')
    store = TokenStore(name, config.url, token_dir)
    store.clear()  # a fresh login: new tokens, and a new registration for this redirect port
    sock = listening_socket("127.0.0.1", oauth.redirect_port)
    port = int(sock.getsockname()[1])
    if (registered := configured_client(oauth, redirect_uri(port))) is not None:
        await store.set_client_info(registered)
    callback = _Callback()
    app = Starlette(routes=[Route("/callback", callback.handle)])
    listener = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    auth = oauth_auth(
        name, config, token_dir=token_dir, redirect_handler=open_url, callback_handler=callback.wait, redirect_port=port
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, [sock])
        try:
            async with Client(open_transport(config, auth), mode="legacy") as client:
                tools = await client.list_tools()
            if isinstance(auth, OAuthClientProvider):
                await store.set_discovery(auth.context)
        finally:
            listener.should_exit = True
    return len(tools.tools)


def logout(name: str, config: RemoteServerConfig, *, token_dir: Path | None = None) -> bool:
    """Forget the stored tokens of server ``name``; whether there were any."""
    return TokenStore(name, config.url, token_dir).clear()
