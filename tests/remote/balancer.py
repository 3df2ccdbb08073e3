"""A small round-robin reverse proxy on loopback, standing in for a load balancer (an ALB without stickiness).

Every HTTP request goes to the next upstream in turn, whatever connection or MCP session it belongs to, and the
proxy remembers where each one went (and the JSON-RPC method of POSTs), so tests can see calls change instance.
Responses stream through (event streams included).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx2
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ptc_mcp.listening import serving_asgi

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length", "te", "trailer"}


@dataclass
class Forwarded:
    upstream: int
    method: str
    path: str
    rpc_method: str | None
    status: int
    error: str | None = None
    """Why the upstream could not be reached (the 502s)."""


@dataclass
class RoundRobin:
    upstreams: list[str]
    log: list[Forwarded] = field(default_factory=list)

    down: set[int] = field(default_factory=set)
    """Upstreams taken out of rotation (what a load balancer's health check does for a dead instance)."""

    def __post_init__(self) -> None:
        self._turn = itertools.cycle(range(len(self.upstreams)))
        # Idle upstream connections are dropped well before uvicorn's keep-alive timeout (5 s) closes them, as an ALB's
        # are: otherwise a request sent just as the upstream closes its end fails with nothing answered.
        limits = httpx2.Limits(max_connections=512, keepalive_expiry=1.0)
        self._http = httpx2.AsyncClient(timeout=httpx2.Timeout(120.0), limits=limits)

    def mark_down(self, index: int) -> None:
        self.down.add(index)

    def _next(self) -> int:
        for _ in range(len(self.upstreams)):
            index = next(self._turn)
            if index not in self.down:
                return index
        raise RuntimeError("every upstream is down")

    async def handle(self, request: Request) -> Response:
        index = self._next()
        body = await request.body()
        rpc_method = None
        if request.method == "POST" and body:
            try:
                rpc_method = json.loads(body).get("method")
            except (ValueError, AttributeError):
                rpc_method = None
        url = self.upstreams[index] + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        upstream = self._http.build_request(request.method, url, headers=headers, content=body)
        try:
            answer = await self._http.send(upstream, stream=True)
        except httpx2.TransportError as exc:
            failure = f"{type(exc).__name__}: {exc}"
            self.log.append(Forwarded(index, request.method, request.url.path, rpc_method, 502, failure))
            return Response("upstream unreachable", status_code=502)
        self.log.append(Forwarded(index, request.method, request.url.path, rpc_method, answer.status_code))
        out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            headers=out_headers,
            background=BackgroundTask(answer.aclose),
        )

    async def aclose(self) -> None:
        await self._http.aclose()


@asynccontextmanager
async def round_robin(upstreams: list[str]) -> AsyncIterator[tuple[str, RoundRobin]]:
    """Serve the proxy on a free loopback port; yields (its URL, the balancer)."""
    balancer = RoundRobin(upstreams)
    methods = ["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"]
    app = Starlette(routes=[Route("/{path:path}", balancer.handle, methods=methods)])
    try:
        async with serving_asgi(app, timeout_graceful_shutdown=1) as url:
            yield url, balancer
    finally:
        await balancer.aclose()
