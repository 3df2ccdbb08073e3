"""The example expense server: its tools, in process and as ``python -m ptc_mcp.examples.expenses``."""

from __future__ import annotations

import sys
import time
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from ptc_mcp.examples import expenses_data as data
from ptc_mcp.examples.expenses import build_server

pytestmark = pytest.mark.anyio


async def solve_audit(client: Client) -> list[str]:
    """The audit task, solved with one tool call at a time, as a model without PTC would."""

    async def call(name: str, **arguments: Any) -> Any:
        result = await client.call_tool(name, arguments)
        assert not result.is_error
        assert result.structured_content is not None
        return result.structured_content["result"]

    over = []
    for person in await call("get_team_members", department="engineering"):
        custom = await call("get_custom_budget", user_id=person["id"])
        budget = custom["travel_budget"] if custom else data.STANDARD_TRAVEL_BUDGET
        spent = sum(
            row["amount"]
            for row in await call("get_expenses", employee_id=person["id"], quarter="Q3")
            if row["category"] == "travel" and row["status"] != "rejected"
        )
        if spent > budget:
            over.append(person["id"])
    return over


async def test_every_tool_has_an_output_schema() -> None:
    async with Client(build_server()) as client:
        tools = (await client.list_tools()).tools
    assert sorted(tool.name for tool in tools) == ["get_custom_budget", "get_expenses", "get_team_members"]
    assert all(tool.output_schema is not None for tool in tools)


async def test_the_audit_task_solved_through_the_tools_matches_the_ground_truth() -> None:
    with anyio.fail_after(20):
        async with Client(build_server()) as client:
            answer = await solve_audit(client)
    assert answer == [row["id"] for row in data.over_budget_engineers("Q3")]


async def test_an_employee_without_a_custom_budget_gets_null() -> None:
    async with Client(build_server()) as client:
        result = await client.call_tool("get_custom_budget", {"user_id": "E1"})
    assert result.structured_content == {"result": None}


async def test_an_unknown_employee_is_an_error_result() -> None:
    async with Client(build_server()) as client:
        expenses = await client.call_tool("get_expenses", {"employee_id": "E99", "quarter": "Q3"})
        budget = await client.call_tool("get_custom_budget", {"user_id": "E99"})
    assert expenses.is_error
    assert budget.is_error


async def test_a_quarter_outside_q1_to_q4_is_refused() -> None:
    async with Client(build_server()) as client:
        result = await client.call_tool("get_expenses", {"employee_id": "E1", "quarter": "Q5"})
    assert result.is_error


async def test_latency_ms_delays_every_call() -> None:
    async with Client(build_server(latency_ms=100)) as client:
        start = time.monotonic()
        await client.call_tool("get_custom_budget", {"user_id": "E1"})
        elapsed = time.monotonic() - start
    assert elapsed >= 0.1


async def test_python_dash_m_serves_the_tools_over_stdio() -> None:
    args = ["-m", "ptc_mcp.examples.expenses", "--latency-ms", "1"]
    params = StdioServerParameters(command=sys.executable, args=args)
    with anyio.fail_after(30):
        async with Client(params) as client:
            members = await client.call_tool("get_team_members", {"department": "Engineering"})
    assert members.structured_content is not None
    assert [person["id"] for person in members.structured_content["result"]] == [f"E{n}" for n in range(1, 9)]
