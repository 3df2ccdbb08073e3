"""The MCP server: one tool, ``execute_program``, over stdio, SSE or streamable HTTP.

Failures inside a program are results (``isError: true`` with a typed ``structuredContent``), never protocol
errors. On protocol versions with an MCP session, each connection owns one live interpreter by default; on the
stateless 2026-07-28 protocol the client passes back the ``session`` handle every result carries.
"""

from __future__ import annotations

import logging
from typing import Any

import mcp_types as types
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ptc_mcp import __version__
from ptc_mcp.app import App
from ptc_mcp.executor import ExecuteRequest
from ptc_mcp.results import error_result, output_schema

log = logging.getLogger(__name__)

TOOL_NAME = "execute_program"
SESSION_STATE_KEY = "ptc_mcp.session"
INSTRUCTIONS = (
    "Use execute_program to run one Python program that calls the available tools as async functions and "
    "prints only what you need. Variables persist between calls in the same session."
)


class ExecuteArguments(BaseModel):
    """The input of ``execute_program`` (strict: wrong types are refused, not coerced)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    code: str = Field(
        description="A Python program. Top-level `await` works; the value of a last expression is returned."
    )
    session: str | None = Field(
        default=None, description="The `session` handle of an earlier result, to continue that session."
    )
    reset: bool = Field(default=False, description="Start this session from a fresh interpreter.")
    timeout_s: float | int | None = Field(default=None, gt=0, description="Wall-clock limit for this run, in seconds.")


def input_schema(max_timeout_s: float) -> dict[str, Any]:
    schema = ExecuteArguments.model_json_schema()
    schema.pop("title", None)
    schema["properties"]["timeout_s"]["description"] += f" At most {max_timeout_s:g}."
    return schema


def execute_program_tool(app: App) -> types.Tool:
    return types.Tool(
        name=TOOL_NAME,
        title="Run a Python program that calls tools",
        description=app.bridge.snapshot.description,
        input_schema=input_schema(app.config.limits.timeout_s),
        output_schema=output_schema(),
        annotations=types.ToolAnnotations(
            title="Run a Python program that calls tools", read_only_hint=False, destructive_hint=True
        ),
    )


def _connection(ctx: ServerRequestContext[Any, Any]) -> Any:
    # The SDK keeps per-connection state on a Connection that ServerRequestContext does not expose publicly yet.
    return getattr(ctx.session, "_connection", None)


def _caller_identity() -> str | None:
    token = get_access_token()
    if token is None:
        return None
    return f"{token.client_id}:{token.subject or ''}"


def build_server(app: App) -> Server[Any]:
    """The low-level MCP server for a running ``App``."""

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[execute_program_tool(app)])

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if params.name != TOOL_NAME:
            return error_result(
                "invalid_input", f"unknown tool {params.name!r}; the only tool is {TOOL_NAME}"
            ).to_call_tool_result()
        try:
            arguments = ExecuteArguments.model_validate(params.arguments or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'arguments'}: {error['msg']}" for error in exc.errors()
            )
            return error_result("invalid_input", problems).to_call_tool_result()
        connection = _connection(ctx)
        implicit = (
            connection is not None
            and connection.protocol_version not in MODERN_PROTOCOL_VERSIONS
            and not app.executor.stateless
        )
        handle = arguments.session
        if handle is None and implicit:
            handle = connection.state.get(SESSION_STATE_KEY)
            if handle is not None and app.executor.sessions.get(handle, _caller_identity()) is None:
                del connection.state[SESSION_STATE_KEY]  # expired while idle: start a fresh one
                handle = None
        result = await app.executor.execute(
            ExecuteRequest(
                code=arguments.code,
                session=handle,
                reset=arguments.reset,
                timeout_s=float(arguments.timeout_s) if arguments.timeout_s is not None else None,
                owner=_caller_identity(),
            )
        )
        if implicit and arguments.session is None and result.session and SESSION_STATE_KEY not in connection.state:
            connection.state[SESSION_STATE_KEY] = result.session
            connection.exit_stack.push_async_callback(app.executor.sessions.close, result.session)
        return result.to_call_tool_result()

    return Server(
        "ptc-mcp",
        version=__version__,
        title="ptc-mcp: programmatic tool calling",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def initialization_options(server: Server[Any]) -> Any:
    return server.create_initialization_options(NotificationOptions(tools_changed=True))
