"""Approvals: nested calls that need a person's OK ask the run's client through elicitation first.

Downstream is the real ``@modelcontextprotocol/server-memory`` (npm); its ``MEMORY_FILE_PATH`` file shows what reached
it. ``tools.approve`` names ``memory.create_entities``; ``tools.approve_destructive`` covers the tools the server
marks destructive (``delete_entities``, ...). The official Python client answers, in both protocol eras.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext

from ptc_mcp.app import App, open_app
from ptc_mcp.approvals import APPROVAL_META_KEY, REMEMBER_FIELD
from ptc_mcp.server import build_server
from tests.conftest import server_memory_missing, test_config
from tests.mcp_calls import execute, structured

pytestmark = [pytest.mark.anyio, pytest.mark.node]

MODES = ["legacy", "2026-07-28"]
WAIT_S = 60.0


def create(name: str) -> str:
    return f"await memory.create_entities(entities=[{{'name': {name!r}, 'entityType': 'test', 'observations': []}}])"


def caught(call: str) -> str:
    return f"try:\n    {call}\n    caught = None\nexcept ToolError as exc:\n    caught = exc.error_type\ncaught"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def memory_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("memory") / "memory.jsonl"


@pytest.fixture(scope="module")
async def app(memory_file: Path) -> AsyncIterator[App]:
    missing = server_memory_missing()
    if missing:
        pytest.skip(missing)
    memory = {
        "command": "mcp-server-memory",
        "env": {"MEMORY_FILE_PATH": str(memory_file), "npm_config_offline": "true"},
    }
    config = test_config({"memory": memory}, tools={"approve": ["memory.create_entities"], "approve_destructive": True})
    with anyio.fail_after(WAIT_S):
        async with open_app(config, allow_unisolated=True) as running:
            assert running.pool.failures == {}
            yield running


@pytest.fixture
def audit(app: App) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    app.executor.audit.observe(lines.append)
    return lines


def entities(memory_file: Path) -> set[str]:
    """The entity names server-memory has stored (what reached it)."""
    if not memory_file.exists():
        return set()
    lines = [json.loads(line) for line in memory_file.read_text().splitlines() if line.strip()]
    return {line["name"] for line in lines if line.get("type") == "entity"}


class Approver:
    """A person answering approval questions with ``action`` (and optionally "for the rest of this run")."""

    def __init__(self, action: str = "accept", *, remember: bool = False) -> None:
        self.action = action
        self.remember = remember
        self.questions: list[types.ElicitRequestParams] = []

    async def __call__(self, ctx: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.questions.append(params)
        if self.action != "accept":
            return types.ElicitResult(action=self.action)  # type: ignore[arg-type]
        return types.ElicitResult(action="accept", content={REMEMBER_FIELD: self.remember})


def decisions(audit: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(line["tool"], line["decision"]) for line in audit if line["event"] == "approval"]


@pytest.mark.parametrize("mode", MODES)
async def test_an_accepted_approval_lets_the_call_run(
    app: App, memory_file: Path, audit: list[dict[str, Any]], mode: str
) -> None:
    name = f"accepted-{mode}"
    approver = Approver("accept")
    async with Client(build_server(app), mode=mode, elicitation_callback=approver) as client:
        result = await execute(client, caught(create(name)))
    assert not result.is_error, result
    assert structured(result)["result"] is None
    assert name in entities(memory_file)
    [question] = approver.questions
    assert isinstance(question, types.ElicitRequestFormParams)
    session = structured(result)["session"]
    for fact in ("Server: memory", "Tool: create_entities", f'"name": "{name}"', f"Session: {session[:12]}"):
        assert fact in question.message
    if mode == "legacy":  # the SDK's 2026-07-28 wire shape of an input request drops _meta
        assert question.meta is not None and question.meta[APPROVAL_META_KEY]["tool"] == "create_entities"
    assert decisions(audit) == [("memory.create_entities", "approved")]
    assert [line["outcome"] for line in audit if line["event"] == "call"] == ["ok"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("action", "decision"), [("decline", "declined"), ("cancel", "cancelled")])
async def test_a_declined_approval_raises_tool_denied_and_sends_nothing_downstream(
    app: App, memory_file: Path, audit: list[dict[str, Any]], mode: str, action: str, decision: str
) -> None:
    name = f"{decision}-{mode}"
    approver = Approver(action)
    code = caught(create(name)) + "\nfirst = caught\n" + caught(create(name + "-again")) + "\n[first, caught]"
    async with Client(build_server(app), mode=mode, elicitation_callback=approver) as client:
        result = await execute(client, code)
    assert not result.is_error, result
    assert structured(result)["result"] == ["tool_denied", "tool_denied"]
    assert structured(result)["tool_calls"] == 0  # nothing left the host (the budget still counts the attempts)
    assert not {name, name + "-again"} & entities(memory_file)
    # A decline holds for the rest of the run (a looping program cannot flood the person); a cancel asks again.
    again = "declined_earlier" if action == "decline" else decision
    assert len(approver.questions) == (1 if action == "decline" else 2)
    assert decisions(audit) == [("memory.create_entities", decision), ("memory.create_entities", again)]
    assert [line["outcome"] for line in audit if line["event"] == "call"] == ["tool_denied", "tool_denied"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_elicitation_gets_tool_denied_at_once(
    app: App, memory_file: Path, audit: list[dict[str, Any]], mode: str
) -> None:
    name = f"unasked-{mode}"
    async with Client(build_server(app), mode=mode) as client:
        with anyio.fail_after(WAIT_S):
            result = await execute(client, caught(create(name)))
    assert structured(result)["result"] == "tool_denied"
    assert name not in entities(memory_file)
    assert decisions(audit) == [("memory.create_entities", "unanswered")]


@pytest.mark.parametrize("mode", MODES)
async def test_allowing_a_tool_for_the_rest_of_the_run_asks_once(
    app: App, memory_file: Path, audit: list[dict[str, Any]], mode: str
) -> None:
    names = [f"remembered-{mode}-{i}" for i in range(3)]
    approver = Approver("accept", remember=True)
    code = "\n".join(create(name) for name in names[:2])
    code += f"\nawait asyncio.gather({create(names[2]).removeprefix('await ')})"
    async with Client(build_server(app), mode=mode, elicitation_callback=approver) as client:
        result = await execute(client, code)
        assert not result.is_error, result
        assert len(approver.questions) == 1
        assert set(names) <= entities(memory_file)
        # A new run asks again.
        again = await execute(client, create(f"next-run-{mode}"), session=structured(result)["session"])
    assert not again.is_error, again
    assert len(approver.questions) == 2
    assert decisions(audit) == [
        ("memory.create_entities", "approved_for_run"),
        ("memory.create_entities", "approved_earlier"),
        ("memory.create_entities", "approved_earlier"),
        ("memory.create_entities", "approved_for_run"),
    ]


@pytest.mark.parametrize("mode", MODES)
async def test_approve_destructive_asks_before_tools_the_server_marks_destructive_only(
    app: App, memory_file: Path, audit: list[dict[str, Any]], mode: str
) -> None:
    name = f"kept-{mode}"
    approver = Approver("accept")
    async with Client(build_server(app), mode=mode, elicitation_callback=approver) as client:
        assert not (await execute(client, create(name))).is_error
    assert name in entities(memory_file)
    decliner = Approver("decline")
    code = caught(f"await memory.delete_entities(entityNames=[{name!r}])") + "\n(caught, await memory.read_graph())"
    async with Client(build_server(app), mode=mode, elicitation_callback=decliner) as client:
        result = await execute(client, code)
    assert not result.is_error, result
    denied, graph = structured(result)["result"]
    assert denied == "tool_denied"
    assert name in entities(memory_file)
    assert name in {entity["name"] for entity in graph["entities"]}
    assert len(decliner.questions) == 1  # read_graph (readOnlyHint) was not asked about
    assert "delete_entities" in decliner.questions[0].message
    assert decisions(audit)[-1] == ("memory.delete_entities", "declined")
