"""Streaming, container expiry and errors, limits, auth and the other endpoints, through the real SDK."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import anthropic
import anyio
import pytest

from ptc_mcp.emulators.bedrock import ConverseRequest, ModelReply, text_block
from ptc_mcp.emulators.bedrock import tool_use_block as converse_tool_use
from tests.proxy.helpers import MODEL, client_tool, code_then_answer, open_rig

pytestmark = pytest.mark.anyio

VERSION = "code_execution_20260120"
TOOLS: list[Any] = [{"type": VERSION, "name": "code_execution"}, client_tool("query_sales", callers=[VERSION])]
ONE_CALL = 'row = await query_sales(region="west")\nprint(row["revenue"])'


async def test_streaming_yields_the_anthropic_event_sequence_with_the_container_in_message_delta() -> None:
    async with open_rig(code_then_answer(ONE_CALL)) as rig:
        with anyio.fail_after(60):
            messages: list[Any] = [{"role": "user", "content": "West?"}]
            stream = await rig.client.messages.create(
                model=MODEL, max_tokens=512, messages=messages, tools=TOOLS, stream=True
            )
            events = [event async for event in stream]
            kinds = [event.type for event in events if event.type != "ping"]
            assert kinds == [
                "message_start",
                *["content_block_start", "content_block_delta", "content_block_stop"] * 3,
                "message_delta",
                "message_stop",
            ]
            starts = [e.content_block.model_dump(mode="json") for e in events if e.type == "content_block_start"]
            assert [s["type"] for s in starts] == ["text", "server_tool_use", "tool_use"]
            server_use_id = starts[1]["id"]
            assert starts[2]["caller"] == {"type": VERSION, "tool_id": server_use_id}
            delta = next(e for e in events if e.type == "message_delta")
            assert delta.delta.stop_reason == "tool_use"
            assert delta.delta.container is not None
            container_id = delta.delta.container.id
            assert container_id.startswith("container_")

            # The SDK's own accumulator builds the same message the non-streaming API returns.
            async with rig.client.messages.stream(
                model=MODEL,
                max_tokens=512,
                messages=[
                    *messages,
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "text", "text": "Let me compute that."},
                            {
                                "type": "server_tool_use",
                                "id": server_use_id,
                                "name": "code_execution",
                                "input": {"code": ONE_CALL},
                            },
                            {
                                "type": "tool_use",
                                "id": starts[2]["id"],
                                "name": "query_sales",
                                "input": {"region": "west"},
                                "caller": starts[2]["caller"],
                            },
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": starts[2]["id"], "content": '{"revenue": 7}'}
                        ],
                    },
                ],
                tools=TOOLS,
                container=container_id,
            ) as final_stream:
                final = await final_stream.get_final_message()
            assert final.stop_reason == "end_turn"
            assert final.container is not None and final.container.id == container_id
            result = final.content[0].model_dump(mode="json")
            assert result["type"] == "code_execution_tool_result"
            assert result["tool_use_id"] == server_use_id
            assert result["content"]["stdout"] == "7\n"
            assert final.content[1].type == "text"


async def test_an_unknown_container_is_a_not_found_error() -> None:
    async with open_rig(code_then_answer(ONE_CALL)) as rig:
        with anyio.fail_after(30), pytest.raises(anthropic.NotFoundError) as caught:
            await rig.client.messages.create(
                model=MODEL,
                max_tokens=100,
                messages=[{"role": "user", "content": "hi"}],
                tools=TOOLS,
                container="container_doesnotexist",
            )
        assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
        assert "container_doesnotexist" in caught.value.body["error"]["message"]  # type: ignore[index]


async def test_an_unanswered_call_raises_timeout_error_in_the_code_when_the_container_expires() -> None:
    code = """
try:
    await query_sales(region="west")
except TimeoutError:
    print("timed out")
"""
    async with open_rig(code_then_answer(code), container_idle_s=1.0) as rig:
        with anyio.fail_after(60):
            messages: list[Any] = [{"role": "user", "content": "West?"}]
            first = await rig.client.messages.create(model=MODEL, max_tokens=100, messages=messages, tools=TOOLS)
            assert first.stop_reason == "tool_use"
            assert first.container is not None
            owner = hashlib.sha256(b"test").hexdigest()
            run = rig.proxy.registry.get(first.container.id, owner).run
            assert run is not None and run.paused

            await run.wait_done()  # the container expires; the program sees TimeoutError and ends
            assert run.outcome is not None
            assert run.outcome.stdout == "timed out\n"
            while len(rig.proxy.registry):
                await anyio.sleep(0.05)

            call = first.content[-1].model_dump(mode="json")
            continuation = [
                *messages,
                {"role": "assistant", "content": [b.model_dump(mode="json", exclude_none=True) for b in first.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "{}"}]},
            ]
            with pytest.raises(anthropic.BadRequestError) as caught:
                await rig.client.messages.create(
                    model=MODEL, max_tokens=100, messages=continuation, tools=TOOLS, container=first.container.id
                )
            assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
            assert "expired" in caught.value.body["error"]["message"]  # type: ignore[index]


async def test_the_time_a_client_takes_does_not_count_against_the_run_limit() -> None:
    # A limit with room for the run's own phases on a loaded machine (a sandbox to take, the call, the print).
    async with open_rig(code_then_answer(ONE_CALL), limits={"timeout_s": 3}) as rig:
        with anyio.fail_after(60):
            messages: list[Any] = [{"role": "user", "content": "West?"}]
            first = await rig.client.messages.create(model=MODEL, max_tokens=100, messages=messages, tools=TOOLS)
            assert first.container is not None
            await anyio.sleep(4)  # a slow client: longer than the run limit
            call = first.content[-1].model_dump(mode="json")
            messages += [
                {"role": "assistant", "content": [b.model_dump(mode="json", exclude_none=True) for b in first.content]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": '{"revenue": 3}'}],
                },
            ]
            final = await rig.client.messages.create(
                model=MODEL, max_tokens=100, messages=messages, tools=TOOLS, container=first.container.id
            )
            result = final.content[0].model_dump(mode="json")
            assert result["content"] == {
                "type": "code_execution_result",
                "stdout": "3\n",
                "stderr": "",
                "return_code": 0,
                "content": [],
            }


async def test_a_program_that_runs_too_long_is_stopped_and_the_container_keeps_working() -> None:
    def model(request: ConverseRequest) -> ModelReply:
        results = [b["toolResult"] for b in request.messages[-1]["content"] if "toolResult" in b]
        if results:
            return ModelReply([text_block(json.dumps(results[0]["content"][0]["text"]))])
        code = "while True: pass" if "loop" in request.last_user_text() else "print('fine')"
        return ModelReply([converse_tool_use("code_execution", {"code": code})])

    tools: list[Any] = [{"type": VERSION, "name": "code_execution"}]
    async with open_rig(model, limits={"timeout_s": 3}) as rig:  # room for a fresh sandbox's start, loaded
        with anyio.fail_after(60):
            first = await rig.client.messages.create(
                model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "loop"}], tools=tools
            )
            assert first.content[1].model_dump(mode="json")["content"] == {
                "type": "code_execution_tool_result_error",
                "error_code": "execution_time_exceeded",
            }
            assert first.stop_reason == "end_turn"
            assert first.container is not None
            second = await rig.client.messages.create(
                model=MODEL,
                max_tokens=100,
                messages=[{"role": "user", "content": "again"}],
                tools=tools,
                container=first.container.id,
            )
            assert second.content[1].model_dump(mode="json")["content"]["stdout"] == "fine\n"


async def test_api_keys_are_checked_when_configured() -> None:
    async with open_rig(code_then_answer(ONE_CALL), api_keys=("right-key",), api_key="wrong-key") as rig:
        with anyio.fail_after(30), pytest.raises(anthropic.AuthenticationError) as caught:
            await rig.client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 401
        assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


async def test_models_and_count_tokens_answer_in_anthropic_shapes() -> None:
    async with open_rig(code_then_answer(ONE_CALL)) as rig:
        with anyio.fail_after(30):
            models = [model.id async for model in rig.client.models.list()]
            assert models == [MODEL]
            assert (await rig.client.models.retrieve(MODEL)).id == MODEL
            with pytest.raises(anthropic.NotFoundError):
                await rig.client.models.retrieve("no-such-model")
            counted = await rig.client.messages.count_tokens(
                model=MODEL, messages=[{"role": "user", "content": "How many tokens is this?"}], tools=TOOLS
            )
            assert counted.input_tokens > 0


async def test_a_bedrock_error_comes_back_as_the_matching_anthropic_error() -> None:
    from ptc_mcp.emulators.bedrock import ConverseError

    def model(request: ConverseRequest) -> ModelReply:
        raise ConverseError("ThrottlingException", "slow down")

    async with open_rig(model) as rig:
        with anyio.fail_after(30), pytest.raises(anthropic.RateLimitError) as caught:
            await rig.client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


async def test_a_container_of_another_instance_is_refused_with_a_routing_hint() -> None:
    async with open_rig(code_then_answer(ONE_CALL), instance="b") as rig:
        with anyio.fail_after(30), pytest.raises(anthropic.NotFoundError) as caught:
            await rig.client.messages.create(
                model=MODEL,
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
                tools=TOOLS,
                container="container_a_xyz",
            )
        assert "another proxy instance" in caught.value.body["error"]["message"]  # type: ignore[index]
