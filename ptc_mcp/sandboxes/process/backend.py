"""The ``process`` backend: a child interpreter per session, inside bubblewrap when it is available.

How the child is launched (clean environment, uid drop, resource limits, bubblewrap namespaces, scratch
directory) is decided by ``ptc_mcp.sandboxes.process.isolation``; this module runs it and speaks the protocol to it.
The backend keeps ``sandbox.warm_pool`` interpreters started (``warm_pool.WarmPool``), so a new session takes
one instead of paying start-up.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

import anyio
from anyio.abc import Process

from ptc_mcp.config import Config
from ptc_mcp.errors import SandboxFailure
from ptc_mcp.sandboxes import sandbox_limits
from ptc_mcp.sandboxes.base import OutputSink, RunReport, RunRequest, SandboxLimits, ToolCallHandler
from ptc_mcp.sandboxes.process.isolation import (
    LaunchSpec,
    LaunchWrapper,
    bubblewrap_status,
    plan_launch,
    reap_stale_scratch_dirs,
)
from ptc_mcp.sandboxes.protocol import PYTHON_ARGS
from ptc_mcp.sandboxes.stream import MessagePipe, PipeSender, RawPipe, RuntimeChannel
from ptc_mcp.sandboxes.warm_pool import WarmPool

log = logging.getLogger(__name__)
EXIT_WAIT_S = 5.0


class ProcessSession:
    """One interpreter started by ``ProcessBackend``."""

    def __init__(
        self,
        spec: LaunchSpec,
        process: Process,
        channel: RuntimeChannel,
        on_close: Callable[[ProcessSession], None] | None = None,
    ) -> None:
        self._spec = spec
        self._process = process
        self._channel = channel
        self._closed = False
        self._on_close = on_close

    @property
    def alive(self) -> bool:
        return not self._closed and self._process.returncode is None

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def launch(self) -> LaunchSpec:
        """How this interpreter was launched (session uid, scratch directory): what must be gone after ``aclose``."""
        return self._spec

    async def run(self, request: RunRequest, call_tool: ToolCallHandler, output: OutputSink) -> RunReport:
        try:
            return await self._channel.run(request, call_tool, output)
        except SandboxFailure as failure:
            raise SandboxFailure(f"{failure}{await self._exit_note()}", failure.error_type) from None

    async def _exit_note(self) -> str:
        with anyio.move_on_after(1):
            await self._process.wait()
        code = self._process.returncode
        if code is None:
            return ""
        return f" (exit status {code})" if code >= 0 else f" (killed by signal {-code})"

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._on_close is not None:
            self._on_close(self)
        with anyio.CancelScope(shield=True):
            self._spec.kill(self._process.pid)
            with anyio.move_on_after(EXIT_WAIT_S):
                await self._process.wait()
            await self._process.aclose()
            self._channel.close()
            await anyio.to_thread.run_sync(self._spec.cleanup)


class ProcessBackend:
    """Starts ``ProcessSession``s; isolated when bubblewrap works here (or inside a ``wrapper``: see ``srt``)."""

    kind = "process"

    def __init__(
        self,
        limits: SandboxLimits,
        *,
        use_bubblewrap: bool | None = None,
        python: str | None = None,
        warm_pool: int = 0,
        warm_max_age_s: float = 300.0,
        wrapper: LaunchWrapper | None = None,
    ) -> None:
        self._limits = limits
        self._wrapper = wrapper
        if wrapper is None:
            usable, self.bubblewrap_reason = bubblewrap_status()
            self._use_bubblewrap = usable if use_bubblewrap is None else use_bubblewrap
        else:
            self.bubblewrap_reason, self._use_bubblewrap = "not used: another sandbox wraps the interpreter", False
        self.isolated = self._use_bubblewrap
        # The real interpreter, not a venv shim: the sandbox sees neither the venv nor the server's packages.
        self._python = python or os.path.realpath(sys.executable)
        self._sessions: set[ProcessSession] = set()
        self.pool = WarmPool(self._start_cold, size=warm_pool, max_age_s=warm_max_age_s)
        reap_stale_scratch_dirs()  # leftovers of an earlier server that died

    async def start_session(self) -> ProcessSession:
        """A warm interpreter when the pool has one, else a freshly started one."""
        return self.pool.take() or await self._start_cold()

    async def keep_warm(self) -> None:
        """Keep ``warm_pool`` interpreters started until cancelled (the executor runs this)."""
        if self.pool.size > 0:
            await self.pool.run()

    async def _start_cold(self) -> ProcessSession:
        spec = await anyio.to_thread.run_sync(
            lambda: plan_launch(
                [self._python, *PYTHON_ARGS], self._limits, use_bubblewrap=self._use_bubblewrap, wrapper=self._wrapper
            )
        )
        # The protocol goes over pipes the host made: it writes its messages straight into the interpreter's stdin
        # (``PipeSender``) and a reader callback reads the runtime's from its stdout (``MessagePipe``); fd 1/2 of the
        # interpreter (C code, child processes) go to a pipe of their own, delivered as the run's stderr.
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        raw_read, raw_write = os.pipe()
        ours, theirs = (stdin_write, stdout_read, raw_read), (stdin_read, stdout_write, raw_write)
        try:
            process = await anyio.open_process(
                spec.argv, stdin=stdin_read, stdout=stdout_write, stderr=raw_write, **spec.process_kwargs()
            )
        except OSError as exc:
            _close_all(ours)
            spec.cleanup()
            raise SandboxFailure(f"cannot start the sandbox interpreter: {exc}") from None
        except BaseException:  # cancelled (a run's time limit, which counts its wait, ended during the start)
            _close_all(ours)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(spec.cleanup)
            raise
        finally:
            _close_all(theirs)
        channel = RuntimeChannel(PipeSender(stdin_write), MessagePipe(stdout_read), raw_pipe=RawPipe(raw_read))
        session = ProcessSession(spec, process, channel, on_close=self._sessions.discard)
        try:
            await session._channel.start()
        except BaseException:
            await session.aclose()
            raise
        self._sessions.add(session)
        return session

    async def aclose(self) -> None:
        await self.pool.aclose()
        for session in list(self._sessions):
            await session.aclose()
        self._sessions.clear()


def _close_all(fds: tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)


def probe(config: Config) -> tuple[bool, str]:
    """Whether bubblewrap isolates programs here (tried for real once), and which one or why not."""
    return bubblewrap_status()


def create_backend(config: Config) -> ProcessBackend:
    """The ``process`` backend for a config (bubblewrap when usable)."""
    return ProcessBackend(
        sandbox_limits(config), warm_pool=config.sandbox.warm_pool, warm_max_age_s=config.sandbox.warm_max_age_s
    )
