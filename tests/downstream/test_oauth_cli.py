"""``ptc-mcp login``, ``serve``, ``check`` and ``logout`` as real subprocesses against a protected remote server.

The authorization server and the MCP server run in this test's event loop (tests/downstream/oauth_servers.py).
``login`` opens the authorization URL with ``$BROWSER``, here a script that follows the redirects headlessly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from ptc_mcp.cli import main
from ptc_mcp.config.paths import TOKEN_DIR_ENV
from tests.conftest import EXPENSES_STDIO
from tests.downstream.oauth_servers import OAuthServers, oauth_servers
from tests.mcp_calls import execute, structured

pytestmark = pytest.mark.anyio

WAIT_S = 90.0
BROWSER = """#!{python}
import sys, httpx2
response = httpx2.get(sys.argv[1], follow_redirects=True, timeout=60)
sys.exit(0 if response.status_code == 200 else 1)
"""


def setup(tmp_path: Path, servers: OAuthServers) -> tuple[Path, dict[str, str]]:
    browser = tmp_path / "headless-browser"
    browser.write_text(BROWSER.format(python=sys.executable), encoding="utf-8")
    browser.chmod(0o700)
    config = tmp_path / "config.json"
    document = {
        "mcpServers": {
            "remote": {"type": "http", "url": servers.mcp_url, "auth": {"type": "oauth", "scopes": ["mcp:tools"]}},
            "expenses": EXPENSES_STDIO,
        },
        "sandbox": {"kind": "process"},
        "audit": {"file": str(tmp_path / "audit.jsonl")},
    }
    config.write_text(json.dumps(document), encoding="utf-8")
    env = {TOKEN_DIR_ENV: str(tmp_path / "tokens"), "BROWSER": str(browser)}
    return config, env


async def ptc_mcp(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(WAIT_S):
        return await anyio.run_process([sys.executable, "-m", "ptc_mcp", *args], env={**os.environ, **env}, check=False)


async def serve_and_run(
    config: Path, env: dict[str, str], stderr: Path, programs: list[str | Callable[[], None]]
) -> list[dict[str, Any]]:
    """Run the programs in one ``ptc-mcp serve`` session (stdio); a callable runs between them."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "ptc_mcp", "serve", "--config", str(config)])
    params.env = env
    results = []
    with stderr.open("a", encoding="utf-8") as errlog, anyio.fail_after(WAIT_S):
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            for program in programs:
                if callable(program):
                    program()
                else:
                    results.append(structured(await execute(client, program)))
    return results


def revoke(servers: OAuthServers) -> None:
    servers.provider.revoke_all_refresh_tokens()
    servers.provider.expire_all_access_tokens()


async def test_login_serve_refresh_failure_check_and_logout_keep_tokens_out_of_every_output(tmp_path: Path) -> None:
    async with oauth_servers() as servers:
        config, env = setup(tmp_path, servers)
        before = await ptc_mcp("check", "--config", str(config), env=env)
        assert f"server remote: needs login: run `ptc-mcp login remote --config {config}`" in before.stdout.decode()

        logged_in = await ptc_mcp("login", "remote", "--config", str(config), env=env)
        assert logged_in.returncode == 0, logged_in.stderr.decode()
        assert "logged in to remote" in logged_in.stdout.decode()
        assert "Open this URL to log in" in logged_in.stderr.decode()

        after = await ptc_mcp("check", "--config", str(config), env=env)
        assert "server remote: 2 tools, authenticated" in after.stdout.decode()

        token_file = next((tmp_path / "tokens").iterdir())
        snoop = f"try:\n    open({str(token_file)!r}).read()\nexcept OSError as exc:\n    print(type(exc).__name__)"
        stderr = tmp_path / "serve-stderr.txt"
        code = "try:\n    await remote.add(a=1, b=2)\nexcept ToolError as exc:\n    print(exc)"
        programs = [
            "await remote.add(a=20, b=22)",
            snoop,
            lambda: revoke(servers),
            code,
            "len(await expenses.get_team_members(department='engineering'))",
        ]
        works, snooped, refused, local = await serve_and_run(config, env, stderr, programs)
        assert works["result"] == 42
        assert snooped["stdout"].strip() in ("FileNotFoundError", "PermissionError")
        assert "ptc-mcp login remote" in refused["stdout"]
        assert local["result"] > 0  # the other server keeps serving

        later = await ptc_mcp("check", "--config", str(config), env=env)
        assert f"server remote: needs login: run `ptc-mcp login remote --config {config}`" in later.stdout.decode()

        logged_out = await ptc_mcp("logout", "remote", "--config", str(config), env=env)
        assert "logged out of remote" in logged_out.stdout.decode()

        outputs = {
            "login stdout/stderr": logged_in.stdout + logged_in.stderr,
            "check output": before.stdout + before.stderr + after.stdout + after.stderr + later.stdout + later.stderr,
            "serve stderr": stderr.read_bytes(),
            "audit lines": (tmp_path / "audit.jsonl").read_bytes(),
            "program results": json.dumps([works, snooped, refused, local]).encode(),
        }
        assert len(servers.provider.issued) >= 2
        for token in servers.provider.issued:
            for where, text in outputs.items():
                assert token.encode() not in text, f"a token appeared in the {where}"


def test_login_names_the_servers_when_the_name_is_unknown_or_has_no_oauth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mcpServers": {"expenses": EXPENSES_STDIO}}), encoding="utf-8")
    assert main(["login", "nosuch", "--config", str(config)]) == 2
    assert "no server 'nosuch' in" in capsys.readouterr().err
    assert main(["login", "expenses", "--config", str(config)]) == 2
    assert 'has no "auth"' in capsys.readouterr().err
    assert main(["logout", "expenses", "--config", str(config)]) == 2
