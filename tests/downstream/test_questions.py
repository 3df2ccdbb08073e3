"""Whom a downstream server's question goes to, on one connection shared by the runs of several clients.

A real stdio server (``asking_server.py``) asks during a call; the runs' channels are small recording
``ClientChannel``s (real MCP clients behind them: ``tests/test_relay.py``, ``tests/test_approvals.py``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest

from ptc_mcp.config import StdioServerConfig
from ptc_mcp.downstream.connection import DownstreamServer
from ptc_mcp.interaction import CURRENT_INTERACTION, MAX_WAITING_QUESTIONS, RunInteraction, SamplingAnswer

pytestmark = pytest.mark.anyio

ASKING_SERVER = StdioServerConfig(command=sys.executable, args=[str(Path(__file__).with_name("asking_server.py"))])
WAIT_S = 60.0


@dataclass(eq=False)
class RecordingChannel:
    """A client that answers every question with its own name and remembers what it was asked."""

    name: str
    can_elicit: bool = True
    can_sample: bool = False
    asked: list[str] = field(default_factory=list)

    @property
    def peer(self) -> object:
        return self

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(params.message)
        return types.ElicitResult(action="accept", content={"answer": self.name})

    async def sample(self, params: types.CreateMessageRequestParams) -> SamplingAnswer:
        raise AssertionError("not used")


async def _ask_together(mode: str, interactions: dict[str, RunInteraction]) -> dict[str, types.CallToolResult]:
    results: dict[str, types.CallToolResult] = {}

    async def call(server: DownstreamServer, tag: str, interaction: RunInteraction) -> None:
        CURRENT_INTERACTION.set(interaction)  # what the bridge does around a nested call of that run
        results[tag] = await server.call_tool("ask", {"tag": tag, "together": len(interactions)})

    with anyio.fail_after(WAIT_S):
        async with DownstreamServer("asking", ASKING_SERVER, mode=mode) as server:
            await server.connect()
            async with anyio.create_task_group() as tg:
                for tag, interaction in interactions.items():
                    tg.start_soon(call, server, tag, interaction)
    return results


def _run(channel: RecordingChannel) -> RunInteraction:
    return RunInteraction(channel, timeout_s=WAIT_S)


async def test_handshake_era_questions_while_calls_of_two_clients_are_in_flight_reach_nobody() -> None:
    alice, bob = RecordingChannel("alice"), RecordingChannel("bob")
    results = await _ask_together("legacy", {"a": _run(alice), "b": _run(bob)})
    for result in results.values():
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert "ambiguous_question" in text
    assert alice.asked == [] and bob.asked == []


async def test_handshake_era_questions_of_two_runs_of_one_client_reach_that_client() -> None:
    alice = RecordingChannel("alice")
    results = await _ask_together("legacy", {"a": _run(alice), "b": _run(alice)})
    assert {tag: result.structured_content for tag, result in results.items()} == {
        "a": {"action": "accept", "content": {"answer": "alice"}},
        "b": {"action": "accept", "content": {"answer": "alice"}},
    }
    assert sorted(alice.asked) == ["question for a", "question for b"]


async def test_2026_questions_reach_exactly_the_client_whose_call_asked() -> None:
    alice, bob = RecordingChannel("alice"), RecordingChannel("bob")
    results = await _ask_together("2026-07-28", {"a": _run(alice), "b": _run(bob)})
    assert results["a"].structured_content == {"action": "accept", "content": {"answer": "alice"}}
    assert results["b"].structured_content == {"action": "accept", "content": {"answer": "bob"}}
    assert alice.asked == ["question for a"] and bob.asked == ["question for b"]


async def test_a_question_during_a_call_of_no_run_gets_an_error_answer() -> None:
    with anyio.fail_after(WAIT_S):
        async with DownstreamServer("asking", ASKING_SERVER, mode="legacy") as server:
            result = await server.call_tool("ask", {"tag": "x", "together": 1})
    assert result.is_error


async def test_a_run_holds_at_most_max_waiting_questions_and_refuses_more_at_once() -> None:
    release = anyio.Event()

    @dataclass(eq=False)
    class SlowChannel(RecordingChannel):
        async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult:
            self.asked.append(params.message)
            await release.wait()
            return types.ElicitResult(action="decline")

    channel = SlowChannel("slow")
    run = _run(channel)
    question = types.ElicitRequestFormParams(message="q", requested_schema={"type": "object", "properties": {}})
    answers: list[Any] = []

    async def ask() -> None:
        answers.append(await run.elicit(question))

    with anyio.fail_after(WAIT_S):
        async with anyio.create_task_group() as tg:
            for _ in range(MAX_WAITING_QUESTIONS):
                tg.start_soon(ask)
            while len(channel.asked) < MAX_WAITING_QUESTIONS:
                await anyio.sleep(0.01)
            refused = await run.elicit(question)  # answered at once, without reaching the client
            release.set()
    assert isinstance(refused, types.ErrorData) and "already wait" in refused.message
    assert len(channel.asked) == MAX_WAITING_QUESTIONS
    assert all(isinstance(answer, types.ElicitResult) for answer in answers)
