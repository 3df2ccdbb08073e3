"""The ``catalog`` object the host sends the runtime (docs/protocol.md, "Catalog"), and name resolution.

.. code-block:: json

    {"servers": [{"name": "expenses", "global": "expenses", "attr": "expenses",
                  "tools": [{"name": "get_expenses", "attr": "get_expenses",
                             "signature": "(*, employee_id: str) -> list", "doc": "..."}]}]}

``global`` is ``null`` when the server may only be reached through ``servers``; ``attr`` is the server's
identifier, the attribute of ``servers`` it is bound to (``servers["name"]`` uses the original name).
``unavailable`` (only when some configured server failed) lists ``{"name", "attr", "global", "reason"}`` per failed
server,
so a program that uses one learns why instead of meeting a ``NameError``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from ptc_mcp.catalog.model import DownstreamTool, UnknownToolError
from ptc_mcp.catalog.naming import global_name, to_identifier
from ptc_mcp.catalog.prepared import prepare_catalog

__all__ = ["ToolResolver", "build_runtime_catalog", "catalog_version", "resolve", "split_qualified_name"]


def build_runtime_catalog(tools: Iterable[DownstreamTool], failures: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The runtime catalog for these tools: servers and tools in sorted order, so equal input → equal output."""
    catalog = _servers(tools)
    if failures:
        taken = {server["attr"] for server in catalog["servers"]}
        idents = {name: to_identifier(name) for name in failures}
        catalog["unavailable"] = [
            {"name": name, "attr": idents[name], "global": global_name(idents[name]), "reason": failures[name]}
            for name in sorted(failures)
            if idents[name] not in taken
        ]
    return catalog


def _servers(tools: Iterable[DownstreamTool]) -> dict[str, Any]:
    return {
        "servers": [
            {
                "name": server.name,
                "global": server.global_name,
                "attr": server.ident,
                "tools": [
                    {"name": t.name, "attr": t.attr, "signature": t.signature.render(), "doc": t.doc}
                    for t in server.tools
                ],
            }
            for server in prepare_catalog(tools)
        ]
    }


def catalog_version(catalog: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the catalog's canonical JSON (sorted keys, no whitespace, UTF-8)."""
    canonical = json.dumps(catalog, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def split_qualified_name(name: str) -> tuple[str, str]:
    """``"server.tool"`` → ``("server", "tool")``, split at the first dot (server names have none)."""
    server, dot, tool = name.partition(".")
    if not dot or not server or not tool:
        raise ValueError(f"tool names have the form 'server.tool', got {name!r}")
    return server, tool


class ToolResolver:
    """Maps ``"server.tool"`` to ``(server, original tool name)`` for one catalog. Build once per version.

    Original names are tried first (the form ``call_tool`` uses); identifiers (``servers.<attr>.<attr>``) are
    accepted too, so a name copied from a signature listing also works.
    """

    def __init__(self, catalog: Mapping[str, Any]) -> None:
        self._by_name: dict[str, tuple[str, str]] = {}
        by_ident: dict[str, tuple[str, str]] = {}
        for server in catalog.get("servers", []):
            for tool in server.get("tools", []):
                target = (server["name"], tool["name"])
                self._by_name[f"{server['name']}.{tool['name']}"] = target
                by_ident.setdefault(f"{server.get('attr', server['name'])}.{tool['attr']}", target)
        self._by_ident = by_ident

    def resolve(self, name: str) -> tuple[str, str]:
        """``(server, tool)`` for a qualified name; raises ``UnknownToolError`` with close matches."""
        found = self._by_name.get(name) or self._by_ident.get(name)
        if found is None:
            raise UnknownToolError(name, self.suggest(name))
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._by_name or name in self._by_ident)

    def names(self) -> list[str]:
        """Every ``"server.tool"`` with original names, sorted."""
        return sorted(self._by_name)

    def suggest(self, name: str, limit: int = 3) -> list[str]:
        """Up to ``limit`` known names close to ``name`` (difflib), best first."""
        candidates = self.names()
        close = difflib.get_close_matches(name, candidates, n=limit, cutoff=0.6)
        if len(close) < limit and "." in name:
            # "wrong_server.right_tool" or a bare tool name: match on the tool part too.
            tool_part = name.split(".", 1)[1]
            for candidate in candidates:
                if candidate.split(".", 1)[1] == tool_part and candidate not in close:
                    close.append(candidate)
        elif len(close) < limit:
            for candidate in candidates:
                if candidate.split(".", 1)[1] == name and candidate not in close:
                    close.append(candidate)
        return close[:limit]


def resolve(catalog: Mapping[str, Any], name: str) -> tuple[str, str]:
    """One-off ``ToolResolver(catalog).resolve(name)``; keep a ``ToolResolver`` for repeated calls."""
    return ToolResolver(catalog).resolve(name)
