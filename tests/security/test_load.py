"""SECURITY.md, "Load": floods, bad input refused before any sandbox starts, and a SIGKILLed server's leftovers.

The floods run through the real MCP server: in process with the official client on every backend, and once over
real streamable HTTP on loopback. The SIGKILL case runs ``ptc-mcp serve`` as a subprocess, kills it mid-run, starts
a new one and checks that the new one reaped what the dead one left.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from ptc_mcp.sandboxes.process.isolation import default_scratch_root, processes_of_user
from ptc_mcp.server import TOOL_NAME, build_server
from ptc_mcp.transports import http_app
from tests.sandboxes.conftest import BACKENDS
from tests.security.conftest import Secured, error_type

pytestmark = pytest.mark.anyio

FLOOD = 100
CONCURRENT = 4
QUEUED = 8


class Flood:
    """Samples, while a flood runs, how many sandboxes are alive and how long ``tools/list`` takes."""

    def __init__(self, secured: Secured, list_within_s: float) -> None:
        self.secured = secured
        self.list_within_s = list_within_s
        self.peak_alive = 0
        self.peak_running = 0
        self.list_latencies: list[float] = []

    async def sample(self, lister: Client) -> None:
        while True:
            alive = sum(1 for session in self.secured.backend.sessions if session.alive)
            self.peak_alive = max(self.peak_alive, alive)
            self.peak_running = max(self.peak_running, self.secured.app.executor.running)
            started = time.monotonic()
            with anyio.move_on_after(self.list_within_s) as waited:
                listed = await lister.list_tools()
            assert not waited.cancelled_caught, f"tools/list took over {self.list_within_s} s during the flood"
            assert [tool.name for tool in listed.tools] == [TOOL_NAME]
            self.list_latencies.append(time.monotonic() - started)
            await anyio.sleep(0.05)


def _outcomes(results: list[types.CallToolResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        assert result.is_error and result.structured_content is not None, result
        kind = error_type(result.structured_content) or "ok"
        counts[kind] = counts.get(kind, 0) + 1
    return counts


@pytest.mark.limits(max_concurrent_runs=CONCURRENT, max_queued_runs=QUEUED)
async def test_a_flood_of_runs_that_hit_a_limit_is_bounded_and_tools_list_answers_throughout(
    secured: Secured,
) -> None:
    flood = Flood(secured, list_within_s=5)
    results: list[types.CallToolResult] = []

    async def one() -> None:
        results.append(await secured.call("while True: pass", timeout_s=1))

    with anyio.fail_after(120):
        async with anyio.create_task_group() as sampler:
            sampler.start_soon(flood.sample, secured.client)
            async with anyio.create_task_group() as calls:
                for _ in range(FLOOD):
                    calls.start_soon(one)
            sampler.cancel_scope.cancel()
    counts = _outcomes(results)
    assert sum(counts.values()) == FLOOD
    assert set(counts) == {"timeout", "busy"}, counts
    assert CONCURRENT <= counts["timeout"] <= CONCURRENT + QUEUED
    assert flood.peak_running <= CONCURRENT
    assert flood.peak_alive <= CONCURRENT
    assert flood.list_latencies
    await secured.assert_serving()


async def test_bad_input_is_invalid_input_before_any_sandbox_starts(secured: Secured) -> None:
    cases: list[dict[str, Any]] = [
        {"code": "x = 1\n" * (20 * 1024 * 1024 // 6)},  # 20 MB
        {"code": "print('a')\x00print('b')"},
        {"code": "'\ud800'"},
        {"code": 42},
        {"code": ["print(1)"]},
        {"code": None},
        {},
        {"code": "1", "timeout_s": "soon"},
        {"code": "1", "timeout_s": -1},
        {"code": "1", "session": 7},
        {"code": "1", "reset": "yes"},
        {"code": "1", "unexpected": True},
    ]
    for arguments in cases:
        with anyio.fail_after(60):
            result = await secured.client.call_tool(TOOL_NAME, arguments)
        assert result.is_error and result.structured_content is not None, arguments
        assert error_type(result.structured_content) == "invalid_input", (arguments, result.structured_content)
    assert secured.backend.sessions == []  # refused before any sandbox started
    await secured.assert_serving()


# --- over real streamable HTTP -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def served_over_http(secured: Secured) -> AsyncIterator[str]:
    """The app on 127.0.0.1 over streamable HTTP (uvicorn in this process); yields the endpoint URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = http_app(build_server(secured.app), "http", "127.0.0.1", None)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.should_exit = True
    sock.close()


@pytest.mark.slow
@pytest.mark.limits(max_concurrent_runs=CONCURRENT, max_queued_runs=QUEUED)
async def test_a_flood_over_real_streamable_http_is_bounded_and_cleaned_up(secured: Secured) -> None:
    if secured.kind != "process":
        pytest.skip("one backend is enough for the transport: the flood itself runs on every backend in process")
    # 100 HTTP clients share this process's event loop with the server.
    flood = Flood(secured, list_within_s=10)
    results: list[types.CallToolResult] = []
    async with served_over_http(secured) as url:
        # One TLS context for every client: httpx builds one per client otherwise (~50 ms of CPU loading CA
        # certificates, on the event loop this process shares with the server: 100 clients stalled it ~5 s).
        tls = ssl.create_default_context()

        async def one() -> None:
            async with (
                httpx2.AsyncClient(verify=tls, timeout=httpx2.Timeout(30, read=300)) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                with anyio.fail_after(90):
                    results.append(await client.call_tool(TOOL_NAME, {"code": "while True: pass", "timeout_s": 1}))

        with anyio.fail_after(120):
            async with Client(url) as lister, anyio.create_task_group() as sampler:
                sampler.start_soon(flood.sample, lister)
                async with anyio.create_task_group() as calls:
                    for _ in range(FLOOD):
                        calls.start_soon(one)
                sampler.cancel_scope.cancel()
    counts = _outcomes(results)
    assert sum(counts.values()) == FLOOD
    assert set(counts) <= {"timeout", "busy"}, counts
    assert counts.get("timeout", 0) >= 1 and counts.get("busy", 0) >= 1, counts
    assert flood.peak_running <= CONCURRENT
    assert flood.peak_alive <= CONCURRENT
    assert flood.list_latencies
    await secured.assert_serving()


# --- SIGKILL of the server mid-run -------------------------------------------------------------------------------


class ServerProcess:
    """``ptc-mcp serve --transport http`` as a subprocess on a free loopback port."""

    def __init__(self, config: Path, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        command = [sys.executable, "-m", "ptc_mcp", "serve", "--config", str(config)]
        command += ["--transport", "http", "--port", str(self.port)]
        self._log = log.open("ab")
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)

    def wait_listening(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited with {self.process.returncode}"
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError("the server did not listen")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def _scratch_dirs_of(pid: int) -> list[Path]:
    root = default_scratch_root()
    return sorted(root.glob(f"ptc-mcp-{pid}.*")) if root.exists() else []


def _containers_of(pid: int) -> list[str]:
    try:
        import docker

        from ptc_mcp.sandboxes.docker.launch import PID_LABEL
    except ImportError:
        return []
    client = docker.from_env(timeout=30)
    return [c.short_id for c in client.containers.list(all=True, filters={"label": f"{PID_LABEL}={pid}"})]


def _uid_of(scratch: Path) -> int | None:
    part = scratch.name.split("-")[3]
    return int(part[1:]) if part.startswith("u") else None


def _evidence(kind: str, pid: int) -> dict[str, Any]:
    """What a server with ``pid`` has running: scratch directories, processes of their uids, containers."""
    dirs = _scratch_dirs_of(pid)
    uids = [uid for uid in map(_uid_of, dirs) if uid is not None]
    return {
        "dirs": [d.name for d in dirs],
        "processes": [p for uid in uids for p in processes_of_user(uid)],
        "containers": _containers_of(pid) if kind == "docker" else [],
    }


@pytest.fixture
def serve_config(tmp_path: Path) -> Iterator[Any]:
    def write(kind: str) -> Path:
        sandbox: dict[str, Any] = {"kind": kind, "warm_pool": 0}
        if kind == "docker":
            from ptc_mcp.sandboxes.docker.image import LOCAL_IMAGE

            sandbox["docker"] = {"image": LOCAL_IMAGE, "pull": "never"}
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps({"mcpServers": {}, "sandbox": sandbox, "audit": {"enabled": False}}))
        return path

    yield write


async def _start_long_run(url: str) -> None:
    with suppress(Exception):  # the server is killed under this call
        async with Client(url) as client:
            await client.call_tool(TOOL_NAME, {"code": "import time\ntime.sleep(600)"})


def _wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind", [pytest.param("process", marks=pytest.mark.bubblewrap), pytest.param("docker", marks=pytest.mark.docker)]
)
async def test_after_a_sigkill_of_the_server_mid_run_a_restart_reaps_every_leftover(
    kind: str, serve_config: Any, tmp_path: Path
) -> None:
    async with BACKENDS[kind]():  # skips with the reason when the backend cannot run here
        pass
    config = serve_config(kind)
    first = ServerProcess(config, tmp_path / "first.log")
    try:
        await anyio.to_thread.run_sync(first.wait_listening)
        async with anyio.create_task_group() as client:
            client.start_soon(_start_long_run, first.url)

            def running() -> bool:
                found = _evidence(kind, first.process.pid)
                return bool(found["containers"] if kind == "docker" else found["processes"])

            await anyio.to_thread.run_sync(_wait_for, running, 60, "the sandbox of the long run")
            await anyio.sleep(0.3)
            first.process.send_signal(signal.SIGKILL)
            await anyio.to_thread.run_sync(first.process.wait, 10)
            client.cancel_scope.cancel()
        left = _evidence(kind, first.process.pid)
        assert left["dirs"] or left["containers"], "the killed server left nothing to reap: the case proves nothing"
    finally:
        first.stop()
    second = ServerProcess(config, tmp_path / "second.log")
    try:
        await anyio.to_thread.run_sync(second.wait_listening)
        nothing = {"dirs": [], "processes": [], "containers": []}

        def reaped() -> bool:
            return _evidence(kind, first.process.pid) == nothing

        await anyio.to_thread.run_sync(_wait_for, reaped, 10, "the new server to reap the dead one's leftovers")
        async with Client(second.url) as client:
            with anyio.fail_after(60):
                result = await client.call_tool(TOOL_NAME, {"code": "6 * 7"})
        assert result.structured_content is not None and result.structured_content["result"] == 42, result
    finally:
        second.stop()
    assert _evidence(kind, second.process.pid) == {"dirs": [], "processes": [], "containers": []}
