"""The server image: it builds from a locally available base and serves execute_program from a container.

No registry is reachable in CI, so the base is ``ptc-mcp-sandbox:local`` (this machine's Python, no pip, no shell,
built by ``build_local_image``) and the packages come installed from this environment (``build/image-packages``),
which the Dockerfile's ``install.py`` copies; users build the same Dockerfile from ``python:3.12-slim`` with pip.
The container uses the host's network namespace so it reaches the AgentCore emulator on loopback.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from packaging.requirements import Requirement

from ptc_mcp.emulators.agentcore import running_emulator
from tests.remote.helpers import WAIT_S, free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
IMAGE = "ptc-mcp-server:test"
TOKEN = "image-test-token-91f0"


def _engine() -> str | None:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    return None if probe.returncode == 0 else "no running Docker engine"


def _closure(root: str, extras: set[str]) -> list[metadata.Distribution]:
    """The installed distributions ``root[extras]`` needs at run time (``root`` itself excluded)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            markers = [{"extra": extra} for extra in (wanted or {""})]
            if requirement.marker and not any(requirement.marker.evaluate(env) for env in markers):
                continue
            key = requirement.name.lower().replace("_", "-")
            if key in seen:
                continue
            seen[key] = metadata.distribution(requirement.name)
            todo.append((requirement.name, set(requirement.extras)))
    return list(seen.values())


def _context(folder: Path) -> Path:
    """A build context: the sources the Dockerfile copies, plus the packages installed from this environment."""
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, folder / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("ptc_mcp", "sandbox", "deploy"):
        shutil.copytree(REPO / name, folder / name, ignore=ignore)
    packages = folder / "build" / "image-packages"
    shutil.copytree(REPO / "ptc_mcp", packages / "ptc_mcp", ignore=ignore)
    shutil.copytree(REPO / "sandbox", packages / "ptc_mcp" / "_sandbox", ignore=ignore)
    for dist in _closure("ptc-mcp", {"agentcore"}):
        for file in dist.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # scripts outside site-packages, bytecode
            source = Path(str(dist.locate_file(file)))
            if source.is_file():
                target = packages / file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    _native_libraries(packages, folder / "build" / "image-native")
    return folder


_GLIBC = ("libc.so", "ld-linux")  # in every base; the rest of glibc (librt, libm...) may be missing


def _native_libraries(packages: Path, native: Path) -> None:
    """Shared libraries the packages' extension modules load that a bare base may lack (libgcc_s, say)."""
    native.mkdir(parents=True, exist_ok=True)
    objects = [str(path) for path in packages.rglob("*.so")]
    for start in range(0, len(objects), 64):
        listing = subprocess.run(["ldd", *objects[start : start + 64]], capture_output=True, text=True).stdout
        for line in listing.splitlines():
            parts = line.split("=>")
            if len(parts) != 2 or not parts[1].strip().startswith("/"):
                continue
            library = Path(parts[1].split("(")[0].strip())
            if not library.name.startswith(_GLIBC) and not str(library).startswith(str(packages)):
                shutil.copy2(library.resolve(), native / library.name)


@pytest.fixture(scope="module")
def server_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    reason = _engine()
    if reason is not None:
        pytest.skip(reason)
    from ptc_mcp.sandboxes.docker.image import build_local_image

    base = build_local_image()
    context = _context(tmp_path_factory.mktemp("image-context"))
    command = ["docker", "build", "-q", "-t", IMAGE, "--build-arg", f"BASE_IMAGE={base}", str(context)]
    built = subprocess.run(command, capture_output=True, text=True, check=False, env={"DOCKER_BUILDKIT": "0"})
    assert built.returncode == 0, built.stderr[-3000:]
    return IMAGE


def test_the_image_runs_as_a_non_root_user_with_a_health_check(server_image: str) -> None:
    inspected = json.loads(subprocess.run(["docker", "image", "inspect", server_image], capture_output=True).stdout)
    config = inspected[0]["Config"]
    assert config["User"] == "65534:65534"
    assert config["Entrypoint"] == ["python3", "-m", "ptc_mcp"]
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert "PTC_MCP_CONFIG=/etc/ptc-mcp/config.json" in config["Env"]
    size_mb = inspected[0]["Size"] / 1e6
    print(f"\nserver image: {size_mb:.0f} MB (base included)")


@pytest.mark.anyio
async def test_the_container_serves_execute_program_configured_by_env_and_a_mounted_config(
    server_image: str, tmp_path: Path
) -> None:
    async with running_emulator() as (endpoint, emulator):
        document = {
            "mcpServers": {
                "expenses": {
                    "command": "python3",
                    "args": ["-m", "ptc_mcp.examples.expenses"],
                    # stdio servers start with a clean environment: say where the image keeps its packages
                    "env": {"PYTHONPATH": "/opt/ptc-mcp/lib", "LD_LIBRARY_PATH": "/opt/ptc-mcp/native"},
                }
            },
            "sandbox": {"kind": "agentcore", "agentcore": {"endpoint_url": endpoint, "region": "us-east-1"}},
            "remote": {"auth": {"mode": "bearer", "tokens": ["${PTC_MCP_AUTH_TOKEN}"]}},
        }
        config = tmp_path / "config.json"
        config.write_text(json.dumps(document))
        config.chmod(0o644)
        port = free_port()
        name = f"ptc-mcp-test-{port}"
        run = [
            "docker", "run", "-d", "--rm", "--name", name, "--network", "host",
            "-v", f"{config}:/etc/ptc-mcp/config.json:ro",
            "-e", f"PTC_MCP_AUTH_TOKEN={TOKEN}", "-e", f"PTC_MCP_PORT={port}", "-e", "PTC_MCP_HOST=127.0.0.1",
            "-e", "AWS_ACCESS_KEY_ID=emulator", "-e", "AWS_SECRET_ACCESS_KEY=emulator", "-e", "AWS_REGION=us-east-1",
            server_image,
        ]  # fmt: skip
        started = await anyio.run_process(run, check=False)
        assert started.returncode == 0, started.stderr.decode()
        base = f"http://127.0.0.1:{port}"
        try:
            began = time.monotonic()
            async with httpx2.AsyncClient(timeout=5.0) as http:
                with anyio.fail_after(WAIT_S):
                    while True:
                        try:
                            if (await http.get(f"{base}/readyz")).status_code == 200:
                                break
                        except httpx2.TransportError:
                            pass
                        await anyio.sleep(0.1)
            ready_s = time.monotonic() - began
            async with httpx2.AsyncClient(timeout=WAIT_S) as http:
                refused = await http.post(f"{base}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=WAIT_S) as http,
                Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy") as client,
            ):
                with anyio.fail_after(WAIT_S):
                    first = await client.call_tool(
                        "execute_program",
                        {"code": "n = len(await expenses.get_team_members(department='engineering'))\nn"},
                    )
                    second = await client.call_tool("execute_program", {"code": "n * 2"})
        finally:
            with anyio.CancelScope(shield=True):
                logs = (await anyio.run_process(["docker", "logs", name], check=False)).stderr.decode()
                await anyio.run_process(["docker", "stop", "-t", "10", name], check=False)
    assert refused.status_code == 401
    assert first.structured_content is not None and first.structured_content["result"] == 8, logs[-2000:]
    assert second.structured_content is not None and second.structured_content["result"] == 16
    assert len(emulator.service.sessions) == 1
    json_lines = [line for line in logs.splitlines() if line.startswith("{")]
    assert json_lines and all(json.loads(line) for line in json_lines)  # JSON logs by default in the image
    print(f"\ncontainer ready in {ready_s:.1f} s", file=sys.stderr)
