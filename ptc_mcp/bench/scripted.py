"""Scripted models: replay the trajectory a competent model would produce, decided from the conversation.

A *policy* is a function ``(Transcript) -> Step``: it reads what the tools returned so far and says what the
model does next, either some tool calls (``calls(call(...), ...)``; several in one step are parallel tool
uses, as models emit them) or the final ``Answer``. ``TrajectoryModel`` plugs a policy into the Bedrock
emulator, so the agent talks real Converse (through boto3) to it and calls real MCP servers; the transcript
is rebuilt from each request, exactly as a model would read it.

Tool names in a policy are the original ``"server.tool"`` (traditional) or ``"execute_program"`` (ptc).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ptc_mcp.agent.toolsets import converse_tool_name
from ptc_mcp.emulators.bedrock import (
    ConverseError,
    ConverseRequest,
    ModelReply,
    new_tool_use_id,
    text_block,
    tool_use_block,
)

__all__ = [
    "Answer",
    "Observation",
    "Policy",
    "Step",
    "ToolCall",
    "TrajectoryModel",
    "Transcript",
    "call",
    "calls",
]


@dataclass(frozen=True)
class ToolCall:
    """One tool use: ``name`` is ``"server.tool"`` or a Converse tool name; ``arguments`` its input."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """The final assistant message."""

    text: str


Step = Answer | tuple[ToolCall, ...]
Policy = Callable[["Transcript"], Step]


def call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(name, arguments)


def calls(*items: ToolCall) -> tuple[ToolCall, ...]:
    """Tool uses of one assistant message (the agent runs them concurrently)."""
    return tuple(items)


def _parse(block: Mapping[str, Any]) -> Any:
    if "json" in block:
        return block["json"]
    text = str(block.get("text", ""))
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class Observation:
    """One tool result as the model read it."""

    name: str
    arguments: Mapping[str, Any]
    blocks: tuple[Any, ...]
    """Each content block, parsed as JSON when it is JSON."""
    text: str
    is_error: bool

    @property
    def value(self) -> Any:
        """The one block's value (``None`` for no block; a list of values for several)."""
        if not self.blocks:
            return None
        return self.blocks[0] if len(self.blocks) == 1 else list(self.blocks)

    @property
    def items(self) -> list[Any]:
        """The result as a list: a JSON list as is, else one item per block (MCP servers send a list's items
        as separate text blocks)."""
        if len(self.blocks) == 1 and isinstance(self.blocks[0], list):
            return list(self.blocks[0])
        return [block for block in self.blocks if block is not None]

    def is_tool(self, name: str) -> bool:
        return self.name == name or self.name == _converse_name(name)


def _converse_name(name: str) -> str:
    if "." not in name:
        return name
    server, tool = name.split(".", 1)
    return converse_tool_name(server, tool)


@dataclass(frozen=True)
class Transcript:
    """What the model has seen: the user's request and the tool results of each of its earlier steps."""

    prompt: str
    rounds: tuple[tuple[Observation, ...], ...]

    @property
    def round(self) -> int:
        """How many tool-use steps the model has taken so far (0 on the first call)."""
        return len(self.rounds)

    @property
    def last(self) -> tuple[Observation, ...]:
        return self.rounds[-1] if self.rounds else ()

    def results(self, name: str) -> list[Observation]:
        """Every result of tool ``name`` so far, in order."""
        return [obs for step in self.rounds for obs in step if obs.is_tool(name)]

    @classmethod
    def from_request(cls, request: ConverseRequest) -> Transcript:
        """Rebuild the transcript of the current user turn from a Converse request."""
        messages = request.messages
        start = 0
        for index, message in enumerate(messages):
            if message["role"] == "user" and any("text" in block for block in message["content"]):
                start = index
        prompt = "\n".join(block["text"] for block in messages[start]["content"] if "text" in block)
        rounds: list[tuple[Observation, ...]] = []
        pending: dict[str, dict[str, Any]] = {}
        for message in messages[start + 1 :]:
            if message["role"] == "assistant":
                pending = {b["toolUse"]["toolUseId"]: b["toolUse"] for b in message["content"] if "toolUse" in b}
                continue
            step = []
            for block in message["content"]:
                if "toolResult" not in block:
                    continue
                result = block["toolResult"]
                use = pending.get(result["toolUseId"], {})
                content = result.get("content", [])
                step.append(
                    Observation(
                        name=str(use.get("name", "")),
                        arguments=dict(use.get("input") or {}),
                        blocks=tuple(_parse(item) for item in content),
                        text="\n".join(str(item.get("text", json.dumps(item.get("json")))) for item in content),
                        is_error=result.get("status") == "error",
                    )
                )
            rounds.append(tuple(step))
        return cls(prompt=prompt, rounds=tuple(rounds))


class TrajectoryModel:
    """A ``ScriptedModel`` for the Bedrock emulator that replays ``policy``.

    With ``one_call_per_turn`` a step of several tool calls is emitted one call per assistant message (as
    models without parallel tool use do); the policy still sees its steps grouped as it wrote them. A step
    that calls a tool the request does not offer is answered with ``ModelErrorException``: a trajectory
    written for one mode cannot silently run in the other.
    """

    def __init__(self, policy: Policy, *, one_call_per_turn: bool = False) -> None:
        self.policy = policy
        self.one_call_per_turn = one_call_per_turn

    def reply(self, request: ConverseRequest) -> ModelReply:
        transcript = Transcript.from_request(request)
        step = self._next_single(transcript) if self.one_call_per_turn else self.policy(transcript)
        if isinstance(step, Answer):
            return ModelReply([text_block(step.text)])
        offered = set(request.tool_names)
        blocks: list[dict[str, Any]] = []
        for item in step:
            name = _converse_name(item.name)
            if name not in offered:
                raise ConverseError(
                    "ModelErrorException", f"the scripted trajectory calls {item.name!r}, which is not offered"
                )
            blocks.append(tool_use_block(name, item.arguments, new_tool_use_id()))
        if not blocks:
            raise ConverseError("ModelErrorException", "the scripted trajectory returned an empty step")
        return ModelReply(blocks)

    def _next_single(self, transcript: Transcript) -> Step:
        observed = [obs for step in transcript.rounds for obs in step]
        grouped: list[tuple[Observation, ...]] = []
        used = 0
        while True:
            step = self.policy(Transcript(transcript.prompt, tuple(grouped)))
            if isinstance(step, Answer):
                return step
            if used + len(step) > len(observed):
                return (step[len(observed) - used],)
            grouped.append(tuple(observed[used : used + len(step)]))
            used += len(step)
