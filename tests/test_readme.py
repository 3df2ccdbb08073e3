"""The README's examples are run, so the README cannot drift from the code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ptc_mcp.config import parse_config
from ptc_mcp.examples.expenses_data import over_budget_engineers, team_members
from ptc_mcp.executor import ExecuteRequest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_every_json_block_of_the_readme_is_a_valid_config() -> None:
    blocks = _blocks("json")
    assert len(blocks) >= 3
    environ = {"EXPENSES_DB": "/tmp/x.db", "GITHUB_TOKEN": "t"}
    for block in blocks:
        document: dict[str, Any] = json.loads(block)
        if "ptc" in document.get("mcpServers", {}):
            assert document["mcpServers"]["ptc"]["args"][0] == "serve"  # Claude Desktop's own config
            continue
        parse_config(document, environ)


@pytest.mark.anyio
async def test_the_program_the_readme_shows_gets_the_right_answer(open_test_app: Any) -> None:
    (program,) = re.findall(r"```python\n(.*?)```", _section("What the model writes"), flags=re.S)
    async with open_test_app() as app:
        result = await app.executor.execute(ExecuteRequest(code=program))
    assert result.error is None, result.error
    assert result.result == [row["name"] for row in over_budget_engineers()]
    assert result.tool_calls == 17


@pytest.mark.anyio
async def test_the_readme_server_config_runs_the_bundled_example_through_this_installation(
    open_test_app: Any,
) -> None:
    servers = json.loads(_blocks("json")[1])["mcpServers"]
    assert servers["expenses"] == {"command": "ptc-mcp", "args": ["example", "expenses"]}
    async with open_test_app(servers={"expenses": servers["expenses"]}) as app:
        code = "[p['id'] for p in await expenses.get_team_members(department='engineering')]"
        result = await app.executor.execute(ExecuteRequest(code=code))
    assert result.error is None, result.error
    assert result.result == [person["id"] for person in team_members("engineering")]
