"""The executor: admission, sessions, limits and the run itself. Every face of ptc-mcp calls ``execute``.

``execute`` never raises for anything a program does: every failure is a ``RunResult`` with an error type from
the error contract (docs/security.md). It raises only for host bugs.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import anyio

from ptc_mcp.bridge import ToolBridge
from ptc_mcp.config import LimitsConfig
from ptc_mcp.errors import BusyError, RunLimitExceeded, SandboxFailure
from ptc_mcp.output import OutputCollector
from ptc_mcp.results import RunError, RunResult, error_result
from ptc_mcp.sandboxes.base import RunReport, RunRequest, SandboxBackend, SandboxSession
from ptc_mcp.sessions import Session, SessionStore

log = logging.getLogger(__name__)
audit = logging.getLogger("ptc_mcp.audit")

REAP_INTERVAL_S = 15.0


@dataclass(frozen=True)
class ExecuteRequest:
    """One ``execute_program`` call, already validated for type."""

    code: str
    session: str | None = None
    """A session handle to continue; ``None`` starts a new session (or uses the connection's)."""
    reset: bool = False
    timeout_s: float | None = None
    owner: str | None = None
    """The caller's identity, when the transport knows it: sessions are bound to it."""


class Executor:
    """Runs programs. An async context manager: it owns the sessions and the idle reaper."""

    def __init__(
        self,
        backend: SandboxBackend,
        bridge: ToolBridge,
        limits: LimitsConfig,
        *,
        stateless: bool = False,
        session_idle_s: float = 900.0,
        max_sessions: int = 32,
    ) -> None:
        self.backend = backend
        self.bridge = bridge
        self.limits = limits
        self.stateless = stateless
        self.sessions = SessionStore(idle_s=session_idle_s, max_sessions=max_sessions)
        self._slots = anyio.Semaphore(limits.max_concurrent_runs)
        self._waiting = 0
        self._stack: AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.push_async_callback(self.sessions.aclose)
            stack.callback(task_group.cancel_scope.cancel)
            task_group.start_soon(self._reap_idle)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    async def _reap_idle(self) -> None:
        while True:
            await anyio.sleep(REAP_INTERVAL_S)
            await self.sessions.expire_idle()

    def check_input(self, request: ExecuteRequest) -> str | None:
        """Why the input is refused before any sandbox starts, or ``None``."""
        size = len(request.code.encode("utf-8", "surrogatepass"))
        if size > self.limits.max_code_bytes:
            return f"code is {size} bytes; the limit is {self.limits.max_code_bytes}"
        if "\x00" in request.code:
            return "code contains NUL bytes"
        try:
            request.code.encode("utf-8")
        except UnicodeEncodeError:
            return "code is not valid UTF-8 (it contains lone surrogates)"
        if request.timeout_s is not None and request.timeout_s <= 0:
            return "timeout_s must be positive"
        return None

    async def execute(self, request: ExecuteRequest) -> RunResult:
        """Run one program and describe what happened."""
        problem = self.check_input(request)
        if problem is not None:
            return error_result("invalid_input", problem, session=request.session)
        try:
            async with self._admission():
                if self.stateless:
                    return await self._run_stateless(request)
                session = await self._resolve_session(request)
                if session is None:
                    return error_result(
                        "invalid_input", "unknown or expired session: omit `session` to start a new one"
                    )
                async with session.lock:
                    if request.reset:
                        await session.discard_sandbox()
                    return await self._run_in(session, request)
        except BusyError as exc:
            return error_result("busy", str(exc), session=request.session)

    def _admission(self) -> _Admission:
        return _Admission(self)

    async def _resolve_session(self, request: ExecuteRequest) -> Session | None:
        if request.session is None:
            return await self.sessions.create(request.owner)
        return self.sessions.get(request.session, request.owner)

    async def _run_stateless(self, request: ExecuteRequest) -> RunResult:
        session = Session(handle="", owner=request.owner)
        try:
            result = await self._run_in(session, request)
        finally:
            await session.discard_sandbox()
        result.session = None
        return result

    async def _run_in(self, session: Session, request: ExecuteRequest) -> RunResult:
        timeout_s = min(request.timeout_s or self.limits.timeout_s, self.limits.timeout_s)
        output = OutputCollector(self.limits.max_output_bytes)
        tools = self.bridge.for_run(self.limits.max_tool_calls)
        snapshot = tools.snapshot
        run = RunRequest(
            run_id=secrets.token_hex(8),
            code=request.code,
            catalog=snapshot.runtime_catalog,
            catalog_version=snapshot.version,
            max_output_bytes=self.limits.max_output_bytes,
        )
        started = time.perf_counter()
        report: RunReport | None = None
        error: RunError | None = None
        finished = False
        try:
            with anyio.move_on_after(timeout_s) as deadline:
                try:
                    sandbox: SandboxSession = await session.ensure_sandbox(self.backend)
                    report = await sandbox.run(run, tools, output)
                except RunLimitExceeded as exc:
                    error = RunError(type=exc.error_type, message=exc.message)
                except SandboxFailure as exc:
                    error = RunError(type=exc.error_type, message=str(exc))
            if deadline.cancelled_caught:
                error = RunError(
                    type="timeout",
                    message=f"the program ran longer than {timeout_s:g} s and was stopped"
                    + ("" if self.stateless else "; the session restarts fresh on the next call"),
                )
            finished = True
        finally:
            if not finished or error is not None:
                with anyio.CancelScope(shield=True):
                    await session.discard_sandbox()
            session.last_used = time.monotonic()
            session.runs += 1
        if report is not None:
            output.note_dropped(report.output_dropped)
        if report is not None and not report.ok:
            error = RunError(
                type=report.error_type or "program_error",
                message=report.message or "",
                exc_type=report.exc_type,
                traceback=report.traceback,
            )
        result = RunResult(
            status="ok" if error is None else "error",
            stdout=output.text("stdout"),
            stderr=output.text("stderr"),
            output_truncated=output.truncated,
            result=report.result if report else None,
            result_repr=report.result_repr if report else None,
            error=error,
            tool_calls=tools.used,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            session=session.handle or None,
        )
        audit.info(
            json.dumps(
                {
                    "event": "run",
                    "session": (session.handle or "")[:12],
                    "status": result.status,
                    "error_type": result.error_type,
                    "tool_calls": result.tool_calls,
                    "duration_ms": result.duration_ms,
                    "code_bytes": len(request.code),
                    "output_bytes": len(result.stdout) + len(result.stderr),
                }
            )
        )
        return result


class _Admission:
    """At most ``max_concurrent_runs`` at once, ``max_queued_runs`` waiting; beyond that, ``busy`` at once."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def __aenter__(self) -> None:
        executor = self._executor
        if executor._slots.value == 0 and executor._waiting >= executor.limits.max_queued_runs:
            raise BusyError(
                f"{executor.limits.max_concurrent_runs} programs are running and "
                f"{executor._waiting} are waiting; try again shortly"
            )
        executor._waiting += 1
        try:
            await executor._slots.acquire()
        finally:
            executor._waiting -= 1

    async def __aexit__(self, *exc_info: object) -> None:
        self._executor._slots.release()
