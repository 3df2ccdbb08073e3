"""The tool bridge: what a program's tool call goes through on the host.

Every nested call passes the allow/deny policy, the run's call budget and argument checks against the tool's
``inputSchema`` and, for tools that need it, a person's approval (``ptc_mcp.approvals``), then reaches the
downstream server with the run's ``RunInteraction`` in ``CURRENT_INTERACTION`` (so questions the server asks
meanwhile reach the run's client); the result comes back as the most useful Python value, its
text made valid (``ptc_mcp.text``). Discovery (``tools.search``/``tools.describe``, sent as ``@search`` and
``@describe``) is answered from the catalog: bounded, validated, on a worker thread. Every attempt, discovery and
refused calls included, spends the run's call budget and yields one ``CallRecord`` for the audit trail.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import mcp_types as types

from ptc_mcp.approvals import ApprovalRule, DecisionCallback, RunApprovals
from ptc_mcp.catalog.callable import split_callable
from ptc_mcp.catalog.description import Presentation, build_description
from ptc_mcp.catalog.model import DownstreamTool, ServerInfo, UnknownToolError
from ptc_mcp.catalog.observed import ObservedShapes
from ptc_mcp.catalog.policy import ToolPolicy
from ptc_mcp.catalog.runtime_catalog import (
    ToolResolver,
    build_runtime_catalog,
    catalog_version,
    split_qualified_name,
)
from ptc_mcp.catalog.search import ToolIndex
from ptc_mcp.catalog.validation import check_arguments
from ptc_mcp.catalog.values import tool_value
from ptc_mcp.errors import RunLimitExceeded, ToolCallError
from ptc_mcp.interaction import CURRENT_INTERACTION, RunInteraction
from ptc_mcp.sandboxes.protocol import DEFAULT_SEARCH_LIMIT, DESCRIBE_TOOL, MAX_NAME_CHARS, MAX_QUERY_CHARS, SEARCH_TOOL
from ptc_mcp.text import valid_json, valid_text

log = logging.getLogger(__name__)

DISCOVERY = frozenset({SEARCH_TOOL, DESCRIBE_TOOL})
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

    def server_info(self) -> Mapping[str, ServerInfo]: ...

    async def call_tool(
        self, server: str, tool: str, arguments: dict[str, Any] | None = None, timeout_s: float | None = None
    ) -> types.CallToolResult: ...


@dataclass(frozen=True)
class CatalogSnapshot:
    """Everything derived from one version of the downstream catalog (built once per change)."""

    tools: dict[str, DownstreamTool]
    not_callable: dict[str, str]
    """Listed tools a program cannot call (task-only), ``"server.tool"`` → why."""
    resolver: ToolResolver
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

    def __init__(
        self,
        source: ToolSource,
        policy: ToolPolicy,
        *,
        presentation: Presentation = "auto",
        approvals: ApprovalRule | None = None,
        input_timeout_s: float = 120.0,
    ) -> None:
        self._source = source
        self._policy = policy
        self.approvals = approvals or ApprovalRule()
        self.input_timeout_s = input_timeout_s
        self._presentation = presentation
        self._snapshot: CatalogSnapshot | None = None
        self._snapshot_of: int | None = None
        self._discovery_threads: anyio.CapacityLimiter | None = None
        self.observed = ObservedShapes()
        """Result shapes of tools without an output schema, seen on this server's connections."""

    @property
    def snapshot(self) -> CatalogSnapshot:
        """The current catalog, rebuilt only when the downstream catalog changed."""
        if self._snapshot is None or self._snapshot_of != self._source.catalog_version:
            self._snapshot_of = self._source.catalog_version
            allowed, not_callable = split_callable(self._policy.filter(self._source.tools()))
            failures = dict(self._source.failures)
            instructions = {name: info.instructions for name, info in _server_info(self._source).items()}
            runtime_catalog = build_runtime_catalog(allowed, failures)
            self.observed.keep_tools(allowed)
            self._snapshot = CatalogSnapshot(
                tools={tool.qualified_name: tool for tool in allowed},
                not_callable=not_callable,
                resolver=ToolResolver(runtime_catalog),
                runtime_catalog=runtime_catalog,
                version=catalog_version(runtime_catalog),
                index=ToolIndex(allowed, instructions=instructions, observed=self.observed),
                description=build_description(
                    allowed, presentation=self._presentation, failures=failures, instructions=instructions
                ),
            )
        return self._snapshot

    def for_run(
        self,
        max_tool_calls: int,
        interaction: RunInteraction | None = None,
        on_decision: DecisionCallback | None = None,
    ) -> RunTools:
        """The call handler of one run; ``interaction`` is its route to its client (none: nobody to ask)."""
        if self._discovery_threads is None:  # made in the event loop that uses it
            self._discovery_threads = anyio.CapacityLimiter(DISCOVERY_THREADS)
        connections = {name: info.connection for name, info in _server_info(self._source).items()}
        self.observed.keep_connections(connections)
        interaction = interaction or RunInteraction(None, self.input_timeout_s)
        approvals = RunApprovals(self.approvals, interaction, on_decision) if self.approvals.active else None
        return RunTools(
            self._source,
            self.snapshot,
            self._policy,
            max_tool_calls,
            self._discovery_threads,
            self.observed,
            interaction=interaction,
            approvals=approvals,
        )


@dataclass
class RunTools:
    """The ``ToolCallHandler`` of one run: budget, policy, argument checks, unwrapping, one record per attempt."""

    source: ToolSource
    snapshot: CatalogSnapshot
    policy: ToolPolicy
    max_tool_calls: int
    discovery_threads: anyio.CapacityLimiter | None = None
    observed: ObservedShapes = field(default_factory=ObservedShapes)
    calls: list[CallRecord] = field(default_factory=list)
    used: int = 0
    """Calls that left the host for a downstream server: the count the result reports. A call refused on the host
    (unknown tool, bad arguments) is no tool call, though it spends the budget (``attempts``)."""
    attempts: int = 0
    """Every call the program made (discovery and refused calls too): what the budget counts."""
    observer: CallObserver | None = None
    interaction: RunInteraction | None = None
    """The run's route to its client, set around each downstream call (``ptc_mcp.interaction``)."""
    approvals: RunApprovals | None = None

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
        if self.approvals is not None:
            await self.approvals.check(tool, arguments)  # raises tool_denied: then nothing is sent
        self.used += 1
        token = CURRENT_INTERACTION.set(self.interaction)
        try:
            result = await self.source.call_tool(tool.server, tool.tool.name, arguments)
        finally:
            CURRENT_INTERACTION.reset(token)
        if result.is_error:
            raise ToolCallError("tool_error", _error_text(result))
        try:
            value = valid_json(tool_value(result, tool.tool.output_schema))
        except (TypeError, ValueError, RecursionError) as exc:
            raise ToolCallError("tool_error", f"{name} returned a result that is not usable JSON: {exc}") from None
        if tool.tool.output_schema is None:  # the connection that answered, which may be new since the run began
            info = _server_info(self.source).get(tool.server)
            self.observed.record(tool, info.connection if info is not None else 0, value)
        return value

    async def _discover(self, name: str, arguments: dict[str, Any]) -> Any:
        index = self.snapshot.index
        if name == SEARCH_TOOL:
            query, limit = _search_arguments(arguments)
            return await anyio.to_thread.run_sync(
                index.search_page, query, limit, abandon_on_cancel=True, limiter=self.discovery_threads
            )
        tool_name, schemas = _describe_arguments(arguments)
        try:
            return await anyio.to_thread.run_sync(
                index.describe, tool_name, schemas, abandon_on_cancel=True, limiter=self.discovery_threads
            )
        except UnknownToolError as exc:
            raise ToolCallError("tool_error", str(exc)) from None

    def _resolve(self, name: str) -> DownstreamTool:
        """The tool ``name`` means: original names, or the identifier form (``file_system.read_file``)."""
        if name in self.snapshot.resolver:
            server, tool_name = self.snapshot.resolver.resolve(name)
            return self.snapshot.tools[f"{server}.{tool_name}"]
        try:
            split_qualified_name(name)
        except ValueError as exc:
            raise ToolCallError("tool_error", str(exc)) from None
        reason = self.snapshot.not_callable.get(name)
        if reason is not None:
            raise ToolCallError("tool_error", f"{name} cannot be called from a program: {reason}")
        listed = next((t for t in self.source.tools() if t.qualified_name == name), None)
        refusal = self.policy.refusal(name, listed.tool.annotations) if listed is not None else None
        if refusal is not None:
            raise ToolCallError("tool_denied", f"the policy does not allow {name}: {refusal}")
        raise ToolCallError("tool_error", str(UnknownToolError(name, self.snapshot.resolver.suggest(name))))


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
    limit = arguments.get("limit", DEFAULT_SEARCH_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise TypeError(f"tools.search(): limit must be a whole number from 1 to {MAX_SEARCH_LIMIT}, got {limit!r}")
    return query, limit


def _describe_arguments(arguments: dict[str, Any]) -> tuple[str, bool]:
    name = arguments.get("name")
    schemas = arguments.get("schemas", False)
    if (
        not set(arguments) <= {"name", "schemas"}
        or not isinstance(name, str)
        or len(name) > MAX_NAME_CHARS
        or not isinstance(schemas, bool)
    ):
        raise TypeError(
            f"tools.describe() takes one 'server.tool' (or 'server') name of at most {MAX_NAME_CHARS} characters, "
            "and schemas=True or False"
        )
    return name, schemas


def _server_info(source: ToolSource) -> Mapping[str, ServerInfo]:
    """The source's ``server_info()``; a source that knows only tools (a test double, say) tells nothing more."""
    server_info = getattr(source, "server_info", None)
    return server_info() if server_info is not None else {}
