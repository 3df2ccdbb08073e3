"""Anthropic's streaming event sequence for a response whose blocks arrive whole.

``message_start`` → per block ``content_block_start`` / ``content_block_delta``… / ``content_block_stop`` →
``message_delta`` (``stop_reason``, usage, and ``delta.container``) → ``message_stop``; ``ping`` while code runs;
an ``error`` event if the request fails after the stream began.
"""

from __future__ import annotations

import json
from typing import Any

from ptc_mcp.proxy.errors import ApiError
from ptc_mcp.proxy.response import Usage

TEXT_CHUNK = 400
"""Text is sent in deltas of at most this many characters."""


def event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def message_start(message_id: str, model: str) -> bytes:
    return event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": Usage().to_json(),
            },
        },
    )


def ping() -> bytes:
    return event("ping", {"type": "ping"})


def block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    """The events of one finished content block."""
    kind = block["type"]
    events: list[bytes] = []
    if kind == "text":
        events.append(_start(index, {"type": "text", "text": ""}))
        text = str(block.get("text", ""))
        for offset in range(0, len(text), TEXT_CHUNK):
            delta = {"type": "text_delta", "text": text[offset : offset + TEXT_CHUNK]}
            events.append(event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
    elif kind in ("tool_use", "server_tool_use"):
        events.append(_start(index, {**block, "input": {}}))
        partial = json.dumps(block.get("input", {}), ensure_ascii=False)
        delta = {"type": "input_json_delta", "partial_json": partial}
        events.append(event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
    else:
        events.append(_start(index, block))
    events.append(event("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def _start(index: int, block: dict[str, Any]) -> bytes:
    return event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def message_end(stop_reason: str, usage: Usage, container: dict[str, Any] | None) -> list[bytes]:
    delta: dict[str, Any] = {"stop_reason": stop_reason, "stop_sequence": None}
    if container is not None:
        delta["container"] = container
    return [
        event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage.to_json()}),
        event("message_stop", {"type": "message_stop"}),
    ]


def error(exc: ApiError) -> bytes:
    return event("error", exc.body())
