"""Elicitation in the terminal: ``ptc-mcp chat`` answers approvals and servers' forms by asking the person.

The question goes to stderr; answers are read a line at a time through ``read_line`` (the chat's own reader of
stdin). An approval (ptc-mcp's one-checkbox form) takes ``y`` (allow this call), ``a`` (allow this tool for the
rest of the run) or anything else (decline). Another form first asks whether to answer at all, then each field by
its title, converted to the field's type. URL elicitation shows the URL and asks whether it was completed. End of
input cancels.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import mcp_types as types
from mcp.client.session import ClientRequestContext

from ptc_mcp.approvals import REMEMBER_FIELD

__all__ = ["TerminalQuestions"]

ReadLine = Callable[[str], Awaitable[str | None]]
Answer = str | int | float | bool | list[str] | None


class TerminalQuestions:
    """An MCP ``elicitation_callback`` that asks the person at the terminal."""

    def __init__(self, read_line: ReadLine, stream: TextIO) -> None:
        self._read_line = read_line
        self._stream = stream

    async def __call__(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        self._say(params.message)
        if isinstance(params, types.ElicitRequestURLParams):
            self._say(f"Open: {params.url}")
            reply = await self._read_line("done? [y/N] ")
            return _result(reply, accept=reply is not None and reply.strip().lower() == "y")
        properties: dict[str, Any] = params.requested_schema.get("properties") or {}
        if set(properties) == {REMEMBER_FIELD}:
            reply = await self._read_line("allow? [y]es / [a]lways in this run / [N]o: ")
            choice = (reply or "").strip().lower()
            if reply is None or choice not in ("y", "yes", "a", "always"):
                return _result(reply, accept=False)
            return types.ElicitResult(action="accept", content={REMEMBER_FIELD: choice in ("a", "always")})
        reply = await self._read_line("answer? [y/N] ")
        if reply is None or reply.strip().lower() not in ("y", "yes"):
            return _result(reply, accept=False)
        content: dict[str, Answer] = {}
        for name, field in properties.items():
            line = await self._read_line(f"  {field.get('title') or name}: ")
            if line is None:
                return types.ElicitResult(action="cancel")
            if line.strip() == "" and "default" not in field:
                continue
            content[name] = _convert(line.strip() or str(field["default"]), field)
        return types.ElicitResult(action="accept", content=content)

    def _say(self, text: str) -> None:
        self._stream.write(f"  ? {text}\n")
        self._stream.flush()


def _result(reply: str | None, *, accept: bool) -> types.ElicitResult:
    if reply is None:
        return types.ElicitResult(action="cancel")
    return types.ElicitResult(action="accept" if accept else "decline")


def _convert(text: str, field: dict[str, Any]) -> Answer:
    kind = field.get("type")
    try:
        if kind == "boolean":
            return text.lower() in ("y", "yes", "true", "1")
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError:
        return text
    if kind == "array":
        return [part.strip() for part in text.split(",") if part.strip()]
    return text
