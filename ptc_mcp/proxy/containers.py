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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ptc_mcp.bridge import CallRecord
from ptc_mcp.errors import BusyError, ErrorType, ToolCallError
from ptc_mcp.executor import ExecuteRequest, Executor
from ptc_mcp.proxy.errors import ApiError, invalid
from ptc_mcp.proxy.tools import CLIENT_CALL_PREFIX, ToolSet, client_prelude, prelude_key
from ptc_mcp.proxy.translate import new_id
from ptc_mcp.results import RunResult
from ptc_mcp.sandboxes.base import StreamName

log = logging.getLogger(__name__)

DEFAULT_IDLE_S = 270.0
"""Anthropic's containers expire after about 4.5 minutes idle."""
EXPIRY_GRACE_S = 10.0
"""After expiry, how long a run may go on (handling its ``TimeoutError``) before its sandbox is killed."""
EXPIRY_CHECK_S = 1.0
TOMBSTONES = 10_000


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


class ProgramRun:
    """One code execution (one ``server_tool_use``) in a container, run by the executor; also its ``RunEvents``."""

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
        """MCP server calls in flight: a run waiting on one of those is not paused on the client."""
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

    # -- RunEvents: output and downstream calls are activity (a program that prints is not waiting) ---------------

    def output(self, stream: StreamName, text: str) -> None:
        self._activity()

    def call_started(self, tool: str) -> None:
        self._server_calls += 1
        self._activity()

    def call_finished(self, record: CallRecord) -> None:
        self._server_calls = max(self._server_calls - 1, 0)
        self._activity()

    def _on_deadline(self, scope: anyio.CancelScope) -> None:
        self._scope = scope

    # -- the run itself (a task in the registry's task group) -----------------------------------------------------

    async def main(self, executor: Executor) -> None:
        result: RunResult | None = None
        try:
            result = await self._bind_client_tools(executor)
            if result is None:
                request = ExecuteRequest(
                    code=self.code,
                    session=self.container.session,
                    owner=self.container.owner,
                    caller_tools=(CLIENT_CALL_PREFIX, self._client_call),
                    on_deadline=self._on_deadline,
                )
                result = await executor.execute(request, self)
        finally:
            for call in list(self.outstanding.values()) + self.fresh:
                call.fail("cancelled", "the program ended")
            self.outcome = _outcome(result) if result is not None else RunOutcome("", "", 1, error_code="unavailable")
            self.container.touch()
            self._notify()

    async def _bind_client_tools(self, executor: Executor) -> RunResult | None:
        """Run the prelude when the session's interpreter lacks this toolset's client tools; its failure or ``None``."""
        container = self.container
        key = prelude_key(self.toolset)
        session = executor.sessions.get(container.session, container.owner)
        if session is not None and container.prelude_key == key and session.sandbox is container.prelude_sandbox:
            return None
        request = ExecuteRequest(code=client_prelude(self.toolset), session=container.session, owner=container.owner)
        bound = await executor.execute(request)
        if bound.status != "ok":
            if bound.error is not None and bound.error.type not in _ERROR_CODES:
                bound.error.message = f"binding the client tools failed: {bound.error.message}"
            return bound
        container.prelude_key = key
        container.prelude_sandbox = session.sandbox if session is not None else None
        return None

    async def _client_call(self, name: str, arguments: dict[str, Any]) -> Any:
        self._activity()
        name = name[len(CLIENT_CALL_PREFIX) :]
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


_ERROR_CODES: dict[str, str] = {
    "timeout": "execution_time_exceeded",
    "busy": "too_many_requests",
    "invalid_input": "invalid_tool_input",
}
"""Failures of the execution itself (no output then), as Anthropic's ``code_execution_tool_result_error``."""


def _outcome(result: RunResult) -> RunOutcome:
    error = result.error
    if error is None:
        return RunOutcome(result.stdout, result.stderr, 0)
    if error.type in _ERROR_CODES:
        return RunOutcome("", "", 1, error_code=_ERROR_CODES[error.type])
    return RunOutcome(result.stdout, _join(result.stderr, error.traceback or error.message or "the program failed"), 1)


class Container:
    """One container: an executor session whose variables persist across code executions, and an expiry."""

    def __init__(self, registry: ContainerRegistry, container_id: str, session: str, owner: str | None) -> None:
        self.registry = registry
        self.id = container_id
        self.session = session
        """The executor's session handle: its interpreter, owner, and the lock that serializes its runs."""
        self.owner = owner
        self.prelude_key: str | None = None
        self.prelude_sandbox: object | None = None
        """The interpreter the client tools were bound in (a fresh one after a crash or timeout needs them again)."""
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

    def start_run(self, tool_use_id: str, code: str, toolset: ToolSet) -> ProgramRun:
        run = ProgramRun(self, tool_use_id, code, toolset)
        self.run = run
        self.registry.start(run)
        return run


class ContainerRegistry:
    """Container ids → the executor's sessions, with Anthropic's expiry; an async context manager (runs, expiry).

    Sessions (interpreters, owners, the least-recently-used eviction) are the executor's; runs go through
    ``Executor.execute`` (admission, queue, ``busy``, limits, audit). What is the proxy's own: container ids a
    router can read, the idle expiry that times out calls the client never answered, and "expired" messages.
    """

    def __init__(
        self, executor: Executor, *, settle_s: float = 0.05, idle_s: float = DEFAULT_IDLE_S, instance: str = ""
    ) -> None:
        self.executor = executor
        self.settle_s = settle_s
        """How long a program must stay quiet, blocked only on client calls, before the run pauses."""
        self.idle_s = idle_s
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
        self._tasks.start_soon(self._expire_idle)
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
        self._tasks.start_soon(run.main, self.executor)

    async def create(self, owner: str | None) -> Container:
        try:
            session = await self.executor.sessions.create(owner)
        except BusyError as exc:
            raise ApiError("overloaded_error", f"{exc}; try again shortly") from None
        tag = f"{self.instance}_" if self.instance else ""
        container = Container(self, f"container_{tag}{secrets.token_hex(20)}", session.handle, owner)
        self._containers[container.id] = container
        return container

    def get(self, container_id: str, owner: str | None) -> Container:
        """The live container, or ``ApiError`` saying it has expired or never existed (for this caller)."""
        container = self._containers.get(container_id)
        sessions = self.executor.sessions
        if container is not None and sessions.get(container.session, owner) is None:
            if sessions.get(container.session, container.owner) is None:  # the executor evicted its session
                self._forget(container)
                self._tasks_start(self._close, container)
            container = None  # or another caller's container: as if it did not exist
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

    def _tasks_start(self, func: Any, *args: Any) -> None:
        if self._tasks is not None:
            self._tasks.start_soon(func, *args)

    async def _expire_idle(self) -> None:
        while True:
            await anyio.sleep(EXPIRY_CHECK_S)
            now = time.time()
            for container in list(self._containers.values()):
                if container.expires_at <= now and not container.lock.locked() and not container.expired:
                    container.expired = True
                    self._forget(container)
                    self._tasks_start(self._expire, container)

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
            await self.executor.sessions.close(container.session)
        log.info("container %s closed", container.id[:24])


__all__ = [
    "ClientCall",
    "Container",
    "ContainerRegistry",
    "ProgramRun",
    "RunOutcome",
]
