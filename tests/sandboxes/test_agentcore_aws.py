"""Opt-in: the ``agentcore`` backend against the real Amazon Bedrock AgentCore Code Interpreter.

Runs only with ``PTC_MCP_AWS_TESTS=1`` and AWS credentials from boto3's default chain (region from
``AWS_REGION`` or the profile). It starts one session in the AWS-managed interpreter (``aws.codeinterpreter.v1``),
which costs a few cents, and always stops it. IAM: see docs/backends/agentcore.md.
"""

from __future__ import annotations

import secrets
from typing import Any

import anyio
import pytest

from ptc_mcp.config import Config
from ptc_mcp.sandboxes import create_backend
from ptc_mcp.sandboxes.base import RunRequest, StreamName
from tests.aws import aws_skip_reason

pytestmark = [pytest.mark.anyio, pytest.mark.aws]

WAIT_S = 180.0
CATALOG = {"servers": [{"name": "calc", "global": "calc", "tools": [{"name": "add", "attr": "add"}]}]}


def _skip_reason() -> str | None:
    return aws_skip_reason("they start a billed AgentCore session")


class Recorder:
    def __init__(self) -> None:
        self.text = ""

    def write(self, stream: StreamName, text: str) -> None:
        self.text += text


async def add(name: str, arguments: dict[str, Any]) -> Any:
    assert name == "calc.add"
    return arguments["a"] + arguments["b"]


async def test_a_program_with_tool_calls_in_loops_and_gather_runs_in_real_agentcore() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    backend = create_backend(Config.model_validate({"sandbox": {"kind": "agentcore"}}))
    try:
        with anyio.fail_after(WAIT_S):
            session = await backend.start_session()
            code = """
import asyncio
total = 0
for i in range(10):
    total += await calc.add(a=i, b=0)
    if total > 20:
        break
parallel = await asyncio.gather(*[calc.add(a=i, b=i) for i in range(20)])
print("total", total)
total + sum(parallel)
"""
            output = Recorder()
            report = await session.run(RunRequest(secrets.token_hex(8), code, CATALOG, "v1", 4096), add, output)
            assert report.ok, report
            assert report.result == 21 + 380
            assert output.text == "total 21\n"
            assert getattr(session, "steps", 0) <= 9  # 7 sequential calls, one gathered step, the run
            await session.aclose()
    finally:
        await backend.aclose()
