"""The agent loop: Converse with tools until the model answers, counting model calls and tokens.

Tokens come from the ``usage`` each Converse response reports: Bedrock's own counts on AWS, the emulator's
BPE counts against a scripted model. The loop is the same either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from ptc_mcp.agent.converse import ConverseClient
from ptc_mcp.agent.toolsets import ToolOutcome, ToolSet

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "Agent",
    "AgentEvent",
    "ModelFinished",
    "ModelStarted",
    "ToolFinished",
    "ToolStarted",
    "TurnResult",
    "Usage",
]

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful assistant with access to tools. Use them to get the facts; do not guess. "
    "When you have the answer, reply with it concisely, including the exact figures."
)


@dataclass
class Usage:
    """Tokens and model calls, summed over calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.model_calls += other.model_calls

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "model_calls": self.model_calls,
        }


@dataclass(frozen=True)
class ModelStarted:
    call: int


@dataclass(frozen=True)
class ModelFinished:
    call: int
    usage: Usage
    stop_reason: str
    seconds: float


@dataclass(frozen=True)
class ToolStarted:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolFinished:
    name: str
    outcome: ToolOutcome
    seconds: float


AgentEvent = ModelStarted | ModelFinished | ToolStarted | ToolFinished


@dataclass
class TurnResult:
    """One user turn: the final text and what it cost."""

    text: str
    usage: Usage
    tool_calls: int
    wall_s: float
    stop_reason: str


@dataclass
class Agent:
    """A Converse conversation with one tool set; ``await agent.ask(text)`` runs one user turn.

    Tool uses of one assistant message run concurrently, and their results go back in order.
    """

    model: ConverseClient
    tools: ToolSet
    system: str = DEFAULT_SYSTEM_PROMPT
    max_model_calls: int = 25
    max_tokens: int = 4096
    on_event: Callable[[AgentEvent], None] | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    """Everything this conversation has cost so far."""

    def _emit(self, event: AgentEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _request(self) -> dict[str, Any]:
        request: dict[str, Any] = {
            "messages": self.messages,
            "inferenceConfig": {"maxTokens": self.max_tokens},
        }
        if self.system:
            request["system"] = [{"text": self.system}]
        specs = self.tools.specs()
        if specs:
            request["toolConfig"] = {"tools": specs}
        return request

    async def ask(self, text: str) -> TurnResult:
        started = time.perf_counter()
        turn = Usage()
        tool_calls = 0
        self.messages.append({"role": "user", "content": [{"text": text}]})
        stop_reason = "max_model_calls"
        final = ""
        while turn.model_calls < self.max_model_calls:
            call_number = turn.model_calls + 1
            self._emit(ModelStarted(call_number))
            call_started = time.perf_counter()
            response = await self.model.converse(self._request())
            reported = response.get("usage", {})
            call_usage = Usage(int(reported.get("inputTokens", 0)), int(reported.get("outputTokens", 0)), 1)
            turn.add(call_usage)
            self.usage.add(call_usage)
            stop_reason = str(response.get("stopReason", "end_turn"))
            self._emit(ModelFinished(call_number, call_usage, stop_reason, time.perf_counter() - call_started))
            message = response["output"]["message"]
            self.messages.append({"role": "assistant", "content": message["content"]})
            uses = [block["toolUse"] for block in message["content"] if "toolUse" in block]
            final = "\n".join(block["text"] for block in message["content"] if "text" in block)
            if not uses:
                break
            tool_calls += len(uses)
            self.messages.append({"role": "user", "content": await self._run_tools(uses)})
        return TurnResult(final, turn, tool_calls, time.perf_counter() - started, stop_reason)

    async def _run_tools(self, uses: list[dict[str, Any]]) -> list[dict[str, Any]]:
        outcomes: list[ToolOutcome | None] = [None] * len(uses)

        async def run(index: int, use: dict[str, Any]) -> None:
            self._emit(ToolStarted(use["name"], dict(use.get("input") or {})))
            began = time.perf_counter()
            outcome = await self.tools.call(use["name"], dict(use.get("input") or {}))
            outcomes[index] = outcome
            self._emit(ToolFinished(use["name"], outcome, time.perf_counter() - began))

        async with anyio.create_task_group() as tg:
            for index, use in enumerate(uses):
                tg.start_soon(run, index, use)
        blocks = []
        for use, outcome in zip(uses, outcomes, strict=True):
            assert outcome is not None
            result: dict[str, Any] = {"toolUseId": use["toolUseId"], "content": outcome.content}
            if outcome.is_error:
                result["status"] = "error"
            blocks.append({"toolResult": result})
        return blocks
