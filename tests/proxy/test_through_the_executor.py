"""Proxy runs go through the executor: they are audited and held to ``max_concurrent_runs`` like any run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.proxy.helpers import MODEL, Rig, code_then_answer, open_rig

pytestmark = pytest.mark.anyio

TOOLS = [{"type": "code_execution_20260120", "name": "code_execution"}]


async def ask(rig: Rig) -> dict[str, Any]:
    """One question answered by running the model's program; the response's ``code_execution`` result content."""
    raw = await rig.client.messages.with_raw_response.create(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "go"}], tools=TOOLS
    )
    body: dict[str, Any] = raw.http_response.json()
    results = [block for block in body["content"] if block["type"] == "code_execution_tool_result"]
    assert len(results) == 1, body
    content: dict[str, Any] = results[0]["content"]
    return content


async def test_proxy_runs_appear_in_the_audit_trail(tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    async with open_rig(code_then_answer("print(6 * 7)"), audit={"file": str(trail)}) as rig:
        with anyio.fail_after(60):
            content = await ask(rig)
    assert content["stdout"] == "42\n"
    runs = [line for line in map(json.loads, trail.read_text().splitlines()) if line["event"] == "run"]
    program = [run for run in runs if run["code_bytes"] == len("print(6 * 7)")]
    assert len(program) == 1, runs
    assert program[0]["status"] == "ok"
    assert program[0]["output_bytes"] == len("42\n")
    assert program[0]["session"]


async def test_a_flood_of_proxy_requests_keeps_to_max_concurrent_runs() -> None:
    code = "import time\ntime.sleep(3)\nprint('done')"
    limits = {"max_concurrent_runs": 2, "max_queued_runs": 1}
    async with open_rig(code_then_answer(code), limits=limits) as rig:
        executor = rig.proxy.registry.executor
        most = 0
        outcomes: list[dict[str, Any]] = []

        async def watch() -> None:
            nonlocal most
            while True:
                most = max(most, executor.running)
                await anyio.sleep(0.005)

        async def one() -> None:
            outcomes.append(await ask(rig))

        with anyio.fail_after(120):
            async with anyio.create_task_group() as watching:
                watching.start_soon(watch)
                async with anyio.create_task_group() as flood:
                    for _ in range(8):
                        flood.start_soon(one)
                watching.cancel_scope.cancel()
    assert most == 2
    busy = [o for o in outcomes if o.get("error_code") == "too_many_requests"]
    done = [o for o in outcomes if o.get("stdout") == "done\n"]
    assert busy, outcomes  # 8 at once against 2 running + 1 waiting: the rest are turned away at once
    assert len(busy) + len(done) == 8, outcomes
