"""The one rule for what a tool call gives a program, applied both to the value and to the return type shown.

Every signature the model sees (the description, ``tools.search``, ``tools.describe``) takes its return type from
``value_schema`` / ``mirrored_block_type`` (``signatures.return_type``), and the tool bridge turns each result into
a value with ``tool_value``; both follow the same steps, so a model that believes a signature gets exactly that:

1. A result with binary content blocks (images, audio, blobs) gives the content blocks, even when the server also
   sends ``structuredContent``: one block is the value, several are a list; a binary block is a ``Binary``, a text
   block its JSON value or its text. The return type says so when the output schema mirrors the content blocks
   (``{content: [{type: "image", data, mimeType}, ...]}``, as server-filesystem's ``read_media_file`` declares);
   such a tool's value always comes from its content blocks.
2. Else ``structuredContent``; the ``{"result": X}`` envelope SDKs put around results that are not objects is X
   (the return type is X's type too).
3. Else the content blocks, as in 1. The return type is ``Any`` when the tool declares no output schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import mcp_types as types

from ptc_mcp.sandboxes.protocol import BINARY_MARKER

__all__ = ["BINARY_MARKER", "is_wrapped_output", "mirrored_block_type", "tool_value", "value_schema"]


_MAX_WALK = 8


def is_wrapped_output(output_schema: Mapping[str, Any] | None) -> bool:
    """True for the ``{"result": X}`` envelope MCP SDKs put around results that are not objects."""
    if not isinstance(output_schema, Mapping):
        return False
    properties = output_schema.get("properties")
    return (
        isinstance(properties, Mapping)
        and list(properties) == ["result"]
        and output_schema.get("required") == ["result"]
    )


def value_schema(output_schema: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The schema of the value a program gets from structured content (the envelope's inside), or ``None``.

    ``$ref``s in the result resolve against ``output_schema`` itself (pass it as ``root``).
    """
    if not isinstance(output_schema, Mapping):
        return None
    if is_wrapped_output(output_schema):
        inner = output_schema["properties"]["result"]
        return inner if isinstance(inner, Mapping) else {}
    return output_schema


def tool_value(result: types.CallToolResult, output_schema: Mapping[str, Any] | None = None) -> Any:
    """The value a program gets for a successful result (see the module docstring for the rule)."""
    from_blocks = mirrored_block_type(output_schema) is not None or any(_is_binary(b) for b in result.content)
    if result.structured_content is not None and not from_blocks:
        structured = result.structured_content
        if is_wrapped_output(output_schema) and isinstance(structured, dict) and list(structured) == ["result"]:
            return structured["result"]
        return structured
    values = [_block_value(block) for block in result.content]
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _is_binary(block: types.ContentBlock) -> bool:
    if isinstance(block, types.ImageContent | types.AudioContent):
        return True
    return isinstance(block, types.EmbeddedResource) and isinstance(block.resource, types.BlobResourceContents)


def _block_value(block: types.ContentBlock) -> Any:
    if isinstance(block, types.TextContent):
        try:
            return json.loads(block.text)
        except (ValueError, RecursionError):  # hostile nesting is text, not a crash
            return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        return {BINARY_MARKER: {"mime_type": block.mime_type, "data": block.data}}
    if isinstance(block, types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, types.BlobResourceContents):
            mime_type = resource.mime_type or "application/octet-stream"
            return {BINARY_MARKER: {"mime_type": mime_type, "data": resource.blob}}
        return getattr(resource, "text", None)
    if isinstance(block, types.ResourceLink):
        return {"uri": str(block.uri), "name": block.name, "mime_type": block.mime_type}
    return None


def mirrored_block_type(output_schema: Mapping[str, Any] | None) -> str | None:
    """``Binary | list[Binary]`` (or with ``str``) when the schema is ``{content: [content block, ...]}`` with
    binary blocks: results of such tools carry binary blocks, so rule 1 applies. ``None`` otherwise."""
    if not isinstance(output_schema, Mapping):
        return None
    properties = output_schema.get("properties")
    if not isinstance(properties, Mapping) or list(properties) != ["content"]:
        return None
    content = properties["content"]
    items = content.get("items") if isinstance(content, Mapping) else None
    if not isinstance(items, Mapping):
        return None
    kinds: list[str] = []
    for option in _alternatives(items)[:_MAX_WALK]:
        kind = _block_kind(option)
        if kind is None:
            return None
        if kind not in kinds:
            kinds.append(kind)
    if "Binary" not in kinds:
        return None
    one = " | ".join(sorted(kinds))
    return f"{one} | list[{one}]"


def _alternatives(schema: Mapping[str, Any]) -> list[Any]:
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return options
    return [schema]


def _block_kind(schema: Any) -> str | None:
    """``Binary`` for a binary content block's schema, ``str`` for a text block's, else ``None``."""
    if not isinstance(schema, Mapping):
        return None
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return None
    if "mimeType" in properties and ("data" in properties or "blob" in properties):
        return "Binary"
    resource = properties.get("resource")
    if isinstance(resource, Mapping) and isinstance(resource.get("properties"), Mapping):
        inner = resource["properties"]
        if "blob" in inner:
            return "Binary"
        if "text" in inner:
            return "str"
    if "text" in properties:
        return "str"
    return None
