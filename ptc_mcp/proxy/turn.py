"""One ``POST /v1/messages``: model calls on Bedrock, code executions in containers, pauses and continuations.

The proxy is stateless about the conversation (the client sends the whole history every time) and stateful only
about containers: a code execution that paused on client tool calls lives in its container until the
continuation answers them.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ptc_mcp.proxy.containers import Container, ContainerRegistry, ProgramRun
from ptc_mcp.proxy.errors import ApiError, invalid
from ptc_mcp.proxy.models import ModelClient, ModelMap
from ptc_mcp.proxy.response import Usage, code_result, invalid_code_input, program_tool_use, tool_result_value
from ptc_mcp.proxy.tools import ToolSet, parse_tools
from ptc_mcp.proxy.translate import converse_request, model_turn, programmatic_tool_use_ids

log = logging.getLogger(__name__)

MAX_MODEL_CALLS = 24
"""Model calls in one response before it ends with ``pause_turn`` (send the response back to continue)."""

Emit = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Proxy:
    """Everything a request needs: the model, the containers, and how MCP tools read to the model."""

    models: ModelClient
    registry: ContainerRegistry
    model_map: ModelMap = field(default_factory=ModelMap)
    api_keys: frozenset[str] = frozenset()
    server_tools_description: str = ""
    peers: dict[str, str] = field(default_factory=dict)
    """Other instances by tag (``routing.py``): requests for their containers are forwarded to them."""


@dataclass
class TurnResult:
    stop_reason: str
    usage: Usage
    container: dict[str, Any] | None


@dataclass
class Turn:
    """A validated request, ready to run."""

    body: dict[str, Any]
    toolset: ToolSet
    model_id: str
    container_id: str | None


def validate(body: object, betas: Sequence[str], model_map: ModelMap) -> Turn:
    """Check the request's shape; raises ``ApiError`` naming the field."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model: field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise invalid("max_tokens: expected a positive integer")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise invalid("messages: expected a non-empty list")
    toolset = parse_tools(body.get("tools"), betas)
    return Turn(body=body, toolset=toolset, model_id=model_map.resolve(model), container_id=container_id(body))


def container_id(body: dict[str, Any]) -> str | None:
    raw = body.get("container")
    if raw is None:
        return None
    if isinstance(raw, str) and raw:
        return raw
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"]:
        return str(raw["id"])
    if isinstance(raw, dict) and raw.get("id") is None:
        return None  # {"skills": ...} without an id: a new container
    raise invalid("container: expected a container id or an object with an `id`")


class TurnRunner:
    """Runs one request, handing each finished content block to ``emit`` as soon as it is known."""

    def __init__(self, proxy: Proxy, turn: Turn, owner: str | None, emit: Emit) -> None:
        self.proxy = proxy
        self.turn = turn
        self.owner = owner
        self.emit = emit
        self.blocks: list[dict[str, Any]] = []
        self.usage = Usage()
        self.container: Container | None = None

    async def run(self) -> TurnResult:
        registry = self.proxy.registry
        messages = self.turn.body["messages"]
        if self.turn.container_id is not None:
            self.container = registry.get(self.turn.container_id, self.owner)
        else:
            self._refuse_orphan_results(messages)
        container = self.container
        if container is not None and container.lock.locked():
            raise invalid(f"container {container.id!r} is in use by another request; send one request at a time")
        try:
            if container is not None:
                await container.lock.acquire()
            return await self._run()
        finally:
            if self.container is not None:
                self.container.touch()
                if self.container.lock.locked():
                    self.container.lock.release()

    def _refuse_orphan_results(self, messages: list[Any]) -> None:
        last = messages[-1]
        hidden = programmatic_tool_use_ids(messages)
        if isinstance(last, dict) and isinstance(last.get("content"), list):
            for block in last["content"]:
                if not isinstance(block, dict) or block.get("type") != "tool_result":
                    continue
                if block.get("tool_use_id") in hidden:
                    raise invalid(
                        "container is required when there are pending tool uses generated by code execution: "
                        "pass the `container` id of the previous response"
                    )

    async def _run(self) -> TurnResult:
        toolset = self.turn.toolset
        container = self.container
        if container is not None and container.run is not None:
            paused = await self._continue(container.run)
            if paused:
                return self._result("tool_use")
        for block in self._unexecuted_code_calls():
            if await self._execute(block):
                return self._result("tool_use")
        for _ in range(MAX_MODEL_CALLS):
            turn = await self._call_model()
            for block in turn.blocks:
                await self._emit(block)
            if not turn.code_calls or not toolset.code_execution:
                return self._result(turn.stop_reason)
            for block in turn.code_calls:
                if await self._execute(block):
                    return self._result("tool_use")
            if turn.direct_calls:
                return self._result("tool_use")
        return self._result("pause_turn")

    def _result(self, stop_reason: str) -> TurnResult:
        return TurnResult(stop_reason, self.usage, self.container.describe() if self.container else None)

    async def _emit(self, block: dict[str, Any]) -> None:
        self.blocks.append(block)
        await self.emit(block)

    async def _call_model(self) -> Any:
        body = dict(self.turn.body)
        if self.blocks:
            body["messages"] = [*body["messages"], {"role": "assistant", "content": self.blocks}]
        request = converse_request(body, self.turn.model_id, self.turn.toolset, self.proxy.server_tools_description)
        response = await self.proxy.models.converse(request)
        turn = model_turn(response, self.turn.toolset)
        self.usage.add(turn)
        return turn

    async def _continue(self, run: ProgramRun) -> bool:
        """Deliver the continuation's tool results to the paused program; True if it paused again."""
        messages = self.turn.body["messages"]
        last = messages[-1]
        content = last.get("content") if isinstance(last, dict) else None
        if (
            not isinstance(last, dict)
            or last.get("role") != "user"
            or not isinstance(content, list)
            or not content
            or any(not isinstance(b, dict) or b.get("type") != "tool_result" for b in content)
        ):
            raise invalid(
                "the code execution in this container is waiting for tool results: the last message must be a "
                "user message with only tool_result blocks"
            )
        results = {str(block.get("tool_use_id")): tool_result_value(block) for block in content}
        if not run.done:
            run.resume(results)
        return await self._settle(run)

    def _unexecuted_code_calls(self) -> list[dict[str, Any]]:
        """``server_tool_use`` blocks of the current turn that have no result yet (several in one model reply)."""
        messages = self.turn.body["messages"]
        start = 0
        for index, message in enumerate(messages):
            if isinstance(message, dict) and message.get("role") == "user" and not _only_tool_results(message):
                start = index + 1
        calls: list[dict[str, Any]] = []
        answered: set[str] = set()
        for message in messages[start:]:
            if not isinstance(message, dict) or message.get("role") != "assistant":
                continue
            content = message.get("content")
            for block in content if isinstance(content, list) else []:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "server_tool_use":
                    calls.append(block)
                elif block.get("type") == "code_execution_tool_result":
                    answered.add(str(block.get("tool_use_id")))
        answered.update(str(b.get("tool_use_id")) for b in self.blocks if b["type"] == "code_execution_tool_result")
        return [call for call in calls if str(call.get("id")) not in answered]

    async def _execute(self, block: dict[str, Any]) -> bool:
        """Run one ``server_tool_use``; True if it paused on client tool calls."""
        code = (block.get("input") or {}).get("code")
        if not isinstance(code, str) or not code.strip():
            await self._emit(invalid_code_input(str(block["id"])))
            return False
        if self.container is None:
            self.container = await self.proxy.registry.create(self.owner)
            await self.container.lock.acquire()
        run = self.container.start_run(str(block["id"]), code, self.turn.toolset)
        return await self._settle(run)

    async def _settle(self, run: ProgramRun) -> bool:
        calls = await run.settle(self.proxy.registry.settle_s)
        if calls is None:
            assert run.outcome is not None
            run.container.run = None
            await self._emit(code_result(run.tool_use_id, run.outcome))
            return False
        caller_type = self.turn.toolset.code_execution or run.toolset.code_execution or "code_execution_20260120"
        for call in calls:
            await self._emit(program_tool_use(call, caller_type, run.tool_use_id))
        return True


def _only_tool_results(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return (
        isinstance(content, list)
        and bool(content)
        and all(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    )


def check_api_key(proxy: Proxy, headers: Any) -> str | None:
    """Who is calling (a digest of the key; it owns the containers it creates); refuses a key not configured."""
    key = headers.get("x-api-key")
    if key is None:
        auth = str(headers.get("authorization", ""))
        key = auth[7:] if auth.lower().startswith("bearer ") else None
    if proxy.api_keys and not any(secrets.compare_digest(str(key or ""), allowed) for allowed in proxy.api_keys):
        raise ApiError("authentication_error", "invalid x-api-key")
    return hashlib.sha256(str(key).encode()).hexdigest() if key else None
