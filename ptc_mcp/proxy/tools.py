"""The request's ``tools``: the code execution tool, client tools and who may call them.

Also what the Bedrock model is told about the code execution tool (``code_tool_description``) and the Python
the proxy runs in a container so that client tools are ``async`` functions of the program (``client_prelude``).
"""

from __future__ import annotations

import hashlib
import json
import keyword
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ptc_mcp.proxy.errors import invalid

CODE_EXECUTION_TYPES = ("code_execution_20250825", "code_execution_20260120", "code_execution_20260521")
"""Code execution tool versions that support programmatic tool calling."""

PTC_BETA = "advanced-tool-use-2025-11-20"
"""The ``anthropic-beta`` value that ``code_execution_20250825`` needs for programmatic tool calling."""

CODE_TOOL_NAME = "code_execution"
CLIENT_CALL_PREFIX = "@client/"
"""How the prelude names a client tool when it calls the host (MCP tools are always ``server.tool``)."""

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


@dataclass(frozen=True)
class ClientTool:
    """A tool the client executes: called by the model directly, by programs, or both."""

    name: str
    description: str
    input_schema: dict[str, Any]
    direct: bool
    programmatic: bool

    @property
    def function_name(self) -> str:
        """The name of the tool's ``async`` function in programs: an identifier (``-`` → ``_``, keywords get ``_``)."""
        name = re.sub(r"\W", "_", self.name)
        if name[0].isdigit():
            name = "_" + name
        return name + "_" if keyword.iskeyword(name) else name

    @property
    def parameters(self) -> list[str]:
        """Parameter names in schema order: positional arguments bind to them in this order."""
        properties = self.input_schema.get("properties")
        return [str(key) for key in properties] if isinstance(properties, Mapping) else []

    def signature(self) -> str:
        properties = self.input_schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = set(self.input_schema.get("required") or [])
        parts = []
        for name, schema in properties.items():
            kind = _python_type(schema)
            parts.append(f"{name}: {kind}" if name in required else f"{name}: {kind} = None")
        return f"async def {self.function_name}({', '.join(parts)})"


@dataclass(frozen=True)
class ToolSet:
    """The tools of one request."""

    code_execution: str | None
    """The code execution tool's ``type`` (which is also the ``caller.type`` of its tool calls), or ``None``."""
    tools: tuple[ClientTool, ...]

    @property
    def direct(self) -> list[ClientTool]:
        return [tool for tool in self.tools if tool.direct]

    @property
    def programmatic(self) -> list[ClientTool]:
        return [tool for tool in self.tools if tool.programmatic] if self.code_execution else []

    def by_name(self, name: str) -> ClientTool | None:
        return next((tool for tool in self.tools if tool.name == name), None)


def parse_tools(raw: object, betas: Sequence[str]) -> ToolSet:
    """Validate the request's ``tools``; raises ``ApiError`` (``invalid_request_error``) naming the problem."""
    if raw is None:
        return ToolSet(None, ())
    if not isinstance(raw, list):
        raise invalid("tools: expected a list")
    code_execution: str | None = None
    tools: list[ClientTool] = []
    names: set[str] = set()
    for index, entry in enumerate(raw):
        where = f"tools.{index}"
        if not isinstance(entry, dict):
            raise invalid(f"{where}: expected an object")
        kind = entry.get("type")
        if isinstance(kind, str) and kind.startswith("code_execution_"):
            if kind not in CODE_EXECUTION_TYPES:
                raise invalid(f"{where}.type: {kind!r} is not supported; use one of {', '.join(CODE_EXECUTION_TYPES)}")
            if entry.get("name") != CODE_TOOL_NAME:
                raise invalid(f"{where}.name: the code execution tool must be named {CODE_TOOL_NAME!r}")
            if code_execution is not None:
                raise invalid(f"{where}: only one code execution tool may be given")
            code_execution = kind
            continue
        if kind not in (None, "custom"):
            raise invalid(f"{where}.type: {kind!r} is not supported here (only client tools and code execution)")
        tools.append(_client_tool(entry, where))
        if tools[-1].name in names or tools[-1].name == CODE_TOOL_NAME:
            raise invalid(f"{where}.name: tool names must be unique ({tools[-1].name!r})")
        names.add(tools[-1].name)
    toolset = ToolSet(code_execution, tuple(tools))
    programmatic = [tool for tool in tools if tool.programmatic]
    if programmatic and code_execution is None:
        raise invalid(
            f"tools: {programmatic[0].name!r} may be called from code execution, but no code execution tool is given"
        )
    if programmatic and code_execution == "code_execution_20250825" and PTC_BETA not in betas:
        raise invalid(
            "allowed_callers with code_execution_20250825 needs the header "
            f"'anthropic-beta: {PTC_BETA}' (or use code_execution_20260120, which needs none)"
        )
    functions: dict[str, str] = {}
    for tool in programmatic:
        other = functions.setdefault(tool.function_name, tool.name)
        if other != tool.name:
            raise invalid(f"tools: {other!r} and {tool.name!r} map to the same Python name {tool.function_name!r}")
    return toolset


def _client_tool(entry: dict[str, Any], where: str) -> ClientTool:
    name = entry.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise invalid(f"{where}.name: must match {_TOOL_NAME.pattern}")
    schema = entry.get("input_schema")
    if not isinstance(schema, dict):
        raise invalid(f"{where}.input_schema: expected a JSON Schema object")
    callers = entry.get("allowed_callers", ["direct"])
    if not isinstance(callers, list) or not callers:
        raise invalid(f"{where}.allowed_callers: expected a non-empty list")
    for caller in callers:
        if caller != "direct" and caller not in CODE_EXECUTION_TYPES:
            raise invalid(f"{where}.allowed_callers: unknown caller {caller!r}")
    description = entry.get("description") or ""
    if not isinstance(description, str):
        raise invalid(f"{where}.description: expected a string")
    return ClientTool(
        name=name,
        description=description,
        input_schema=schema,
        direct="direct" in callers,
        programmatic=any(caller in CODE_EXECUTION_TYPES for caller in callers),
    )


def _python_type(schema: object) -> str:
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    return {
        "string": "str",
        "integer": "int",
        "number": "float",
        "boolean": "bool",
        "array": "list",
        "object": "dict",
    }.get(kind if isinstance(kind, str) else "", "Any")


CODE_TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"code": {"type": "string", "description": "The Python program to run."}},
    "required": ["code"],
}


def code_tool_description(toolset: ToolSet, server_tools: str = "") -> str:
    """What the model is told about ``code_execution``: the calling convention and the callable tools.

    Deterministic (same tools → same text), so prompt caches keep working.
    """
    lines = [
        "Run a Python 3 program in a sandbox. Only what the program prints (stdout and stderr) comes back to you,",
        "so filter, join and compute in Python and print a short answer. Top-level `await` works. Variables,",
        "functions and imports persist between runs in the same container. There is no network.",
    ]
    programmatic = toolset.programmatic
    if programmatic:
        lines += [
            "",
            "These tools are async functions in the program. Call them with keyword (or positional) arguments and",
            "`await` them; run several at once with `await asyncio.gather(...)`. A tool returns its result as a",
            "Python value (JSON results are parsed, anything else is a string). A failed tool raises `ToolError`",
            "(its message says why); a call nobody answers in time raises `TimeoutError`.",
            "",
        ]
        for tool in programmatic:
            lines.append(f"{tool.signature()}:")
            summary = " ".join(tool.description.split())
            lines.append(f"    {summary}" if summary else "    (no description)")
    if server_tools:
        lines += ["", server_tools]
    return "\n".join(lines)


def prelude_key(toolset: ToolSet) -> str:
    """Identifies the client-tool functions a container has bound (rebinding only when they change)."""
    spec = [[tool.function_name, tool.name, tool.parameters] for tool in toolset.programmatic]
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


_PRELUDE = """
def __ptc_client_tools__(specs, call_tool=call_tool, ToolError=ToolError):
    def make(function, name, params, doc):
        async def tool(*args, **kwargs):
            if args:
                if len(args) == 1 and not kwargs and isinstance(args[0], dict) and len(params) != 1:
                    kwargs = dict(args[0])
                elif len(args) > len(params):
                    message = "%s() takes %d positional arguments but %d were given"
                    raise TypeError(message % (function, len(params), len(args)))
                else:
                    for param, value in zip(params, args):
                        if param in kwargs:
                            raise TypeError("%s() got multiple values for argument %r" % (function, param))
                        kwargs[param] = value
            try:
                return await call_tool(PREFIX + name, kwargs)
            except ToolError as exc:
                if exc.error_type == "timeout":
                    raise TimeoutError(exc.message) from None
                raise
        tool.__name__ = tool.__qualname__ = function
        tool.__doc__ = doc
        return tool
    bound = {}
    for function, name, params, doc in specs:
        bound[function] = make(function, name, params, doc)
    return bound

globals().update(__ptc_client_tools__(SPECS))
del __ptc_client_tools__
"""


def client_prelude(toolset: ToolSet) -> str:
    """Python that binds every programmatic client tool as an ``async`` function in the program's namespace."""
    specs = [
        [tool.function_name, tool.name, tool.parameters, f"{tool.signature()}\n\n{tool.description}"]
        for tool in toolset.programmatic
    ]
    return _PRELUDE.replace("PREFIX", repr(CLIENT_CALL_PREFIX)).replace("SPECS", repr(specs))
