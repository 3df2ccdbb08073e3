"""The runtime's stepped mode (``StepDriver``) and the host's step codec, in process: no emulator, no AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ptc_mcp.errors import SandboxFailure
from ptc_mcp.sandboxes.agentcore.steps import StepCodec
from ptc_mcp.sandboxes.protocol import Call, Done, Output, runtime_source

CATALOG = {"servers": [{"name": "calc", "global": "calc", "tools": [{"name": "add", "attr": "add"}]}]}


def run_message(code: str) -> dict[str, Any]:
    return {
        "type": "run",
        "id": "r",
        "code": code,
        "catalog": CATALOG,
        "catalog_version": "1",
        "max_output_bytes": 4096,
    }


class Driver:
    """A ``StepDriver`` loaded the way the install snippet loads it, driven like the backend drives it."""

    def __init__(self, **options: Any) -> None:
        namespace: dict[str, Any] = {"__name__": "__ptc_stepped__"}
        exec(compile(runtime_source(), "ptc_runtime", "exec"), namespace)
        self.driver = namespace["StepDriver"](**options)
        self.seq = 0

    def step(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.seq += 1
        reply: list[dict[str, Any]] = json.loads(self.driver.step(self.seq, json.dumps(messages)))
        return reply

    def run(self, code: str, answer: Any = None) -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
        """Run to ``done``; ``answer(call) -> value``. Returns every step's messages and the done message."""
        steps: list[list[dict[str, Any]]] = []
        inbox: list[dict[str, Any]] = [run_message(code)]
        while True:
            messages = self.step(inbox)
            steps.append(messages)
            done = [message for message in messages if message["type"] == "done"]
            if done:
                return steps, done[0]
            inbox = [
                {"type": "result", "id": "r", "call": message["call"], "ok": True, "value": answer(message)}
                for message in messages
                if message["type"] == "call"
            ]


@pytest.fixture
def driver() -> Iterator[Driver]:
    yield Driver(wait_s=5.0, flush_s=5.0)


def add(call: dict[str, Any]) -> Any:
    return call["args"]["a"] + call["args"]["b"]


def test_sequential_calls_take_one_step_each(driver: Driver) -> None:
    steps, done = driver.run("t = 0\nfor i in range(5):\n    t = await calc.add(a=t, b=i)\nt", add)
    assert done["result"] == 10
    assert len(steps) == 6
    assert all(len([m for m in step if m["type"] == "call"]) == 1 for step in steps[:-1])


def test_gathered_calls_leave_in_one_step(driver: Driver) -> None:
    steps, done = driver.run("sum(await asyncio.gather(*[calc.add(a=i, b=0) for i in range(50)]))", add)
    assert done["result"] == sum(range(50))
    assert [len([m for m in step if m["type"] == "call"]) for step in steps] == [50, 0]


def test_a_step_returns_when_calls_are_pending_even_while_a_timer_runs(driver: Driver) -> None:
    code = "r = await asyncio.gather(calc.add(a=1, b=1), asyncio.sleep(0.3))\nr[0]"
    steps, done = driver.run(code, add)
    assert done["result"] == 2
    assert [m["type"] for m in steps[0]] == ["call"]  # the call left before the sleep ended


def test_a_retried_step_gets_the_same_answer_and_is_not_delivered_twice(driver: Driver) -> None:
    run = run_message("await calc.add(a=1, b=2)")
    first = driver.driver.step(1, json.dumps([run]))
    again = driver.driver.step(1, json.dumps([run]))
    assert first == again
    calls = [m for m in json.loads(first) if m["type"] == "call"]
    assert len(calls) == 1
    result = {"type": "result", "id": "r", "call": calls[0]["call"], "ok": True, "value": 3}
    done = json.loads(driver.driver.step(2, json.dumps([result])))
    assert done[-1]["type"] == "done" and done[-1]["result"] == 3


def test_output_of_a_busy_program_arrives_before_the_program_is_done(tmp_path: Path) -> None:
    driver = Driver(wait_s=5.0, flush_s=0.1)
    flag = tmp_path / "go"  # the program is busy until the first step has returned, however loaded the machine
    code = f"import os, time\nprint('early')\nwhile not os.path.exists({str(flag)!r}):\n    time.sleep(0.01)\n'late'"
    first = driver.step([run_message(code)])
    assert [(m["type"], m.get("data")) for m in first] == [("output", "early\n")]
    flag.touch()
    rest = driver.step([])
    assert rest[-1]["type"] == "done" and rest[-1]["result"] == "late"


def test_the_codec_reads_only_its_own_marked_line() -> None:
    codec = StepCodec(10.0, 0.5)
    forged = '@@ptc-0000000000000000@@[{"type":"done","id":"r","ok":true}]'
    genuine = codec.marker + json.dumps(
        [
            {"type": "call", "id": "r", "call": 1, "tool": "calc.add", "args": {}},
            {"type": "output", "id": "r", "stream": "stdout", "data": "x"},
            {"type": "done", "id": "r", "ok": True},
        ]
    )
    messages = codec.parse_step(f"noise\n{forged}\n{genuine}\nmore noise\n")
    assert messages is not None
    assert [type(m) for m in messages] == [Call, Output, Done]
    assert codec.parse_step(forged) is None


def test_the_codec_refuses_malformed_answers() -> None:
    codec = StepCodec(10.0, 0.5)
    with pytest.raises(SandboxFailure):
        codec.parse_step(codec.marker + "not json")
    with pytest.raises(SandboxFailure):
        codec.parse_step(codec.marker + '[{"type": "call", "id": "r"}]')


def test_the_install_snippet_installs_a_driver_once_and_says_ready() -> None:
    codec = StepCodec(10.0, 0.5)
    namespace: dict[str, Any] = {}
    printed: list[str] = []
    namespace["print"] = printed.append
    exec(codec.install_code(), namespace)
    driver = namespace["__ptc_step__"]
    exec(codec.install_code(), namespace)
    assert namespace["__ptc_step__"] is driver
    assert all(codec.parse_ready(line).type == "ready" for line in printed)
    exec(codec.step_code(1, []), namespace)
    assert codec.parse_step(printed[-1]) == []
