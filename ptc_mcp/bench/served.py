"""``ptc-mcp serve`` as a child process on loopback, for benchmarks and tests that need a real server process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio

from ptc_mcp.config import Config, parse_config
from ptc_mcp.demo import demo_config
from ptc_mcp.errors import SandboxUnavailableError
from ptc_mcp.sandboxes import create_backend

START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ServedProcess:
    """A running ``ptc-mcp serve``: where to reach it, its pid, its files."""

    pid: int
    url: str
    folder: Path
    audit_file: Path
    stderr_file: Path

    def audit_lines(self) -> list[dict[str, Any]]:
        if not self.audit_file.exists():
            return []
        return [json.loads(line) for line in self.audit_file.read_text(encoding="utf-8").splitlines() if line]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def process_sandbox_isolated() -> bool:
    """Whether the ``process`` backend is isolated here (bubblewrap works); otherwise benches opt in to unisolated."""
    try:
        backend = create_backend(Config.model_validate({"sandbox": {"kind": "process"}}))
    except SandboxUnavailableError:
        return False
    return backend.isolated


def bench_config(folder: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """The demo config (the bundled expense server downstream) on the ``process`` backend, audit to a file."""
    config: dict[str, Any] = dict(demo_config(allow_unisolated=not process_sandbox_isolated()))
    config["sandbox"] = {**config["sandbox"], "kind": "process"}
    config["audit"] = {"file": str(folder / "audit.jsonl")}
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


def served_config(**sections: dict[str, Any]) -> Config:
    """The config ``serve_subprocess(**sections)`` serves, validated here: the settings in force, sized ones too
    (the child runs on this machine, so it sizes them the same)."""
    with tempfile.TemporaryDirectory(prefix="ptc-mcp-served-") as name:
        return parse_config(bench_config(Path(name), **sections), environ={})


async def _wait_listening(port: int, process: anyio.abc.Process, stderr_file: Path) -> None:
    with anyio.fail_after(START_TIMEOUT_S):
        while True:
            if process.returncode is not None:
                tail = await anyio.Path(stderr_file).read_text()
                raise RuntimeError(f"ptc-mcp serve exited: {tail[-2000:]}")
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
                continue
            await stream.aclose()
            return


@asynccontextmanager
async def serve_subprocess(
    transport: Literal["http", "sse"] = "http", **sections: dict[str, Any]
) -> AsyncIterator[ServedProcess]:
    """Start ``ptc-mcp serve --transport http`` on 127.0.0.1 with ``bench_config``; stop it on exit."""
    with tempfile.TemporaryDirectory(prefix="ptc-mcp-served-") as name:
        folder = Path(name)
        config_path = folder / "config.json"
        config_path.write_text(json.dumps(bench_config(folder, **sections)), encoding="utf-8")
        port = free_port()
        stderr_file = folder / "stderr.log"
        argv = [sys.executable, "-m", "ptc_mcp", "serve", "--config", str(config_path)]
        argv += ["--transport", transport, "--host", "127.0.0.1", "--port", str(port)]
        with stderr_file.open("wb") as stderr:
            process = await anyio.open_process(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                await _wait_listening(port, process, stderr_file)
                path = "/mcp" if transport == "http" else "/sse"
                yield ServedProcess(
                    pid=process.pid,
                    url=f"http://127.0.0.1:{port}{path}",
                    folder=folder,
                    audit_file=folder / "audit.jsonl",
                    stderr_file=stderr_file,
                )
            finally:
                with anyio.CancelScope(shield=True):
                    process.terminate()
                    with anyio.move_on_after(10):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
                    await process.aclose()
