"""Small builders for catalog tests."""

from __future__ import annotations

from typing import Any

import mcp_types

from ptc_mcp.catalog.model import DownstreamTool


def make_tool(
    name: str,
    properties: dict[str, Any] | None = None,
    required: list[str] | None = None,
    *,
    description: str | None = None,
    output: dict[str, Any] | None = None,
    annotations: dict[str, Any] | None = None,
    schema: dict[str, Any] | None = None,
) -> mcp_types.Tool:
    input_schema = schema if schema is not None else {"type": "object", "properties": properties or {}}
    if required:
        input_schema["required"] = required
    data: dict[str, Any] = {"name": name, "inputSchema": input_schema}
    if description is not None:
        data["description"] = description
    if output is not None:
        data["outputSchema"] = output
    if annotations is not None:
        data["annotations"] = annotations
    return mcp_types.Tool.model_validate(data)


def downstream(server: str, name: str, **kwargs: Any) -> DownstreamTool:
    return DownstreamTool(server, make_tool(name, **kwargs))
