"""ptc-mcp: programmatic tool calling for any MCP client."""

__version__ = "0.1.0"
