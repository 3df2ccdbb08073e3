"""The shared layer: leases renewed while a run lives, a lost lease ends the run without touching the interpreter,
start-up against a new SQLite map is safe when instances start together. Two executors ("instances") in this
process share one map; programs run in AgentCore sessions through its local emulator."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import pytest

from ptc_mcp.app import App, open_app
from ptc_mcp.config.remote import SessionMapConfig
from ptc_mcp.emulators.agentcore import AgentCoreEmulator, running_emulator
from ptc_mcp.errors import ConfigError
from ptc_mcp.executor import ExecuteRequest
from ptc_mcp.remote.shared_sessions import SessionSharing, SqliteSessionMap, session_sharing, shared_directory
from ptc_mcp.results import RunResult
from ptc_mcp.sandboxes import create_backend
from tests.conftest import test_config
from tests.remote.helpers import FAKE_AWS

pytestmark = pytest.mark.anyio

LEASE_S = 3.0
"""Renewed every third of it: a stall of the machine shorter than ~2 s does not let the lease lapse."""


@asynccontextmanager
async def two_instances(folder: Path) -> AsyncIterator[tuple[App, App, AgentCoreEmulator]]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in FAKE_AWS.items():
            env.setenv(name, value)
        async with AsyncExitStack() as stack:
            endpoint, emulator = await stack.enter_async_context(running_emulator())
            map_section = {"kind": "sqlite", "path": str(folder / "map.db"), "lease_s": LEASE_S}
            config = test_config(
                {},
                sandbox={
                    "kind": "agentcore",
                    "agentcore": {"endpoint_url": endpoint, "region": "us-east-1", "step_wait_s": 0.5},
                },
                remote={"session_map": map_section},
            )
            apps = []
            for _ in range(2):
                app = await stack.enter_async_context(open_app(config, session_directory=shared_directory))
                assert isinstance(app.executor.sessions.directory, SessionSharing)
                apps.append(app)
            yield apps[0], apps[1], emulator


async def run(app: App, code: str, session: str | None = None) -> RunResult:
    with anyio.fail_after(60):
        return await app.executor.execute(ExecuteRequest(code=code, session=session))


async def test_a_run_longer_than_the_lease_keeps_it_and_the_other_instance_waits(tmp_path: Path) -> None:
    async with two_instances(tmp_path) as (first, second, _emulator):
        started = await run(first, "n = 1\nn")
        handle = started.session
        results: dict[str, RunResult] = {}

        async def long_run() -> None:
            code = f"import asyncio\nawait asyncio.sleep({2 * LEASE_S})\nn += 1\nn"  # it outlives its lease twice
            results["long"] = await run(first, code, handle)

        async with anyio.create_task_group() as group:
            group.start_soon(long_run)
            db = sqlite3.connect(tmp_path / "map.db", isolation_level=None)
            with anyio.fail_after(20):  # the long run takes the lease first
                while not db.execute("SELECT 1 FROM ptc_sessions WHERE lease_holder IS NOT NULL").fetchone():
                    await anyio.sleep(0.05)
            db.close()
            results["waiting"] = await run(second, "n += 10\nn", handle)
    assert results["long"].status == "ok", results["long"].error
    assert results["long"].result == 2  # nobody took the session over while the run renewed its lease
    assert results["waiting"].status == "ok", results["waiting"].error
    assert results["waiting"].result == 12  # the second instance waited for the run, then continued its state


async def test_a_run_whose_lease_is_taken_ends_as_sandbox_failure_and_leaves_the_interpreter_alone(
    tmp_path: Path,
) -> None:
    async with two_instances(tmp_path) as (first, second, emulator):
        handle = (await run(first, "x = 41\nx")).session
        assert handle is not None
        results: dict[str, RunResult] = {}

        async def long_run() -> None:
            results["long"] = await run(first, "import asyncio\nawait asyncio.sleep(20)", handle)

        async with anyio.create_task_group() as group:
            group.start_soon(long_run)
            db = sqlite3.connect(tmp_path / "map.db", isolation_level=None)
            with anyio.fail_after(20):  # the store now says another holder has the lease
                while not db.execute(
                    "UPDATE ptc_sessions SET lease_holder = 'thief', fence = fence + 1 WHERE lease_holder IS NOT NULL"
                ).rowcount:
                    await anyio.sleep(0.05)  # bounded poll: until the long run holds the lease
            db.execute("UPDATE ptc_sessions SET lease_holder = NULL, lease_until = 0, version = version + 1")
            db.close()
        failed = results["long"]
        assert failed.error is not None and failed.error.type == "sandbox_failure"
        assert "lost the session's lease" in failed.error.message
        assert failed.duration_ms < 10_000  # ended by the lease keeper, not by the program's end or a timeout
        assert [s for s in emulator.service.sessions.values() if s.status == "READY"]  # never stopped by `first`
        continued = await run(second, "x + 1", handle)
    assert continued.status == "ok", continued.error
    assert continued.result == 42


def test_instances_starting_together_on_a_new_sqlite_map_all_open_it(tmp_path: Path) -> None:
    failures: list[str] = []
    for attempt in range(30):
        path = tmp_path / f"map-{attempt}.db"
        barrier = threading.Barrier(3)

        def open_map(path: Path = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                SqliteSessionMap(path)
            except Exception as exc:  # counted, and shown by the assertion
                failures.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=open_map) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []


def test_a_shared_map_is_refused_for_backends_whose_interpreters_live_in_the_process(tmp_path: Path) -> None:
    backend = create_backend(test_config(), allow_unisolated=True)
    with pytest.raises(ConfigError, match="sticky"):
        session_sharing(SessionMapConfig(kind="sqlite", path=str(tmp_path / "unused.db")), backend, 60)
    assert not (tmp_path / "unused.db").exists()  # refused before any store was opened
