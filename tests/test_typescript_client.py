"""The official TypeScript MCP client (npm ``@modelcontextprotocol/sdk``) against ``ptc-mcp serve`` over stdio.

Claude Desktop and most IDEs build on this SDK: its schema handling, its 60 s default request timeout and its
reset-on-progress option are what users meet. ``.ci/run`` installs the SDK globally; the node script finds it
through ``NODE_PATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from ptc_mcp.config import LimitsConfig
from tests.test_server_transports import write_config

pytestmark = [pytest.mark.anyio, pytest.mark.node]

SCRIPT = Path(__file__).parent / "clients" / "ts_client.cjs"
WAIT_S = 180.0


def npm_root() -> str | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    done = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, check=False, timeout=60)
    root = done.stdout.strip()
    return root if done.returncode == 0 and Path(root, "@modelcontextprotocol", "sdk").is_dir() else None


ROOT = npm_root()
pytestmark.append(
    pytest.mark.skipif(ROOT is None, reason="needs node and `npm install -g @modelcontextprotocol/sdk` (.ci/run)")
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One session of the TypeScript client; the tests below read what it saw."""
    config = write_config(tmp_path_factory.mktemp("ts"))

    async def run() -> dict[str, Any]:
        with anyio.fail_after(WAIT_S):
            done = await anyio.run_process(
                ["node", str(SCRIPT), sys.executable, str(config)],
                env={**os.environ, "NODE_PATH": str(ROOT)},
                check=False,
            )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    return anyio.run(run)


def test_the_default_run_limit_ends_before_the_typescript_sdk_gives_up(report: dict[str, Any]) -> None:
    client_timeout_s = report["defaultRequestTimeoutMs"] / 1000
    assert LimitsConfig().timeout_s <= client_timeout_s - 10  # room for start-up and the result's way back


def test_the_input_schema_is_plain_json_schema(report: dict[str, Any]) -> None:
    [tool] = report["tools"]
    schema = tool["inputSchema"]
    assert all("type" in prop for prop in schema["properties"].values())
    timeout = schema["properties"]["timeout_s"]
    assert (timeout["type"], timeout["exclusiveMinimum"]) == ("number", 0)
    assert "anyOf" not in json.dumps(schema) and "``" not in json.dumps(schema)


def test_variables_persist_between_calls_of_the_typescript_client(report: dict[str, Any]) -> None:
    assert report["kept"]["result"] == 42


def test_a_numeric_timeout_from_the_typescript_client_ends_the_run_with_a_timeout_result(
    report: dict[str, Any],
) -> None:
    assert report["timedOut"]["error"]["type"] == "timeout"


def test_heartbeats_keep_a_reset_on_progress_client_waiting_for_a_silent_program(report: dict[str, Any]) -> None:
    assert report["silent"]["result"] == "done"  # 10 s of silence, with an 8 s request timeout on the client
    assert len(report["progress"]) >= 1
    assert all("running for" in p["message"] for p in report["progress"])
