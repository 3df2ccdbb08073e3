"""Containers: one live sandbox interpreter each, and the program runs that pause on client tool calls.

A program calls a client tool → the call is recorded and the program's ``await`` blocks on it. When every call in
flight is such a client call and the program has been quiet for ``settle_s`` (so calls issued together with
``asyncio.gather`` pause together), the run is *paused*: the proxy answers the HTTP request with those calls. The
next request (the continuation) resolves them and the program resumes. The run's wall-clock limit does not count
the time the client takes; the container's idle expiry does: a call still unanswered when the container expires
raises ``TimeoutError`` in the program.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ptc_mcp.budget import fit_run
from ptc_mcp.errors import ErrorType, RunLimitExceeded, SandboxFailure, ToolCallError
from ptc_mcp.output import OutputCollector
from ptc_mcp.proxy.errors import ApiError, invalid
from ptc_mcp.proxy.tools import CLIENT_CALL_PREFIX, ToolSet, client_prelude, prelude_key
from ptc_mcp.proxy.translate import new_id
from ptc_mcp.results import RunError
from ptc_mcp.sandboxes.base import RunReport, RunRequest, SandboxBackend, SandboxSession, StreamName, ToolCallHandler

log = logging.getLogger(__name__)

DEFAULT_IDLE_S = 270.0
"""Anthropic's containers expire after about 4.5 minutes idle."""
EXPIRY_GRACE_S = 10.0
"""After expiry, how long a run may go on (handling its ``TimeoutError``) before its sandbox is killed."""
REAP_INTERVAL_S = 1.0
TOMBSTONES = 10_000

ServerTools = Callable[[], tuple[ToolCallHandler, dict[str, Any], str]]
"""A new run's handler for MCP tools (``server.tool``, ``@search``), its runtime catalog and catalog version."""


def no_server_tools() -> tuple[ToolCallHandler, dict[str, Any], str]:
    async def refuse(name: str, arguments: dict[str, Any]) -> Any:
        raise ToolCallError("tool_error", f"no tool {name!r} here")

    return refuse, {"servers": []}, "none"


@dataclass(frozen=True)
class RunSettings:
    timeout_s: float = 60.0
    """Wall-clock limit of one code execution, not counting the time the client takes to answer tool calls."""
    max_output_bytes: int = 32768
    settle_s: float = 0.05
    """How long a program must stay quiet, blocked only on client calls, before the run pauses."""


@dataclass(eq=False)
class ClientCall:
    """One call of a client tool by a program, waiting for its ``tool_result``."""

    id: str
    name: str
    input: dict[str, Any]
    _answered: anyio.Event = field(default_factory=anyio.Event)
    _outcome: tuple[bool, Any] = (False, None)

    def resolve(self, value: Any) -> None:
        if not self._answered.is_set():
            self._outcome = (True, value)
            self._answered.set()

    def fail(self, error_type: ErrorType, message: str) -> None:
        if not self._answered.is_set():
            self._outcome = (False, (error_type, message))
            self._answered.set()

    async def wait(self) -> Any:
        await self._answered.wait()
        ok, value = self._outcome
        if ok:
            return value
        error_type, message = value
        raise ToolCallError(error_type, message)


@dataclass
class RunOutcome:
    """How a code execution ended: the ``code_execution_tool_result`` content to show."""

    stdout: str
    stderr: str
    return_code: int
    error_code: str | None = None
    """``execution_time_exceeded`` / ``unavailable`` when the execution itself failed (no output then)."""

    def content(self) -> dict[str, Any]:
        if self.error_code:
            return {"type": "code_execution_tool_result_error", "error_code": self.error_code}
        return {
            "type": "code_execution_result",
            "stdout": self.stdout,
            "stderr": self.stderr,
            "return_code": self.return_code,
            "content": [],
        }


class _Output(OutputCollector):
    """The run's output; every chunk is activity (a program that prints is not waiting)."""

    def __init__(self, cap: int, run: ProgramRun) -> None:
        super().__init__(cap)
        self._run = run

    def write(self, stream: StreamName, text: str) -> None:
        super().write(stream, text)
        self._run._activity()


class ProgramRun:
    """One code execution (one ``server_tool_use``) in a container."""

    def __init__(self, container: Container, tool_use_id: str, code: str, toolset: ToolSet) -> None:
        self.container = container
        self.tool_use_id = tool_use_id
        self.code = code
        self.toolset = toolset
        self.outcome: RunOutcome | None = None
        self.fresh: list[ClientCall] = []
        """Calls made since the last pause: the next paused response hands them to the client."""
        self.outstanding: dict[str, ClientCall] = {}
        """Calls handed to the client and not answered yet."""
        self._server_calls = 0
        self._last_activity = time.monotonic()
        self._changed = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._remaining: float | None = None

    @property
    def done(self) -> bool:
        return self.outcome is not None

    @property
    def paused(self) -> bool:
        return not self.done and bool(self.outstanding)

    def _activity(self) -> None:
        self._last_activity = time.monotonic()
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # -- the run itself (a task in the registry's task group) -----------------------------------------------------

    async def main(self, settings: RunSettings, server_tools: ServerTools) -> None:
        container = self.container
        output = _Output(settings.max_output_bytes, self)
        handler, catalog, version = server_tools()

        async def call_tool(name: str, arguments: dict[str, Any]) -> Any:
            self._activity()
            if name.startswith(CLIENT_CALL_PREFIX):
                return await self._client_call(name[len(CLIENT_CALL_PREFIX) :], arguments)
            self._server_calls += 1
            try:
                return await handler(name, arguments)
            finally:
                self._server_calls -= 1
                self._activity()

        report: RunReport | None = None
        failure: RunOutcome | None = None
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                scope.deadline = anyio.current_time() + settings.timeout_s
                sandbox = await container.ensure_sandbox()
                key = prelude_key(self.toolset)
                if container.prelude_key != key:
                    prelude = await sandbox.run(
                        self._request(client_prelude(self.toolset), catalog, version, settings),
                        call_tool,
                        OutputCollector(settings.max_output_bytes),
                    )
                    if not prelude.ok:
                        raise SandboxFailure(f"binding the client tools failed: {prelude.message}")
                    container.prelude_key = key
                report = await sandbox.run(self._request(self.code, catalog, version, settings), call_tool, output)
            if scope.cancelled_caught:
                failure = RunOutcome("", "", 1, error_code="execution_time_exceeded")
        except RunLimitExceeded as exc:
            failure = RunOutcome(output.text("stdout"), _join(output.text("stderr"), exc.message), 1)
        except SandboxFailure as exc:
            log.warning("sandbox failure in container %s: %s", container.id[:16], exc)
            failure = RunOutcome(output.text("stdout"), _join(output.text("stderr"), str(exc)), 1)
        finally:
            if report is None:
                with anyio.CancelScope(shield=True):
                    await container.discard_sandbox()
                if failure is None:
                    failure = RunOutcome("", "", 1, error_code="unavailable")
            for call in list(self.outstanding.values()) + self.fresh:
                call.fail("cancelled", "the program ended")
            self.outcome = failure or _outcome(report, output, settings.max_output_bytes)
            container.touch()
            self._notify()

    def _request(self, code: str, catalog: dict[str, Any], version: str, settings: RunSettings) -> RunRequest:
        return RunRequest(
            run_id=secrets.token_hex(8),
            code=code,
            catalog=catalog,
            catalog_version=version,
            max_output_bytes=settings.max_output_bytes,
        )

    async def _client_call(self, name: str, arguments: dict[str, Any]) -> Any:
        tool = self.toolset.by_name(name)
        if tool is None or not tool.programmatic:
            raise ToolCallError("tool_error", f"{name!r} may not be called from code execution")
        call = ClientCall(id=new_id("toolu_"), name=name, input=arguments)
        self.fresh.append(call)
        self._notify()
        try:
            return await call.wait()
        finally:
            self.outstanding.pop(call.id, None)
            if call in self.fresh:
                self.fresh.remove(call)

    # -- the HTTP side ---------------------------------------------------------------------------------------------

    async def settle(self, settle_s: float) -> list[ClientCall] | None:
        """Wait until the run is done (→ ``None``) or paused on client calls (→ the calls to hand out)."""
        while True:
            changed = self._changed
            if self.done:
                return None
            timeout = math.inf
            if self.fresh and self._server_calls == 0:
                quiet = time.monotonic() - self._last_activity
                if quiet >= settle_s:
                    return self._pause()
                timeout = settle_s - quiet
            with anyio.move_on_after(timeout):
                await changed.wait()

    def _pause(self) -> list[ClientCall]:
        calls, self.fresh = self.fresh, []
        for call in calls:
            self.outstanding[call.id] = call
        if self._scope is not None and self._remaining is None:
            self._remaining = max(self._scope.deadline - anyio.current_time(), 0.0)
            self._scope.deadline = math.inf  # the client's time does not count against the run
        return calls

    def resume(self, results: dict[str, tuple[Any, bool]]) -> None:
        """Answer the outstanding calls (``id → (value, is_error)``); the program continues."""
        missing = [call_id for call_id in self.outstanding if call_id not in results]
        if missing:
            raise invalid(f"the continuation must answer every pending tool call; missing tool_result for {missing[0]}")
        self._restart_clock()
        for call_id, call in list(self.outstanding.items()):
            value, is_error = results[call_id]
            if is_error:
                call.fail("tool_error", value if isinstance(value, str) else str(value))
            else:
                call.resolve(value)
        self._activity()

    def _restart_clock(self, cap: float = math.inf) -> None:
        if self._scope is not None and self._remaining is not None:
            self._scope.deadline = anyio.current_time() + min(self._remaining, cap)
            self._remaining = None

    def time_out_calls(self, message: str) -> None:
        """The container expired: every unanswered call raises ``TimeoutError`` in the program."""
        self._restart_clock(EXPIRY_GRACE_S)
        for call in list(self.outstanding.values()) + self.fresh:
            call.fail("timeout", message)

    async def wait_done(self) -> None:
        while not self.done:
            await self._changed.wait()


def _join(first: str, second: str) -> str:
    return f"{first.rstrip(chr(10))}\n{second}" if first else second


def _outcome(report: RunReport | None, output: OutputCollector, cap: int) -> RunOutcome:
    """What the client sees, within one output budget for the output and the error together (ptc_mcp.budget)."""
    if report is None or report.ok:
        fitted = fit_run(cap, output, None, None, None)
        return RunOutcome(fitted.stdout, fitted.stderr, 0)
    failed = RunError(type="program_error", message=report.message or "the program failed", traceback=report.traceback)
    fitted = fit_run(cap, output, None, None, failed)
    error = fitted.error or failed
    return RunOutcome(fitted.stdout, _join(fitted.stderr, error.traceback or error.message), 1)


class Container:
    """One container: a sandbox interpreter whose variables persist across code executions, and an expiry."""

    def __init__(self, registry: ContainerRegistry, container_id: str, owner: str | None) -> None:
        self.registry = registry
        self.id = container_id
        self.owner = owner
        self.sandbox: SandboxSession | None = None
        self.prelude_key: str | None = None
        self.run: ProgramRun | None = None
        """The run that is paused (or still going); ``None`` between code executions."""
        self.lock = anyio.Lock()
        self.expired = False
        self.expires_at = 0.0
        self.touch()

    def touch(self) -> None:
        self.expires_at = time.time() + self.registry.idle_s

    @property
    def expires_at_iso(self) -> str:
        return datetime.fromtimestamp(self.expires_at, UTC).isoformat().replace("+00:00", "Z")

    def describe(self) -> dict[str, Any]:
        """The ``container`` object of a response."""
        return {"id": self.id, "expires_at": self.expires_at_iso}

    async def ensure_sandbox(self) -> SandboxSession:
        if self.sandbox is None or not self.sandbox.alive:
            await self.discard_sandbox()
            self.sandbox = await self.registry.backend.start_session()
        return self.sandbox

    async def discard_sandbox(self) -> None:
        sandbox, self.sandbox = self.sandbox, None
        self.prelude_key = None
        if sandbox is not None:
            await sandbox.aclose()

    def start_run(self, tool_use_id: str, code: str, toolset: ToolSet) -> ProgramRun:
        run = ProgramRun(self, tool_use_id, code, toolset)
        self.run = run
        self.registry.start(run)
        return run


class ContainerRegistry:
    """Every container of this proxy instance, kept in memory; an async context manager (runs and the reaper)."""

    def __init__(
        self,
        backend: SandboxBackend,
        *,
        settings: RunSettings | None = None,
        server_tools: ServerTools = no_server_tools,
        idle_s: float = DEFAULT_IDLE_S,
        max_containers: int = 64,
        instance: str = "",
    ) -> None:
        self.backend = backend
        self.settings = settings or RunSettings()
        self.server_tools = server_tools
        self.idle_s = idle_s
        self.max_containers = max_containers
        if instance and not re.fullmatch(r"[A-Za-z0-9-]{1,32}", instance):
            raise ValueError(f"instance tag {instance!r}: use 1-32 letters, digits or '-'")
        self.instance = instance
        """Part of every container id, so a router can send a container's requests to the instance holding it."""
        self._containers: dict[str, Container] = {}
        self._tombstones: OrderedDict[str, float] = OrderedDict()
        self._tasks: TaskGroup | None = None

    async def __aenter__(self) -> ContainerRegistry:
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self._reap)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        tasks, self._tasks = self._tasks, None
        if tasks is None:
            return
        tasks.cancel_scope.cancel()
        await tasks.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            for container in list(self._containers.values()):
                await self._close(container)

    def __len__(self) -> int:
        return len(self._containers)

    def start(self, run: ProgramRun) -> None:
        if self._tasks is None:
            raise RuntimeError("the container registry is not running")
        self._tasks.start_soon(run.main, self.settings, self.server_tools)

    async def create(self, owner: str | None) -> Container:
        if len(self._containers) >= self.max_containers:
            await self._evict_one()
        tag = f"{self.instance}_" if self.instance else ""
        container = Container(self, f"container_{tag}{secrets.token_hex(20)}", owner)
        self._containers[container.id] = container
        return container

    def get(self, container_id: str, owner: str | None) -> Container:
        """The live container, or ``ApiError`` saying it has expired or never existed (for this caller)."""
        container = self._containers.get(container_id)
        if container is not None and not secrets.compare_digest(container.owner or "", owner or ""):
            container = None  # another caller's container: as if it did not exist
        if container is not None and container.expires_at > time.time():
            return container
        if container is not None or container_id in self._tombstones:
            raise ApiError(
                "invalid_request_error",
                f"container {container_id!r} has expired (containers expire after {self.idle_s:g} s idle); "
                "omit `container` to start a new one",
            )
        hint = ""
        if self.instance and not container_id.startswith(f"container_{self.instance}_"):
            hint = " (it may belong to another proxy instance: route requests by container id, see docs/proxy.md)"
        raise ApiError("not_found_error", f"container {container_id!r} was not found{hint}")

    async def _evict_one(self) -> None:
        idle = [c for c in self._containers.values() if c.run is None and not c.lock.locked()]
        if not idle:
            raise ApiError("overloaded_error", f"all {self.max_containers} containers are in use; try again shortly")
        await self._close(min(idle, key=lambda c: c.expires_at))

    async def _reap(self) -> None:
        while True:
            await anyio.sleep(REAP_INTERVAL_S)
            now = time.time()
            for container in list(self._containers.values()):
                if container.expires_at <= now and not container.lock.locked() and not container.expired:
                    container.expired = True
                    self._forget(container)
                    assert self._tasks is not None
                    self._tasks.start_soon(self._expire, container)

    async def _expire(self, container: Container) -> None:
        run = container.run
        if run is not None and not run.done:
            run.time_out_calls(f"the client did not answer before container {container.id} expired")
            with anyio.move_on_after(EXPIRY_GRACE_S + 1):
                await run.wait_done()
        await self._close(container)

    def _forget(self, container: Container) -> None:
        self._containers.pop(container.id, None)
        self._tombstones[container.id] = time.time()
        while len(self._tombstones) > TOMBSTONES:
            self._tombstones.popitem(last=False)

    async def _close(self, container: Container) -> None:
        self._forget(container)
        run = container.run
        if run is not None and not run.done:
            run.time_out_calls("the container was closed")
        with anyio.CancelScope(shield=True):
            await container.discard_sandbox()
        log.info("container %s closed", container.id[:24])


__all__ = [
    "ClientCall",
    "Container",
    "ContainerRegistry",
    "ProgramRun",
    "RunOutcome",
    "RunSettings",
]
