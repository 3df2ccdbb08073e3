"""Progress and log notifications while a program runs, through the official MCP client."""

from __future__ import annotations

import time
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client

from ptc_mcp.bridge import CallRecord
from ptc_mcp.progress import LOGGER_NAME, RunReporter
from ptc_mcp.server import build_server
from tests.conftest import OpenTestApp

pytestmark = pytest.mark.anyio

TWENTY_CALLS = """
for i in range(20):
    await expenses.get_custom_budget(user_id="E7")
    print(f"call {i} done")
    await asyncio.sleep(0.02)
"""


class Seen:
    """What the client received: progress notifications and log messages."""

    def __init__(self) -> None:
        self.progress: list[tuple[float, float | None, str | None]] = []
        self.logs: list[types.LoggingMessageNotificationParams] = []

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append((progress, total, message))

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params)

    def program_output(self) -> str:
        return "".join(p.data["text"] for p in self.logs if p.logger == LOGGER_NAME and p.data["stream"] == "stdout")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_run_that_makes_20_calls_reports_progress_and_streams_its_output(
    open_test_app: OpenTestApp, mode: str
) -> None:
    seen = Seen()
    async with open_test_app() as app:
        server = build_server(app)
        async with Client(server, mode=mode, logging_callback=seen.on_log, log_level="info") as client:
            with anyio.fail_after(30):
                result = await client.call_tool(
                    "execute_program", {"code": TWENTY_CALLS}, progress_callback=seen.on_progress
                )
    assert not result.is_error, result.content
    assert len(seen.progress) >= 5
    values = [progress for progress, _, _ in seen.progress]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert seen.progress[-1][2] is not None and seen.progress[-1][2].startswith("20 tool calls · 20 lines")
    assert seen.program_output() == "".join(f"call {i} done\n" for i in range(20))
    # coalesced: far fewer log notifications than lines printed
    assert len(seen.logs) < 20 * 2


async def test_a_client_without_a_progress_token_gets_no_notifications(open_test_app: OpenTestApp) -> None:
    seen = Seen()
    async with (
        open_test_app() as app,
        Client(build_server(app), mode="legacy", logging_callback=seen.on_log) as client,
    ):
        result = await client.call_tool("execute_program", {"code": TWENTY_CALLS})
    assert not result.is_error
    assert seen.logs == []


async def test_notifications_are_rate_limited_and_output_to_logs_is_capped() -> None:
    sent: list[tuple[str, Any]] = []

    async def send_progress(progress: float, message: str) -> None:
        sent.append(("progress", progress))

    async def send_log(level: str, data: dict[str, Any]) -> None:
        sent.append(("log", data["text"]))

    reporter = RunReporter(send_progress=send_progress, send_log=send_log, max_log_bytes=1000, min_interval_s=0.1)
    started = time.monotonic()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as pump:
            pump.start_soon(reporter.pump)
            for i in range(2000):  # ~0.5 s of events
                reporter.output("stdout", f"line {i}\n")
                reporter.call_finished(CallRecord("s.t", 1.0, "ok", 2, 2))
                if i % 20 == 0:
                    await anyio.sleep(0.005)
            pump.cancel_scope.cancel()
        await reporter.flush()
    elapsed = time.monotonic() - started
    progress = [value for kind, value in sent if kind == "progress"]
    assert 2 <= len(progress) <= elapsed / 0.1 + 2  # at most one per min_interval_s (and the final flush)
    assert progress[-1] == 4000.0
    text = "".join(value for kind, value in sent if kind == "log")
    assert text.startswith("line 0\nline 1\n")
    assert len(text.encode()) < 1100 and "output truncated" in text


async def test_stop_ends_the_pump_at_once_even_while_it_waits_out_its_interval() -> None:
    sent: list[str] = []

    async def send_progress(progress: float, message: str) -> None:
        sent.append(message)

    reporter = RunReporter(
        send_progress=send_progress, send_log=None, max_log_bytes=100, min_interval_s=600, heartbeat_s=600
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as pump:
            pump.start_soon(reporter.pump)
            reporter.call_started("expenses.get_expenses")
            while not sent:  # the pump sent the change and now waits out its 600 s interval
                await anyio.sleep(0.01)
            reporter.call_finished(CallRecord("expenses.get_expenses", 3.0, "ok", 2, 2))
            reporter.stop()  # no cancellation: the task group can only end because the pump returned
        await reporter.flush()
    assert sent == [
        "0 tool calls · 0 lines · calling expenses.get_expenses",
        "1 tool call · 0 lines · expenses.get_expenses ok (3 ms)",
    ]
