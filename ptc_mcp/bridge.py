"""The tool bridge: what a program's tool call goes through on the host.

Every nested call passes the allow/deny policy, the run's call budget and argument checks against the tool's
``inputSchema``, then reaches the downstream server; the result comes back as the most useful Python value.
"""

from __future__ import annotations

import difflib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import mcp_types as types

from ptc_mcp.catalog.description import Presentation, build_description
from ptc_mcp.catalog.model import DownstreamTool, UnknownToolError
from ptc_mcp.catalog.policy import ToolPolicy
from ptc_mcp.catalog.runtime_catalog import build_runtime_catalog, catalog_version, split_qualified_name
from ptc_mcp.catalog.search import ToolIndex
from ptc_mcp.catalog.validation import check_arguments
from ptc_mcp.errors import ToolCallError

log = logging.getLogger(__name__)


class ToolSource(Protocol):
    """What the bridge needs of the downstream connections (``DownstreamPool`` is one)."""

    catalog_version: int
    failures: dict[str, str]

    def tools(self) -> list[DownstreamTool]: ...

    async def call_tool(
        self, server: str, tool: str, arguments: dict[str, Any] | None = None, timeout_s: float | None = None
    ) -> types.CallToolResult: ...


@dataclass(frozen=True)
class CatalogSnapshot:
    """Everything derived from one version of the downstream catalog (built once per change)."""

    tools: dict[str, DownstreamTool]
    runtime_catalog: dict[str, Any]
    version: str
    index: ToolIndex
    description: str


@dataclass
class CallRecord:
    """One nested call, for the audit trail and the run's statistics."""

    tool: str
    duration_ms: float
    outcome: str
    request_bytes: int
    response_bytes: int


class ToolBridge:
    """Builds catalog snapshots and hands each run a ``RunTools`` call handler."""

    def __init__(self, source: ToolSource, policy: ToolPolicy, *, presentation: Presentation = "auto") -> None:
        self._source = source
        self._policy = policy
        self._presentation = presentation
        self._snapshot: CatalogSnapshot | None = None
        self._snapshot_of: int | None = None

    @property
    def snapshot(self) -> CatalogSnapshot:
        """The current catalog, rebuilt only when the downstream catalog changed."""
        if self._snapshot is None or self._snapshot_of != self._source.catalog_version:
            self._snapshot_of = self._source.catalog_version
            allowed = self._policy.filter(self._source.tools())  # globs and annotations (read_only)
            runtime_catalog = build_runtime_catalog(allowed)
            self._snapshot = CatalogSnapshot(
                tools={tool.qualified_name: tool for tool in allowed},
                runtime_catalog=runtime_catalog,
                version=catalog_version(runtime_catalog),
                index=ToolIndex(allowed),
                description=build_description(
                    allowed,
                    presentation=self._presentation,
                    failures=dict(self._source.failures),
                ),
            )
        return self._snapshot

    def for_run(self, max_tool_calls: int) -> RunTools:
        return RunTools(self._source, self.snapshot, self._policy, max_tool_calls)


@dataclass
class RunTools:
    """The ``ToolCallHandler`` of one run: budget, policy, argument checks, unwrapping."""

    source: ToolSource
    snapshot: CatalogSnapshot
    policy: ToolPolicy
    max_tool_calls: int
    calls: list[CallRecord] = field(default_factory=list)
    used: int = 0

    async def __call__(self, name: str, arguments: dict[str, Any]) -> Any:
        if name == "@search":
            return self.snapshot.index.search(str(arguments.get("query", "")), limit=int(arguments.get("limit", 5)))
        if name == "@describe":
            try:
                return self.snapshot.index.describe(str(arguments.get("name", "")))
            except UnknownToolError as exc:
                raise ToolCallError("tool_error", str(exc)) from None
        if self.used >= self.max_tool_calls:  # a refused call is not counted: ``used`` is calls made
            raise ToolCallError("tool_call_limit", f"this run may make at most {self.max_tool_calls} tool calls")
        self.used += 1
        tool = self._resolve(name)
        check_arguments(tool.tool, arguments, server=tool.server)
        started = time.perf_counter()
        outcome = "ok"
        response_bytes = 0
        try:
            result = await self.source.call_tool(tool.server, tool.tool.name, arguments)
            if result.is_error:
                outcome = "tool_error"
                raise ToolCallError("tool_error", _error_text(result))
            value = unwrap_result(result, tool.tool.output_schema)
            response_bytes = len(json.dumps(value, default=str))
            return value
        except ToolCallError as exc:
            outcome = exc.error_type
            raise
        except anyio.get_cancelled_exc_class():
            outcome = "cancelled"
            raise
        finally:
            self.calls.append(
                CallRecord(
                    tool=name,
                    duration_ms=(time.perf_counter() - started) * 1000,
                    outcome=outcome,
                    request_bytes=len(json.dumps(arguments, default=str)),
                    response_bytes=response_bytes,
                )
            )

    def _resolve(self, name: str) -> DownstreamTool:
        tool = self.snapshot.tools.get(name)
        if tool is not None:
            return tool
        try:
            split_qualified_name(name)
        except ValueError as exc:
            raise ToolCallError("tool_error", str(exc)) from None
        listed = next((t for t in self.source.tools() if t.qualified_name == name), None)
        refusal = self.policy.refusal(name, listed.tool.annotations) if listed is not None else None
        if refusal is not None:
            raise ToolCallError("tool_denied", f"the policy does not allow {name}: {refusal}")
        suggestions = difflib.get_close_matches(name, list(self.snapshot.tools), n=3)
        raise ToolCallError("tool_error", str(UnknownToolError(name, suggestions)))


def _error_text(result: types.CallToolResult) -> str:
    texts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    return "\n".join(texts) or "the tool reported an error"


def is_wrapped_output(output_schema: Mapping[str, Any] | None) -> bool:
    """True for the ``{"result": X}`` envelope MCP SDKs put around results that are not objects."""
    if not output_schema:
        return False
    properties = output_schema.get("properties")
    return (
        isinstance(properties, Mapping)
        and list(properties) == ["result"]
        and output_schema.get("required") == ["result"]
    )


def unwrap_result(result: types.CallToolResult, output_schema: Mapping[str, Any] | None = None) -> Any:
    """The most useful Python value: ``structuredContent``, else JSON from text, else text; binary as a marker.

    A ``{"result": X}`` envelope declared by the output schema (see ``is_wrapped_output``) becomes X. One text
    block → its JSON value if it parses, else the string. Several blocks → a list, one value each. Images, audio
    and embedded blobs → ``{"__ptc_binary__": {"mime_type", "data"}}`` (a ``Binary`` in the program).
    """
    if result.structured_content is not None:
        structured = result.structured_content
        if is_wrapped_output(output_schema) and isinstance(structured, dict) and list(structured) == ["result"]:
            return structured["result"]
        return structured
    values = [_unwrap_block(block) for block in result.content]
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _unwrap_block(block: types.ContentBlock) -> Any:
    if isinstance(block, types.TextContent):
        try:
            return json.loads(block.text)
        except ValueError:
            return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        return {"__ptc_binary__": {"mime_type": block.mime_type, "data": block.data}}
    if isinstance(block, types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, types.BlobResourceContents):
            return {
                "__ptc_binary__": {"mime_type": resource.mime_type or "application/octet-stream", "data": resource.blob}
            }
        return getattr(resource, "text", None)
    if isinstance(block, types.ResourceLink):
        return {"uri": str(block.uri), "name": block.name, "mime_type": block.mime_type}
    return None
