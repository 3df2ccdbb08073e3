"""The end-to-end rig: real ``anthropic`` SDK → proxy (uvicorn) → real boto3 → the Bedrock Converse emulator."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import anthropic
import anyio
import boto3
import uvicorn
from starlette.types import ASGIApp

from ptc_mcp.emulators.bedrock import BedrockEmulator, ConverseRequest, ModelReply, run_emulator, text_block
from ptc_mcp.emulators.bedrock import tool_use_block as converse_tool_use
from ptc_mcp.proxy import BedrockModels, ModelMap, Proxy, open_proxy
from tests.conftest import test_config

MODEL = "qwen3-coder"
BEDROCK_MODEL = "qwen.qwen3-coder-480b-a35b-v1:0"
PTC_BETA = "advanced-tool-use-2025-11-20"


class _QuietServer(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = _QuietServer(uvicorn.Config(app, log_level="warning", lifespan="off"))
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{sock.getsockname()[1]}"
            finally:
                server.should_exit = True
    finally:
        sock.close()


@dataclass
class Rig:
    client: anthropic.AsyncAnthropic
    emulator: BedrockEmulator
    proxy: Proxy
    url: str


@asynccontextmanager
async def open_rig(
    model: Callable[[ConverseRequest], ModelReply],
    *,
    container_idle_s: float = 270.0,
    limits: dict[str, Any] | None = None,
    api_keys: tuple[str, ...] = (),
    api_key: str = "test",
    instance: str = "",
    servers: dict[str, Any] | None = None,
    tools: dict[str, Any] | None = None,
    audit: dict[str, Any] | None = None,
) -> AsyncIterator[Rig]:
    emulator = BedrockEmulator(_FunctionModel(model))
    async with run_emulator(emulator) as endpoint_url:
        boto = boto3.client(
            "bedrock-runtime",
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        config = test_config(
            servers or {},
            limits=limits or {},
            sandbox={"allow_unisolated": True},
            tools=tools or {},
            audit=audit or {"enabled": False},
        )
        async with (
            open_proxy(
                config,
                BedrockModels(boto),
                model_map=ModelMap({MODEL: BEDROCK_MODEL}),
                api_keys=api_keys,
                container_idle_s=container_idle_s,
                instance=instance,
            ) as (proxy, app),
            serve(app) as url,
            anthropic.AsyncAnthropic(base_url=url, api_key=api_key, max_retries=0, timeout=60) as client,
        ):
            yield Rig(client, emulator, proxy, url)


@dataclass
class _FunctionModel:
    function: Callable[[ConverseRequest], ModelReply]

    def reply(self, request: ConverseRequest) -> ModelReply:
        return self.function(request)


def tool_results(request: ConverseRequest) -> list[dict[str, Any]]:
    """The ``toolResult`` blocks of the last message."""
    return [block["toolResult"] for block in request.messages[-1]["content"] if "toolResult" in block]


def code_then_answer(code: str, *, prefix: str = "Answer: ") -> Callable[[ConverseRequest], ModelReply]:
    """A model that writes ``code`` for a new question, then answers with what the program printed."""

    def reply(request: ConverseRequest) -> ModelReply:
        results = tool_results(request)
        if results:
            return ModelReply([text_block(prefix + results[0]["content"][0]["text"])])
        return ModelReply([text_block("Let me compute that."), converse_tool_use("code_execution", {"code": code})])

    return reply


def client_tool(name: str, *, callers: list[str] | None, properties: dict[str, Any] | None = None) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "name": name,
        "description": f"The {name} tool.",
        "input_schema": {
            "type": "object",
            "properties": properties or {"region": {"type": "string"}},
            "required": list(properties or {"region": None}),
        },
    }
    if callers is not None:
        tool["allowed_callers"] = callers
    return tool
