"""The executor: admission, sessions, limits and the run itself. Every face of ptc-mcp calls ``execute``.

``execute`` never raises for anything a program does: every failure is a ``RunResult`` with an error type from
the error contract (docs/security.md). It raises only for host bugs, and re-raises cancellation: a cancelled
``execute`` (the MCP client sent ``notifications/cancelled``) kills the session's interpreter and everything it
started, cancels the run's pending downstream calls, and leaves the session to start fresh on its next run.

Admission: at most ``max_concurrent_runs`` programs run at once and at most ``max_queued_runs`` more wait; past
that, ``busy`` at once. A run waiting for its own session (runs of one session are serialized) counts as queued
but holds no run slot, so one busy session cannot starve the others.

Callers that want to watch a run as it happens (MCP progress, ``ptc_mcp.progress``) pass ``events``; callers
whose client can answer questions (elicitation, sampling: ``ptc_mcp.interaction``) pass its ``channel``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import anyio

from ptc_mcp.approvals import Decision
from ptc_mcp.audit import SESSION_PREFIX_CHARS, AuditLog
from ptc_mcp.bridge import DISCOVERY, CallRecord, RunTools, ToolBridge
from ptc_mcp.budget import fit_run
from ptc_mcp.config import LimitsConfig
from ptc_mcp.errors import BusyError, ErrorType, RunLimitExceeded, SandboxFailure, SessionClosedError, ToolCallError
from ptc_mcp.interaction import ClientChannel, RunInteraction
from ptc_mcp.output import OutputCollector, safe_text
from ptc_mcp.results import RunError, RunResult, error_result
from ptc_mcp.sandboxes.base import (
    RunReport,
    RunRequest,
    SandboxBackend,
    SandboxSession,
    StreamName,
    ToolCallHandler,
)
from ptc_mcp.sandboxes.warm_pool import KeepsWarm
from ptc_mcp.sessions import Session, SessionDirectory, SessionStore

log = logging.getLogger(__name__)

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
    caller_tools: tuple[str, ToolCallHandler] | None = None
    """``(prefix, handler)``: the program's calls of tools named ``prefix…`` go to the caller's ``handler``, not
    to the bridge (the proxy's client tools, answered by its HTTP client)."""
    on_deadline: Callable[[anyio.CancelScope], None] | None = None
    """Called with the run's time limit as it starts, so a caller whose tools wait on someone else can stop the
    clock meanwhile (the proxy does not count the time its client takes to answer)."""


class RunEvents(Protocol):
    """Watches one run as it happens. Called on the event loop; must not block or raise."""

    def output(self, stream: StreamName, text: str) -> None:
        """The program printed ``text`` (already made safe; may be several lines or part of one)."""

    def call_started(self, tool: str) -> None:
        """The program called the downstream tool ``tool`` (``server.tool``)."""

    def call_finished(self, record: CallRecord) -> None:
        """That call returned or failed."""


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
        unclaimed_session_idle_s: float | None = None,
        audit: AuditLog | None = None,
        session_directory: SessionDirectory | None = None,
    ) -> None:
        self.backend = backend
        self.bridge = bridge
        self.limits = limits
        self.stateless = stateless
        self.sessions = SessionStore(
            idle_s=session_idle_s,
            max_sessions=max_sessions,
            unclaimed_idle_s=unclaimed_session_idle_s,
            directory=session_directory,
        )
        self.audit = audit or AuditLog.silent()
        self._slots = anyio.Semaphore(limits.max_concurrent_runs, fast_acquire=True)
        self._in_flight = 0
        self._stack: AsyncExitStack | None = None

    @property
    def running(self) -> int:
        """Programs running now."""
        return self.limits.max_concurrent_runs - self._slots.value

    @property
    def queued(self) -> int:
        """Runs admitted but not running yet (waiting for a slot or for their session)."""
        return self._in_flight - self.running

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self.audit.close)
            stack.push_async_callback(self.sessions.aclose)
            stack.callback(task_group.cancel_scope.cancel)
            task_group.start_soon(self._reap_idle)
            if isinstance(self.backend, KeepsWarm):
                task_group.start_soon(self.backend.keep_warm)
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

    async def execute(
        self, request: ExecuteRequest, events: RunEvents | None = None, channel: ClientChannel | None = None
    ) -> RunResult:
        """Run one program and describe what happened; ``events`` watches it as it happens, ``channel`` answers
        what downstream servers and approvals ask of the client (``None``: nobody can answer)."""
        problem = self.check_input(request)
        if problem is not None:
            return error_result("invalid_input", problem, session=request.session)
        refusal = self.audit.refusal()
        if refusal is not None:
            return error_result("busy", refusal, session=request.session)
        timeout_s = self.time_limit(request)
        new = request.session is None
        session: Session | None = None
        try:
            async with _Admission(self) as admission:
                if self.stateless:
                    async with admission.slot():
                        return await self._run_stateless(request, events, channel, timeout_s)
                # A new session may wait for room (every session is running a program). That wait counts against
                # the call's time limit, so it is bounded, and the run gets what is left of it.
                session = self._live_session(request)
                left_s = timeout_s
                if session is None:
                    asked = anyio.current_time()
                    with anyio.move_on_after(timeout_s) as waiting:
                        session = await self._resolve_session(request)
                    if waiting.cancelled_caught:
                        return self._not_started(request, timeout_s)
                    if session is None:
                        return self._unknown_session(request)
                    left_s = timeout_s - (anyio.current_time() - asked)
                async with self.sessions.hold(session), admission.slot():
                    if request.reset:
                        await session.discard_sandbox()
                    return await self._run_in(session, request, events, channel, left_s)
        except BusyError as exc:
            return error_result("busy", str(exc), session=request.session)
        except SandboxFailure as exc:  # the shared session map: unreachable, or the run's lease was lost
            return error_result("sandbox_failure", str(exc), session=request.session)
        except SessionClosedError as exc:
            return self._unknown_session(request, str(exc))
        except anyio.get_cancelled_exc_class():
            if new and session is not None:  # its handle never reached the caller: nobody can continue it
                with anyio.CancelScope(shield=True):
                    await self.sessions.close(session.handle)
            raise

    def time_limit(self, request: ExecuteRequest) -> float:
        """The call's time limit: what it asked for, at most ``limits.timeout_s``."""
        return min(request.timeout_s or self.limits.timeout_s, self.limits.timeout_s)

    def _unknown_session(self, request: ExecuteRequest, reason: str | None = None) -> RunResult:
        reason = reason or self.sessions.ended(request.session or "", request.owner)
        if reason is None:
            return error_result("invalid_input", "unknown or expired session: omit `session` to start a new one")
        return error_result(
            "invalid_input", f"this session was {reason}; its variables are gone: omit `session` to start a new one"
        )

    def _not_started(self, request: ExecuteRequest, timeout_s: float) -> RunResult:
        return error_result(
            "timeout",
            f"the program did not start within its time limit of {timeout_s:g} s: all"
            f" {self.sessions.max_sessions} sessions (sandbox.max_sessions) were running programs and none finished"
            " in time (the wait for a session counts against the time limit); try again shortly",
            session=request.session,
        )

    def _live_session(self, request: ExecuteRequest) -> Session | None:
        """The session the request continues, when this instance holds it (the usual case: nothing to wait for)."""
        if request.session is None:
            return None
        found = self.sessions.get(request.session, request.owner)
        if found is not None:
            found.unclaimed = False
        return found

    async def _resolve_session(self, request: ExecuteRequest) -> Session | None:
        if request.session is None:
            session = await self.sessions.create(request.owner)
            session.unclaimed = True
            return session
        found = await self.sessions.find(request.session, request.owner)
        if found is not None:
            found.unclaimed = False
        return found

    async def _run_stateless(
        self, request: ExecuteRequest, events: RunEvents | None, channel: ClientChannel | None, time_s: float
    ) -> RunResult:
        session = Session(handle="", owner=request.owner)
        try:
            result = await self._run_in(session, request, events, channel, time_s)
        finally:
            with anyio.CancelScope(shield=True):
                await session.discard_sandbox()
        result.session = None
        return result

    async def _run_in(
        self,
        session: Session,
        request: ExecuteRequest,
        events: RunEvents | None,
        channel: ClientChannel | None,
        time_s: float,
    ) -> RunResult:
        """Run in ``session`` for at most ``time_s`` (the time limit, less any wait for room for a new session)."""
        timeout_s = self.time_limit(request)
        waited_s = max(0.0, timeout_s - time_s)
        deadline = anyio.current_time() + time_s
        output = OutputCollector(self.limits.max_output_bytes)
        run_id = secrets.token_hex(8)
        session_prefix = session.handle[:SESSION_PREFIX_CHARS]
        interaction = RunInteraction(channel, self.limits.input_timeout_s, session=session_prefix, run_id=run_id)

        def audit_decision(tool: str, decision: Decision, why: str | None) -> None:
            self.audit.approval(
                session=session.handle, run_id=run_id, tool=tool, decision=decision, reason=why, caller=session.owner
            )

        tools = self.bridge.for_run(self.limits.max_tool_calls, interaction, audit_decision)
        snapshot = tools.snapshot
        watched = _WatchedRun(
            tools, output, events, self.audit, session.handle, run_id, session.owner, request.caller_tools
        )
        run = RunRequest(
            run_id=run_id,
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
            with anyio.CancelScope(deadline=deadline) as limit:
                if request.on_deadline is not None:
                    request.on_deadline(limit)
                try:
                    sandbox: SandboxSession = await session.ensure_sandbox(self.backend)
                    report = await sandbox.run(run, watched.call_tool, watched)
                except RunLimitExceeded as exc:
                    error = RunError(type=exc.error_type, message=exc.message)
                except SandboxFailure as exc:
                    error = RunError(type=exc.error_type, message=str(exc))
                except Exception as exc:  # a host bug: this run fails, the server keeps serving
                    log.exception("run %s failed on the host", run_id)
                    error = RunError(type="sandbox_failure", message=f"the host failed while running it: {exc!r}")
            if limit.cancelled_caught:
                waited = f" (after waiting {waited_s:.1f} s for a session)" if waited_s >= 0.1 else ""
                error = RunError(
                    type="timeout",
                    message=f"the program reached its time limit of {timeout_s:g} s{waited} and was stopped"
                    + ("" if self.stateless else "; the session restarts fresh on the next call"),
                )
            finished = True
        finally:
            interaction.close()  # questions of this run still waiting for the client are withdrawn
            watched.write_records()  # the calls' lines before the run's, however the run ended
            if not finished or error is not None or _exhausted(report):
                with anyio.CancelScope(shield=True):
                    await session.discard_sandbox()
            session.last_used = time.monotonic()
            session.runs += 1
            if not finished:  # cancelled (or a host bug): still one audit line for the run
                self.audit.run(
                    session=session.handle,
                    run_id=run_id,
                    status="error",
                    error_type="cancelled",
                    tool_calls=tools.used,
                    duration_ms=(time.perf_counter() - started) * 1000,
                    code_bytes=len(request.code.encode()),
                    output_bytes=watched.output_bytes,
                    caller=session.owner,
                )
        if report is not None:
            output.note_dropped(report.output_dropped)
        if report is not None and not report.ok:
            error_type = _host_view(report, tools, output)
            error = RunError(
                type=error_type,
                message=(report.message or "")
                + (_FRESH_NOTE if error_type in EXHAUSTING_ERRORS and not self.stateless else ""),
                exc_type=report.exc_type,
                traceback=report.traceback,
            )
        fitted = fit_run(
            self.limits.max_output_bytes,
            output,
            report.result if report else None,
            report.result_repr if report else None,
            error,
        )
        result = RunResult(
            status="ok" if fitted.error is None else "error",
            stdout=fitted.stdout,
            stderr=fitted.stderr,
            output_truncated=fitted.truncated,
            result=fitted.result,
            result_repr=fitted.result_repr,
            error=fitted.error,
            tool_calls=tools.used,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            session=session.handle or None,
        )
        self.audit.run(
            session=session.handle,
            run_id=run_id,
            status=result.status,
            error_type=result.error_type,
            tool_calls=result.tool_calls,
            duration_ms=result.duration_ms,
            code_bytes=len(request.code.encode()),
            output_bytes=fitted.returned_bytes,
            output_dropped_bytes=fitted.dropped_bytes,
            call_attempts=tools.attempts,
            caller=session.owner,
        )
        return result


EXHAUSTING_ERRORS = frozenset({"memory_limit", "process_limit", "disk_limit"})
"""A run that ends with one of these may leave its sandbox spent (stray processes, a full /tmp, a fragmented
heap): the sandbox is discarded, so the processes and space it held are freed and the next run starts fresh."""
_FRESH_NOTE = "; the session restarts fresh on the next call"


def _exhausted(report: RunReport | None) -> bool:
    return report is not None and not report.ok and report.error_type in EXHAUSTING_ERRORS


_CALL_ERRORS: dict[str, frozenset[str]] = {
    "tool_error": frozenset({"tool_error", "timeout"}),
    "tool_denied": frozenset({"tool_denied"}),
    "tool_call_limit": frozenset({"tool_call_limit"}),
}
"""A run may end with a tool call's error type only if the host refused or failed such a call in that run."""
_SANDBOX_REPORTED: frozenset[str] = frozenset({"program_error", *EXHAUSTING_ERRORS})
"""Failures only the inside of the sandbox sees (they also discard the sandbox, so claiming one gains nothing)."""


def _host_view(report: RunReport, tools: RunTools, output: OutputCollector) -> ErrorType:
    """The error type of a failed run as the host saw it: what the runtime claims, only if the host agrees.

    The runtime's ``done`` message is the program's to forge. Types only the host decides (``timeout``, ``busy``,
    ``sandbox_failure``, ``cancelled``...) are never taken from it; a tool call's type only when such a call
    happened; ``output_limit`` only when output was in fact cut. Anything else is a ``program_error``.
    """
    claimed = report.error_type or "program_error"
    if claimed in _SANDBOX_REPORTED:
        return claimed
    if claimed == "output_limit" and output.truncated:
        return claimed
    outcomes = _CALL_ERRORS.get(claimed)
    if outcomes is not None and any(record.outcome in outcomes for record in tools.calls):
        return claimed
    return "program_error"


class _WatchedRun:
    """The run's ``OutputSink`` and ``ToolCallHandler``: the collector and the bridge, plus events and audit."""

    def __init__(
        self,
        tools: RunTools,
        output: OutputCollector,
        events: RunEvents | None,
        audit: AuditLog,
        session: str,
        run_id: str,
        caller: str | None = None,
        caller_tools: tuple[str, ToolCallHandler] | None = None,
    ) -> None:
        self._tools = tools
        self._caller_tools = caller_tools
        self._output = output
        self._events = events
        self._audit = audit
        self._session = session
        self._run_id = run_id
        self._caller = caller
        self.output_bytes = 0
        self._unwritten: list[tuple[CallRecord, dict[str, Any]]] = []
        tools.observer = self.call_recorded

    def write(self, stream: StreamName, text: str) -> None:
        self.output_bytes += len(text.encode("utf-8", "surrogatepass"))
        self._output.write(stream, text)  # raises on a flood: the run ends, the events need not see it
        if self._events is not None and text:
            self._events.output(stream, safe_text(text))

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        if self._caller_tools is not None and name.startswith(self._caller_tools[0]):
            return await self._caller_tools[1](name, arguments)
        if self._events is not None and name not in DISCOVERY:
            self._events.call_started(name)
        refusal = self._audit.refusal()
        if refusal is not None:  # fail closed: no call without its audit line (this one waits in the backlog)
            self.call_recorded(CallRecord(name, 0.0, "tool_denied", 0, 0), arguments)
            raise ToolCallError("tool_denied", refusal)
        return await self._tools(name, arguments)

    def call_recorded(self, record: CallRecord, arguments: dict[str, Any]) -> None:
        """Every call attempt (``RunTools.observer``): one audit line, and the event for downstream calls.

        Both are written one turn of the event loop later, once the answer is on its way to the program, so the
        answer does not wait for the audit file; the executor calls ``write_records`` before the run's own line, so
        they always precede it. ptc-mcp serves on asyncio (``anyio`` has no ``call_soon``)."""
        if not self._unwritten:
            asyncio.get_running_loop().call_soon(self.write_records)
        self._unwritten.append((record, arguments))

    def write_records(self) -> None:
        """Write the call records not written yet (the deferred ones of ``call_recorded``)."""
        unwritten, self._unwritten = self._unwritten, []
        for record, arguments in unwritten:
            self._audit.call(
                session=self._session, run_id=self._run_id, record=record, arguments=arguments, caller=self._caller
            )
            if self._events is not None and record.tool not in DISCOVERY:
                self._events.call_finished(record)


class _Admission:
    """At most ``max_concurrent_runs + max_queued_runs`` runs in flight; beyond that, ``busy`` at once.

    Entering admits the run (or raises ``BusyError``); ``slot()`` then waits for one of the
    ``max_concurrent_runs`` run slots. The executor takes the session's lock before the slot.
    """

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def __aenter__(self) -> _Admission:
        executor = self._executor
        limits = executor.limits
        if executor._in_flight >= limits.max_concurrent_runs + limits.max_queued_runs:
            raise BusyError(
                f"{executor.running} programs are running and {executor.queued} are waiting; try again shortly"
            )
        executor._in_flight += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._executor._in_flight -= 1

    def slot(self) -> anyio.Semaphore:
        """One of the ``max_concurrent_runs`` run slots (``async with``)."""
        return self._executor._slots
