"""Result shapes seen for tools that declare no output schema, so the model need not spend a call probing.

After a tool's first successful call, ``tools.describe`` and ``tools.search`` show a type skeleton of the value
the program got (``{name: str, items: list[{id: int}]}``) and a short example. A shape is kept per server for the
life of its connection and per tool definition: a reconnect or a changed tool list drops it (``keep_*``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import mcp_types

from ptc_mcp.catalog.model import DownstreamTool, tool_fingerprint
from ptc_mcp.catalog.values import BINARY_MARKER

__all__ = ["ObservedShape", "ObservedShapes", "value_skeleton"]

_MAX_KEYS = 8
_MAX_LEVEL = 2
_MAX_ITEMS = 20
_MAX_TYPE_CHARS = 160
_MAX_TOOLS = 4096
_MAX_DEPTH = 8
EXAMPLE_CHARS = 160


@dataclass(frozen=True)
class ObservedShape:
    """What one successful call returned: a type skeleton and a capped example (compact JSON)."""

    type: str
    example: str

    def as_dict(self, example_chars: int = EXAMPLE_CHARS) -> dict[str, str]:
        return {"type": self.type, "example": _cap(self.example, example_chars)}


def value_skeleton(value: Any) -> str:
    """A type expression for a value, in the notation of signatures (``list[{id: int, note?: str}]``)."""
    text = _skeleton(value, 0, 0)
    return text if len(text) <= _MAX_TYPE_CHARS else _coarse(value)


def _skeleton(value: Any, level: int, depth: int) -> str:
    if depth > _MAX_DEPTH:  # values are untrusted: every walk is bounded
        return "Any"
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, dict):
        if list(value) == [BINARY_MARKER]:
            return "Binary"
        if not value or level >= _MAX_LEVEL or len(value) > _MAX_KEYS:
            return "dict"
        return "{" + ", ".join(f"{_key(k)}: {_skeleton(v, level + 1, depth + 1)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        if not value:
            return "list"
        items = _merge([_skeleton(item, level, depth + 1) for item in value[:_MAX_ITEMS]])
        return f"list[{items}]"
    return "Any"


def _merge(types: list[str]) -> str:
    unique = list(dict.fromkeys(types))
    return " | ".join(unique) if len(unique) <= 3 else "Any"


def _key(name: Any) -> str:
    text = str(name)
    return text if text.isidentifier() else repr(text)


def _coarse(value: Any) -> str:
    if isinstance(value, dict):
        return "dict"
    if isinstance(value, list):
        return "list"
    return "Any"


def _example(value: Any) -> str:
    def plain(item: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            return "…"
        if isinstance(item, dict):
            if list(item) == [BINARY_MARKER] and isinstance(item[BINARY_MARKER], dict):
                return f"<Binary {item[BINARY_MARKER].get('mime_type')}>"
            shown = {str(key): plain(inner, depth + 1) for key, inner in list(item.items())[:_MAX_KEYS]}
            return {**shown, "…": "…"} if len(item) > _MAX_KEYS else shown
        if isinstance(item, list):
            return [plain(inner, depth + 1) for inner in item[:3]] + (["…"] if len(item) > 3 else [])
        if isinstance(item, str) and len(item) > 40:
            return item[:39] + "…"
        return item

    try:
        return json.dumps(plain(value), ensure_ascii=False, separators=(", ", ": "), default=str)
    except (TypeError, ValueError, RecursionError):
        return "…"


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ObservedShapes:
    """Shapes by ``(server, tool)``; each remembers the connection and the tool definition it was seen with."""

    def __init__(self) -> None:
        self._shapes: dict[tuple[str, str], tuple[int, str, ObservedShape]] = {}
        self._seen: dict[tuple[str, str], mcp_types.Tool] = {}
        """The tool definition each shape was last confirmed for (an identity check skips the fingerprint)."""
        self._lock = threading.Lock()

    def record(self, item: DownstreamTool, connection: int, value: Any) -> None:
        """Remember the shape of ``value`` unless the tool declares an output schema or one is known already."""
        if item.tool.output_schema is not None:
            return
        key = (item.server, item.tool.name)
        known = self._shapes.get(key)
        if known is not None and known[0] == connection and self._seen.get(key) is item.tool:
            return  # the common case, every later call: no fingerprint to compute
        fingerprint = tool_fingerprint(item.tool)
        if known is not None and known[0] == connection and known[1] == fingerprint:
            self._seen[key] = item.tool
            return
        shape = ObservedShape(type=value_skeleton(value), example=_cap(_example(value), 4 * EXAMPLE_CHARS))
        with self._lock:
            if len(self._shapes) >= _MAX_TOOLS:
                self._shapes.clear()
                self._seen.clear()
            self._shapes[key] = (connection, fingerprint, shape)
            self._seen[key] = item.tool

    def get(self, server: str, tool: str) -> ObservedShape | None:
        known = self._shapes.get((server, tool))
        return known[2] if known is not None else None

    def keep_connections(self, connections: Mapping[str, int]) -> None:
        """Drop shapes of servers whose connection changed or ended (``connections``: server → connection)."""
        with self._lock:
            for key, (connection, _, _) in list(self._shapes.items()):
                if connections.get(key[0]) != connection:
                    del self._shapes[key]

    def keep_tools(self, tools: Iterable[DownstreamTool]) -> None:
        """Drop shapes of tools that are gone or whose definition changed (after a tool list refresh)."""
        current = {(t.server, t.tool.name): t for t in tools}
        with self._lock:
            for key, (_, fingerprint, _) in list(self._shapes.items()):
                item = current.get(key)
                if item is None or tool_fingerprint(item.tool) != fingerprint:
                    del self._shapes[key]

    def __len__(self) -> int:
        return len(self._shapes)
