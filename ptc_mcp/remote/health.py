"""``/healthz``, ``/readyz`` and ``/metrics``: the routes load balancers, orchestrators and Prometheus call.

- ``/healthz`` (liveness): 200 while the process serves HTTP at all. Restart the task when it stops answering.
- ``/readyz`` (readiness): 200 once the server has started and until it begins shutting down, then 503, so a load
  balancer stops sending new requests while running programs finish. The body says what it knows (sessions,
  runs, downstream servers); a failed downstream server does not make an instance unready, since every instance
  would share the failure and none would be left to serve the other tools.
- ``/metrics``: ``ptc_mcp.remote.metrics``.

They carry no credentials and reveal no secrets; ``remote.metrics_auth`` puts ``/metrics`` behind the same
auth as ``/mcp``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ptc_mcp import __version__
from ptc_mcp.remote.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from ptc_mcp.app import App

__all__ = ["ServingState", "metrics_app", "ops_routes"]


@dataclass
class ServingState:
    """What the probes report: set ``ready`` when serving starts, ``draining`` on SIGTERM."""

    ready: bool = False
    draining: bool = False
    metrics: Metrics = field(default_factory=Metrics)


def ops_routes(
    app: App, state: ServingState, *, health: bool = True, metrics: bool = True, metrics_guard: ASGIApp | None = None
) -> list[Route]:
    """The routes, for ``streamable_http_app(custom_starlette_routes=...)`` or a Starlette app."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> Response:
        ready = state.ready and not state.draining
        body = {
            "status": "ready" if ready else ("draining" if state.draining else "starting"),
            "backend": app.backend.kind,
            "sessions": len(app.executor.sessions),
            "running": app.executor.running,
            "queued": max(app.executor.queued, 0),
            "downstream_failed": sorted(app.pool.failures),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics_endpoint(request: Request) -> Response:
        return PlainTextResponse(state.metrics.render(app), media_type=CONTENT_TYPE)

    routes: list[Route] = []
    if health:
        routes += [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
    if metrics:
        routes.append(Route("/metrics", metrics_guard or metrics_endpoint, methods=["GET"]))
    return routes


def metrics_app(app: App, state: ServingState) -> ASGIApp:
    """``/metrics`` as a bare ASGI app, to wrap in the auth middleware for ``remote.metrics_auth``."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        response = PlainTextResponse(state.metrics.render(app), media_type=CONTENT_TYPE)
        await response(scope, receive, send)

    return endpoint
