"""Does a value fit a return type as signatures show it? A parser of that notation, for tests.

The notation (docs/catalog.md, "Signatures"): ``str``, ``int``, ``float``, ``bool``, ``None``, ``Any``, ``Binary``,
``dict``, ``list``, ``list[T]``, ``dict[str, T]``, ``Literal['a', 1]``, ``{key: T, other?: T}`` and ``A | B``.
Values are what the host sends the runtime: a ``Binary`` is ``{"__ptc_binary__": {...}}`` there.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from ptc_mcp.catalog.values import BINARY_MARKER

_TOKEN = re.compile(
    r"\s*(Literal\[|list\[|dict\[str,|[A-Za-z_][A-Za-z0-9_]*\??|'(?:[^'\\]|\\.)*'\??|-?\d+(?:\.\d+)?|[\[\]{}|:,?])"
)


@dataclass
class _Parser:
    tokens: list[str]
    at: int = 0

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.at]
        if expected is not None and token != expected:
            raise ValueError(f"expected {expected!r}, got {token!r}")
        self.at += 1
        return token

    def union(self) -> Any:
        options = [self.primary()]
        while self.peek() == "|":
            self.take("|")
            options.append(self.primary())
        return options[0] if len(options) == 1 else ("union", options)

    def primary(self) -> Any:
        token = self.take()
        if token == "list[":
            inner = self.union()
            self.take("]")
            return ("list", inner)
        if token == "dict[str,":
            inner = self.union()
            self.take("]")
            return ("dict", inner)
        if token == "Literal[":
            values = [ast.literal_eval(self.take())]
            while self.peek() == ",":
                self.take(",")
                values.append(ast.literal_eval(self.take()))
            self.take("]")
            return ("literal", values)
        if token == "{":
            fields: list[tuple[str, bool, Any]] = []
            while True:
                key = self.take()
                optional = key.endswith("?")
                key = key.rstrip("?")
                if self.peek() == "?":
                    self.take("?")
                    optional = True
                name = ast.literal_eval(key) if key.startswith("'") else key
                self.take(":")
                fields.append((name, optional, self.union()))
                if self.peek() == ",":
                    self.take(",")
                    continue
                self.take("}")
                return ("object", fields)
        return ("name", token)


def parse_type(text: str) -> Any:
    parser = _Parser(_TOKEN.findall(text))
    tree = parser.union()
    if parser.peek() is not None:
        raise ValueError(f"unparsed rest of {text!r}: {parser.tokens[parser.at :]}")
    return tree


def fits(value: Any, type_text: str) -> bool:
    """Whether ``value`` (as the host sends it) is of the type ``type_text``."""
    return _fits(value, parse_type(type_text))


def _fits(value: Any, tree: Any) -> bool:
    kind, detail = tree
    if kind == "union":
        return any(_fits(value, option) for option in detail)
    if kind == "list":
        return isinstance(value, list) and all(_fits(item, detail) for item in value)
    if kind == "dict":
        return isinstance(value, dict) and all(_fits(item, detail) for item in value.values())
    if kind == "literal":
        return any(value == choice and type(value) is type(choice) for choice in detail)
    if kind == "object":
        if not isinstance(value, dict) or _is_binary(value):
            return False
        return all(
            (name in value and _fits(value[name], inner)) or (optional and name not in value)
            for name, optional, inner in detail
        )
    return _fits_name(value, detail)


def _fits_name(value: Any, name: str) -> bool:
    if name == "Any":
        return True
    if name == "None":
        return value is None
    if name == "str":
        return isinstance(value, str)
    if name == "bool":
        return isinstance(value, bool)
    if name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "Binary":
        return _is_binary(value)
    if name == "dict":
        return isinstance(value, dict) and not _is_binary(value)
    if name == "list":
        return isinstance(value, list)
    raise ValueError(f"unknown type name {name!r}")


def _is_binary(value: Any) -> bool:
    return isinstance(value, dict) and list(value) == [BINARY_MARKER]
