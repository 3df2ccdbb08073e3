"""What the agent offers the model: every downstream tool (``traditional``) or only ``execute_program`` (``ptc``).

Both are MCP clients. ``traditional`` connects to the config's servers through ``DownstreamPool``; ``ptc``
starts ``ptc-mcp serve --config`` over stdio and talks to it with the MCP client, as any MCP host would.
Tool results reach the model as the MCP text content the server made for models; a result with no content
goes as its ``structuredContent`` (a ``{"result": x}`` wrapper, which the SDK adds to non-object results, is
unwrapped).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TextIO

import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.session import ElicitationFnT
from mcp.client.stdio import stdio_client

from ptc_mcp.config import load_config
from ptc_mcp.downstream.pool import DownstreamPool
from ptc_mcp.errors import ToolCallError

__all__ = [
    "Mode",
    "PtcTools",
    "ToolOutcome",
    "ToolSet",
    "TraditionalTools",
    "converse_tool_name",
    "open_toolset",
    "tool_result_blocks",
]

Mode = Literal["traditional", "ptc"]
MODES: tuple[Mode, ...] = ("traditional", "ptc")
EXECUTE_PROGRAM = "execute_program"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


def converse_tool_name(server: str, tool: str) -> str:
    """The Converse name of ``server.tool``: ``server__tool`` with other characters as ``_``, at most 64.

    Converse tool names match ``[a-zA-Z0-9_-]{1,64}``; a longer name keeps its start and gets a short,
    stable digest of the full name (hashlib, never ``hash()``), so names stay unique and deterministic.
    """
    name = _UNSAFE.sub("_", f"{server}__{tool}")
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(f"{server}.{tool}".encode()).hexdigest()[:8]
    return f"{name[:55]}_{digest}"


@dataclass(frozen=True)
class ToolOutcome:
    """One tool result as the model gets it: Converse ``toolResult`` content blocks."""

    content: list[dict[str, Any]]
    is_error: bool

    @property
    def text(self) -> str:
        return "\n".join(block["text"] if "text" in block else repr(block.get("json")) for block in self.content)


def tool_result_blocks(result: types.CallToolResult) -> list[dict[str, Any]]:
    """Converse content blocks for an MCP tool result (text stays text; images are summarized)."""
    blocks: list[dict[str, Any]] = []
    for item in result.content:
        if isinstance(item, types.TextContent):
            blocks.append({"text": item.text})
        else:
            blocks.append({"text": f"[{item.type} content omitted]"})
    if not blocks:
        structured = result.structured_content
        if isinstance(structured, dict) and set(structured) == {"result"}:
            structured = structured["result"]
        blocks.append({"json": structured} if isinstance(structured, dict | list) else {"text": json.dumps(structured)})
    return blocks


class ToolSet(Protocol):
    """The tools offered to the model, and how to call them."""

    mode: Mode

    def specs(self) -> list[dict[str, Any]]:
        """Converse ``toolConfig.tools`` entries."""
        ...

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome: ...


def _spec(name: str, description: str | None, schema: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "inputSchema": {"json": schema}}
    if description and description.strip():
        spec["description"] = description.strip()
    return {"toolSpec": spec}


class TraditionalTools:
    """Every downstream tool, offered directly (``server__tool``)."""

    mode: Mode = "traditional"

    def __init__(self, pool: DownstreamPool) -> None:
        self._pool = pool
        self._targets: dict[str, tuple[str, str]] = {}

    def specs(self) -> list[dict[str, Any]]:
        specs = []
        self._targets = {}
        for item in self._pool.tools():
            name = converse_tool_name(item.server, item.tool.name)
            self._targets[name] = (item.server, item.tool.name)
            specs.append(_spec(name, item.tool.description, dict(item.tool.input_schema)))
        return specs

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        if not self._targets:
            self.specs()
        target = self._targets.get(name)
        if target is None:
            return ToolOutcome([{"text": f"unknown tool {name!r}"}], is_error=True)
        try:
            result = await self._pool.call_tool(*target, arguments)
        except ToolCallError as exc:
            return ToolOutcome([{"text": exc.message}], is_error=True)
        return ToolOutcome(tool_result_blocks(result), is_error=bool(result.is_error))


class PtcTools:
    """Only ``execute_program``, from a ``ptc-mcp serve`` child process over stdio."""

    mode: Mode = "ptc"

    def __init__(self, client: Client, tools: Sequence[types.Tool]) -> None:
        self._client = client
        self._tools = list(tools)

    def specs(self) -> list[dict[str, Any]]:
        return [_spec(tool.name, tool.description, dict(tool.input_schema)) for tool in self._tools]

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        if name not in {tool.name for tool in self._tools}:
            return ToolOutcome([{"text": f"unknown tool {name!r}; the only tool is {EXECUTE_PROGRAM}"}], True)
        result = await self._client.call_tool(name, arguments)
        return ToolOutcome(tool_result_blocks(result), is_error=bool(result.is_error))


def serve_command(config_path: str) -> StdioServerParameters:
    """``ptc-mcp serve --config PATH`` with this interpreter (so it runs in the same environment)."""
    return StdioServerParameters(command=sys.executable, args=["-m", "ptc_mcp", "serve", "--config", config_path])


@asynccontextmanager
async def open_toolset(
    mode: Mode, config_path: str, *, errlog: TextIO | None = None, elicitation: ElicitationFnT | None = None
) -> AsyncIterator[ToolSet]:
    """Connect the tools of ``mode`` for the config at ``config_path``.

    ``errlog`` receives the stderr of ``ptc-mcp serve`` (its audit lines and logs); default: our stderr.
    ``elicitation`` answers what ptc-mcp asks the user in ``ptc`` mode (approvals, downstream servers' forms); without
    it those questions fail (approvals are denied). ``traditional`` mode calls the servers directly: no approvals.
    """
    if mode == "traditional":
        async with DownstreamPool.from_config(load_config(config_path)) as pool:
            if pool.failures:
                failed = "; ".join(f"{name}: {why}" for name, why in sorted(pool.failures.items()))
                raise RuntimeError(f"downstream servers failed to start: {failed}")
            yield TraditionalTools(pool)
    elif mode == "ptc":
        transport = stdio_client(serve_command(config_path), errlog=errlog or sys.stderr)
        async with Client(transport, elicitation_callback=elicitation) as client:
            listed = await client.list_tools()
            yield PtcTools(client, listed.tools)
    else:
        raise ValueError(f"unknown mode {mode!r} (traditional or ptc)")
