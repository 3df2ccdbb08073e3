"""Questions downstream servers ask during a nested call reach the client of the run, in both protocol eras.

The real ``@modelcontextprotocol/server-everything`` (npm, run from its global install) offers
``trigger-elicitation-request`` and ``trigger-sampling-request`` only to clients that declare elicitation and
sampling; a program calls them through ptc-mcp, and the official Python client's callbacks answer.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext

from ptc_mcp.app import App, open_app
from ptc_mcp.bench.served import serve_subprocess
from ptc_mcp.server import build_server
from tests.conftest import test_config
from tests.mcp_calls import execute, structured

pytestmark = [pytest.mark.anyio, pytest.mark.node]

MODES = ["legacy", "2026-07-28"]
WAIT_S = 60.0
ELICIT = "await call_tool('everything.trigger-elicitation-request', {})"
SAMPLE = "await call_tool('everything.trigger-sampling-request', {'prompt': 'the answer?'})"
CAUGHT = "try:\n    {call}\nexcept ToolError as exc:\n    caught = [exc.error_type, exc.message]\ncaught"


def server_everything_missing() -> str | None:
    if shutil.which("node") is None:
        return "Node.js is not on PATH"
    if shutil.which("mcp-server-everything") is None:
        return "run `npm install -g @modelcontextprotocol/server-everything` (tests never download packages)"
    return None


def everything_server() -> dict[str, Any]:
    """server-everything over stdio, started by node from its global install."""
    entry = os.path.realpath(shutil.which("mcp-server-everything") or "mcp-server-everything")
    return {"command": "node", "args": [entry, "stdio"], "env": {"npm_config_offline": "true"}}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def app() -> AsyncIterator[App]:
    missing = server_everything_missing()
    if missing:
        pytest.skip(missing)
    with anyio.fail_after(WAIT_S):
        async with open_app(test_config({"everything": everything_server()}), allow_unisolated=True) as running:
            assert running.pool.failures == {}
            yield running


class Person:
    """The client side: answers elicitation like a person and sampling like a model, and remembers what it saw."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.prompts: list[str] = []

    async def elicit(self, ctx: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})

    async def sample(
        self, ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        content = params.messages[0].content
        self.prompts.append(content.text if isinstance(content, types.TextContent) else "")
        text = types.TextContent(type="text", text="forty-two")
        return types.CreateMessageResult(role="assistant", content=text, model="callback-model")

    def options(self) -> dict[str, Any]:
        return {"elicitation_callback": self.elicit, "sampling_callback": self.sample}


def _flatten(value: Any) -> str:
    return "\n".join(_flatten(item) for item in value) if isinstance(value, list) else str(value)


@pytest.mark.parametrize("mode", MODES)
async def test_server_everythings_elicitation_tool_returns_what_the_client_answered(app: App, mode: str) -> None:
    person = Person()
    async with Client(build_server(app), mode=mode, **person.options()) as client:
        result = await execute(client, ELICIT)
    assert not result.is_error, result
    text = _flatten(structured(result)["result"])
    assert "Name: Ada Lovelace" in text and '"action": "accept"' in text
    assert person.asked == ["Please provide inputs for the following fields:"]


@pytest.mark.parametrize("mode", MODES)
async def test_server_everythings_sampling_tool_returns_what_the_clients_model_wrote(app: App, mode: str) -> None:
    person = Person()
    async with Client(build_server(app), mode=mode, **person.options()) as client:
        result = await execute(client, SAMPLE)
    assert not result.is_error, result
    text = _flatten(structured(result)["result"])
    assert "forty-two" in text and "callback-model" in text
    assert person.prompts == ["Resource trigger-sampling-request context: the answer?"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("call", [ELICIT, SAMPLE], ids=["elicitation", "sampling"])
async def test_a_client_without_the_capability_makes_the_nested_call_raise_tool_error(
    app: App, mode: str, call: str
) -> None:
    async with Client(build_server(app), mode=mode) as client:
        with anyio.fail_after(WAIT_S):  # the question fails at once, not after a timeout
            result = await execute(client, CAUGHT.format(call=call))
    assert not result.is_error, result
    error_type, message = structured(result)["result"]
    assert error_type == "tool_error"
    assert "does not support" in message


@pytest.mark.parametrize("mode", MODES)
async def test_one_run_asks_several_questions_in_parallel_and_gets_every_answer(app: App, mode: str) -> None:
    person = Person()
    code = f"results = await asyncio.gather({ELICIT.removeprefix('await ')}, {SAMPLE.removeprefix('await ')})\nresults"
    async with Client(build_server(app), mode=mode, **person.options()) as client:
        result = await execute(client, code)
    assert not result.is_error, result
    text = _flatten(structured(result)["result"])
    assert "Ada Lovelace" in text and "forty-two" in text


async def test_a_question_nobody_answers_fails_after_input_timeout_s_and_the_run_goes_on(open_test_app: Any) -> None:
    missing = server_everything_missing()
    if missing:
        pytest.skip(missing)
    never = anyio.Event()

    async def silent(ctx: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        await never.wait()
        raise AssertionError("unreachable")

    async with (
        open_test_app({"everything": everything_server()}, limits={"input_timeout_s": 1}) as running,
        Client(build_server(running), mode="legacy", elicitation_callback=silent) as client,
    ):
        result = await execute(client, CAUGHT.format(call=ELICIT) + "\nafter = 'still running'\n[caught, after]")
    assert not result.is_error, result
    (error_type, message), after = structured(result)["result"]
    assert error_type == "tool_error" and "within 1 s" in message
    assert after == "still running"


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
async def test_over_streamable_http_the_answers_reach_the_program(mode: str) -> None:
    missing = server_everything_missing()
    if missing:
        pytest.skip(missing)
    person = Person()
    async with (
        serve_subprocess("http", mcpServers={"everything": everything_server()}) as served,
        Client(served.url, mode=mode, **person.options()) as client,
    ):
        result = await execute(client, f"[{ELICIT}, {SAMPLE}]")
    assert not result.is_error, result
    text = _flatten(structured(result)["result"])
    assert "Ada Lovelace" in text and "forty-two" in text


async def test_a_2026_client_driving_the_exchange_by_hand_sees_input_required_then_the_result(app: App) -> None:
    code = f"{ELICIT}\n"
    async with Client(build_server(app), mode="2026-07-28", elicitation_callback=Person().elicit) as client:
        session = client.session
        with anyio.fail_after(WAIT_S):
            first = await session.call_tool("execute_program", {"code": code}, allow_input_required=True)
            assert isinstance(first, types.InputRequiredResult)
            assert first.request_state is not None and first.input_requests is not None
            [(key, question)] = first.input_requests.items()
            assert isinstance(question, types.ElicitRequest)
            answer = {key: types.ElicitResult(action="accept", content={"name": "Grace Hopper"})}

            async def retry(arguments: dict[str, Any], state: str) -> Any:
                return await session.call_tool(
                    "execute_program", arguments, input_responses=answer, request_state=state, allow_input_required=True
                )

            forged = await retry({"code": code}, "ptcx_" + "A" * 43)
            other_code = await retry({"code": code + "1\n"}, first.request_state)
            done = await retry({"code": code}, first.request_state)
            again = await retry({"code": code}, first.request_state)
    for refused in (forged, other_code, again):  # unknown, bound to other arguments, already collected
        assert isinstance(refused, types.CallToolResult) and refused.is_error
        assert structured(refused)["error"]["type"] == "invalid_input"
    assert isinstance(done, types.CallToolResult) and not done.is_error, done
    assert "Grace Hopper" in _flatten(structured(done)["result"])
    assert len(app.exchanges) == 0


@pytest.mark.parametrize("mode", MODES)
async def test_the_runs_time_limit_keeps_counting_while_it_waits_and_ending_withdraws_the_question(
    open_test_app: Any, mode: str
) -> None:
    """Handshake era: the pending server→client request is cancelled when the run ends. 2026-07-28: the question
    already went out with the finished request, so the client answers late, and its retry gets the run's end."""
    missing = server_everything_missing()
    if missing:
        pytest.skip(missing)
    withdrawn, run_ended = anyio.Event(), anyio.Event()

    async def late(ctx: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        try:
            await (anyio.sleep_forever() if mode == "legacy" else run_ended.wait())
        except anyio.get_cancelled_exc_class():
            withdrawn.set()
            raise
        return types.ElicitResult(action="accept", content={"name": "too late"})

    async with (
        open_test_app({"everything": everything_server()}, limits={"timeout_s": 3, "input_timeout_s": 300}) as running,
        Client(build_server(running), mode=mode, elicitation_callback=late) as client,
    ):
        running.executor.audit.observe(lambda line: run_ended.set() if line["event"] == "run" else None)
        started = anyio.current_time()
        result = await execute(client, ELICIT)
        assert result.is_error and structured(result)["error"]["type"] == "timeout"
        assert anyio.current_time() - started < WAIT_S
        if mode == "legacy":
            with anyio.fail_after(WAIT_S):
                await withdrawn.wait()
        assert len(running.exchanges) == 0


async def test_a_2026_client_gets_progress_from_every_request_of_the_exchange(app: App) -> None:
    person = Person()
    messages: list[str] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    code = f"print('before', flush=True)\nanswer = {ELICIT}\nprint('after')\n'done'"
    async with Client(build_server(app), mode="2026-07-28", **person.options()) as client:
        with anyio.fail_after(WAIT_S):
            result = await client.call_tool("execute_program", {"code": code}, progress_callback=progress)
    assert not result.is_error, result
    assert structured(result)["result"] == "done"
    assert structured(result)["stdout"] == "before\nafter\n"
    assert any("everything.trigger-elicitation-request ok" in message for message in messages), messages


async def test_a_question_while_two_clients_call_the_same_handshake_era_server_reaches_neither_other_client(
    app: App,
) -> None:
    """server-everything speaks the handshake-era protocol, so its question names no call: while client A's call
    waits for A's answer, a question that comes with B's call in flight too is refused, never shown to A."""
    a_asked, b_done = anyio.Event(), anyio.Event()
    a_questions: list[str] = []

    async def a_answers(ctx: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        a_questions.append(params.message)
        a_asked.set()
        await b_done.wait()
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})

    b_person = Person()
    results: dict[str, types.CallToolResult] = {}
    async with (
        Client(build_server(app), mode="legacy", elicitation_callback=a_answers) as client_a,
        Client(build_server(app), mode="legacy", **b_person.options()) as client_b,
        anyio.create_task_group() as tg,
    ):

        async def run_a() -> None:
            results["a"] = await execute(client_a, ELICIT)

        tg.start_soon(run_a)
        with anyio.fail_after(WAIT_S):
            await a_asked.wait()
        results["b"] = await execute(client_b, CAUGHT.format(call=ELICIT))
        b_done.set()
    assert not results["a"].is_error, results["a"]
    assert "Ada Lovelace" in _flatten(structured(results["a"])["result"])
    error_type, message = structured(results["b"])["result"]
    assert error_type == "tool_error" and "ambiguous_question" in message
    assert len(a_questions) == 1 and b_person.asked == []
