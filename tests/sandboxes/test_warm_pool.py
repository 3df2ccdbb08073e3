"""Warm interpreters: the pool fills in the background, serves takes at once, refills, recycles stale ones."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from ptc_mcp.config import Config
from ptc_mcp.errors import SandboxFailure
from ptc_mcp.sandboxes import sandbox_limits, warm_pool
from ptc_mcp.sandboxes.base import RunReport, RunRequest
from ptc_mcp.sandboxes.process.backend import ProcessBackend, ProcessSession
from ptc_mcp.sandboxes.warm_pool import WarmPool

pytestmark = pytest.mark.anyio


class FakeSession:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False

    @property
    def alive(self) -> bool:
        return not self.closed

    async def aclose(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def wait_until_full(pool: WarmPool[FakeSession] | WarmPool[ProcessSession]) -> None:
    with anyio.fail_after(30):
        while len(pool) < pool.size:
            await anyio.sleep(0.01)


async def test_the_pool_fills_serves_oldest_first_and_refills_after_a_take() -> None:
    started: list[FakeSession] = []

    async def start() -> FakeSession:
        started.append(FakeSession(len(started)))
        return started[-1]

    pool = WarmPool(start, size=2, max_age_s=60)
    assert pool.take() is None  # nothing yet: the caller starts one cold
    async with anyio.create_task_group() as group:
        group.start_soon(pool.run)
        await wait_until_full(pool)
        first = pool.take()
        assert first is started[0]
        await wait_until_full(pool)
        assert len(started) == 3
        group.cancel_scope.cancel()
    assert all(session.closed for session in started[1:]), "cancelling run() closes what the pool held"
    assert not first.closed, "a taken session belongs to the taker"
    assert (pool.taken, pool.missed, pool.started) == (1, 1, 3)


async def test_stale_and_dead_interpreters_are_recycled_not_served() -> None:
    clock = Clock()
    started: list[FakeSession] = []

    async def start() -> FakeSession:
        started.append(FakeSession(len(started)))
        return started[-1]

    pool = WarmPool(start, size=2, max_age_s=10, clock=clock)
    async with anyio.create_task_group() as group:
        group.start_soon(pool.run)
        await wait_until_full(pool)
        started[0].closed = True  # died while waiting
        clock.now += 11  # and the other one is too old
        fresh = pool.take()
        assert fresh is None
        await wait_until_full(pool)
        assert started[1].closed, "the stale one was closed"
        assert pool.recycled == 2
        clock.now += 5
        assert pool.take() is started[2]
        group.cancel_scope.cancel()


async def test_a_failing_start_does_not_kill_the_pool() -> None:
    attempts = 0

    async def start() -> FakeSession:
        nonlocal attempts
        attempts += 1
        raise OSError("no interpreter today")

    pool = WarmPool(start, size=1, max_age_s=10)
    with anyio.move_on_after(0.3):
        await pool.run()
    assert attempts == 1 and len(pool) == 0


async def test_a_start_that_fails_because_the_pool_closed_under_it_is_not_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    starting, closed = anyio.Event(), anyio.Event()

    async def start() -> FakeSession:
        starting.set()
        await closed.wait()
        raise SandboxFailure("the backend is closed")

    pool = WarmPool(start, size=1, max_age_s=10)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(pool.run)
            await starting.wait()
            await pool.aclose()  # what the backend's aclose does while a start is in flight
            closed.set()
    assert pool.failures == 0 and pool.backoff_s == 0
    assert "cannot start a warm interpreter" not in caplog.text


async def test_after_a_failed_start_takes_do_not_cut_the_back_off_short() -> None:
    attempts = 0

    async def start() -> FakeSession:
        nonlocal attempts
        attempts += 1
        raise OSError("the engine is down")

    pool = WarmPool(start, size=2, max_age_s=10)
    async with anyio.create_task_group() as group:
        group.start_soon(pool.run)
        with anyio.fail_after(5):
            while pool.failures < 1:
                await anyio.sleep(0.01)
        for _ in range(50):  # every take wakes the pool; a failing engine must not be retried at that rate
            assert pool.take() is None
            await anyio.sleep(0.002)
        group.cancel_scope.cancel()
    assert attempts == 1 and pool.backoff_s == warm_pool.RETRY_AFTER_FAILURE_S


async def test_the_back_off_doubles_up_to_a_cap_and_resets_after_a_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warm_pool, "RETRY_AFTER_FAILURE_S", 0.01)
    monkeypatch.setattr(warm_pool, "MAX_BACKOFF_S", 0.04)
    waits: list[float] = []

    async def start() -> FakeSession:
        waits.append(pool.backoff_s)
        if len(waits) <= 4:
            raise OSError("the engine is down")
        return FakeSession(len(waits))

    pool = WarmPool(start, size=1, max_age_s=60)
    async with anyio.create_task_group() as group:
        group.start_soon(pool.run)
        await wait_until_full(pool)
        group.cancel_scope.cancel()
    assert waits == [0.0, 0.01, 0.02, 0.04, 0.04]
    assert pool.backoff_s == 0.0 and pool.failures == 4 and pool.started == 1


async def test_a_session_the_fit_check_refuses_is_recycled_not_served() -> None:
    started: list[FakeSession] = []
    unfit: set[int] = set()

    async def start() -> FakeSession:
        started.append(FakeSession(len(started)))
        return started[-1]

    pool = WarmPool(start, size=1, max_age_s=60, fit=lambda session: session.number not in unfit)
    async with anyio.create_task_group() as group:
        group.start_soon(pool.run)
        await wait_until_full(pool)
        unfit.add(0)  # it no longer fits
        assert pool.take() is None
        await wait_until_full(pool)
        assert started[0].closed and pool.recycled == 1
        assert pool.take() is started[1]
        group.cancel_scope.cancel()


@pytest.fixture
async def warm_backend() -> AsyncIterator[ProcessBackend]:
    config = Config.model_validate({"sandbox": {"kind": "process"}})
    backend = ProcessBackend(sandbox_limits(config), warm_pool=2, warm_max_age_s=300)
    try:
        yield backend
    finally:
        await backend.aclose()


async def _noop_tool(name: str, arguments: dict[str, object]) -> object:
    return None


class _Sink:
    def write(self, stream: str, text: str) -> None:
        pass


async def test_a_new_session_takes_a_warm_interpreter_without_paying_start_up(warm_backend: ProcessBackend) -> None:
    # What it saves is measured by `ptc-mcp bench latency` (cold start against warm-pool start); here, that the
    # session is the pool's interpreter, already started, and that taking it started nothing.
    async with anyio.create_task_group() as group:
        group.start_soon(warm_backend.keep_warm)
        await wait_until_full(warm_backend.pool)
        oldest = warm_backend.pool._ready[0][1]
        started_before = warm_backend.pool.started
        session = await warm_backend.start_session()
        assert session is oldest and warm_backend.pool.started == started_before
        report: RunReport = await session.run(
            RunRequest(run_id="r1", code="6 * 7", catalog={"servers": []}, catalog_version="v", max_output_bytes=1024),
            _noop_tool,
            _Sink(),  # type: ignore[arg-type]
        )
        assert report.ok and report.result == 42
        await session.aclose()
        await wait_until_full(warm_backend.pool)  # refilled in the background
        group.cancel_scope.cancel()
    assert warm_backend.pool.taken == 1


async def test_closing_the_backend_kills_its_warm_interpreters(warm_backend: ProcessBackend) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(warm_backend.keep_warm)
        await wait_until_full(warm_backend.pool)
        held = [session for _, session in warm_backend.pool._ready]
        assert all(session.alive for session in held)
        await warm_backend.aclose()
        assert not any(session.alive for session in held)
        group.cancel_scope.cancel()
