"""The ``docker`` backend: one hardened container per session, the runtime sent in over its attached stdin.

Every Docker SDK call runs in a worker thread; the protocol itself runs on the event loop over the attach socket.
Warm containers come from the shared ``WarmPool`` (``sandbox.warm_pool``, ``sandbox.warm_max_age_s``), filled by
``keep_warm()``, which the executor runs in its task group: constructing the backend starts nothing.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

import anyio

try:
    import docker
    import docker.errors
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(f'the docker sandbox needs the docker SDK: pip install "ptc-mcp[docker]" ({exc})') from exc

from ptc_mcp.config import Config
from ptc_mcp.errors import SandboxFailure, SandboxUnavailableError, first_in_group
from ptc_mcp.sandboxes import sandbox_limits
from ptc_mcp.sandboxes.base import OutputSink, RunReport, RunRequest, SandboxLimits, ToolCallHandler
from ptc_mcp.sandboxes.docker.channel import is_local_engine
from ptc_mcp.sandboxes.docker.launch import (
    Launched,
    engine_client,
    exit_state,
    launch,
    owner_labels,
    reap_stale,
    remove,
)
from ptc_mcp.sandboxes.docker.settings import DockerSettings, container_spec, parse_docker_settings
from ptc_mcp.sandboxes.docker.stream import AttachedStream
from ptc_mcp.sandboxes.stream import MessagePipe, PipeSender, RawOutput, RawPipe, RuntimeChannel
from ptc_mcp.sandboxes.warm_pool import WarmPool

__all__ = ["DockerBackend", "DockerSession", "DockerSettings", "create_backend"]

log = logging.getLogger(__name__)

EXIT_WAIT_S = 1.0
"""How long a broken direct channel waits for the attach stream to end (the container exited) before diagnosing."""


class DockerSession:
    """One container running the runtime; ``aclose`` kills and removes it.

    With the direct channel (``channel.py``) the protocol and the interpreter's raw fd 1/2 output each have a
    connection of their own; the attach stream then only tells when the container exits. Without it, the attach
    stream carries everything: the protocol on stdout, the raw output as stderr frames."""

    def __init__(self, backend: DockerBackend, launched: Launched, *, warm: bool) -> None:
        self._backend = backend
        self.container_id = launched.container_id
        self.session_id = launched.session_id
        self.warm = warm
        """True when the container came from the warm pool."""
        self._stream = AttachedStream(launched.handle, launched.demux)
        self._direct: PipeSender | None = None
        """The direct channel's protocol connection, when the runtime connected it (``RuntimeChannel`` closes it)."""
        self._raw_pipe: RawPipe | None = None
        if launched.channel is None:
            raw = RawOutput()
            raw.pump = self._stream.pump  # after `done` nobody else reads the socket that carries stderr frames
            self._channel = RuntimeChannel(self._stream, self._stream, raw)
        else:
            # The protocol's connection is written to as a pipe is, and read from a duplicate of its fd (made first:
            # if that fails, the sockets are still the launch's, which the caller closes).
            messages = MessagePipe(os.dup(launched.channel.protocol.fileno()))
            self._direct = PipeSender(launched.channel.protocol.detach())
            self._raw_pipe = RawPipe(launched.channel.raw.detach())
            self._channel = RuntimeChannel(self._direct, messages, raw_pipe=self._raw_pipe)
        self._channel.python_version = launched.ready.python
        self._stderr_at_ready = launched.demux.stderr_bytes
        self._closed = False
        self._running = False

    @property
    def alive(self) -> bool:
        if self._closed:
            return False
        if self._running and self._raw_pipe is None:
            return not self._stream.at_eof  # the run reads the attach stream: it notices the end
        return self._stream.poll_open()  # nobody reads it now: a container that died is noticed here

    @property
    def stderr_bytes(self) -> int:
        """Bytes the container wrote to stderr on the attach stream since its runtime said ``ready`` (read so far)."""
        return self._stream.demux.stderr_bytes - self._stderr_at_ready

    @property
    def untouched(self) -> bool:
        """Alive, and silent since its runtime said ``ready``: what a warm container must be to be handed out."""
        quiet = self._raw_pipe is None or self._raw_pipe.quiet
        return self.alive and self._stream.demux.idle and not self.stderr_bytes and quiet

    @property
    def python_version(self) -> str | None:
        return self._channel.python_version

    async def run(self, request: RunRequest, call_tool: ToolCallHandler, output: OutputSink) -> RunReport:
        self._running = True
        try:
            if self._raw_pipe is not None:
                return await self._channel.run(request, call_tool, output)
            return await self._run_attached(request, call_tool, output)
        except SandboxFailure as failure:
            raise await self._diagnose(failure) from None
        except BaseExceptionGroup as group:
            wrapped = first_in_group(group, SandboxFailure)
            if wrapped is None:
                raise
            raise await self._diagnose(wrapped) from None
        finally:
            self._running = False

    async def _run_attached(self, request: RunRequest, call_tool: ToolCallHandler, output: OutputSink) -> RunReport:
        """The run on the attach stream: output written to the real fds 1/2 (C code, child processes) arrives as
        stderr frames."""
        demux = self._stream.demux
        raw = self._channel.raw
        assert raw is not None
        raw.output = output
        demux.on_stderr = raw.feed
        try:
            return await self._channel.run(request, call_tool, output)
        finally:
            demux.on_stderr = None
            raw.output = None

    async def _drain_attached(self) -> None:
        """Read the attach stream until it ends (the caller bounds the wait: the container is exiting)."""
        try:
            while True:
                await self._stream.pump()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    async def _diagnose(self, failure: SandboxFailure) -> SandboxFailure:
        """Why the container went away: an out-of-memory kill is ``memory_limit``."""
        if self._direct is not None and not self._stream.at_eof:
            with anyio.move_on_after(EXIT_WAIT_S):  # the channel broke: the attach stream ends too if it exited
                await self._drain_attached()
        if not self._stream.at_eof:
            return failure
        state = await anyio.to_thread.run_sync(exit_state, self._backend.api, self.container_id)
        if state is None:
            return SandboxFailure(f"{failure} (its container was removed)")
        if state.get("OOMKilled"):
            return SandboxFailure(
                f"the program ran out of memory (limit {self._backend.memory_mb} MB) and its sandbox was killed",
                "memory_limit",
            )
        return SandboxFailure(f"{failure} (container exit status {state.get('ExitCode')})", failure.error_type)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self._stream.aclose()
            self._channel.close()
            await anyio.to_thread.run_sync(remove, self._backend.api, self.container_id)
            self._backend._sessions.discard(self)


class DockerBackend:
    """Starts ``DockerSession``s on the engine ``docker.from_env()`` finds; ``keep_warm()`` keeps a warm pool."""

    kind = "docker"

    def __init__(
        self,
        settings: DockerSettings,
        limits: SandboxLimits,
        *,
        warm_pool: int = 0,
        warm_max_age_s: float = 300.0,
        client: docker.DockerClient | None = None,
        instance_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.instance_id = instance_id or secrets.token_hex(8)
        """This server instance's id, the ``ptc-mcp.instance`` label of its containers."""
        try:
            self.client = client or engine_client(settings.api_timeout_s)
        except docker.errors.DockerException as exc:
            raise SandboxUnavailableError(_unreachable(exc)) from None
        self.api: Any = self.client.api
        self.isolated = settings.network == "none"
        self.direct_channel = settings.direct_channel and is_local_engine(self.api)
        """Offer each container's runtime the direct channel (``channel.py``): the engine is local."""
        self.memory_mb = settings.memory_mb or limits.memory_mb
        self._spec = container_spec(settings, limits, owner_labels(self.instance_id))
        self._sessions: set[DockerSession] = set()
        self._closed = False
        self._launching = 0
        self._landed: anyio.Event | None = None
        reaped = reap_stale(self.api, self.instance_id)
        if reaped:
            log.info("removed %d sandbox container(s) left by a server instance that is gone", reaped)
        self.pool: WarmPool[DockerSession] = WarmPool(
            self._start_warm, size=warm_pool, max_age_s=warm_max_age_s, fit=lambda session: session.untouched
        )

    async def keep_warm(self) -> None:
        """Keep ``warm_pool`` containers started until cancelled (the executor runs this)."""
        if self.pool.size > 0:
            await self.pool.run()

    async def start_session(self) -> DockerSession:
        """A warm container when the pool has one, else a freshly started one."""
        return self.pool.take() or await self._start(warm=False)

    async def _start_warm(self) -> DockerSession:
        return await self._start(warm=True)

    async def _start(self, *, warm: bool) -> DockerSession:
        if self._closed:
            raise SandboxFailure("the docker backend is closed")
        launched = await self._launch()
        try:
            session = DockerSession(self, launched, warm=warm)
        except BaseException:  # out of file descriptors: the container must not outlive the failure
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._discard, launched)
            raise
        self._sessions.add(session)
        return session

    async def _launch(self) -> Launched:
        """Start a container in a worker thread; one that lands after ``aclose`` began is removed at once."""
        started: list[Launched] = []
        self._launching += 1
        try:
            try:
                await anyio.to_thread.run_sync(lambda: started.append(self._launch_blocking()))
            except docker.errors.DockerException as exc:  # not already a SandboxFailure: the engine went away
                raise SandboxFailure(f"the Docker engine failed to start the sandbox: {exc}") from None
            if self._closed:
                raise SandboxFailure("the docker backend is closed")
        except BaseException:
            if started:  # cancelled or closed while the thread finished: remove what it started
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._discard, started[0])
            raise
        finally:
            self._launching -= 1
            if not self._launching and self._landed is not None:
                self._landed.set()
        return started[0]

    def _launch_blocking(self) -> Launched:
        return launch(self.api, self._spec, self.settings, {}, direct=self.direct_channel)

    def _discard(self, launched: Launched) -> None:
        if launched.channel is not None:
            launched.channel.close()
        close = getattr(launched.handle, "close", None)
        if close is not None:
            close()
        remove(self.api, launched.container_id)

    async def aclose(self) -> None:
        """Close the pool and every session, wait for starts in flight, remove whatever this instance left."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self.pool.aclose()
            for session in list(self._sessions):
                await session.aclose()
            if self._launching:  # a worker thread cannot be cancelled: wait for it (it removes what it started)
                self._landed = anyio.Event()
                with anyio.move_on_after(self.settings.start_timeout_s + 5):
                    await self._landed.wait()
            await anyio.to_thread.run_sync(lambda: reap_stale(self.api, self.instance_id, include_own=True))
            await anyio.to_thread.run_sync(self.client.close)


def _unreachable(exc: Exception) -> str:
    return (
        f"no Docker engine answers ({exc}). Start one (Docker Desktop, or `dockerd` / `systemctl start docker`), "
        "or point DOCKER_HOST at a remote engine (with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH for TLS), "
        'or pick another sandbox: "sandbox": {"kind": "process"}'
    )


PROBE_TIMEOUT_S = 5.0


def probe(config: Config) -> tuple[bool, str]:
    """Whether a Docker engine answers and the settings isolate (no network), without starting a container."""
    settings = parse_docker_settings(config.sandbox.docker)
    try:
        client = engine_client(min(settings.api_timeout_s, PROBE_TIMEOUT_S))
    except docker.errors.DockerException as exc:
        return False, f"no Docker engine answers ({exc}): start one (dockerd, Docker Desktop) or set DOCKER_HOST"
    try:
        version = client.version().get("Version", "?")
    except docker.errors.DockerException:
        version = "?"
    finally:
        client.close()
    if settings.network != "none":
        return False, f'not isolated: sandbox.docker.network is "{settings.network}" (only "none" isolates)'
    return True, f"Docker engine {version}, image {settings.image}"


def create_backend(config: Config) -> DockerBackend:
    """The ``docker`` backend for a config; raises ``SandboxUnavailableError`` when no engine answers."""
    settings = parse_docker_settings(config.sandbox.docker)
    return DockerBackend(
        settings,
        sandbox_limits(config),
        warm_pool=config.sandbox.warm_pool,
        warm_max_age_s=config.sandbox.warm_max_age_s,
    )
