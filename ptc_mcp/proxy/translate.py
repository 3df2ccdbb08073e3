"""Anthropic Messages request → Bedrock Converse request, and a Converse reply → Anthropic content blocks.

The model on Bedrock sees ``code_execution`` as an ordinary function tool (input ``{"code": ...}``). What happened
*inside* a program (the ``tool_use`` blocks whose ``caller`` is the code execution tool, and their
``tool_result`` blocks) is the program's business, never the model's: those blocks are left out, so tool results
delivered to code cost no input tokens. A ``code_execution_tool_result`` becomes the ``toolResult`` of the
``code_execution`` call it answers.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ptc_mcp.proxy.errors import invalid
from ptc_mcp.proxy.tools import CODE_TOOL_NAME, CODE_TOOL_SCHEMA, ToolSet, code_tool_description

IMAGE_FORMATS = {"image/jpeg": "jpeg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}
STOP_REASONS = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "guardrail_intervened": "refusal",
    "content_filtered": "refusal",
    "model_context_window_exceeded": "model_context_window_exceeded",
}


def new_id(prefix: str) -> str:
    """An Anthropic-style id: ``msg_…``, ``toolu_…``, ``srvtoolu_…``."""
    return prefix + secrets.token_urlsafe(18).replace("-", "A").replace("_", "B")


def programmatic_tool_use_ids(messages: Iterable[Any]) -> set[str]:
    """Ids of ``tool_use`` blocks made by programs (``caller`` other than direct) anywhere in the history."""
    ids: set[str] = set()
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        for block in _blocks(message.get("content")):
            caller = block.get("caller")
            if block.get("type") == "tool_use" and isinstance(caller, dict) and caller.get("type") != "direct":
                ids.add(str(block.get("id")))
    return ids


@dataclass
class _Conversation:
    """Converse messages being built, with ``code_execution`` results waiting for their user turn."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[dict[str, Any]] = field(default_factory=list)
    """toolResult blocks of code executions, placed right after the assistant turn that made the calls."""

    def add(self, role: str, block: dict[str, Any]) -> None:
        if role == "assistant" and self.waiting and not ("toolUse" in block and self._last_role() == "assistant"):
            self._flush()
        if role == "user" and self.waiting:
            self._flush()
        if self.messages and self.messages[-1]["role"] == role:
            self.messages[-1]["content"].append(block)
        else:
            self.messages.append({"role": role, "content": [block]})

    def code_result(self, tool_use_id: str, block: dict[str, Any]) -> None:
        owner = self._owner_of(tool_use_id)
        if owner is None:
            return  # the call it answers is not in the history: nothing to pair it with
        if owner == len(self.messages) - 1:
            self.waiting.append(block)
        else:
            follower = self.messages[owner + 1]
            follower["content"].insert(0, block)

    def finish(self) -> list[dict[str, Any]]:
        self._flush()
        return self.messages

    def _flush(self) -> None:
        if not self.waiting:
            return
        waiting, self.waiting = self.waiting, []
        if self.messages and self.messages[-1]["role"] == "user":
            self.messages[-1]["content"][:0] = waiting
        else:
            self.messages.append({"role": "user", "content": waiting})

    def _last_role(self) -> str | None:
        return self.messages[-1]["role"] if self.messages else None

    def _owner_of(self, tool_use_id: str) -> int | None:
        for index in range(len(self.messages) - 1, -1, -1):
            message = self.messages[index]
            if message["role"] == "assistant" and any(
                block.get("toolUse", {}).get("toolUseId") == tool_use_id for block in message["content"]
            ):
                return index
        return None


def converse_messages(messages: object) -> list[dict[str, Any]]:
    """The Anthropic ``messages`` as Converse ``messages`` (see the module docstring for what is left out)."""
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: expected a non-empty list")
    hidden = programmatic_tool_use_ids(messages)
    conversation = _Conversation()
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise invalid(f"{where}: expected an object with role 'user' or 'assistant'")
        role = str(message["role"])
        for number, block in enumerate(_blocks(message.get("content"), where)):
            _add_block(conversation, role, block, hidden, f"{where}.content.{number}")
    result = conversation.finish()
    if not result:
        raise invalid("messages: nothing to send to the model")
    return result


def _blocks(content: object, where: str = "content") -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise invalid(f"{where}: expected a string or a list of content blocks")
    for number, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise invalid(f"{where}.{number}: expected a content block object with a type")
    return content


def _add_block(conversation: _Conversation, role: str, block: dict[str, Any], hidden: set[str], where: str) -> None:
    kind = block["type"]
    if kind == "text":
        if block.get("text"):
            conversation.add(role, {"text": str(block["text"])})
    elif kind in ("image", "document"):
        conversation.add(role, _media(block, where))
    elif kind in ("thinking", "redacted_thinking"):
        return  # reasoning of an earlier turn is not replayed
    elif role == "assistant" and kind == "tool_use":
        if str(block.get("id")) not in hidden:
            conversation.add(role, _tool_use(block, str(block.get("name", "")), where))
    elif role == "assistant" and kind == "server_tool_use":
        if block.get("name") != CODE_TOOL_NAME:
            raise invalid(f"{where}: server tool {block.get('name')!r} is not supported by this proxy")
        conversation.add(role, _tool_use(block, CODE_TOOL_NAME, where))
    elif role == "assistant" and kind == "code_execution_tool_result":
        tool_use_id = str(block.get("tool_use_id", ""))
        text = render_code_result(block.get("content"))
        conversation.code_result(tool_use_id, {"toolResult": {"toolUseId": tool_use_id, "content": [{"text": text}]}})
    elif role == "user" and kind == "tool_result":
        if str(block.get("tool_use_id")) not in hidden:
            conversation.add(role, _tool_result(block, where))
    else:
        raise invalid(f"{where}: content block type {kind!r} is not supported in a {role} message")


def _tool_use(block: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    tool_input = block.get("input", {})
    if not isinstance(tool_input, dict) or not isinstance(block.get("id"), str):
        raise invalid(f"{where}: a tool use needs a string id and an object input")
    return {"toolUse": {"toolUseId": block["id"], "name": name, "input": tool_input}}


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    content = block.get("content", "")
    items: list[dict[str, Any]] = []
    if isinstance(content, str):
        items.append({"text": content or "(no output)"})
    elif isinstance(content, list):
        for number, part in enumerate(_blocks(content, f"{where}.content")):
            if part["type"] == "text":
                items.append({"text": str(part.get("text", ""))})
            elif part["type"] in ("image", "document"):
                items.append(_media(part, f"{where}.content.{number}"))
            else:
                raise invalid(f"{where}.content.{number}: {part['type']!r} is not supported in a tool result")
    else:
        raise invalid(f"{where}.content: expected a string or a list")
    result: dict[str, Any] = {"toolUseId": str(block.get("tool_use_id", "")), "content": items or [{"text": ""}]}
    if block.get("is_error"):
        result["status"] = "error"
    return {"toolResult": result}


def _media(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid(f"{where}.source: expected an object")
    if block["type"] == "document" and source.get("type") == "text":
        data = str(source.get("data", "")).encode()
        return {"document": {"format": "txt", "name": _doc_name(block), "source": {"bytes": data}}}
    if source.get("type") != "base64":
        raise invalid(f"{where}.source.type: only base64 sources are supported by this proxy")
    try:
        data = base64.b64decode(str(source.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where}.source.data: not valid base64") from None
    media_type = str(source.get("media_type", ""))
    if block["type"] == "image":
        if media_type not in IMAGE_FORMATS:
            raise invalid(f"{where}.source.media_type: {media_type!r} is not a supported image type")
        return {"image": {"format": IMAGE_FORMATS[media_type], "source": {"bytes": data}}}
    if media_type != "application/pdf":
        raise invalid(f"{where}.source.media_type: documents must be application/pdf or text")
    return {"document": {"format": "pdf", "name": _doc_name(block), "source": {"bytes": data}}}


def _doc_name(block: dict[str, Any]) -> str:
    title = "".join(ch for ch in str(block.get("title") or "document") if ch.isalnum() or ch in " -()[]")
    return title.strip()[:100] or "document"


def render_code_result(content: object) -> str:
    """How a code execution's outcome reads to the model: its output, then the exit status or the error."""
    if not isinstance(content, dict):
        return "(no result)"
    if content.get("type") == "code_execution_tool_result_error":
        return f"error: {content.get('error_code', 'unavailable')}"
    parts = []
    if content.get("stdout"):
        parts.append(str(content["stdout"]).rstrip("\n"))
    if content.get("stderr"):
        parts.append("[stderr]\n" + str(content["stderr"]).rstrip("\n"))
    parts.append(f"[return code {content.get('return_code', 0)}]")
    return "\n".join(parts)


def system_blocks(system: object) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"text": system}] if system else []
    if isinstance(system, list):
        texts = []
        for index, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise invalid(f"system.{index}: expected a text block")
            texts.append({"text": str(block.get("text", ""))})
        return texts
    raise invalid("system: expected a string or a list of text blocks")


def tool_config(toolset: ToolSet, tool_choice: object, server_tools: str = "") -> dict[str, Any] | None:
    """Converse ``toolConfig``: ``code_execution`` as a function tool plus the client tools the model may call."""
    specs: list[dict[str, Any]] = []
    if toolset.code_execution:
        specs.append(
            {
                "toolSpec": {
                    "name": CODE_TOOL_NAME,
                    "description": code_tool_description(toolset, server_tools),
                    "inputSchema": {"json": CODE_TOOL_SCHEMA},
                }
            }
        )
    for tool in toolset.direct:
        spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": tool.input_schema}}
        if tool.description:
            spec["description"] = tool.description
        specs.append({"toolSpec": spec})
    if not specs:
        return None
    config: dict[str, Any] = {"tools": specs}
    if isinstance(tool_choice, dict):
        kind = tool_choice.get("type")
        if kind == "any":
            config["toolChoice"] = {"any": {}}
        elif kind == "tool":
            config["toolChoice"] = {"tool": {"name": str(tool_choice.get("name", ""))}}
        elif kind == "auto":
            config["toolChoice"] = {"auto": {}}
        elif kind != "none":
            raise invalid(f"tool_choice.type: {kind!r} is not supported")
    return config


def converse_request(body: dict[str, Any], model_id: str, toolset: ToolSet, server_tools: str = "") -> dict[str, Any]:
    """The whole Converse request for an Anthropic Messages request body (already validated for shape)."""
    inference: dict[str, Any] = {"maxTokens": body["max_tokens"]}
    for source, target in (("temperature", "temperature"), ("top_p", "topP"), ("stop_sequences", "stopSequences")):
        if body.get(source) is not None:
            inference[target] = body[source]
    request: dict[str, Any] = {
        "modelId": model_id,
        "messages": converse_messages(body["messages"]),
        "inferenceConfig": inference,
    }
    system = system_blocks(body.get("system"))
    if system:
        request["system"] = system
    config = tool_config(toolset, body.get("tool_choice"), server_tools)
    if config is not None:
        request["toolConfig"] = config
    return request


@dataclass
class ModelTurn:
    """One Bedrock reply, as Anthropic content blocks."""

    blocks: list[dict[str, Any]]
    stop_reason: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def code_calls(self) -> list[dict[str, Any]]:
        return [block for block in self.blocks if block["type"] == "server_tool_use"]

    @property
    def direct_calls(self) -> list[dict[str, Any]]:
        return [block for block in self.blocks if block["type"] == "tool_use"]


def model_turn(response: dict[str, Any], toolset: ToolSet) -> ModelTurn:
    """A Converse response as Anthropic blocks: text, ``server_tool_use`` for code, ``tool_use`` (direct) otherwise."""
    message = (response.get("output") or {}).get("message") or {}
    blocks: list[dict[str, Any]] = []
    for part in message.get("content") or []:
        if part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif "toolUse" in part:
            use = part["toolUse"]
            tool_input = use.get("input")
            tool_input = tool_input if isinstance(tool_input, dict) else {}
            if use.get("name") == CODE_TOOL_NAME and toolset.code_execution:
                blocks.append(
                    {"type": "server_tool_use", "id": new_id("srvtoolu_"), "name": CODE_TOOL_NAME, "input": tool_input}
                )
            else:
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": new_id("toolu_"),
                        "name": str(use.get("name", "")),
                        "input": tool_input,
                        "caller": {"type": "direct"},
                    }
                )
    usage = response.get("usage") or {}
    reason = STOP_REASONS.get(str(response.get("stopReason", "end_turn")), "end_turn")
    if any(block["type"] in ("tool_use", "server_tool_use") for block in blocks):
        reason = "tool_use"
    return ModelTurn(
        blocks=blocks,
        stop_reason=reason,
        input_tokens=int(usage.get("inputTokens", 0)),
        output_tokens=int(usage.get("outputTokens", 0)),
        cache_read_tokens=int(usage.get("cacheReadInputTokens", 0)),
        cache_write_tokens=int(usage.get("cacheWriteInputTokens", 0)),
    )
