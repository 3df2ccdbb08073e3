"""Programmatic tool calling end to end: the real ``anthropic`` SDK → the proxy → real boto3 → the Converse emulator."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import anyio
import pytest

from ptc_mcp.emulators.bedrock import ConverseRequest, ModelReply, text_block
from ptc_mcp.emulators.bedrock import tool_use_block as converse_tool_use
from tests.proxy.helpers import MODEL, PTC_BETA, Rig, client_tool, code_then_answer, open_rig, tool_results

pytestmark = pytest.mark.anyio

VERSIONS = ["code_execution_20250825", "code_execution_20260120", "code_execution_20260521"]
SALES = {"west": 120, "east": 80, "central": 95}

LOOP_CODE = """
total = 0
for region in ["west", "east", "central"]:
    row = await query_sales(region=region)
    total += row["revenue"]
print("total", total)
"""


async def create(rig: Rig, version: str, **params: Any) -> dict[str, Any]:
    """``messages.create`` as a user of each tool version writes it (2025: the beta API); the response's JSON."""
    params.setdefault("model", MODEL)
    params.setdefault("max_tokens", 1024)
    if version == "code_execution_20250825":
        raw: Any = await rig.client.beta.messages.with_raw_response.create(betas=[PTC_BETA], **params)
    else:
        raw = await rig.client.messages.with_raw_response.create(**params)
    await raw.parse()  # the SDK accepts the response
    body: dict[str, Any] = raw.http_response.json()
    return body


def ptc_tools(version: str) -> list[dict[str, Any]]:
    return [{"type": version, "name": "code_execution"}, client_tool("query_sales", callers=[version])]


def answer(block: dict[str, Any]) -> dict[str, Any]:
    """The client's tool_result for one ``query_sales`` call."""
    return {
        "type": "tool_result",
        "tool_use_id": block["id"],
        "content": json.dumps({"revenue": SALES[block["input"]["region"]]}),
    }


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_program_calling_a_client_tool_in_a_loop_pauses_at_every_call_and_completes(version: str) -> None:
    async with open_rig(code_then_answer(LOOP_CODE)) as rig:
        with anyio.fail_after(60):
            messages: list[dict[str, Any]] = [{"role": "user", "content": "Total revenue of all regions?"}]
            first = await create(rig, version, messages=messages, tools=ptc_tools(version))

            assert first["stop_reason"] == "tool_use"
            kinds = [block["type"] for block in first["content"]]
            assert kinds == ["text", "server_tool_use", "tool_use"]
            server_use = first["content"][1]
            assert server_use["id"].startswith("srvtoolu_")
            assert server_use["name"] == "code_execution"
            assert server_use["input"] == {"code": LOOP_CODE}
            call = first["content"][2]
            assert call["id"].startswith("toolu_")
            assert call["name"] == "query_sales"
            assert call["input"] == {"region": "west"}
            assert call["caller"] == {"type": version, "tool_id": server_use["id"]}
            container = first["container"]
            assert container["id"].startswith("container_")
            assert container["expires_at"]

            response = first
            seen = []
            for _ in range(5):
                calls = [b for b in response["content"] if b["type"] == "tool_use"]
                seen += [c["input"]["region"] for c in calls]
                messages += [
                    {"role": "assistant", "content": response["content"]},
                    {"role": "user", "content": [answer(c) for c in calls]},
                ]
                response = await create(
                    rig, version, messages=messages, tools=ptc_tools(version), container=container["id"]
                )
                if response["stop_reason"] != "tool_use":
                    break
                assert response["container"]["id"] == container["id"]

            assert seen == ["west", "east", "central"]
            assert response["stop_reason"] == "end_turn"
            result, text = response["content"]
            assert result == {
                "type": "code_execution_tool_result",
                "tool_use_id": server_use["id"],
                "content": {
                    "type": "code_execution_result",
                    "stdout": "total 295\n",
                    "stderr": "",
                    "return_code": 0,
                    "content": [],
                },
            }
            assert text["type"] == "text"
            assert "total 295" in text["text"]
            assert response["container"]["id"] == container["id"]

        # The model saw the code's output, never the tool results delivered to the code.
        results = [
            block["toolResult"]
            for request in rig.emulator.requests
            for message in request.messages
            for block in message["content"]
            if "toolResult" in block
        ]
        assert {result["toolUseId"] for result in results} == {server_use["id"]}
        assert "total 295" in results[0]["content"][0]["text"]


async def test_calls_made_with_asyncio_gather_pause_once_and_resume_together() -> None:
    code = """
rows = await asyncio.gather(*(query_sales(region=r) for r in ["west", "east", "central"]))
print(sorted(row["revenue"] for row in rows))
"""
    version = "code_execution_20260120"
    async with open_rig(code_then_answer(code)) as rig:
        with anyio.fail_after(60):
            messages: list[dict[str, Any]] = [{"role": "user", "content": "Revenues?"}]
            first = await create(rig, version, messages=messages, tools=ptc_tools(version))
            calls = [b for b in first["content"] if b["type"] == "tool_use"]
            assert first["stop_reason"] == "tool_use"
            assert sorted(c["input"]["region"] for c in calls) == ["central", "east", "west"]
            assert len({c["id"] for c in calls}) == 3
            messages += [
                {"role": "assistant", "content": first["content"]},
                {"role": "user", "content": [answer(c) for c in reversed(calls)]},
            ]
            final = await create(
                rig, version, messages=messages, tools=ptc_tools(version), container=first["container"]["id"]
            )
            assert final["stop_reason"] == "end_turn"
            assert final["content"][0]["content"]["stdout"] == "[80, 95, 120]\n"


async def test_a_continuation_with_anything_but_tool_results_is_an_invalid_request() -> None:
    version = "code_execution_20260120"
    async with open_rig(code_then_answer(LOOP_CODE)) as rig:
        with anyio.fail_after(60):
            messages: list[dict[str, Any]] = [{"role": "user", "content": "Total?"}]
            first = await create(rig, version, messages=messages, tools=ptc_tools(version))
            call = first["content"][-1]
            mixed = [*messages, {"role": "assistant", "content": first["content"]}]
            mixed.append({"role": "user", "content": [answer(call), {"type": "text", "text": "also, hi"}]})
            with pytest.raises(anthropic.BadRequestError) as caught:
                await create(rig, version, messages=mixed, tools=ptc_tools(version), container=first["container"]["id"])
            assert caught.value.status_code == 400
            assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]

            # Without the container, tool results for a program's calls are refused too.
            plain = [*mixed[:-1], {"role": "user", "content": [answer(call)]}]
            with pytest.raises(anthropic.BadRequestError) as caught:
                await create(rig, version, messages=plain, tools=ptc_tools(version))
            assert "container" in caught.value.body["error"]["message"]  # type: ignore[index]

            # The paused program is still there: the proper continuation works.
            second = await create(
                rig, version, messages=plain, tools=ptc_tools(version), container=first["container"]["id"]
            )
            assert second["content"][0]["input"] == {"region": "east"}


async def test_the_2025_tool_version_needs_the_beta_header() -> None:
    version = "code_execution_20250825"
    async with open_rig(code_then_answer(LOOP_CODE)) as rig:
        with anyio.fail_after(30), pytest.raises(anthropic.BadRequestError) as caught:
            await rig.client.messages.create(
                model=MODEL,
                max_tokens=100,
                messages=[{"role": "user", "content": "hi"}],
                tools=ptc_tools(version),  # type: ignore[arg-type]
            )
        assert PTC_BETA in caught.value.body["error"]["message"]  # type: ignore[index]


async def test_direct_tool_calls_carry_a_direct_caller_and_code_only_tools_are_hidden_from_the_model() -> None:
    def model(request: ConverseRequest) -> ModelReply:
        if tool_results(request):
            return ModelReply([text_block("It is sunny.")])
        return ModelReply([converse_tool_use("get_weather", {"city": "Paris"})])

    version = "code_execution_20260120"
    tools = [
        {"type": version, "name": "code_execution"},
        client_tool("get_weather", callers=None, properties={"city": {"type": "string"}}),
        client_tool("query_sales", callers=[version]),
        client_tool("lookup", callers=["direct", version]),
    ]
    async with open_rig(model) as rig:
        with anyio.fail_after(30):
            messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
            first = await create(rig, version, messages=messages, tools=tools)
            assert first["stop_reason"] == "tool_use"
            (call,) = first["content"]
            assert call["type"] == "tool_use"
            assert call["caller"] == {"type": "direct"}
            assert call["input"] == {"city": "Paris"}
            assert "container" not in first  # no code ran, no container was made
            messages += [
                {"role": "assistant", "content": first["content"]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "sunny"}]},
            ]
            final = await create(rig, version, messages=messages, tools=tools)
            assert final["stop_reason"] == "end_turn"
            assert final["content"] == [{"type": "text", "text": "It is sunny."}]

        request = rig.emulator.requests[0]
        assert request.tool_names == ["code_execution", "get_weather", "lookup"]
        description = request.body["toolConfig"]["tools"][0]["toolSpec"]["description"]
        assert "async def query_sales(region: str)" in description
        assert "async def lookup(region: str)" in description
        assert "get_weather" not in description


async def test_a_container_keeps_variables_between_code_executions() -> None:
    def model(request: ConverseRequest) -> ModelReply:
        results = tool_results(request)
        if results:
            return ModelReply([text_block(results[0]["content"][0]["text"])])
        if "remember" in request.last_user_text():
            return ModelReply([converse_tool_use("code_execution", {"code": "secret = 6 * 7\nprint('stored')"})])
        return ModelReply([converse_tool_use("code_execution", {"code": "print('secret is', secret)"})])

    version = "code_execution_20260120"
    tools = [{"type": version, "name": "code_execution"}]
    async with open_rig(model) as rig:
        with anyio.fail_after(60):
            messages: list[dict[str, Any]] = [{"role": "user", "content": "remember a number"}]
            first = await create(rig, version, messages=messages, tools=tools)
            assert first["stop_reason"] == "end_turn"
            assert first["content"][1]["content"]["stdout"] == "stored\n"
            messages += [
                {"role": "assistant", "content": first["content"]},
                {"role": "user", "content": "what was it?"},
            ]
            second = await create(rig, version, messages=messages, tools=tools, container=first["container"])
            assert second["content"][1]["content"]["stdout"] == "secret is 42\n"
            assert second["container"]["id"] == first["container"]["id"]

            # A new container is a fresh interpreter.
            third = await create(rig, version, messages=messages, tools=tools)
            assert third["content"][1]["content"]["return_code"] == 1
            assert "NameError" in third["content"][1]["content"]["stderr"]
            assert third["container"]["id"] != first["container"]["id"]


async def test_a_tool_error_raises_in_the_program_which_can_handle_it() -> None:
    code = """
try:
    await query_sales(region="mars")
except ToolError as exc:
    print("failed:", exc.message)
"""
    version = "code_execution_20260120"
    async with open_rig(code_then_answer(code)) as rig:
        with anyio.fail_after(60):
            messages: list[dict[str, Any]] = [{"role": "user", "content": "Mars?"}]
            first = await create(rig, version, messages=messages, tools=ptc_tools(version))
            call = first["content"][-1]
            error = {"type": "tool_result", "tool_use_id": call["id"], "content": "no such region", "is_error": True}
            messages += [{"role": "assistant", "content": first["content"]}, {"role": "user", "content": [error]}]
            final = await create(
                rig, version, messages=messages, tools=ptc_tools(version), container=first["container"]["id"]
            )
            assert final["content"][0]["content"]["stdout"] == "failed: no such region\n"


async def test_tool_functions_take_positional_and_keyword_arguments() -> None:
    code = """
a = await query_sales("west")
b = await query_sales(region="east")
print(a["revenue"] + b["revenue"])
"""
    version = "code_execution_20260120"
    async with open_rig(code_then_answer(code)) as rig:
        with anyio.fail_after(60):
            messages: list[dict[str, Any]] = [{"role": "user", "content": "West plus east?"}]
            response = await create(rig, version, messages=messages, tools=ptc_tools(version))
            regions = []
            while response["stop_reason"] == "tool_use":
                calls = [b for b in response["content"] if b["type"] == "tool_use"]
                regions += [c["input"] for c in calls]
                messages += [
                    {"role": "assistant", "content": response["content"]},
                    {"role": "user", "content": [answer(c) for c in calls]},
                ]
                response = await create(
                    rig, version, messages=messages, tools=ptc_tools(version), container=response["container"]["id"]
                )
            assert regions == [{"region": "west"}, {"region": "east"}]
            assert response["content"][0]["content"]["stdout"] == "200\n"


async def test_programs_also_call_the_configured_mcp_servers_which_the_client_never_sees() -> None:
    from tests.conftest import EXPENSES_STDIO

    code = """
members = await expenses.get_team_members(department="engineering")
row = await query_sales(region="west")
print(len(members) > 0, row["revenue"])
"""
    version = "code_execution_20260120"
    async with open_rig(code_then_answer(code), servers={"expenses": EXPENSES_STDIO}) as rig:
        with anyio.fail_after(60):
            messages: list[dict[str, Any]] = [{"role": "user", "content": "Team and sales?"}]
            first = await create(rig, version, messages=messages, tools=ptc_tools(version))
            calls = [b for b in first["content"] if b["type"] == "tool_use"]
            assert [c["name"] for c in calls] == ["query_sales"]
            messages += [
                {"role": "assistant", "content": first["content"]},
                {"role": "user", "content": [answer(c) for c in calls]},
            ]
            final = await create(
                rig, version, messages=messages, tools=ptc_tools(version), container=first["container"]["id"]
            )
            assert final["content"][0]["content"]["stdout"] == "True 120\n"
        description = rig.emulator.requests[0].body["toolConfig"]["tools"][0]["toolSpec"]["description"]
        assert "get_team_members" in description


async def test_mcp_server_tools_that_need_approval_are_denied_in_the_proxy_which_cannot_ask() -> None:
    from tests.conftest import EXPENSES_STDIO

    code = """
try:
    await expenses.get_team_members(department="engineering")
except ToolError as exc:
    print(exc.error_type)
"""
    version = "code_execution_20260120"
    approve = {"approve": ["expenses.get_team_members"]}
    async with open_rig(code_then_answer(code), servers={"expenses": EXPENSES_STDIO}, tools=approve) as rig:
        with anyio.fail_after(60):
            messages: list[dict[str, Any]] = [{"role": "user", "content": "Team?"}]
            final = await create(rig, version, messages=messages, tools=ptc_tools(version))
            results = [b for b in final["content"] if b["type"] == "code_execution_tool_result"]
            assert results[0]["content"]["stdout"] == "tool_denied\n"
