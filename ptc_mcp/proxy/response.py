"""Anthropic response shapes: content blocks, usage, the message itself, and tool results for programs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ptc_mcp.proxy.containers import ClientCall, RunOutcome
from ptc_mcp.proxy.translate import ModelTurn


def program_tool_use(call: ClientCall, caller_type: str, server_tool_use_id: str) -> dict[str, Any]:
    """A ``tool_use`` block for a call a program made (its ``caller`` names the code execution)."""
    return {
        "type": "tool_use",
        "id": call.id,
        "name": call.name,
        "input": call.input,
        "caller": {"type": caller_type, "tool_id": server_tool_use_id},
    }


def code_result(server_tool_use_id: str, outcome: RunOutcome) -> dict[str, Any]:
    return {"type": "code_execution_tool_result", "tool_use_id": server_tool_use_id, "content": outcome.content()}


def invalid_code_input(server_tool_use_id: str) -> dict[str, Any]:
    return code_result(server_tool_use_id, RunOutcome("", "", 1, error_code="invalid_tool_input"))


@dataclass
class Usage:
    """The real Bedrock usage of this response's model calls (what programs received is not input to the model)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def add(self, turn: ModelTurn) -> None:
        self.input_tokens += turn.input_tokens
        self.output_tokens += turn.output_tokens
        self.cache_read_input_tokens += turn.cache_read_tokens
        self.cache_creation_input_tokens += turn.cache_write_tokens

    def to_json(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }


def message(
    message_id: str,
    model: str,
    content: list[dict[str, Any]],
    stop_reason: str | None,
    usage: Usage,
    container: dict[str, Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage.to_json(),
    }
    if container is not None:
        body["container"] = container
    return body


def tool_result_value(block: dict[str, Any]) -> tuple[Any, bool]:
    """What a program's ``await tool(...)`` gets from a ``tool_result`` block: ``(value, is_error)``.

    Text that is JSON becomes its value, other text stays a string; several blocks become a list; images and
    documents become ``Binary`` values. An error's value is its text (the program sees ``ToolError``).
    """
    content = block.get("content", "")
    is_error = bool(block.get("is_error"))
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    values: list[Any] = []
    texts: list[str] = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
            values.append(_parse(str(part.get("text", ""))))
        elif part.get("type") in ("image", "document"):
            source = part.get("source") or {}
            values.append(
                {
                    "__ptc_binary__": {
                        "mime_type": str(source.get("media_type", "application/octet-stream")),
                        "data": str(source.get("data", "")),
                    }
                }
            )
    if is_error:
        return ("\n".join(texts) or "the tool reported an error", True)
    if not values:
        return (None, False)
    return (values[0] if len(values) == 1 else values, False)


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
