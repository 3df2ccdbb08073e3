"""Serving a running ``App`` over HTTP for a network: the ``remote`` section put together.

``serve_remote`` wires the audit trail to metrics (and traces), attaches the shared session map, builds the ASGI
app (auth, Host/Origin checks, body limit, ``/healthz`` ``/readyz`` ``/metrics``) and runs uvicorn with a graceful
shutdown: on SIGTERM or SIGINT ``/readyz`` turns 503 at once (the load balancer stops sending work), requests
being answered get up to ``remote.shutdown_grace_s`` to finish (and the server stays ``QUIET_S`` after the last one,
for a client's follow-up), and whatever still runs then is cancelled (the
executor kills its sandbox). Then the caller's ``open_app`` closes sessions and downstream servers as usual.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Generator
from types import FrameType
from typing import Any, Literal

import uvicorn
from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware
from mcp.server.auth.provider import TokenVerifier
from mcp.server.lowlevel import Server
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from ptc_mcp.app import App
from ptc_mcp.errors import ConfigError
from ptc_mcp.executor import Executor
from ptc_mcp.listening import listening_socket
from ptc_mcp.remote.health import ServingState, metrics_app, ops_routes
from ptc_mcp.remote.shared_sessions import SessionSharing
from ptc_mcp.remote.tracing import setup_tracing
from ptc_mcp.transports import LOOPBACK, http_app

__all__ = ["GracefulServer", "RequestsInFlight", "prepare", "remote_app", "serve_remote"]

log = logging.getLogger(__name__)

_FLUSH_S_INT = 2
"""Once nothing runs: how long (s) open connections get to close before uvicorn cancels what is left."""

QUIET_S = 1.0
"""Draining: how long (s) after its last request ended the server still counts as busy. A client's follow-up to an
answer (the SDK's client lists the tools after a result whose schema it has not seen; a client closes its session)
comes within milliseconds; without this pause it raced the server's exit and lost its connection."""


class RequestsInFlight:
    """Counts the requests being answered, and when the last one started or ended. GET is left out: its event
    streams are long-lived and never end by themselves; POST (messages) and DELETE (session ends) count."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.count = 0
        self.last_active = -math.inf
        """``time.monotonic()`` when a counted request last started or ended."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") == "GET":
            await self._app(scope, receive, send)
            return
        self.count += 1
        self.last_active = time.monotonic()
        try:
            await self._app(scope, receive, send)
        finally:
            self.count -= 1
            self.last_active = time.monotonic()

    def busy(self, quiet_s: float) -> bool:
        """Whether a request is being answered or one ended less than ``quiet_s`` ago."""
        return self.count > 0 or time.monotonic() - self.last_active < quiet_s


class GracefulServer(uvicorn.Server):
    """uvicorn that drains: not ready at once, then waits for running programs up to the grace period."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        state: ServingState,
        executor: Executor,
        grace_s: float,
        requests: RequestsInFlight | None = None,
    ) -> None:
        super().__init__(config)
        self._state = state
        self._executor = executor
        self._grace_s = grace_s
        self._requests = requests
        self._deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not uvicorn's should_exit yet: sse-starlette ends every event stream as soon as it sees it, which would
        # cut off the results of the programs we are waiting for. on_tick drains first; a second signal forces.
        if self._state.draining:
            self.should_exit = True
            self.force_exit = sig == signal.SIGINT
            return
        log.info("shutting down: draining for up to %g s", self._grace_s)
        self._state.draining = True

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn re-raises the signal once it has served, which would kill the process before the App closes its
        # sandboxes; ptc-mcp exits normally instead.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def on_tick(self, counter: int) -> bool:
        if not self._state.draining:
            return await super().on_tick(counter)
        if self._deadline is None:
            # The listener stays open while draining: /readyz says 503 so the load balancer sends no new work, and a
            # client in the middle of a session can still open the connection its next request needs.
            self._deadline = time.monotonic() + self._grace_s
        if not self._busy():
            return True
        if time.monotonic() >= self._deadline:
            log.warning("grace period over: cancelling %d running program(s)", self._executor.running)
            return True
        return self.should_exit

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        self._state.draining = True
        self.should_exit = True  # now event streams may end (sse-starlette watches this)
        self.config.timeout_graceful_shutdown = _FLUSH_S_INT if not self._busy() else 1
        await super().shutdown(sockets)

    def _busy(self) -> bool:
        """A program runs or waits, or a request is being answered or ended less than ``QUIET_S`` ago (then the
        client's follow-up, if any, is on its way)."""
        if self._executor.running + max(self._executor.queued, 0) > 0:
            return True
        return self._requests is not None and self._requests.busy(QUIET_S)


def prepare(app: App) -> ServingState:
    """Metrics and traces from the audit trail: what every remote instance needs. The shared session map (if
    ``remote.session_map`` names one) was given to the app as it opened (``shared_directory``)."""
    remote = app.config.remote
    if remote.session_map.kind != "local" and not isinstance(app.executor.sessions.directory, SessionSharing):
        raise ConfigError("remote.session_map: open the app with session_directory=shared_directory to share it")
    state = ServingState()
    app.executor.audit.observe(state.metrics.observe)
    tracer = setup_tracing(remote.tracing)
    if tracer is not None:
        app.executor.audit.observe(tracer.observe)
    return state


def remote_app(
    app: App, server: Server[Any], transport: Literal["sse", "http"], host: str, auth_token: str | None
) -> tuple[Any, ServingState]:
    """The ASGI app for ``app`` and the state its probes report."""
    remote = app.config.remote
    state = prepare(app)

    def routes(verifier: TokenVerifier | None, scopes: list[str]) -> list[BaseRoute]:
        guard = None
        if remote.metrics_auth and verifier is not None:
            guard = RequireAuthMiddleware(metrics_app(app, state), scopes)
        return list(ops_routes(app, state, health=remote.health, metrics=remote.metrics, metrics_guard=guard))

    return http_app(server, transport, host, auth_token, remote=remote, routes=routes), state


async def serve_remote(
    app: App, server: Server[Any], transport: Literal["sse", "http"], host: str, port: int, auth_token: str | None
) -> None:
    """Serve until SIGTERM/SIGINT, then drain (see the module's docstring)."""
    asgi, state = remote_app(app, server, transport, host, auth_token)
    requests = RequestsInFlight(asgi)
    if host not in LOOPBACK and app.config.remote.auth.mode == "none" and not auth_token:
        log.warning("serving on %s without auth: anyone who can reach this port can run code", host)
    config = uvicorn.Config(requests, log_level="warning", lifespan="on", access_log=False)
    uvicorn_server = GracefulServer(
        config, state=state, executor=app.executor, grace_s=app.config.remote.shutdown_grace_s, requests=requests
    )
    sock = listening_socket(host, port)
    state.ready = True
    shown = f"[{host}]" if ":" in host else host
    app.announce_ready(transport, f"http://{shown}:{sock.getsockname()[1]}/{'sse' if transport == 'sse' else 'mcp'}")
    await uvicorn_server.serve(sockets=[sock])
