"""The same flow against real Amazon Bedrock: opt-in, skipped without AWS credentials.

Runs only with ``PTC_MCP_AWS_TESTS=1`` and credentials from boto3's default chain (the instance metadata service
is not asked, so nothing leaves loopback while deciding to skip). ``PTC_PROXY_BEDROCK_MODEL`` picks the model
(default: Claude Sonnet 4.5's US inference profile; any Bedrock model with tool use works), ``AWS_REGION`` the
region.
"""

from __future__ import annotations

import json
import os
from typing import Any

import anthropic
import anyio
import pytest

from ptc_mcp.proxy import BedrockModels, ModelMap, open_proxy
from tests.conftest import test_config
from tests.proxy.helpers import serve

pytestmark = [pytest.mark.anyio, pytest.mark.aws]

MODEL_ID = os.environ.get("PTC_PROXY_BEDROCK_MODEL", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
VERSION = "code_execution_20260120"
SALES = {"west": 120, "east": 80, "central": 95}


def _credentials_missing() -> str | None:
    if os.environ.get("PTC_MCP_AWS_TESTS") != "1":
        return "real-AWS tests are opt-in: set PTC_MCP_AWS_TESTS=1 (they make billed Bedrock calls)"
    try:
        import boto3
    except ImportError:
        return "boto3 is not installed"
    if boto3.Session().get_credentials() is None:
        return "no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID to run against real Bedrock)"
    return None


async def test_a_real_bedrock_model_runs_a_ptc_conversation_through_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reason = _credentials_missing()
    if reason:
        pytest.skip(reason)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    tools: list[Any] = [
        {"type": VERSION, "name": "code_execution"},
        {
            "name": "query_sales",
            "description": 'Revenue of one sales region. Returns JSON {"revenue": int}.',
            "input_schema": {"type": "object", "properties": {"region": {"type": "string"}}, "required": ["region"]},
            "allowed_callers": [VERSION],
        },
    ]
    config = test_config({}, sandbox={"allow_unisolated": True})
    models = BedrockModels.create(region=region)
    async with (
        open_proxy(config, models, model_map=ModelMap({"model": MODEL_ID})) as (_, app),
        serve(app) as url,
        anthropic.AsyncAnthropic(base_url=url, api_key="test", max_retries=0, timeout=120) as client,
    ):
        with anyio.fail_after(300):
            messages: list[Any] = [
                {
                    "role": "user",
                    "content": "Use code execution to add up the revenue of the regions west, east and central "
                    "with query_sales, then tell me the total as a number.",
                }
            ]
            container = None
            for _ in range(10):
                response = await client.messages.create(
                    model="model", max_tokens=2048, messages=messages, tools=tools, container=container
                )
                if response.stop_reason != "tool_use":
                    break
                assert response.container is not None
                container = response.container.id
                calls = [block for block in response.content if block.type == "tool_use"]
                messages += [
                    {
                        "role": "assistant",
                        "content": [b.model_dump(mode="json", exclude_none=True) for b in response.content],
                    },
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": call.id,
                                "content": json.dumps({"revenue": SALES.get(str(call.input.get("region")), 0)}),
                            }
                            for call in calls
                        ],
                    },
                ]
            assert response.stop_reason == "end_turn"
            assert "295" in "".join(block.text for block in response.content if block.type == "text")
