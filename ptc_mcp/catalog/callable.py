"""Tools a program cannot call as plain tool calls, and why.

A tool whose server marks it ``execution.taskSupport: "required"`` runs only as an MCP task (a call with task
augmentation). ptc-mcp makes plain calls, so such a tool is left out of everything the model sees; ``ptc-mcp
check`` lists it with the reason, and a call to it anyway fails with that reason.
"""

from __future__ import annotations

from collections.abc import Iterable

import mcp_types

from ptc_mcp.catalog.model import DownstreamTool

__all__ = ["not_callable_reason", "split_callable"]


def not_callable_reason(tool: mcp_types.Tool) -> str | None:
    """Why a program cannot call ``tool``, or ``None`` when it can."""
    execution = tool.execution
    if execution is not None and execution.task_support == "required":
        return 'task-only (taskSupport "required"): it runs only as an MCP task, and ptc-mcp makes plain calls'
    return None


def split_callable(tools: Iterable[DownstreamTool]) -> tuple[list[DownstreamTool], dict[str, str]]:
    """The tools a program can call, and ``"server.tool"`` → why for the others."""
    callable_tools: list[DownstreamTool] = []
    excluded: dict[str, str] = {}
    for item in tools:
        reason = not_callable_reason(item.tool)
        if reason is None:
            callable_tools.append(item)
        else:
            excluded[item.qualified_name] = reason
    return callable_tools, excluded
