"""The catalog worked out once: identifiers, globals and signatures of every server and tool.

Every presentation (the ``execute_program`` description, the runtime catalog, search) reads this, so all of
them agree on names and signatures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import mcp_types

from ptc_mcp.catalog.model import DownstreamTool, group_by_server
from ptc_mcp.catalog.naming import ServerNames, shadowing_reason
from ptc_mcp.catalog.signatures import ToolSignature, tool_doc, tool_signature

__all__ = ["PreparedServer", "PreparedTool", "prepare_catalog"]


@dataclass(frozen=True, eq=False)
class PreparedTool:
    """One tool with its identifier and signature."""

    server: str
    tool: mcp_types.Tool
    attr: str
    signature: ToolSignature
    doc: str

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def qualified_name(self) -> str:
        return f"{self.server}.{self.tool.name}"


@dataclass(frozen=True, eq=False)
class PreparedServer:
    """One server: its identifier, its bare global (``None`` when it has none) and its tools."""

    name: str
    ident: str
    global_name: str | None
    shadow_reason: str | None
    """Why the server has no bare global (``None`` when it has one)."""
    tools: tuple[PreparedTool, ...]
    instructions: str = ""
    """The server's own ``instructions`` (empty when it gave none)."""

    @property
    def reference(self) -> str:
        """How a program names the server: its global, else ``servers.<identifier>``."""
        return self.global_name if self.global_name is not None else f"servers.{self.ident}"


def prepare_catalog(
    tools: Iterable[DownstreamTool], instructions: Mapping[str, str | None] | None = None
) -> tuple[PreparedServer, ...]:
    """Servers sorted by name, tools sorted by name, duplicates dropped (see ``normalize_tools``).

    ``instructions``: server name → the ``instructions`` it sent, if any.
    """
    instructions = instructions or {}
    groups = group_by_server(tools)
    names = ServerNames({server: [item.tool.name for item in items] for server, items in groups.items()})
    servers = []
    for server, items in groups.items():
        idents = names.tool_ident[server]
        prepared = tuple(
            PreparedTool(
                server=server,
                tool=item.tool,
                attr=idents[item.tool.name],
                signature=tool_signature(item.tool),
                doc=tool_doc(item.tool),
            )
            for item in items
        )
        ident = names.server_ident[server]
        servers.append(
            PreparedServer(
                name=server,
                ident=ident,
                global_name=names.global_for(server),
                shadow_reason=shadowing_reason(ident),
                tools=prepared,
                instructions=(instructions.get(server) or "").strip(),
            )
        )
    return tuple(servers)
