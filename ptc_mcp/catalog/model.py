"""The input of everything in ``ptc_mcp.catalog``: the tools downstream servers listed, tagged with their server."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import mcp_types

from ptc_mcp.errors import PtcError

ServerFailures = Mapping[str, str]
"""Servers that failed to start: server name → a short message saying why."""


@dataclass(frozen=True)
class ServerInfo:
    """What a reachable downstream server said about itself, beyond its tools."""

    instructions: str | None = None
    """The ``instructions`` of its initialize (or discover) result."""
    connection: int = 0
    """Which connection to the server this is (observed result shapes last one connection)."""


@dataclass(frozen=True, eq=False)
class DownstreamTool:
    """One tool of one downstream server, exactly as the server listed it.

    Server names never contain a dot (the config allows only letters, digits, ``_`` and ``-``), so
    ``"server.tool"`` splits unambiguously at the first dot even when the tool name has dots.
    """

    server: str
    tool: mcp_types.Tool

    @property
    def qualified_name(self) -> str:
        """``"server.tool"`` with the original names: the form ``call_tool`` and the policy use."""
        return f"{self.server}.{self.tool.name}"


def tool_fingerprint(tool: mcp_types.Tool) -> str:
    """Canonical JSON of a tool definition: a total order for otherwise equal names, and a cache key."""
    return json.dumps(
        tool.model_dump(mode="json", by_alias=True, exclude_none=True),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )


def normalize_tools(tools: Iterable[DownstreamTool]) -> list[DownstreamTool]:
    """Tools in one canonical order (server, then tool name), one per ``server.tool``.

    Every presentation goes through this, so the input order never shows in the output. A server that lists
    the same tool name twice keeps the definition whose canonical JSON sorts first: deterministic, not clever.
    """
    by_name: dict[tuple[str, str], list[DownstreamTool]] = {}
    for item in tools:
        by_name.setdefault((item.server, item.tool.name), []).append(item)
    result: list[DownstreamTool] = []
    for key in sorted(by_name):
        candidates = by_name[key]
        if len(candidates) > 1:
            candidates = sorted(candidates, key=lambda c: tool_fingerprint(c.tool))
        result.append(candidates[0])
    return result


def group_by_server(tools: Iterable[DownstreamTool]) -> dict[str, list[DownstreamTool]]:
    """Normalized tools grouped by server, servers in sorted order."""
    groups: dict[str, list[DownstreamTool]] = {}
    for item in normalize_tools(tools):
        groups.setdefault(item.server, []).append(item)
    return groups


class UnknownToolError(PtcError, LookupError):
    """No tool has that name; ``suggestions`` holds close matches (``"server.tool"`` strings)."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.suggestions = suggestions

    def __str__(self) -> str:
        hint = f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        return f"unknown tool {self.name!r}{hint} (tools.search() finds tools by topic)"
