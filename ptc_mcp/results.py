"""What a run returns: ``RunResult`` (the structured content) and its compact text for the model."""

from __future__ import annotations

import logging
from typing import Any, Literal

import mcp_types as types
from pydantic import BaseModel, Field
from pydantic_core import to_json

from ptc_mcp.errors import ErrorType

log = logging.getLogger(__name__)


class RunError(BaseModel):
    """Why a run failed."""

    type: ErrorType
    message: str
    exc_type: str | None = None
    traceback: str | None = None


class RunResult(BaseModel):
    """The full, typed outcome of one ``execute_program`` call (its ``structuredContent``)."""

    status: Literal["ok", "error"]
    stdout: str = ""
    stderr: str = ""
    output_truncated: bool = False
    result: Any = Field(default=None, description="The value of the program's last expression, as JSON.")
    result_repr: str | None = Field(default=None, description="repr() of that value (also for non-JSON values).")
    error: RunError | None = None
    tool_calls: int = 0
    duration_ms: float = 0.0
    session: str | None = Field(default=None, description="Pass this back as `session` to continue the session.")
    notice: str | None = Field(
        default=None,
        description="What the caller should know about the session, e.g. that it started afresh and why.",
    )

    @property
    def error_type(self) -> ErrorType | None:
        return self.error.type if self.error else None

    def to_text(self, *, new_session: bool = False) -> str:
        """Compact text for the model: output, result, one status line.

        ``new_session``: this call started a session nothing keeps for the caller (stateless HTTP, or the 2026-07-28
        protocol over HTTP), so the status line says how to keep it.
        """
        parts: list[str] = []
        if self.stdout:
            parts.append(self.stdout.rstrip("\n"))
        if self.stderr:
            parts.append("[stderr]\n" + self.stderr.rstrip("\n"))
        if self.result_repr is not None:
            parts.append(f"→ {self.result_repr}")
        if self.error is not None:
            parts.append(self.error.traceback.rstrip("\n") if self.error.traceback else self.error.message)
        if self.notice:
            parts.append(f"[note: {self.notice}]")
        status = "ok" if self.error is None else f"error: {self.error.type}"
        line = (
            f"[{status} · {self.tool_calls} tool call{'s' if self.tool_calls != 1 else ''} · {self.duration_ms:.0f} ms"
        )
        if self.session and new_session:
            line += f" · new session {self.session}; pass session= to keep its variables"
        elif self.session:
            line += f" · session {self.session}"
        parts.append(line + "]")
        return "\n".join(parts)

    def to_call_tool_result(self, *, new_session: bool = False) -> types.CallToolResult:
        """The MCP result; checked to encode as UTF-8 JSON here, so a bad field fails this run, never the
        connection (the SDK's writer would die on it and take a stdio server down)."""
        text = self.to_text(new_session=new_session)
        structured = self.model_dump(mode="json")
        try:
            to_json((text, structured))
        except (ValueError, UnicodeError) as exc:  # PydanticSerializationError is a ValueError
            log.error("a run's result could not be encoded: %s", exc)
            failed = error_result("sandbox_failure", f"the result could not be encoded: {exc}", session=self.session)
            return failed.to_call_tool_result()
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)],
            structured_content=structured,
            is_error=self.error is not None,
        )


def error_result(error_type: ErrorType, message: str, *, session: str | None = None) -> RunResult:
    """A result for a run that never reached a sandbox (bad input, busy, no sandbox)."""
    return RunResult(status="error", error=RunError(type=error_type, message=message), session=session)


def output_schema() -> dict[str, Any]:
    """The declared ``outputSchema`` of ``execute_program``: ``RunResult``'s schema as plain JSON Schema.

    MCP clients validate every result against it (the Python SDK with ``jsonschema``), so its shape is paid for on
    every call: pydantic's ``anyOf: [X, {type: null}]`` for optional fields and a ``$ref`` to ``RunError`` made that
    check about 2.5 times as slow as the same constraints written as ``type: [X, "null"]`` with ``RunError`` inline.
    Titles (pydantic's restatement of the field names) go too; descriptions stay.
    """
    schema = RunResult.model_json_schema()
    plain: dict[str, Any] = _plain(schema, schema.get("$defs", {}))
    return plain


_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties", "not")


def _plain(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The schema ``node`` with ``$ref``s inlined, nullable ``anyOf``s as type lists and ``title``s dropped."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        return _plain({**target, **{key: value for key, value in node.items() if key != "$ref"}}, defs)
    variants = node.get("anyOf")
    if isinstance(variants, list) and len(variants) == 2 and {"type": "null"} in variants:
        [other] = [_plain(item, defs) for item in variants if item != {"type": "null"}]
        if isinstance(other.get("type"), str):
            rest = {key: value for key, value in node.items() if key != "anyOf"}
            return _plain({**other, **rest, "type": [other["type"], "null"]}, defs)
    plain: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("$defs", "title"):
            continue
        if key == "properties":
            plain[key] = {name: _plain(schema, defs) for name, schema in value.items()}
        elif key in _SCHEMA_LISTS:
            plain[key] = [_plain(schema, defs) for schema in value]
        elif key in _SCHEMA_VALUES and isinstance(value, dict):
            plain[key] = _plain(value, defs)
        else:
            plain[key] = value  # keywords whose values are data (enum, default, required...)
    return plain
