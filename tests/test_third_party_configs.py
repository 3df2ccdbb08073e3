"""A Claude Desktop config that lists popular third-party servers, pasted as it is, over real stdio.

``@modelcontextprotocol/server-everything``, ``-filesystem`` and ``-memory`` (npm, installed globally by ``.ci/run``)
and ``mcp-server-time`` and ``mcp-server-git`` (PyPI, the dev extra) start side by side, each within the start-up
bound, and a program calls one tool of each through the official Python SDK client.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from ptc_mcp.app import open_app
from ptc_mcp.config import parse_config
from ptc_mcp.downstream.connection import CONNECT_TIMEOUT_S
from ptc_mcp.server import build_server
from tests.mcp_calls import execute, structured

pytestmark = [pytest.mark.anyio, pytest.mark.node]

NPM_SERVERS = ("mcp-server-everything", "mcp-server-filesystem", "mcp-server-memory")
MISSING = [name for name in NPM_SERVERS if shutil.which(name) is None]


def claude_desktop_file(folder: Path) -> dict[str, Any]:
    shared = folder / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("ptc-mcp was here\n", encoding="utf-8")
    repo = folder / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=60)
    return {
        "globalShortcut": "Alt+Space",
        "preferences": {"menuBarEnabled": True},
        "mcpServers": {
            "ptc": {"command": "ptc-mcp", "args": ["serve", "--config", "claude_desktop_config.json"]},
            "everything": {"command": "mcp-server-everything", "args": ["stdio"]},
            "filesystem": {"command": "mcp-server-filesystem", "args": [str(shared)]},
            "memory": {"command": "mcp-server-memory", "env": {"MEMORY_FILE_PATH": str(folder / "memory.jsonl")}},
            "time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
            "git": {"command": sys.executable, "args": ["-m", "mcp_server_git", "--repository", str(repo)]},
            "slack": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-slack"], "disabled": True},
        },
    }


PROGRAM = """
echoed = await everything.echo(message="hi")
notes = await filesystem.read_text_file(path=ROOT + "/notes.txt")
graph = await memory.read_graph()
now = await servers.time.get_current_time(timezone="UTC")
status = await git.git_status(repo_path=REPO)
[str(echoed), str(notes), sorted(graph), str(now), str(status)]
"""


@pytest.mark.skipif(bool(MISSING), reason=f"run `npm install -g` for {', '.join(MISSING)} (.ci/run does)")
async def test_a_pasted_claude_desktop_file_starts_every_third_party_server_and_a_program_calls_each(
    tmp_path: Path,
) -> None:
    document = claude_desktop_file(tmp_path)
    config = parse_config(
        {**document, "sandbox": {"kind": "process"}, "limits": {"timeout_s": 45}}, environ={}, exclude=["ptc"]
    )
    code = f"ROOT = {str(tmp_path / 'shared')!r}\nREPO = {str(tmp_path / 'repo')!r}\n" + PROGRAM
    # Five servers start side by side; each has CONNECT_TIMEOUT_S, the whole test a little more.
    with anyio.fail_after(CONNECT_TIMEOUT_S + 120):
        async with open_app(config, allow_unisolated=True) as app, Client(build_server(app), mode="legacy") as client:
            assert app.pool.failures == {}
            assert sorted(app.pool.servers) == ["everything", "filesystem", "git", "memory", "time"]
            result = await execute(client, code)
    echoed, notes, graph, now, status = structured(result)["result"]
    assert "hi" in echoed
    assert "ptc-mcp was here" in notes
    assert graph == ["entities", "relations"]
    assert "UTC" in now
    assert "branch" in status.lower() or "commit" in status.lower()
