"""The agent in both modes, the chat command and the token benchmark: real boto3 against the Converse
emulator (replaying scripted trajectories) and the example expense server over real MCP stdio."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from ptc_mcp import cli
from ptc_mcp.agent.converse import BedrockConverse, parse_model_spec
from ptc_mcp.agent.loop import Agent, ToolStarted
from ptc_mcp.agent.toolsets import converse_tool_name, open_toolset
from ptc_mcp.bench.scripted import Answer, Step, TrajectoryModel, Transcript, call, calls
from ptc_mcp.bench.tasks import Task, load_tasks
from ptc_mcp.bench.tasks.expenses import TASKS
from ptc_mcp.bench.tokens import TOKENIZER, run_token_bench
from ptc_mcp.emulators.bedrock import BedrockEmulator, run_emulator
from ptc_mcp.examples.expenses_data import AUDIT_TASK
from tests.conftest import EXPENSES_STDIO

AUDIT = next(task for task in TASKS if task.name == "expense_audit")
FAKE_CREDENTIALS = ("test", "test")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def config_path(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "config.json"
    document = {
        "mcpServers": {"expenses": EXPENSES_STDIO},
        "sandbox": {"kind": "process", "allow_unisolated": True},
        "audit": {"enabled": False},
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    yield str(path)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["traditional", "ptc"])
async def test_the_agent_answers_the_audit_through_boto3_and_real_mcp(config_path: str, mode: str) -> None:
    emulator = BedrockEmulator(TrajectoryModel(AUDIT.policy(mode)))
    events: list[Any] = []
    with anyio.fail_after(90):
        async with run_emulator(emulator) as url, open_toolset(mode, config_path) as tools:  # type: ignore[arg-type]
            model = BedrockConverse("scripted", endpoint_url=url, credentials=FAKE_CREDENTIALS)
            agent = Agent(model, tools, on_event=events.append)
            turn = await agent.ask(AUDIT_TASK)
    assert AUDIT.check(turn.text), turn.text
    offered = emulator.requests[0].tool_names
    called = {event.name for event in events if isinstance(event, ToolStarted)}
    if mode == "ptc":
        assert offered == ["execute_program"]
        assert called == {"execute_program"}
        assert turn.usage.model_calls == 2
    else:
        assert sorted(offered) == sorted(
            converse_tool_name("expenses", tool) for tool in ("get_team_members", "get_expenses", "get_custom_budget")
        )
        assert turn.tool_calls == 17
    assert turn.usage.input_tokens > 0 and turn.usage.output_tokens > 0
    # The conversation Bedrock would see is well formed: the emulator validated every request of it.
    assert len(emulator.requests) == turn.usage.model_calls


@pytest.mark.anyio
async def test_the_token_bench_finds_right_answers_and_a_large_reduction_on_the_audit() -> None:
    with anyio.fail_after(120):
        report = await run_token_bench([AUDIT])
    (row,) = report["tasks"]
    assert row["traditional"]["correct"] and row["ptc"]["correct"]
    assert row["reduction"] > 0.5
    assert row["ptc"]["total_tokens"] < row["traditional"]["total_tokens"]
    assert report["simulated"] is True
    assert report["tokenizer"] == TOKENIZER


@pytest.mark.anyio
async def test_sequential_replay_makes_one_model_call_per_tool_call() -> None:
    with anyio.fail_after(120):
        report = await run_token_bench([AUDIT], sequential=True)
    (row,) = report["tasks"]
    assert row["traditional"]["correct"] and row["ptc"]["correct"]
    assert row["traditional"]["model_calls"] == row["traditional"]["tool_calls"] + 1 == 18
    assert report["traditional_tool_calls"] == "sequential"


USER_TASKS = """
from ptc_mcp.bench.scripted import Answer, call, calls
from ptc_mcp.bench.tasks import Task
from ptc_mcp.bench.tasks.expenses import SERVERS

def traditional(t):
    if t.round == 0:
        return calls(call("expenses.get_team_members", department="sales"))
    return Answer(f"{len(t.last[0].items)} people work in sales")

def ptc(t):
    if t.round == 0:
        return calls(call("execute_program", code="print(len(await expenses.get_team_members(department='sales')))"))
    return Answer(f"{t.last[0].text.splitlines()[0]} people work in sales")

MINE = [Task("sales_headcount", "How many people work in sales?", lambda answer: answer.startswith("2 "),
             traditional, ptc, SERVERS, "one lookup")]
"""


@pytest.fixture
def user_tasks(tmp_path: Path) -> Path:
    path = tmp_path / "my_tasks.py"
    path.write_text(USER_TASKS, encoding="utf-8")
    return path


def test_tasks_load_from_a_users_file_and_from_a_module(user_tasks: Path) -> None:
    (task,) = load_tasks(f"{user_tasks}:MINE")
    assert isinstance(task, Task) and task.name == "sales_headcount"
    shipped = load_tasks("ptc_mcp.bench.tasks.expenses:TASKS")
    assert len(shipped) >= 5 and len({t.name for t in shipped}) == len(shipped)
    assert load_tasks("ptc_mcp.bench.tasks.expenses") == shipped
    with pytest.raises(ValueError):
        load_tasks(str(user_tasks))  # no TASKS attribute in that file
    with pytest.raises(ValueError):
        load_tasks(str(user_tasks.with_name("missing.py")))


def test_bench_tokens_json_has_the_documented_shape(user_tasks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["bench", "tokens", "--json", "--output", "", "--tasks", f"{user_tasks}:MINE"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert {"tasks", "tokenizer", "model", "simulated"} <= set(report)
    assert report["simulated"] is True and report["tokenizer"] == TOKENIZER
    (row,) = report["tasks"]
    assert row["name"] == "sales_headcount"
    for mode in ("traditional", "ptc"):
        assert {"input_tokens", "output_tokens", "total_tokens", "model_calls", "correct"} <= set(row[mode])
        assert row[mode]["correct"] is True
        assert row[mode]["total_tokens"] == row[mode]["input_tokens"] + row[mode]["output_tokens"]
    expected = 1 - row["ptc"]["total_tokens"] / row["traditional"]["total_tokens"]
    assert row["reduction"] == pytest.approx(expected, abs=1e-4)


def test_bench_tokens_writes_the_markdown_table_and_a_png(user_tasks: Path, tmp_path: Path) -> None:
    output = tmp_path / "docs" / "benchmarks.md"
    assert cli.main(["bench", "tokens", "--output", str(output), "--tasks", f"{user_tasks}:MINE"]) == 0
    text = output.read_text(encoding="utf-8")
    assert "<!-- tokens:start -->" in text and "| sales_headcount |" in text
    assert "Simulated trajectories" in text
    assert (output.parent / "tokens.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["traditional", "ptc"])
async def test_chat_runs_a_turn_against_the_emulator(config_path: str, mode: str) -> None:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("AWS_PROFILE", None)
    with anyio.fail_after(90):
        async with run_emulator(TrajectoryModel(AUDIT.policy(mode))) as url:
            command = [sys.executable, "-m", "ptc_mcp", "chat", "--model", "bedrock:scripted"]
            command += ["--config", config_path, "--mode", mode, "--endpoint-url", url]
            done = await anyio.run_process(command, input=(AUDIT_TASK + "\n").encode(), env=env, check=False)
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, stderr
    assert AUDIT.check(stdout), stdout
    assert "[turn:" in stderr and "tokens" in stderr
    tool = "execute_program" if mode == "ptc" else converse_tool_name("expenses", "get_expenses")
    assert f"→ {tool}" in stderr


@pytest.mark.anyio
@pytest.mark.parametrize(("reply", "answered"), [("a", True), ("n", False)], ids=["always-in-this-run", "no"])
async def test_chat_asks_the_person_in_the_terminal_before_calls_that_need_approval(
    tmp_path: Path, reply: str, answered: bool
) -> None:
    def declined_policy(t: Transcript) -> Step:
        if t.round == 0:
            code = "try:\n    await expenses.get_custom_budget(user_id='E7')\n"
            code += "except ToolError as e:\n    print(e.error_type)"
            return calls(call("execute_program", code=code))
        return Answer(t.last[0].text)

    config = tmp_path / "config.json"
    document = {
        "mcpServers": {"expenses": EXPENSES_STDIO},
        "sandbox": {"kind": "process", "allow_unisolated": True},
        "tools": {"approve": ["expenses.get_custom_budget"]},
        "audit": {"file": str(tmp_path / "audit.jsonl")},
    }
    config.write_text(json.dumps(document), encoding="utf-8")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("AWS_PROFILE", None)
    with anyio.fail_after(90):
        policy = AUDIT.policy("ptc") if answered else declined_policy
        async with run_emulator(TrajectoryModel(policy)) as url:
            command = [sys.executable, "-m", "ptc_mcp", "chat", "--model", "bedrock:scripted"]
            command += ["--config", str(config), "--mode", "ptc", "--endpoint-url", url]
            stdin = f"{AUDIT_TASK}\n{reply}\n".encode()
            done = await anyio.run_process(command, input=stdin, env=env, check=False)
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, stderr
    assert stderr.count("needs your approval") == 1, stderr  # asked once, for every budget of the run
    assert "Tool: get_custom_budget" in stderr
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    decisions = {line["decision"] for line in lines if line["event"] == "approval"}
    if answered:
        assert AUDIT.check(stdout), stdout
        assert decisions == {"approved_for_run", "approved_earlier"}
    else:
        assert decisions == {"declined"}
        assert "tool_denied" in stdout


def test_chat_refuses_a_model_that_is_not_on_bedrock(config_path: str) -> None:
    assert cli.main(["chat", "--model", "gpt-4", "--config", config_path]) == 2
    with pytest.raises(ValueError):
        parse_model_spec("bedrock:")


def _aws_credentials() -> bool:
    import boto3

    return boto3.Session().get_credentials() is not None


@pytest.mark.aws
@pytest.mark.anyio
@pytest.mark.skipif(not _aws_credentials(), reason="no AWS credentials found by boto3 (opt-in test against Bedrock)")
async def test_a_real_bedrock_model_answers_the_audit_in_ptc_mode(config_path: str) -> None:
    model_id = os.environ.get("PTC_MCP_BEDROCK_MODEL", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    with anyio.fail_after(300):
        async with open_toolset("ptc", config_path) as tools:
            agent = Agent(BedrockConverse(model_id, region=os.environ.get("AWS_REGION")), tools)
            turn = await agent.ask(AUDIT_TASK)
    assert turn.usage.model_calls >= 2 and turn.usage.input_tokens > 0
    assert AUDIT.check(turn.text), turn.text
