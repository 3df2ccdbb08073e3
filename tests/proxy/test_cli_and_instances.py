"""``ptc-mcp proxy`` as a real process, and several instances behind a router that knows nothing of containers."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import anthropic
import anyio
import boto3
import httpx2 as httpx
import pytest

from ptc_mcp.emulators.bedrock import BedrockEmulator, run_emulator
from ptc_mcp.proxy import BedrockModels, ModelMap, open_proxy
from tests.conftest import test_config
from tests.proxy.helpers import BEDROCK_MODEL, MODEL, _FunctionModel, client_tool, code_then_answer, serve

pytestmark = pytest.mark.anyio

VERSION = "code_execution_20260120"
TOOLS: list[Any] = [{"type": VERSION, "name": "code_execution"}, client_tool("query_sales", callers=[VERSION])]
CODE = 'a = await query_sales(region="west")\nb = await query_sales(region="east")\nprint(a + b)'


def _boto(endpoint_url: str) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def _answer(response: anthropic.types.Message, value: int) -> list[dict[str, Any]]:
    calls = [block for block in response.content if block.type == "tool_use"]
    return [
        {"role": "assistant", "content": [b.model_dump(mode="json", exclude_none=True) for b in response.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": c.id, "content": str(value)} for c in calls],
        },
    ]


async def test_any_instance_serves_a_continuation_by_forwarding_it_to_the_instance_holding_the_container() -> None:
    emulator = BedrockEmulator(_FunctionModel(code_then_answer(CODE)))
    config = test_config({}, sandbox={"allow_unisolated": True})
    async with run_emulator(emulator) as endpoint_url:
        models = ModelMap({MODEL: BEDROCK_MODEL})
        async with (
            open_proxy(config, BedrockModels(_boto(endpoint_url)), model_map=models, instance="a") as (proxy_a, app_a),
            open_proxy(config, BedrockModels(_boto(endpoint_url)), model_map=models, instance="b") as (proxy_b, app_b),
            serve(app_a) as url_a,
            serve(app_b) as url_b,
            anthropic.AsyncAnthropic(base_url=url_a, api_key="k", max_retries=0, timeout=60) as via_a,
            anthropic.AsyncAnthropic(base_url=url_b, api_key="k", max_retries=0, timeout=60) as via_b,
        ):
            proxy_a.peers.update(b=url_b)
            proxy_b.peers.update(a=url_a)
            with anyio.fail_after(60):
                messages: list[Any] = [{"role": "user", "content": "west + east?"}]
                first = await via_a.messages.create(model=MODEL, max_tokens=100, messages=messages, tools=TOOLS)
                assert first.container is not None
                assert first.container.id.startswith("container_a_")
                messages += _answer(first, 2)

                second = await via_b.messages.create(  # lands on b, is served by a
                    model=MODEL, max_tokens=100, messages=messages, tools=TOOLS, container=first.container.id
                )
                assert second.stop_reason == "tool_use"
                assert len(proxy_b.registry) == 0
                messages += _answer(second, 3)

                async with via_b.messages.stream(  # streamed responses are relayed as they come
                    model=MODEL, max_tokens=100, messages=messages, tools=TOOLS, container=first.container.id
                ) as stream:
                    final = await stream.get_final_message()
                assert final.stop_reason == "end_turn"
                assert final.content[0].model_dump(mode="json")["content"]["stdout"] == "5\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_the_proxy_command_serves_the_messages_api(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mcpServers": {}, "sandbox": {"kind": "process", "allow_unisolated": True}}))
    emulator = BedrockEmulator(_FunctionModel(code_then_answer("print(6 * 7)")))
    async with run_emulator(emulator) as endpoint_url:
        port = _free_port()
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_EC2_METADATA_DISABLED": "true",
            "PTC_PROXY_API_KEYS": "secret-key",
        }
        command = [sys.executable, "-m", "ptc_mcp", "proxy", "--config", str(config), "--port", str(port)]
        command += ["--region", "us-east-1", "--endpoint-url", endpoint_url, "--model-map", f"{MODEL}={BEDROCK_MODEL}"]
        log = tmp_path / "proxy.log"
        with log.open("wb") as stderr:
            process = await anyio.open_process(command, env=env, stderr=stderr)
        try:
            url = f"http://127.0.0.1:{port}"
            with anyio.fail_after(30):
                async with httpx.AsyncClient() as http:
                    while True:
                        try:
                            ready = await http.get(url + "/v1/models", headers={"x-api-key": "secret-key"})
                            if ready.status_code == 200:
                                break
                        except httpx.TransportError:
                            pass
                        assert process.returncode is None, log.read_text()
                        await anyio.sleep(0.1)
                async with anthropic.AsyncAnthropic(base_url=url, api_key="secret-key", max_retries=0) as client:
                    response = await client.messages.create(
                        model=MODEL,
                        max_tokens=100,
                        messages=[{"role": "user", "content": "6 * 7?"}],
                        tools=[{"type": VERSION, "name": "code_execution"}],
                    )
            assert response.stop_reason == "end_turn"
            assert response.content[-1].type == "text"
            assert "42" in response.content[-1].text
            assert emulator.requests[0].model_id == BEDROCK_MODEL
        finally:
            process.terminate()
            with anyio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()
