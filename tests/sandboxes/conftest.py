"""The ``backend`` fixture: every isolating sandbox backend available here, for the conformance suite.

``BACKENDS`` maps a kind to an async factory that yields a ``BackendUnderTest``: the backend plus two hooks the
suite cannot write generically (what of a session is still alive, and how to kill it from outside). A backend
that cannot run here skips with the reason. To add a backend, add an entry.
"""

from __future__ import annotations

import importlib.util
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from ptc_mcp.config import Config
from ptc_mcp.errors import SandboxFailure, SandboxUnavailableError
from ptc_mcp.sandboxes import create_backend
from ptc_mcp.sandboxes.base import SandboxBackend, SandboxLimits, SandboxSession
from ptc_mcp.sandboxes.process.isolation import bubblewrap_status, processes_of_user
from tests.conftest import process_tree, start_time


@dataclass
class BackendUnderTest:
    """A backend and the hooks the conformance suite needs to check it from outside."""

    kind: str
    backend: SandboxBackend
    watch: Callable[[SandboxSession], Awaitable[Leftovers]]
    """Called while a session runs; returns a check, for after ``aclose``, of what is still there (processes,
    containers, directories): an empty list when the session left nothing behind."""
    kill_from_outside: Callable[[SandboxSession], Awaitable[None]]
    """Kill the session's interpreter the way the OOM killer or an operator would."""


Leftovers = Callable[[], Awaitable[list[str]]]
BackendFactory = Callable[[], AbstractAsyncContextManager[BackendUnderTest]]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


async def _process_watch(session: SandboxSession) -> Leftovers:
    launch = session.launch  # type: ignore[attr-defined]
    started = {pid: start_time(pid) for pid in process_tree(session.pid)}  # type: ignore[attr-defined]

    async def leftovers() -> list[str]:
        found = [f"pid {pid} ({_comm(pid)})" for pid, start in started.items() if start and start_time(pid) == start]
        if launch.session_user:
            found += [f"pid {pid} of session uid {launch.user}" for pid in processes_of_user(launch.user)]
        if launch.scratch_dir.exists():
            found.append(f"scratch directory {launch.scratch_dir}")
        return found

    return leftovers


async def _process_kill_from_outside(session: SandboxSession) -> None:
    """SIGKILL the interpreter itself (not bubblewrap, not the process group): a crash the host did not cause."""
    pids = [pid for pid in process_tree(session.pid) if _comm(pid).startswith("python")]  # type: ignore[attr-defined]
    assert pids, "the sandbox's interpreter was not found"
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@asynccontextmanager
async def process_backend() -> AsyncIterator[BackendUnderTest]:
    usable, reason = bubblewrap_status()
    if not usable:
        pytest.skip(f"the process backend is not isolating here: {reason}")
    backend = create_backend(Config.model_validate({"sandbox": {"kind": "process"}}))
    try:
        yield BackendUnderTest("process", backend, _process_watch, _process_kill_from_outside)
    finally:
        await backend.aclose()


@asynccontextmanager
async def srt_backend() -> AsyncIterator[BackendUnderTest]:
    """The srt backend (Anthropic's sandbox-runtime); its sessions are process sessions, watched the same way."""
    from ptc_mcp.sandboxes.process.srt import srt_status

    usable, reason = await anyio.to_thread.run_sync(srt_status)
    if not usable:
        pytest.skip(f"srt is not usable here: {reason}")
    backend = create_backend(Config.model_validate({"sandbox": {"kind": "srt", "warm_pool": 0}}))
    try:
        yield BackendUnderTest("srt", backend, _process_watch, _process_kill_from_outside)
    finally:
        await backend.aclose()


def _unavailable(kind: str, extra_module: str) -> str | None:
    if importlib.util.find_spec(f"ptc_mcp.sandboxes.{kind}") is None:
        return f"ptc_mcp.sandboxes.{kind} does not exist yet"
    if importlib.util.find_spec(extra_module) is None:
        return f'the {kind} extra is not installed (pip install "ptc-mcp[{kind}]")'
    return None


_start_failures: dict[int, str | None] = {}


async def _cannot_start(backend: SandboxBackend) -> str | None:
    """Why the backend cannot start a session here (no image, say), probed once per backend class."""
    key = id(type(backend))
    if key not in _start_failures:
        try:
            with anyio.fail_after(120):
                session = await backend.start_session()
            await session.aclose()
            _start_failures[key] = None
        except (SandboxFailure, SandboxUnavailableError) as exc:
            _start_failures[key] = str(exc)
    return _start_failures[key]


def _docker_client() -> Any:
    import docker

    return docker.from_env(timeout=30)


async def _docker_watch(session: SandboxSession) -> Leftovers:
    container_id = session.container_id  # type: ignore[attr-defined]

    async def leftovers() -> list[str]:
        def existing() -> list[str]:
            return [c.short_id for c in _docker_client().containers.list(all=True, filters={"id": container_id})]

        return [f"container {short_id}" for short_id in await anyio.to_thread.run_sync(existing)]

    return leftovers


async def _docker_kill_from_outside(session: SandboxSession) -> None:
    """``docker kill``: the container dies the way an operator or the engine's OOM killer would end it."""
    container_id = session.container_id  # type: ignore[attr-defined]
    await anyio.to_thread.run_sync(lambda: _docker_client().api.kill(container_id))


@asynccontextmanager
async def docker_backend() -> AsyncIterator[BackendUnderTest]:
    reason = _unavailable("docker", "docker")
    if reason:
        pytest.skip(reason)
    from ptc_mcp.sandboxes.docker.backend import DockerBackend
    from ptc_mcp.sandboxes.docker.image import build_local_image
    from ptc_mcp.sandboxes.docker.settings import parse_docker_settings

    try:
        # A local image built from this machine's Python: tests never pull from a registry.
        image = await anyio.to_thread.run_sync(lambda: build_local_image(client=_docker_client()))
        settings = parse_docker_settings({"image": image, "pull": "never"})
        backend = await anyio.to_thread.run_sync(DockerBackend, settings, SandboxLimits())
    except Exception as exc:  # no engine, no permission on its socket, no ldd: skip with the reason
        pytest.skip(f"docker is not usable here: {exc}")
    reason = await _cannot_start(backend)
    if reason:
        await backend.aclose()
        pytest.skip(f"docker cannot start a sandbox here: {reason}")
    try:
        yield BackendUnderTest("docker", backend, _docker_watch, _docker_kill_from_outside)
    finally:
        await backend.aclose()


@asynccontextmanager
async def agentcore_backend() -> AsyncIterator[BackendUnderTest]:
    """The agentcore backend through real boto3 against the local emulator, whose sessions are process sandboxes."""
    reason = _unavailable("agentcore", "bedrock_agentcore")
    if reason:
        pytest.skip(reason)
    usable, why = bubblewrap_status()
    if not usable:
        pytest.skip(f"the agentcore emulator's sessions would not be isolated here: {why}")
    from ptc_mcp.emulators.agentcore_testing import emulated_agentcore_backend

    async with emulated_agentcore_backend(step_wait_s=0.5) as (backend, emulator):

        def interpreter(session: SandboxSession) -> SandboxSession:
            emulated = emulator.service.sessions[session.session_id]  # type: ignore[attr-defined]
            assert emulated.kernel is not None, "the emulated session has no interpreter"
            process: SandboxSession = emulated.kernel.process
            return process

        async def watch(session: SandboxSession) -> Leftovers:
            return await _process_watch(interpreter(session))

        async def kill_from_outside(session: SandboxSession) -> None:
            await _process_kill_from_outside(interpreter(session))

        yield BackendUnderTest("agentcore", backend, watch, kill_from_outside)


BACKENDS: dict[str, BackendFactory] = {
    "process": process_backend,
    "srt": srt_backend,
    "docker": docker_backend,
    "agentcore": agentcore_backend,
}
"""kind → async factory; each test of the conformance suite runs once per entry."""

_MARKS = {"docker": [pytest.mark.docker], "process": [pytest.mark.bubblewrap], "srt": [pytest.mark.srt]}


@pytest.fixture(params=[pytest.param(kind, marks=_MARKS.get(kind, [])) for kind in BACKENDS])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[BackendUnderTest]:
    """Each available isolating backend in turn; unavailable ones skip with the reason."""
    async with BACKENDS[request.param]() as under_test:
        yield under_test
