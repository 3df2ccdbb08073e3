"""The SDK's OpenTelemetry middleware runs only while a tracer provider is installed (``ptc_mcp.sdk_tracing``).

It is found by its class name in ``Server.middleware`` (the SDK's documented opt-out); if
``test_the_sdk_still_installs_its_middleware_by_that_name`` fails, the SDK changed how it traces requests.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from opentelemetry import trace

from ptc_mcp.sdk_tracing import SDK_MIDDLEWARE, TracedWhenCollected, trace_only_when_collected

pytestmark = pytest.mark.anyio

WAIT_S = 30.0


def echo_server() -> Server[Any]:
    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        return types.CallToolResult(content=[types.TextContent(type="text", text="ok")])

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name="echo", input_schema={"type": "object"})])

    return Server("echo", on_call_tool=call_tool, on_list_tools=list_tools)


def test_the_sdk_still_installs_its_middleware_by_that_name() -> None:
    server = echo_server()
    assert [type(middleware).__name__ for middleware in server.middleware] == [SDK_MIDDLEWARE]
    sdk_middleware = server.middleware[0]
    trace_only_when_collected(server)
    [wrapped] = server.middleware
    assert isinstance(wrapped, TracedWhenCollected) and wrapped.traced is sdk_middleware


async def test_no_span_is_built_while_no_tracer_provider_is_installed() -> None:
    assert type(trace.get_tracer_provider()) is trace.ProxyTracerProvider  # nobody in this process installed one
    calls: list[str] = []

    class Spy:
        async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
            calls.append(ctx.method)
            return await call_next(ctx)

    server = echo_server()
    server.middleware = [TracedWhenCollected(Spy())]
    with anyio.fail_after(WAIT_S):
        async with Client(server, mode="legacy") as client:
            result = await client.call_tool("echo", {})
    assert not result.is_error and calls == []


SPANS_WITH_A_PROVIDER = textwrap.dedent(
    """
    import anyio
    from mcp import Client
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from tests.test_sdk_tracing import echo_server
    from ptc_mcp.sdk_tracing import trace_only_when_collected

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def main():
        server = echo_server()
        trace_only_when_collected(server)
        async with Client(server, mode="legacy") as client:
            await client.call_tool("echo", {})  # before any provider: no server span
            trace.set_tracer_provider(provider)
            await client.call_tool("echo", {})
        print(sorted(span.name for span in exporter.get_finished_spans() if span.kind.name == "SERVER"))

    anyio.run(main)
    """
)


def test_spans_are_recorded_once_a_tracer_provider_is_installed() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed")
    done = subprocess.run(
        [sys.executable, "-c", SPANS_WITH_A_PROVIDER], capture_output=True, text=True, timeout=WAIT_S, check=True
    )
    assert done.stdout.strip() == "['tools/call echo']", done.stderr
