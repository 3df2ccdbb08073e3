"""Anthropic histories → Converse: real request JSON in, a conversation Bedrock accepts out."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ptc_mcp.emulators.bedrock import validate_converse
from ptc_mcp.proxy.errors import ApiError
from ptc_mcp.proxy.tools import CODE_EXECUTION_TYPES, PTC_BETA, client_prelude, code_tool_description, parse_tools
from ptc_mcp.proxy.translate import converse_request, model_turn

V = "code_execution_20260120"
TOOLS: list[dict[str, Any]] = [
    {"type": V, "name": "code_execution"},
    {
        "name": "query_sales",
        "description": "Revenue of a region.",
        "input_schema": {"type": "object", "properties": {"region": {"type": "string"}}, "required": ["region"]},
        "allowed_callers": [V],
    },
    {"name": "notify", "description": "Tell a human.", "input_schema": {"type": "object", "properties": {}}},
]
CODE = {"code": "print(1)"}


def request(messages: list[dict[str, Any]]) -> dict[str, Any]:
    body = {"model": "m", "max_tokens": 100, "messages": messages, "tools": TOOLS}
    converse = converse_request(body, "bedrock.model-v1", parse_tools(TOOLS, []))
    assert validate_converse(converse) is None, validate_converse(converse)
    return converse


def result(tool_use_id: str, stdout: str) -> dict[str, Any]:
    content = {"type": "code_execution_result", "stdout": stdout, "stderr": "", "return_code": 0, "content": []}
    return {"type": "code_execution_tool_result", "tool_use_id": tool_use_id, "content": content}


def program_call(call_id: str, server_id: str) -> dict[str, Any]:
    caller = {"type": V, "tool_id": server_id}
    return {"type": "tool_use", "id": call_id, "name": "query_sales", "input": {"region": "w"}, "caller": caller}


def test_a_paused_and_completed_code_execution_reads_as_one_tool_call_with_its_output() -> None:
    converse = request(
        [
            {"role": "user", "content": "total?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Computing."},
                    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "code_execution", "input": CODE},
                    program_call("toolu_a", "srvtoolu_1"),
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "{}"}]},
            {"role": "assistant", "content": [program_call("toolu_b", "srvtoolu_1")]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_b", "content": "{}"}]},
            {"role": "assistant", "content": [result("srvtoolu_1", "295\n"), {"type": "text", "text": "It is 295."}]},
            {"role": "user", "content": "thanks"},
        ]
    )
    assert converse["messages"] == [
        {"role": "user", "content": [{"text": "total?"}]},
        {
            "role": "assistant",
            "content": [
                {"text": "Computing."},
                {"toolUse": {"toolUseId": "srvtoolu_1", "name": "code_execution", "input": CODE}},
            ],
        },
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "srvtoolu_1", "content": [{"text": "295\n[return code 0]"}]}}],
        },
        {"role": "assistant", "content": [{"text": "It is 295."}]},
        {"role": "user", "content": [{"text": "thanks"}]},
    ]


def test_code_and_a_direct_tool_in_one_turn_share_one_user_turn_of_results() -> None:
    converse = request(
        [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "code_execution", "input": CODE},
                    {"type": "tool_use", "id": "toolu_d", "name": "notify", "input": {}, "caller": {"type": "direct"}},
                    result("srvtoolu_1", "1\n"),
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_d", "content": "sent"}]},
        ]
    )
    assert [m["role"] for m in converse["messages"]] == ["user", "assistant", "user"]
    ids = [block["toolResult"]["toolUseId"] for block in converse["messages"][2]["content"]]
    assert sorted(ids) == ["srvtoolu_1", "toolu_d"]


def test_a_direct_tool_answered_while_code_was_paused_pairs_with_the_code_result() -> None:
    converse = request(
        [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "code_execution", "input": CODE},
                    {"type": "tool_use", "id": "toolu_d", "name": "notify", "input": {}, "caller": {"type": "direct"}},
                    program_call("toolu_p", "srvtoolu_1"),
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_d", "content": "sent"},
                    {"type": "tool_result", "tool_use_id": "toolu_p", "content": "{}"},
                ],
            },
            {"role": "assistant", "content": [result("srvtoolu_1", "1\n")]},
        ]
    )
    assert [m["role"] for m in converse["messages"]] == ["user", "assistant", "user"]
    ids = sorted(block["toolResult"]["toolUseId"] for block in converse["messages"][2]["content"])
    assert ids == ["srvtoolu_1", "toolu_d"]


def test_tool_results_images_and_errors_translate_to_converse_blocks() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    converse = request(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
                ],
            },
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "notify", "input": {}}]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "down", "is_error": True}],
            },
        ]
    )
    image = converse["messages"][0]["content"][1]["image"]
    assert image == {"format": "png", "source": {"bytes": b"\x89PNG fake"}}
    assert converse["messages"][2]["content"][0]["toolResult"]["status"] == "error"


def test_the_model_sees_code_execution_as_a_function_tool_and_only_direct_client_tools() -> None:
    converse = request([{"role": "user", "content": "hi"}])
    names = [tool["toolSpec"]["name"] for tool in converse["toolConfig"]["tools"]]
    assert names == ["code_execution", "notify"]
    description = converse["toolConfig"]["tools"][0]["toolSpec"]["description"]
    assert description == code_tool_description(parse_tools(TOOLS, []))
    assert "async def query_sales(region: str):" in description


def test_a_model_reply_becomes_server_tool_use_for_code_and_direct_tool_use_otherwise() -> None:
    reply = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"text": "ok"},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "code_execution", "input": CODE}},
                    {"toolUse": {"toolUseId": "tooluse_2", "name": "notify", "input": {}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
    }
    turn = model_turn(reply, parse_tools(TOOLS, []))
    assert [b["type"] for b in turn.blocks] == ["text", "server_tool_use", "tool_use"]
    assert turn.blocks[1]["id"].startswith("srvtoolu_")
    assert turn.blocks[2]["caller"] == {"type": "direct"}
    assert (turn.input_tokens, turn.output_tokens, turn.stop_reason) == (10, 5, "tool_use")


@pytest.mark.parametrize(
    ("tools", "betas", "needle"),
    [
        ([{"type": "code_execution_20240101", "name": "code_execution"}], [], "not supported"),
        ([{"type": V, "name": "python"}], [], "must be named"),
        ([{**TOOLS[1], "allowed_callers": ["code_execution_20260120"]}], [], "no code execution tool"),
        (
            [
                {"type": "code_execution_20250825", "name": "code_execution"},
                {**TOOLS[1], "allowed_callers": ["code_execution_20250825"]},
            ],
            [],
            PTC_BETA,
        ),
        ([{**TOOLS[2], "allowed_callers": ["somebody"]}], [], "unknown caller"),
        ([{"type": "web_search_20250305", "name": "web_search"}], [], "not supported"),
    ],
)
def test_bad_tools_are_invalid_requests_that_say_why(tools: list[Any], betas: list[str], needle: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_tools(tools, betas)
    assert caught.value.kind == "invalid_request_error"
    assert needle in caught.value.message


def test_every_version_with_its_header_is_accepted() -> None:
    for version in CODE_EXECUTION_TYPES:
        tools = [{"type": version, "name": "code_execution"}, {**TOOLS[1], "allowed_callers": [version]}]
        assert parse_tools(tools, [PTC_BETA]).code_execution == version


def test_the_prelude_is_valid_python_that_binds_identifier_names() -> None:
    tools = [
        {"type": V, "name": "code_execution"},
        {"name": "get-weather", "input_schema": {"type": "object"}, "allowed_callers": [V]},
        {"name": "class", "input_schema": {"type": "object"}, "allowed_callers": [V]},
    ]
    toolset = parse_tools(tools, [])
    assert [tool.function_name for tool in toolset.programmatic] == ["get_weather", "class_"]
    compile(client_prelude(toolset), "<prelude>", "exec")
