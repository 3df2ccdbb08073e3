"""The built wheel, installed with ``[all]`` into a fresh virtual environment, as a new user meets it.

One venv per module (building and installing it takes ~30 s): every test runs the installed ``ptc-mcp`` command
from it, with an environment that has neither this checkout nor its venv on ``PYTHONPATH``/``PATH``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters

from ptc_mcp.bench.served import free_port
from ptc_mcp.examples.expenses_data import over_budget_engineers
from ptc_mcp.sandboxes.process.isolation import bubblewrap_status

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CLIENT_PATH = "/usr/local/bin:/usr/bin:/bin"
"""The ``PATH`` of an MCP client started outside the user's shell: no virtual environment on it."""
WAIT_S = 300.0
needs_bubblewrap = pytest.mark.skipif(not bubblewrap_status()[0], reason=f"no bubblewrap: {bubblewrap_status()[1]}")


@dataclass(frozen=True)
class Installed:
    """A fresh venv with the wheel installed."""

    venv: Path
    wheel: Path
    folder: Path

    @property
    def command(self) -> str:
        return str(self.venv / "bin" / "ptc-mcp")

    def environment(self, **extra: str) -> dict[str, str]:
        drop = ("PYTHONPATH", "VIRTUAL_ENV", "PTC_MCP_CONFIG")
        environment = {key: value for key, value in os.environ.items() if key not in drop}
        environment["PATH"] = CLIENT_PATH
        return environment | extra

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.command, *args],
            capture_output=True,
            text=True,
            cwd=self.folder,
            env=self.environment(**extra_env),
            stdin=subprocess.DEVNULL,
            timeout=WAIT_S,
            check=False,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    folder = tmp_path_factory.mktemp("fresh-install")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(folder / "dist"), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = (folder / "dist").glob("ptc_mcp-*.whl")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[all]"], check=True, timeout=900)
    yield Installed(venv=venv, wheel=wheel, folder=folder)


def _optional_dependencies() -> dict[str, list[str]]:
    extras: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    return extras


def test_the_all_extra_names_every_other_extra_except_the_dev_tools() -> None:
    extras = _optional_dependencies()
    (reference,) = extras["all"]
    named = set(re.fullmatch(r"ptc-mcp\[(.*)\]", reference).group(1).split(","))  # type: ignore[union-attr]
    assert named == set(extras) - {"all", "dev"}


@pytest.mark.slow
def test_the_wheel_carries_the_runtime_and_installed_in_a_fresh_venv_runs_the_demo(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as archive:
        names = set(archive.namelist())
    assert "ptc_mcp/_sandbox/ptc_runtime.py" in names
    assert "ptc_mcp/examples/audit_program.txt" in names
    where = subprocess.run(
        [
            str(installed.venv / "bin" / "python"),
            "-c",
            "import ptc_mcp, pathlib; print(pathlib.Path(ptc_mcp.__file__))",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=installed.folder,
        env=installed.environment(),
        timeout=60,
    )
    assert str(installed.venv) in where.stdout  # the installed package, not this checkout
    demo = installed.run("demo")
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "checked against the ground truth" in demo.stdout
    if bubblewrap_status()[0]:
        assert 'sandbox: process (isolated), chosen by sandbox.kind "auto"' in demo.stdout
    assert "  docker: " in demo.stdout and "  agentcore: " in demo.stdout


@pytest.mark.slow
def test_installing_the_all_extra_brings_every_optional_backend_and_face_but_no_dev_tools(
    installed: Installed,
) -> None:
    python = str(installed.venv / "bin" / "python")
    modules = [
        "docker",
        "boto3",
        "bedrock_agentcore",
        "redis",
        "opentelemetry.sdk",
        "opentelemetry.exporter.otlp.proto.http",
    ]
    wanted = [*modules, "pytest", "mypy"]
    script = (
        f"import importlib.util as u, json; print(json.dumps({{m: u.find_spec(m) is not None for m in {wanted!r}}}))"
    )
    found = json.loads(subprocess.check_output([python, "-c", script], env=installed.environment(), timeout=60))
    assert all(found[module] for module in modules), found
    assert not found["pytest"] and not found["mypy"]


@pytest.mark.slow
@needs_bubblewrap
def test_version_says_which_sandbox_was_chosen_and_why_each_other_one_was_not(installed: Installed) -> None:
    done = installed.run("--version", DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ptc-mcp ") and str(installed.venv) in lines[0]
    assert lines[1] == 'sandbox: process (isolated), chosen by sandbox.kind "auto"'
    backends = {line.strip().split(": ", 1)[0]: line for line in lines[2:]}
    assert backends["process"].startswith("  process: chosen (bubblewrap ")
    assert backends["docker"].startswith("  docker: no Docker engine answers") and "DOCKER_HOST" in backends["docker"]
    assert backends["agentcore"].startswith("  agentcore: not tried by auto")
    assert "srt" in backends


def _readme_json_blocks() -> list[dict[str, object]]:
    section = README.split("## Use it from Claude Desktop\n", 1)[1].split("\n## ", 1)[0]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, flags=re.S)]


@pytest.mark.slow
@needs_bubblewrap
def test_the_readme_claude_desktop_example_works_for_a_client_whose_path_lacks_ptc_mcp(installed: Installed) -> None:
    desktop, servers = _readme_json_blocks()
    entry = desktop["mcpServers"]["ptc"]  # type: ignore[index]
    config = installed.folder / "ptc-mcp.json"
    # The README's servers, less those that need another tool (uvx) on this machine.
    config.write_text(json.dumps({"mcpServers": {"expenses": servers["mcpServers"]["expenses"]}}))  # type: ignore[index]
    args = [str(config) if arg == "/path/to/ptc-mcp.json" else arg for arg in entry["args"]]
    assert entry["command"] == "/absolute/path/to/ptc-mcp"
    parameters = StdioServerParameters(command=installed.command, args=args, env=installed.environment())

    async def call() -> types.CallToolResult:
        with anyio.fail_after(WAIT_S):
            async with Client(parameters) as client:
                code = "[p['id'] for p in await expenses.get_team_members(department='engineering')]"
                return await client.call_tool("execute_program", {"code": code})

    result = anyio.run(call)
    assert not result.is_error, result.content
    assert {row["id"] for row in over_budget_engineers()} <= set((result.structured_content or {})["result"])

    checked = installed.run("check", "--config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "server expenses: 3 tools" in checked.stdout
    assert "  process: chosen (bubblewrap " in checked.stdout


@pytest.mark.slow
def test_the_proxy_starts_with_the_defaults_when_no_config_is_given(installed: Installed) -> None:
    port = free_port()
    argv = [installed.command, "proxy", "--port", str(port), "--region", "us-east-1"]
    with subprocess.Popen(
        argv,
        cwd=installed.folder,
        env=installed.environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proxy:
        try:

            async def answer() -> httpx2.Response:
                with anyio.fail_after(WAIT_S):
                    async with httpx2.AsyncClient() as client:
                        while True:
                            if proxy.poll() is not None:
                                raise AssertionError(f"ptc-mcp proxy exited: {proxy.stderr.read()[-2000:]}")  # type: ignore[union-attr]
                            try:
                                return await client.get(f"http://127.0.0.1:{port}/v1/no-such-route")
                            except httpx2.TransportError:
                                await anyio.sleep(0.1)

            response = anyio.run(answer)
        finally:
            proxy.terminate()
            proxy.wait(timeout=30)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
