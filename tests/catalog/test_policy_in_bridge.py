"""The tool bridge hands each tool's annotations to the policy: in the catalog and on every call."""

from __future__ import annotations

from typing import Any

import mcp_types
import pytest

from ptc_mcp.bridge import ToolBridge
from ptc_mcp.catalog.model import DownstreamTool
from ptc_mcp.catalog.policy import ToolPolicy
from ptc_mcp.config import parse_config
from ptc_mcp.errors import ToolCallError

from .helpers import downstream

pytestmark = pytest.mark.anyio


class ListedTools:
    """A ``ToolSource`` over fixed tools whose calls echo their arguments."""

    catalog_version = 1
    failures: dict[str, str] = {}

    def __init__(self, tools: list[DownstreamTool]) -> None:
        self._tools = tools
        self.called: list[str] = []

    def tools(self) -> list[DownstreamTool]:
        return list(self._tools)

    async def call_tool(
        self, server: str, tool: str, arguments: dict[str, Any] | None = None, timeout_s: float | None = None
    ) -> mcp_types.CallToolResult:
        self.called.append(f"{server}.{tool}")
        return mcp_types.CallToolResult(content=[], structured_content={"ok": True})


TOOLS = [
    downstream("notes", "read_note", annotations={"readOnlyHint": True, "title": "Read a note"}),
    downstream("notes", "delete_note", annotations={"readOnlyHint": False, "destructiveHint": True}),
    downstream("notes", "tag_note"),
]


async def test_a_read_only_policy_hides_and_refuses_tools_not_marked_read_only() -> None:
    source = ListedTools(TOOLS)
    bridge = ToolBridge(source, ToolPolicy(read_only=True))
    assert list(bridge.snapshot.tools) == ["notes.read_note"]
    assert "delete_note" not in bridge.snapshot.description
    run = bridge.for_run(max_tool_calls=10)
    assert await run("notes.read_note", {}) == {"ok": True}
    with pytest.raises(ToolCallError) as caught:
        await run("notes.delete_note", {})
    assert caught.value.error_type == "tool_denied"
    assert "readOnlyHint" in str(caught.value)
    assert source.called == ["notes.read_note"]


async def test_without_read_only_annotations_are_shown_not_enforced() -> None:
    bridge = ToolBridge(ListedTools(TOOLS), ToolPolicy())
    assert sorted(bridge.snapshot.tools) == ["notes.delete_note", "notes.read_note", "notes.tag_note"]
    description = bridge.snapshot.description
    assert "[read-only]" in description
    assert "[destructive]" in description
    assert "Read a note" in description  # the title


def test_the_config_option_is_tools_read_only() -> None:
    assert parse_config({"tools": {"read_only": True}}, environ={}).tools.read_only is True
    assert parse_config({}, environ={}).tools.read_only is False


async def test_refused_calls_are_not_tool_calls_but_spend_the_budget() -> None:
    source = ListedTools(TOOLS)
    run = ToolBridge(source, ToolPolicy()).for_run(max_tool_calls=3)
    assert await run("notes.read_note", {}) == {"ok": True}
    for _ in range(2):
        with pytest.raises(ToolCallError) as caught:
            await run("notes.no_such_note_tool", {})
        assert caught.value.error_type == "tool_error"
    with pytest.raises(ToolCallError) as caught:
        await run("notes.read_note", {})
    assert caught.value.error_type == "tool_call_limit"
    assert run.used == 1 and source.called == ["notes.read_note"]


async def test_describe_takes_a_server_name_and_a_boolean_schemas_flag() -> None:
    run = ToolBridge(ListedTools(TOOLS), ToolPolicy()).for_run(max_tool_calls=10)
    server = await run("@describe", {"name": "notes"})
    assert server["call"] == "notes" and len(server["tools"]) == 3
    full = await run("@describe", {"name": "notes.read_note", "schemas": True})
    assert "input_schema" in full
    with pytest.raises(TypeError, match="schemas=True or False"):
        await run("@describe", {"name": "notes.read_note", "schemas": "yes"})
    page = await run("@search", {"query": "note", "limit": 1})
    assert len(page["matches"]) == 1 and page["total"] == 3 and page["note"].startswith("1 of 3 matches")
