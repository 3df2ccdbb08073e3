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
from ptc_mcp.sandboxes.base import SandboxBackend, SandboxSession
from ptc_mcp.sandboxes.isolation import bubblewrap_status, processes_of_user
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


def _unavailable(kind: str, extra_module: str) -> str | None:
    if importlib.util.find_spec(f"ptc_mcp.sandboxes.{kind}") is None:
        return f"ptc_mcp.sandboxes.{kind} does not exist yet"
    if importlib.util.find_spec(extra_module) is None:
        return f'the {kind} extra is not installed (pip install "ptc-mcp[{kind}]")'
    return None


def _registered_hooks(kind: str) -> tuple[Any, Any]:
    def missing(_session: SandboxSession) -> Any:
        pytest.skip(f"no conformance hook for {kind} yet: add watch/kill_from_outside in tests/sandboxes/conftest.py")

    return missing, missing


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


@asynccontextmanager
async def docker_backend() -> AsyncIterator[BackendUnderTest]:
    reason = _unavailable("docker", "docker")
    if reason:
        pytest.skip(reason)
    try:
        backend = await anyio.to_thread.run_sync(create_backend, Config.model_validate({"sandbox": {"kind": "docker"}}))
    except (ImportError, SandboxUnavailableError) as exc:
        pytest.skip(f"docker is not usable here: {exc}")
    reason = await _cannot_start(backend)
    if reason:
        await backend.aclose()
        pytest.skip(f"docker cannot start a sandbox here: {reason}")
    try:
        yield BackendUnderTest("docker", backend, *_registered_hooks("docker"))
    finally:
        await backend.aclose()


@asynccontextmanager
async def agentcore_backend() -> AsyncIterator[BackendUnderTest]:
    reason = _unavailable("agentcore", "bedrock_agentcore")
    if reason:
        pytest.skip(reason)
    pytest.skip("agentcore needs its local emulator: register it here once the agentcore tests provide one")
    yield  # pragma: no cover


BACKENDS: dict[str, BackendFactory] = {
    "process": process_backend,
    "docker": docker_backend,
    "agentcore": agentcore_backend,
}
"""kind → async factory; each test of the conformance suite runs once per entry."""

_MARKS = {"docker": [pytest.mark.docker], "process": [pytest.mark.bubblewrap]}


@pytest.fixture(params=[pytest.param(kind, marks=_MARKS.get(kind, [])) for kind in BACKENDS])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[BackendUnderTest]:
    """Each available isolating backend in turn; unavailable ones skip with the reason."""
    async with BACKENDS[request.param]() as under_test:
        yield under_test
