"""The MCP SDK's per-request OpenTelemetry span, only while someone collects spans.

``mcp`` 2.x installs an ``OpenTelemetryMiddleware`` in every ``Server.middleware`` (its documented opt-out: drop it
from that list). With no tracer provider set, its span records nothing, yet building it (attributes, trace context
from ``_meta``, a context switch) cost about 50 µs of every request. ``TracedWhenCollected`` stands in for it: while
OpenTelemetry's global tracer provider is still the API's default proxy (nobody installed an SDK provider, e.g.
``remote.tracing`` or ``opentelemetry-instrument``), requests skip the span; once one is set, the SDK's middleware
runs as before. Checked per request, so a provider installed after start-up is honoured.
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.lowlevel import Server
from opentelemetry import trace


class TracedWhenCollected(ServerMiddleware[Any]):
    """The SDK's OpenTelemetry middleware, run only while a tracer provider is installed."""

    def __init__(self, traced: ServerMiddleware[Any]) -> None:
        self.traced = traced

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if type(trace.get_tracer_provider()) is trace.ProxyTracerProvider:
            return await call_next(ctx)
        return await self.traced(ctx, call_next)


SDK_MIDDLEWARE = "OpenTelemetryMiddleware"
"""The class name of the SDK's middleware (its module is private; tests/test_sdk_tracing.py fails if it goes)."""


def trace_only_when_collected(server: Server[Any]) -> None:
    """Wrap ``server``'s OpenTelemetry middleware in a ``TracedWhenCollected``."""
    server.middleware = [
        TracedWhenCollected(middleware) if type(middleware).__name__ == SDK_MIDDLEWARE else middleware
        for middleware in server.middleware
    ]
