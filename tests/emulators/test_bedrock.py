"""The Bedrock Runtime Converse emulator, driven by real boto3 through ``endpoint_url``."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import boto3
import httpx2
import pytest
from botocore.config import Config

from ptc_mcp.emulators.bedrock import (
    BedrockEmulator,
    ConverseError,
    ConverseRequest,
    ModelReply,
    run_emulator,
    text_block,
    tool_use_block,
)
from ptc_mcp.emulators.usage import converse_usage

pytestmark = pytest.mark.anyio

WEATHER_TOOL = {
    "toolSpec": {
        "name": "get_weather",
        "description": "Weather of a city.",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    }
}


class WeatherModel:
    """Calls get_weather once, then answers with what the tool said."""

    def reply(self, request: ConverseRequest) -> ModelReply:
        last = request.messages[-1]["content"]
        results = [block["toolResult"] for block in last if "toolResult" in block]
        if not results:
            return ModelReply([text_block("Let me look."), tool_use_block("get_weather", {"city": "Oslo"}, "tu_1")])
        return ModelReply([text_block(f"It is {results[0]['content'][0]['json']['sky']} in Oslo.")])


class FailingModel:
    def reply(self, request: ConverseRequest) -> ModelReply:
        raise ConverseError("ModelErrorException", "the model broke")


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[BedrockEmulator, Any]]:
    emulator = BedrockEmulator(WeatherModel())
    async with run_emulator(emulator) as url:
        client = boto3.client(
            "bedrock-runtime",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 1}),
        )
        yield emulator, client


async def converse(client: Any, **request: Any) -> dict[str, Any]:
    call: Callable[[], dict[str, Any]] = functools.partial(client.converse, **request)
    with anyio.fail_after(30):
        return await anyio.to_thread.run_sync(call)


async def test_a_tool_use_reply_has_the_converse_shape_and_stop_reason(emulator: tuple[BedrockEmulator, Any]) -> None:
    _, client = emulator
    response = await converse(
        client,
        modelId="anthropic.claude-3-5-sonnet-20240620-v1:0",
        system=[{"text": "Be brief."}],
        messages=[{"role": "user", "content": [{"text": "Weather in Oslo?"}]}],
        toolConfig={"tools": [WEATHER_TOOL]},
        inferenceConfig={"maxTokens": 512},
    )
    assert response["stopReason"] == "tool_use"
    message = response["output"]["message"]
    assert message["role"] == "assistant"
    assert message["content"][1] == {"toolUse": {"toolUseId": "tu_1", "name": "get_weather", "input": {"city": "Oslo"}}}
    usage = response["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"] > 0
    assert isinstance(response["metrics"]["latencyMs"], int)


async def test_a_tool_result_turn_is_accepted_and_answered(emulator: tuple[BedrockEmulator, Any]) -> None:
    recorded, client = emulator
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"text": "Weather in Oslo?"}]}]
    first = await converse(client, modelId="m.model-v1", messages=messages, toolConfig={"tools": [WEATHER_TOOL]})
    messages.append(first["output"]["message"])
    messages.append(
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "tu_1", "content": [{"json": {"sky": "snowy"}}], "status": "success"}}
            ],
        }
    )
    second = await converse(client, modelId="m.model-v1", messages=messages, toolConfig={"tools": [WEATHER_TOOL]})
    assert second["stopReason"] == "end_turn"
    assert second["output"]["message"]["content"] == [{"text": "It is snowy in Oslo."}]
    # The model saw the tool result exactly as boto3 sent it, and the model id from the path.
    assert recorded.requests[-1].model_id == "m.model-v1"
    assert recorded.requests[-1].messages[-1]["content"][0]["toolResult"]["content"] == [{"json": {"sky": "snowy"}}]


async def test_usage_is_the_bpe_count_of_what_the_model_read_and_wrote(emulator: tuple[BedrockEmulator, Any]) -> None:
    recorded, client = emulator
    response = await converse(
        client,
        modelId="m.model-v1",
        messages=[{"role": "user", "content": [{"text": "Weather in Oslo?"}]}],
        toolConfig={"tools": [WEATHER_TOOL]},
    )
    expected = converse_usage(recorded.requests[-1].body, response["output"]["message"]["content"])
    assert response["usage"] == expected


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "assistant", "content": [{"text": "I start"}]}],
        [{"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]}],
        [
            {"role": "user", "content": [{"text": "a"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "x", "name": "get_weather", "input": {}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "other", "content": [{"text": "?"}]}}]},
        ],
    ],
    ids=["starts-with-assistant", "roles-do-not-alternate", "tool-result-answers-no-tool-use"],
)
async def test_conversations_bedrock_refuses_are_validation_errors(
    emulator: tuple[BedrockEmulator, Any], messages: list[dict[str, Any]]
) -> None:
    _, client = emulator
    with pytest.raises(client.exceptions.ValidationException):
        await converse(client, modelId="m.model-v1", messages=messages, toolConfig={"tools": [WEATHER_TOOL]})


async def test_tool_blocks_without_a_tool_config_are_validation_errors(emulator: tuple[BedrockEmulator, Any]) -> None:
    _, client = emulator
    messages = [
        {"role": "user", "content": [{"text": "a"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "x", "name": "get_weather", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "x", "content": [{"text": "?"}]}}]},
    ]
    with pytest.raises(client.exceptions.ValidationException):
        await converse(client, modelId="m.model-v1", messages=messages)


async def test_a_model_error_reaches_boto3_as_the_modelled_exception() -> None:
    async with run_emulator(FailingModel()) as url:
        client = boto3.client(
            "bedrock-runtime",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 1}),
        )
        with pytest.raises(client.exceptions.ModelErrorException):
            await converse(client, modelId="m.model-v1", messages=[{"role": "user", "content": [{"text": "hi"}]}])


async def test_requests_off_the_service_model_are_refused_on_the_wire() -> None:
    async with run_emulator(WeatherModel()) as url, httpx2.AsyncClient(base_url=url) as http:
        body = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
        unsigned = await http.post("/model/m.model-v1/converse", json=body)
        assert unsigned.status_code == 403
        assert unsigned.headers["x-amzn-ErrorType"] == "AccessDeniedException"
        signed = {"Authorization": "Bearer test"}
        unknown = await http.post("/model/m.model-v1/converse", json={**body, "bogus": 1}, headers=signed)
        assert unknown.status_code == 400
        assert unknown.headers["x-amzn-ErrorType"] == "ValidationException"
        two_kinds = {"messages": [{"role": "user", "content": [{"text": "hi", "toolUse": {}}]}]}
        union = await http.post("/model/m.model-v1/converse", json=two_kinds, headers=signed)
        assert union.status_code == 400
