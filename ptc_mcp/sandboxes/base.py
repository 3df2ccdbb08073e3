"""The one narrow interface every sandbox backend implements.

A backend starts ``SandboxSession``s; a session holds one live interpreter running the ptc-mcp runtime
(``sandbox/ptc_runtime.py``) and runs programs in it, one at a time, calling back into the host for every tool
call the program makes. Nothing backend-specific leaks above this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ptc_mcp.errors import ErrorType

ToolCallHandler = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""``await handler("server.tool", arguments)`` → the unwrapped JSON value, or raises ``ToolCallError``."""

StreamName = Literal["stdout", "stderr"]


@dataclass(frozen=True)
class SandboxLimits:
    """Per-interpreter resource limits a backend enforces (wall-clock time is enforced by the executor)."""

    memory_mb: int = 512
    max_processes: int = 64
    max_open_files: int = 256
    max_file_size_mb: int = 64
    scratch_mb: int = 64
    cpu_seconds: int = 3600


@dataclass(frozen=True)
class RunRequest:
    """One program to run in a session."""

    run_id: str
    code: str
    catalog: dict[str, Any]
    """What the runtime binds into the program: see ``ptc_mcp.catalog`` (namespaces → tool identifiers)."""
    catalog_version: str
    max_output_bytes: int


@dataclass
class RunReport:
    """What the runtime said when the program finished (the ``done`` message)."""

    ok: bool
    result: Any = None
    """The value of a trailing expression, as JSON (``None`` when there was none)."""
    result_repr: str | None = None
    """``repr()`` of the trailing expression's value, for values that are not JSON."""
    error_type: ErrorType | None = None
    exc_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    tool_calls: int = 0
    output_dropped: int = 0
    """Bytes of output the runtime dropped past ``max_output_bytes`` (they never reached the ``OutputSink``)."""


class OutputSink(Protocol):
    """Where a session delivers the program's output as it arrives."""

    def write(self, stream: StreamName, text: str) -> None:
        """Record a chunk; raises ``RunLimitExceeded`` when the program floods past the cap."""
        ...


class SandboxSession(Protocol):
    """One live interpreter. Runs are serialized by the caller; ``aclose`` kills everything it started."""

    @property
    def alive(self) -> bool: ...

    async def run(self, request: RunRequest, call_tool: ToolCallHandler, output: OutputSink) -> RunReport:
        """Run one program. Raises ``SandboxFailure`` if the interpreter dies, ``RunLimitExceeded`` on a limit.

        Cancellation (the executor's timeout) leaves the session unusable: the caller must ``aclose`` it.
        """
        ...

    async def aclose(self) -> None:
        """Kill the interpreter and everything it started, remove its scratch space. Idempotent."""
        ...


class SandboxBackend(Protocol):
    """A kind of sandbox (``process``, ``docker``, ``agentcore``), picked by ``sandbox.kind``."""

    kind: str
    isolated: bool
    """False only for the explicit opt-in to unisolated code."""

    async def start_session(self) -> SandboxSession: ...

    async def aclose(self) -> None:
        """Close every session this backend started and reap leftovers."""
        ...


@runtime_checkable
class ResumableSession(Protocol):
    """Optional: a session whose interpreter lives outside this process (``agentcore``), so another ptc-mcp
    instance can continue it. ``ptc_mcp.remote.shared_sessions`` keeps the state in a map every instance shares."""

    def session_state(self) -> dict[str, Any] | None:
        """JSON that ``ResumableBackend.resume_session`` accepts, or ``None`` when there is nothing to resume."""
        ...

    def detach(self) -> None:
        """Let go of the interpreter without stopping it; the session is closed here afterwards."""
        ...


@runtime_checkable
class ResumableBackend(Protocol):
    """Optional: a backend that can re-attach to a ``ResumableSession`` from its ``session_state()``."""

    async def resume_session(self, state: dict[str, Any]) -> SandboxSession:
        """The session ``state`` describes; raises ``SandboxFailure`` when it is gone."""
        ...


@dataclass
class BackendInfo:
    """What ``ptc-mcp check`` and the demo print about the chosen backend."""

    kind: str
    isolated: bool
    details: dict[str, str] = field(default_factory=dict)
