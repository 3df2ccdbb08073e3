"""The tool bridge: what a program's tool call goes through on the host.

Every nested call passes the allow/deny policy, the run's call budget and argument checks against the tool's
``inputSchema``, then reaches the downstream server; the result comes back as the most useful Python value, its
text made valid (``ptc_mcp.text``). Discovery (``tools.search``/``tools.describe``, sent as ``@search`` and
``@describe``) is answered from the catalog: bounded, validated, on a worker thread. Every attempt, discovery and
refused calls included, spends the run's call budget and yields one ``CallRecord`` for the audit trail.
"""

from __future__ import annotations

import difflib
import json
import logging
import time
from collections.abc import Callable, Mapping
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
from ptc_mcp.errors import RunLimitExceeded, ToolCallError
from ptc_mcp.text import valid_json, valid_text

log = logging.getLogger(__name__)

DISCOVERY = frozenset({"@search", "@describe"})
MAX_QUERY_CHARS = 1000
MAX_NAME_CHARS = 512
MAX_SEARCH_LIMIT = 50
DISCOVERY_THREADS = 2
"""Worker threads for discovery across all runs: a flood of ``tools.search`` calls queues, it cannot take the
host's thread pool."""
REFUSALS_PAST_BUDGET = 16
"""Calls a program may still make after its budget is spent (each refused with ``tool_call_limit``, which it may
catch), beyond ``max_tool_calls`` of them: past that the run ends as ``tool_call_limit``. This bounds the audit
lines one run can cause."""


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
    """One call attempt, for the audit trail and the run's statistics.

    ``outcome``: ``ok``, ``tool_error``, ``tool_denied``, ``tool_call_limit``, ``invalid_arguments``, ``timeout``
    (the downstream call timed out) or ``cancelled`` (the run ended while the call was pending).
    """

    tool: str
    duration_ms: float
    outcome: str
    request_bytes: int
    response_bytes: int
    server: str = ""
    """The configured server the call reached (``@search``/``@describe`` for discovery), ``""`` when it resolved to
    none: ``tool`` is the program's text, ``server`` is safe to aggregate on (metrics labels)."""


CallObserver = Callable[[CallRecord, dict[str, Any]], None]
"""Sees every call attempt's record with the arguments it was made with; must not block or raise."""


class ToolBridge:
    """Builds catalog snapshots and hands each run a ``RunTools`` call handler."""

    def __init__(self, source: ToolSource, policy: ToolPolicy, *, presentation: Presentation = "auto") -> None:
        self._source = source
        self._policy = policy
        self._presentation = presentation
        self._snapshot: CatalogSnapshot | None = None
        self._snapshot_of: int | None = None
        self._discovery_threads: anyio.CapacityLimiter | None = None

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
        if self._discovery_threads is None:  # made in the event loop that uses it
            self._discovery_threads = anyio.CapacityLimiter(DISCOVERY_THREADS)
        return RunTools(self._source, self.snapshot, self._policy, max_tool_calls, self._discovery_threads)


@dataclass
class RunTools:
    """The ``ToolCallHandler`` of one run: budget, policy, argument checks, unwrapping, one record per attempt."""

    source: ToolSource
    snapshot: CatalogSnapshot
    policy: ToolPolicy
    max_tool_calls: int
    discovery_threads: anyio.CapacityLimiter | None = None
    calls: list[CallRecord] = field(default_factory=list)
    used: int = 0
    """Calls past the budget check that name a downstream tool: the count the result reports."""
    attempts: int = 0
    """Every call the program made (discovery and refused calls too): what the budget counts."""
    observer: CallObserver | None = None

    async def __call__(self, name: str, arguments: dict[str, Any]) -> Any:
        started = time.perf_counter()
        outcome = "ok"
        response_bytes = 0
        server = ""
        try:
            self._spend()
            if name in DISCOVERY:
                server = name
                value = await self._discover(name, arguments)
            else:
                self.used += 1
                tool = self._resolve(name)
                server = tool.server
                value = await self._call_downstream(tool, name, arguments)
            response_bytes = _json_size(value)
            return value
        except ToolCallError as exc:
            outcome = exc.outcome
            raise
        except RunLimitExceeded as exc:
            outcome = exc.error_type
            raise
        except TypeError:
            outcome = "invalid_arguments"
            raise
        except anyio.get_cancelled_exc_class():
            outcome = "cancelled"
            raise
        except Exception:
            outcome = "tool_error"
            raise
        finally:
            record = CallRecord(
                tool=name,
                duration_ms=(time.perf_counter() - started) * 1000,
                outcome=outcome,
                request_bytes=_json_size(arguments),
                response_bytes=response_bytes,
                server=server,
            )
            self.calls.append(record)
            if self.observer is not None:
                self.observer(record, arguments)

    def _spend(self) -> None:
        self.attempts += 1
        if self.attempts <= self.max_tool_calls:
            return
        if self.attempts > 2 * self.max_tool_calls + REFUSALS_PAST_BUDGET:
            raise RunLimitExceeded(
                "tool_call_limit", f"the program kept calling tools after its budget of {self.max_tool_calls} was spent"
            )
        raise ToolCallError("tool_call_limit", f"this run may make at most {self.max_tool_calls} tool calls")

    async def _call_downstream(self, tool: DownstreamTool, name: str, arguments: dict[str, Any]) -> Any:
        check_arguments(tool.tool, arguments, server=tool.server)
        _check_json(name, arguments)
        result = await self.source.call_tool(tool.server, tool.tool.name, arguments)
        if result.is_error:
            raise ToolCallError("tool_error", _error_text(result))
        try:
            return valid_json(unwrap_result(result, tool.tool.output_schema))
        except (TypeError, ValueError, RecursionError) as exc:
            raise ToolCallError("tool_error", f"{name} returned a result that is not usable JSON: {exc}") from None

    async def _discover(self, name: str, arguments: dict[str, Any]) -> Any:
        index = self.snapshot.index
        if name == "@search":
            query, limit = _search_arguments(arguments)
            return await anyio.to_thread.run_sync(
                index.search, query, limit, abandon_on_cancel=True, limiter=self.discovery_threads
            )
        tool_name = _describe_argument(arguments)
        try:
            return await anyio.to_thread.run_sync(
                index.describe, tool_name, abandon_on_cancel=True, limiter=self.discovery_threads
            )
        except UnknownToolError as exc:
            raise ToolCallError("tool_error", str(exc)) from None

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
    return valid_text("\n".join(texts)) or "the tool reported an error"


def _json_size(value: Any) -> int:
    """About the size of ``value`` as compact JSON (escapes not counted), without serializing it: one walk over
    its items, so a megabyte string costs one ``encode``, not a ``json.dumps``."""
    size = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item.encode("utf-8", "replace")) + 2
        elif isinstance(item, dict):
            size += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            size += 2 + len(item)
            stack.extend(item)
        else:
            size += len(str(item)) if item is not None else 4
    return size


def _check_json(name: str, arguments: dict[str, Any]) -> None:
    """Arguments a downstream server can be sent: strict JSON, valid UTF-8 (never a broken shared connection)."""
    try:
        json.dumps(arguments, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError) as exc:
        raise TypeError(f"{name}(): arguments must be plain JSON (no NaN or infinity): {exc}") from None


def _search_arguments(arguments: dict[str, Any]) -> tuple[str, int]:
    unknown = sorted(set(arguments) - {"query", "limit"})
    if unknown:
        raise TypeError(f"tools.search() got unexpected arguments: {', '.join(map(repr, unknown))}")
    query = arguments.get("query", "")
    if not isinstance(query, str) or len(query) > MAX_QUERY_CHARS:
        raise TypeError(f"tools.search(): query must be a string of at most {MAX_QUERY_CHARS} characters")
    limit = arguments.get("limit", 5)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise TypeError(f"tools.search(): limit must be a whole number from 1 to {MAX_SEARCH_LIMIT}, got {limit!r}")
    return query, limit


def _describe_argument(arguments: dict[str, Any]) -> str:
    name = arguments.get("name")
    if set(arguments) != {"name"} or not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
        raise TypeError(f"tools.describe() takes one 'server.tool' name of at most {MAX_NAME_CHARS} characters")
    return name


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
        except (ValueError, RecursionError):
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
