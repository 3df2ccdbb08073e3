"""``ptc-mcp demo``: the bundled expense-audit example, end to end, on a fresh machine with no config.

It starts ``ptc-mcp serve`` over stdio with the example server as its only downstream server, connects the
official MCP client, runs ``examples/audit_program.txt`` through ``execute_program`` and prints the answer.
"""

from __future__ import annotations

import json
import sys
import tempfile
from importlib import resources
from pathlib import Path

import mcp_types as types
from mcp import Client, StdioServerParameters

from ptc_mcp.config import Config
from ptc_mcp.examples.expenses_data import AUDIT_TASK, over_budget_engineers
from ptc_mcp.sandboxes import sandbox_report

UNISOLATED_WARNING = (
    "\n  WARNING: no isolated sandbox is available on this machine (see above for what to install).\n"
    "  The demo runs its own bundled, trusted program in an UNISOLATED child process.\n"
    "  `ptc-mcp serve` refuses to do this for model-written code unless the config opts in.\n"
)


def audit_program() -> str:
    return resources.files("ptc_mcp.examples").joinpath("audit_program.txt").read_text(encoding="utf-8")


def demo_config(allow_unisolated: bool) -> dict[str, object]:
    return {
        "mcpServers": {"expenses": {"command": sys.executable, "args": ["-m", "ptc_mcp.examples.expenses"]}},
        "sandbox": {"kind": "auto", "allow_unisolated": allow_unisolated},
        "audit": {"enabled": False},  # the demo prints what matters; the audit trail would interleave on stderr
    }


async def run_demo() -> int:
    report = sandbox_report(Config(), allow_unisolated=True)
    print(report.text())
    allow_unisolated = not report.isolated
    if allow_unisolated:
        print(UNISOLATED_WARNING, file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="ptc-mcp-demo-") as folder:
        config_path = Path(folder) / "config.json"
        config_path.write_text(json.dumps(demo_config(allow_unisolated)), encoding="utf-8")
        server = StdioServerParameters(
            command=sys.executable, args=["-m", "ptc_mcp", "serve", "--config", str(config_path)]
        )
        async with Client(server) as client:
            listed = await client.list_tools()
            tool = listed.tools[0]
            print(f"ptc-mcp offers one tool, {tool.name} ({len(tool.description or '')} characters of description)")
            print(f"\ntask: {AUDIT_TASK}\n\nprogram:\n")
            program = audit_program()
            print("    " + program.rstrip().replace("\n", "\n    "))
            result = await client.call_tool(tool.name, {"code": program})
    text = "".join(block.text for block in result.content if isinstance(block, types.TextContent))
    print("\nwhat the model gets back:\n")
    print("    " + text.replace("\n", "\n    "))
    structured = result.structured_content or {}
    expected = [row["id"] for row in over_budget_engineers()]
    got = [row.get("id") for row in structured.get("result") or []]
    if result.is_error or got != expected:
        print(f"\ndemo FAILED: expected {expected}, got {got}", file=sys.stderr)
        return 1
    print(f"\nanswer checked against the ground truth: {', '.join(expected)} exceeded their Q3 travel budget.")
    return 0
