"""A local emulator of the Bedrock Runtime ``Converse`` API that real boto3 talks to, with a pluggable model.

It speaks the wire protocol of the service model botocore ships (``bedrock-runtime`` 2023-09-30, rest-json):
``POST /model/{modelId}/converse`` with a JSON ``ConverseRequest``, answered with a ``ConverseResponse``
(``output.message``, ``stopReason``, ``usage``, ``metrics``) or an error whose ``x-amzn-ErrorType`` header
and ``{"message"}`` body botocore turns into the modelled exception (``ValidationException`` and so on).
Requests are validated against that service model with botocore's own validator, plus the conversation rules
Bedrock enforces (starts with a user message, roles alternate, every ``toolResult`` answers a ``toolUse`` of
the turn before, tool blocks need a ``toolConfig``). Requests without an ``Authorization`` header are refused
as Bedrock would (``AccessDeniedException``), so clients must sign (any fake credentials do).

The "model" is any object with ``reply(request) -> ModelReply`` (sync or async): it reads the conversation
and decides the next assistant message. ``usage`` defaults to a real offline BPE count of what the model read
and wrote (see ``ptc_mcp.bench.tokens``); a model can report its own.

Use::

    from ptc_mcp.emulators.bedrock import ConverseRequest, ModelReply, run_emulator, text_block

    class Echo:
        def reply(self, request: ConverseRequest) -> ModelReply:
            return ModelReply([text_block(request.last_user_text())])

    async with run_emulator(Echo()) as endpoint_url:
        client = boto3.client("bedrock-runtime", endpoint_url=endpoint_url, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        client.converse(modelId="any.model-v1", messages=[...])   # from a thread: boto3 blocks

``BedrockEmulator(model).app`` is the Starlette app itself (for an in-process ``httpx`` transport), and
``BedrockEmulator.requests`` records every valid request, for assertions. A model raises ``ConverseError`` to
answer with a service error (``ThrottlingException``, ``ModelTimeoutException``, ...).
"""

from __future__ import annotations

import inspect
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol
from urllib.parse import unquote

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ptc_mcp.errors import EmulatorError
from ptc_mcp.listening import listening_socket

__all__ = [
    "BedrockEmulator",
    "ConverseError",
    "ConverseRequest",
    "ModelReply",
    "ScriptedModel",
    "UsageCounter",
    "run_emulator",
    "text_block",
    "tool_use_block",
]

UsageCounter = Callable[[Mapping[str, Any], list[dict[str, Any]]], dict[str, int]]
"""``(request body, reply content) -> {"inputTokens", "outputTokens", "totalTokens"}``."""


@dataclass(frozen=True)
class ConverseRequest:
    """One valid ``Converse`` call as the emulator received it: the model id (from the path) and the JSON body."""

    model_id: str
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools offered in ``toolConfig``, in order."""
        tools = self.body.get("toolConfig", {}).get("tools", [])
        return [tool["toolSpec"]["name"] for tool in tools if "toolSpec" in tool]

    @property
    def system_text(self) -> str:
        return "\n".join(block["text"] for block in self.body.get("system", []) if "text" in block)

    def last_user_text(self) -> str:
        """The text blocks of the last user message, joined (``""`` when it holds only tool results)."""
        for message in reversed(self.messages):
            if message["role"] == "user":
                return "\n".join(block["text"] for block in message["content"] if "text" in block)
        return ""


@dataclass
class ModelReply:
    """The next assistant message: Converse content blocks (``text_block``, ``tool_use_block``).

    ``stop_reason`` defaults to ``tool_use`` when the content has a tool use, else ``end_turn``; ``usage``
    defaults to the emulator's token count.
    """

    content: list[dict[str, Any]]
    stop_reason: str | None = None
    usage: dict[str, int] | None = None


class ScriptedModel(Protocol):
    """What the emulator asks for each assistant message."""

    def reply(self, request: ConverseRequest) -> ModelReply | Awaitable[ModelReply]: ...


class ConverseError(EmulatorError):
    """Raised by a model to answer with a modelled Bedrock error (``code`` is the error shape's name)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def text_block(text: str) -> dict[str, Any]:
    return {"text": text}


def tool_use_block(name: str, arguments: Mapping[str, Any], tool_use_id: str | None = None) -> dict[str, Any]:
    """A ``toolUse`` content block; ids look like Bedrock's (``tooluse_`` and 22 url-safe characters)."""
    return {"toolUse": {"toolUseId": tool_use_id or new_tool_use_id(), "name": name, "input": dict(arguments)}}


def new_tool_use_id() -> str:
    return "tooluse_" + secrets.token_urlsafe(16)[:22].replace("-", "A").replace("_", "B")


@cache
def _service_model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("bedrock-runtime")


def _error_status(code: str) -> int:
    try:
        shape = _service_model().shape_for(code)
    except Exception:
        return 500
    return int(shape.metadata.get("error", {}).get("httpStatusCode", 500))


def _error(code: str, message: str) -> Response:
    return JSONResponse(
        {"message": message},
        status_code=_error_status(code),
        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": secrets.token_hex(16)},
    )


def validate_converse(body: Mapping[str, Any]) -> str | None:
    """Why ``body`` (with ``modelId``) is not a valid ``ConverseRequest``, or ``None``."""
    import botocore.validate

    shape = _service_model().operation_model("Converse").input_shape
    report = botocore.validate.ParamValidator().validate(dict(body), shape)
    if report.has_errors():
        return str(report.generate_report())
    return _conversation_problem(body)


def _conversation_problem(body: Mapping[str, Any]) -> str | None:
    messages = body.get("messages") or []
    if not messages:
        return "The messages field is required and must contain at least one message."
    if messages[0]["role"] != "user":
        return (
            "A conversation must start with a user message. Try again with a conversation that starts with a user "
            "message."
        )
    uses_tools = False
    previous_uses: set[str] = set()
    for index, message in enumerate(messages):
        role = message["role"]
        if index and role == messages[index - 1]["role"]:
            return (
                "A conversation must alternate between user and assistant roles. Make sure the conversation "
                "alternates between user and assistant roles and try again."
            )
        if not message["content"]:
            return f"The content field in the Message object at messages.{index} is empty."
        results = [block["toolResult"]["toolUseId"] for block in message["content"] if "toolResult" in block]
        uses = {block["toolUse"]["toolUseId"] for block in message["content"] if "toolUse" in block}
        uses_tools = uses_tools or bool(results or uses)
        if role == "assistant" and results:
            return f"messages.{index}: toolResult blocks belong in a user message."
        if role == "user" and uses:
            return f"messages.{index}: toolUse blocks belong in an assistant message."
        if results and set(results) != previous_uses:
            return (
                f"messages.{index}: the toolResult blocks must answer exactly the toolUse ids of the previous turn "
                f"({', '.join(sorted(previous_uses)) or 'none'}); got {', '.join(results)}."
            )
        if role == "user" and previous_uses and not results:
            return f"messages.{index}: expected toolResult blocks for {', '.join(sorted(previous_uses))}."
        previous_uses = uses if role == "assistant" else set()
    tools = body.get("toolConfig", {}).get("tools", [])
    if uses_tools and not tools:
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    names = [tool["toolSpec"]["name"] for tool in tools if "toolSpec" in tool]
    if len(names) != len(set(names)):
        return "The toolConfig field contains duplicate tool names."
    return None


def _default_usage(request: Mapping[str, Any], content: list[dict[str, Any]]) -> dict[str, int]:
    from ptc_mcp.emulators.usage import converse_usage  # lazily: it loads the BPE

    return converse_usage(request, content)


@dataclass
class BedrockEmulator:
    """The Converse endpoint as a Starlette app around one model (see the module docstring)."""

    model: ScriptedModel
    usage: UsageCounter = _default_usage
    requests: list[ConverseRequest] = field(default_factory=list)

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/model/{model_id:path}/converse", self._converse, methods=["POST"]),
                Route("/{rest:path}", self._unknown, methods=["GET", "POST", "PUT", "DELETE"]),
            ]
        )

    async def _unknown(self, request: Request) -> Response:
        return JSONResponse(
            {"message": f"The emulator implements Converse only, not {request.method} {request.url.path}"},
            status_code=404,
            headers={"x-amzn-ErrorType": "UnknownOperationException"},
        )

    async def _converse(self, request: Request) -> Response:
        started = time.perf_counter()
        if not request.headers.get("authorization"):
            return _error("AccessDeniedException", "Missing Authentication Token")
        try:
            body = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError as exc:
            return _error("ValidationException", f"Malformed JSON body: {exc}")
        if not isinstance(body, dict):
            return _error("ValidationException", "The request body must be a JSON object.")
        model_id = unquote(request.path_params["model_id"])
        problem = validate_converse({"modelId": model_id, **body})
        if problem is not None:
            return _error("ValidationException", problem)
        converse = ConverseRequest(model_id=model_id, body=body)
        self.requests.append(converse)
        try:
            reply = self.model.reply(converse)
            if inspect.isawaitable(reply):
                reply = await reply
        except ConverseError as exc:
            return _error(exc.code, exc.message)
        assert isinstance(reply, ModelReply)
        content = [dict(block) for block in reply.content]
        stop = reply.stop_reason or ("tool_use" if any("toolUse" in block for block in content) else "end_turn")
        usage = reply.usage or self.usage(body, content)
        payload = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": usage,
            "metrics": {"latencyMs": round((time.perf_counter() - started) * 1000)},
        }
        return JSONResponse(payload, headers={"x-amzn-RequestId": secrets.token_hex(16)})


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: Ctrl-C belongs to the program that embeds the emulator."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def run_emulator(
    model: ScriptedModel | BedrockEmulator, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve the emulator on ``host:port`` (a free port by default) and yield its ``endpoint_url``."""
    emulator = model if isinstance(model, BedrockEmulator) else BedrockEmulator(model)
    sock = listening_socket(host, port)
    bound = sock.getsockname()[1]
    server = _EmbeddedServer(uvicorn.Config(emulator.app, log_level="warning", lifespan="off"))
    # The socket listens before uvicorn starts, so a client that connects at once just queues.
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield f"http://{host}:{bound}"
            finally:
                server.should_exit = True
    finally:
        sock.close()
