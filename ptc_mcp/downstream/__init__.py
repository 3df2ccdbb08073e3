"""Connections to downstream MCP servers (stdio, streamable HTTP, SSE) with the official MCP client."""

from ptc_mcp.downstream.connection import DownstreamServer
from ptc_mcp.downstream.pool import DownstreamPool, DownstreamTool
from ptc_mcp.downstream.transports import open_transport, stdio_environment

__all__ = ["DownstreamPool", "DownstreamServer", "DownstreamTool", "open_transport", "stdio_environment"]
