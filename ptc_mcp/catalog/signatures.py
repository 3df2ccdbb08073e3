"""Python signatures for MCP tools, generated from their JSON Schemas.

``(*, employee_id: str, quarter: Literal['Q1', 'Q2'] = 'Q1') -> list[{id: str, amount: float}]``

- Parameters are keyword-only: required ones first, then optional ones, each group in the schema's order. An
  optional parameter shows its schema ``default``, or ``= ...`` (the stub-file spelling of "may be omitted").
- Types: ``str``, ``int``, ``float``, ``bool``, ``None``, ``list[T]``, ``dict[str, T]``, ``Literal[...]`` for
  ``enum``/``const``, ``X | Y`` for ``anyOf``/``oneOf``/type lists/``nullable``; ``$ref`` into ``$defs`` (or
  ``definitions``) is resolved. A small nested object is shown inline, TypedDict-style: ``{id: str, note?: str}``
  (``?`` marks a key that may be missing); a big or deep one is ``dict``.
- Property names that are not Python identifiers (``first-name``, ``$top``, ``from``) cannot be keyword
  arguments: they are listed quoted in a ``**{'first-name': str}`` note (pass them with ``call_tool``).
- The return type comes from ``outputSchema`` by the rule of ``ptc_mcp.catalog.values`` (the ``{"result": X}``
  envelope shows as X, binary content blocks as ``Binary``); ``Any`` when the tool has none.

Rendering never raises: odd or hostile schemas degrade to ``Any``/``dict``, and every walk is bounded.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import mcp_types

from ptc_mcp.catalog.values import mirrored_block_type, value_schema

__all__ = [
    "Parameter",
    "ToolSignature",
    "first_sentence",
    "result_fields",
    "return_type",
    "schema_type",
    "tool_doc",
    "tool_signature",
]

_MAX_DEPTH = 8
"""Bound on every schema walk (nesting, unions, ``$ref`` chains)."""
_MAX_INLINE_LEVEL = 2
"""Objects nested deeper than this are shown as ``dict``."""
_MAX_INLINE_KEYS = 8
_MAX_ENUM = 16
_MAX_UNION = 8
_MAX_TYPE_CHARS = 160
_MAX_PARAMS = 40
_MAX_DEFAULT_CHARS = 40

JSON_TYPE_NAMES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "null": "None",
    "array": "list",
    "object": "dict",
}


@dataclass(frozen=True)
class Parameter:
    """One argument of a tool, as the signature shows it."""

    name: str
    """The property name, exactly as in the schema."""
    annotation: str
    required: bool
    default: str | None
    """The schema's ``default`` as a Python literal, or ``None`` when the schema gives none."""
    description: str

    @property
    def is_keyword(self) -> bool:
        """Whether the name can be passed as a Python keyword argument."""
        return self.name.isidentifier() and not keyword.iskeyword(self.name)


@dataclass(frozen=True)
class ToolSignature:
    """The signature of one tool."""

    parameters: tuple[Parameter, ...]
    returns: str
    omitted: int = 0
    """Parameters left out because the schema has more than the signature shows."""

    def render(self) -> str:
        """``(*, a: str, b: int = 3, **{'x-y': str}) -> dict``"""
        shown = [p for p in self.parameters if p.is_keyword]
        quoted = [p for p in self.parameters if not p.is_keyword]
        parts: list[str] = []
        if shown:
            parts.append("*")
        for p in shown:
            text = f"{p.name}: {p.annotation}"
            if not p.required:
                text += f" = {p.default if p.default is not None else '...'}"
            parts.append(text)
        if quoted:
            keys = ", ".join(f"{p.name!r}{'' if p.required else '?'}: {p.annotation}" for p in quoted)
            parts.append("**{" + keys + "}")
        if self.omitted:
            parts.append(f"... ({self.omitted} more)")
        return f"({', '.join(parts)}) -> {self.returns}"

    def render_short(self) -> str:
        """Argument names only, ``?`` after optional ones: ``(employee_id, quarter?)``."""
        names = [(p.name if p.is_keyword else repr(p.name)) + ("" if p.required else "?") for p in self.parameters]
        if self.omitted:
            names.append("...")
        return f"({', '.join(names)})"


def tool_signature(tool: mcp_types.Tool) -> ToolSignature:
    """The signature of a tool, from its ``inputSchema`` and ``outputSchema``. Never raises."""
    try:
        return _tool_signature(tool)
    except Exception:  # a schema is untrusted input: never let it break a description
        return ToolSignature(parameters=(), returns="Any")


def _tool_signature(tool: mcp_types.Tool) -> ToolSignature:
    schema = tool.input_schema if isinstance(tool.input_schema, Mapping) else {}
    returns = return_type(tool.output_schema)
    properties = _merged_properties(schema, schema)
    required = _required_names(schema, schema)
    params: list[Parameter] = []
    for name, prop in properties.items():
        if not isinstance(name, str):
            continue
        params.append(
            Parameter(
                name=name,
                annotation=schema_type(prop, root=schema, level=1),
                required=name in required,
                default=_default_literal(prop, schema),
                description=_description(prop),
            )
        )
    params.sort(key=lambda p: not p.required)  # stable: schema order within each group
    omitted = max(0, len(params) - _MAX_PARAMS)
    return ToolSignature(parameters=tuple(params[:_MAX_PARAMS]), returns=returns, omitted=omitted)


def return_type(output_schema: Mapping[str, Any] | None) -> str:
    """The return type shown for an output schema: the type of the value the program gets (``Any`` without one)."""
    schema = value_schema(output_schema)
    if schema is None:
        return "Any"
    return mirrored_block_type(output_schema) or schema_type(schema, root=output_schema)


def result_fields(output_schema: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The keys of the object a tool returns (or of each list item), with their types, even when the return
    type is too big to show inline (``-> list[dict]``); ``None`` when the result is no object. Never raises."""
    try:
        schema = _deref(value_schema(output_schema), output_schema)
        if isinstance(schema, Mapping) and schema.get("type") == "array":
            schema = _deref(schema.get("items"), output_schema)
        if not isinstance(schema, Mapping):
            return None
        schema = _merge_all_of(schema, schema["allOf"], output_schema) if "allOf" in schema else schema
        properties = _as_mapping(schema.get("properties"))
        required = _required_names(schema, output_schema)
        return {
            f"{name}{'' if name in required else '?'}": schema_type(prop, root=output_schema, level=1)
            for name, prop in list(properties.items())[:_MAX_PARAMS]
        } or None
    except Exception:  # a schema is untrusted input
        return None


def tool_doc(tool: mcp_types.Tool) -> str:
    """The tool's docstring: its description, else its title, else empty."""
    if tool.description and tool.description.strip():
        return tool.description.strip()
    title = tool.title or (tool.annotations.title if tool.annotations else None)
    return title.strip() if title else ""


_SENTENCE = re.compile(r"(.+?[.!?])(?=\s+[A-Z0-9(\"'`]|\s*$)")


def first_sentence(text: str, limit: int = 120) -> str:
    """The first sentence of the first non-empty line, cut to ``limit`` characters with ``…``."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    match = _SENTENCE.match(line)
    sentence = match.group(1) if match else line
    sentence = " ".join(sentence.split())
    if len(sentence) > limit:
        sentence = sentence[: limit - 1].rstrip() + "…"
    return sentence


def schema_type(schema: Any, *, root: Any = None, level: int = 0) -> str:
    """A Python type expression for a JSON Schema (``Any`` when nothing better can be said).

    ``root`` is the document ``$ref``s resolve against (defaults to ``schema``); ``level`` is how many objects
    enclose this one (inline objects stop at ``_MAX_INLINE_LEVEL``).
    """
    try:
        return _render(schema, schema if root is None else root, level, 0, ())
    except Exception:  # a schema is untrusted input: never let it break a description
        return "Any"


def _render(schema: Any, root: Any, level: int, depth: int, refs: tuple[str, ...]) -> str:
    if not isinstance(schema, Mapping):
        return "Any"
    if depth > _MAX_DEPTH:
        return _coarse(schema)
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _resolve_ref(root, ref)
        if target is None or ref in refs:
            return _coarse(target) if isinstance(target, Mapping) else "Any"
        rendered = _render(target, root, level, depth + 1, (*refs, ref))
        return _union([rendered, "None"]) if schema.get("nullable") is True else rendered
    rendered = _render_plain(schema, root, level, depth, refs)
    if schema.get("nullable") is True:
        rendered = _union([rendered, "None"])
    return rendered


def _render_plain(schema: Mapping[str, Any], root: Any, level: int, depth: int, refs: tuple[str, ...]) -> str:
    if "const" in schema:
        literal = _literal(schema["const"])
        return f"Literal[{literal}]" if literal is not None else "Any"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return _enum_type(enum, schema)
    for key in ("anyOf", "oneOf"):
        members = schema.get(key)
        if isinstance(members, list) and members:
            if len(members) > _MAX_UNION:
                return "Any"
            rendered = [_render(m, root, level, depth + 1, refs) for m in members]
            return _fit(_union(rendered), "Any")
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and all_of:
        merged = _merge_all_of(schema, all_of, root)
        return _render_plain(merged, root, level, depth + 1, refs)
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if isinstance(k, str)][:_MAX_UNION]
        if not kinds:
            return "Any"
        return _union([_render_plain({**schema, "type": k}, root, level, depth + 1, refs) for k in kinds])
    if kind is None:
        if "properties" in schema or "additionalProperties" in schema:
            kind = "object"
        elif "items" in schema or "prefixItems" in schema:
            kind = "array"
        else:
            return "Any"
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, Mapping) and items:
            return _fit(f"list[{_render(items, root, level, depth + 1, refs)}]", "list")
        return "list"
    if kind == "object":
        return _object_type(schema, root, level, depth, refs)
    return JSON_TYPE_NAMES.get(kind, "Any") if isinstance(kind, str) else "Any"


def _object_type(schema: Mapping[str, Any], root: Any, level: int, depth: int, refs: tuple[str, ...]) -> str:
    properties = schema.get("properties")
    if isinstance(properties, Mapping) and properties:
        if level >= _MAX_INLINE_LEVEL or len(properties) > _MAX_INLINE_KEYS:
            return "dict"
        required = _required_names(schema, root)
        fields = []
        for name, prop in properties.items():
            if not isinstance(name, str):
                continue
            key = name if name.isidentifier() else repr(name)
            mark = "" if name in required else "?"
            fields.append(f"{key}{mark}: {_render(prop, root, level + 1, depth + 1, refs)}")
        return _fit("{" + ", ".join(fields) + "}", "dict")
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping) and extra:
        return _fit(f"dict[str, {_render(extra, root, level + 1, depth + 1, refs)}]", "dict")
    return "dict"


def _enum_type(values: list[Any], schema: Mapping[str, Any]) -> str:
    literals = []
    for value in values[: _MAX_ENUM + 1]:
        literal = _literal(value)
        if literal is None:
            return _coarse(schema)
        if literal not in literals:
            literals.append(literal)
    if len(literals) > _MAX_ENUM:
        return _coarse(schema)
    return _fit(f"Literal[{', '.join(literals)}]", _coarse(schema))


def _coarse(schema: Mapping[str, Any] | None) -> str:
    """A one-word type for a schema that is too big, too deep or recursive."""
    if schema is None:
        return "Any"
    kind = schema.get("type")
    if isinstance(kind, str) and kind in JSON_TYPE_NAMES:
        return JSON_TYPE_NAMES[kind]
    if "properties" in schema:
        return "dict"
    if "items" in schema:
        return "list"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum[:_MAX_ENUM]):
        return "str"
    return "Any"


def _union(parts: list[str]) -> str:
    unique: list[str] = []
    for part in parts:
        for piece in _split_top_level_union(part):
            if piece not in unique:
                unique.append(piece)
    if "Any" in unique:
        return "Any"
    if "None" in unique:
        unique.remove("None")
        unique.append("None")
    return " | ".join(unique) if unique else "Any"


def _split_top_level_union(text: str) -> list[str]:
    pieces, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "|" and depth == 0:
            pieces.append(text[start:i].strip())
            start = i + 1
    pieces.append(text[start:].strip())
    return pieces


def _fit(text: str, fallback: str) -> str:
    return text if len(text) <= _MAX_TYPE_CHARS else fallback


def _literal(value: Any) -> str | None:
    """A Python literal for a scalar JSON value (``None`` for lists and objects)."""
    if value is None or isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, str):
        return repr(value)
    return None


def _default_literal(prop: Any, root: Any) -> str | None:
    if not isinstance(prop, Mapping):
        return None
    if "$ref" in prop and "default" not in prop:
        target = _resolve_ref(root, prop["$ref"]) if isinstance(prop["$ref"], str) else None
        prop = target if isinstance(target, Mapping) else prop
    if "default" not in prop:
        return None
    value = prop["default"]
    literal = _literal(value)
    if literal is None:
        if value == [] or value == {}:
            literal = repr(value)
        else:
            return "..."
    return literal if len(literal) <= _MAX_DEFAULT_CHARS else "..."


def _description(prop: Any) -> str:
    if isinstance(prop, Mapping):
        text = prop.get("description") or prop.get("title")
        if isinstance(text, str):
            return " ".join(text.split())
    return ""


def _resolve_ref(root: Any, ref: str) -> Mapping[str, Any] | None:
    """Resolve a local JSON pointer (``#/$defs/Name``); anything else is ``None``."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    if ref in ("#", "#/"):
        return node if isinstance(node, Mapping) else None
    for raw in ref[2:].split("/")[:_MAX_DEPTH]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node if isinstance(node, Mapping) else None


def _deref(schema: Any, root: Any) -> Any:
    for _ in range(_MAX_DEPTH):
        if isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
            schema = _resolve_ref(root, schema["$ref"])
        else:
            break
    return schema


def _merge_all_of(schema: Mapping[str, Any], parts: list[Any], root: Any) -> dict[str, Any]:
    """``allOf`` as one object schema: properties and ``required`` merged, first ``type`` wins."""
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    properties: dict[str, Any] = dict(_as_mapping(merged.get("properties")))
    required = list(_as_list(merged.get("required")))
    for part in parts[:_MAX_UNION]:
        part = _deref(part, root)
        if not isinstance(part, Mapping):
            continue
        for key, value in part.items():
            if key == "properties":
                properties.update(_as_mapping(value))
            elif key == "required":
                required.extend(_as_list(value))
            elif key not in merged and key != "allOf":
                merged[key] = value
    if properties:
        merged["properties"] = properties
        merged.setdefault("type", "object")
    if required:
        merged["required"] = required
    return merged


def _merged_properties(schema: Mapping[str, Any], root: Any) -> dict[str, Any]:
    """The top-level properties of an input schema (``allOf`` parts and a root ``$ref`` included)."""
    resolved = _deref(schema, root)
    if not isinstance(resolved, Mapping):
        return {}
    if isinstance(resolved.get("allOf"), list):
        resolved = _merge_all_of(resolved, resolved["allOf"], root)
    return dict(_as_mapping(resolved.get("properties")))


def _required_names(schema: Mapping[str, Any], root: Any) -> frozenset[str]:
    resolved = _deref(schema, root)
    if not isinstance(resolved, Mapping):
        return frozenset()
    if isinstance(resolved.get("allOf"), list):
        resolved = _merge_all_of(resolved, resolved["allOf"], root)
    return frozenset(name for name in _as_list(resolved.get("required")) if isinstance(name, str))


def _as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
