"""A session map that every server instance shares, so any instance can continue any session.

With the ``agentcore`` backend the interpreter (and the program's variables) lives in AWS, not in the server
process. What an instance needs to continue a session is the backend's ``session_state()`` (the AgentCore session
id); the map keeps it, keyed by the session handle, so a request carrying a handle can land on any instance:

1. ``lookup`` finds the session and its owner (a handle is bound to the caller's identity).
2. ``acquire`` takes the session's *lease*: runs of one session are serialized across instances, as they are
   within one. The lease is short (``remote.session_map.lease_s``) and renewed while the run is alive, so a killed
   instance's sessions can be continued elsewhere seconds later.
3. The instance compares the record's ``version`` with the one it last saw; when another instance ran the session
   since (or took it over from a dead holder), it drops its own handle on the interpreter and re-attaches
   (``resume_session(state)``).
4. ``release`` stores the new state and bumps the version.

A lease that cannot be renewed (another holder has it, or the store stayed unreachable until it ran out) ends the
run as ``sandbox_failure`` and lets go of the interpreter without touching it again: two instances never drive one
interpreter. The stores (``ptc_mcp.remote.stores``): ``sqlite`` for one host, ``redis`` and ``dynamodb`` for a fleet;
docs/deploy.md compares them.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from ptc_mcp.config.remote import SessionMapConfig
from ptc_mcp.errors import BusyError, ConfigError, SandboxFailure, raise_from_group
from ptc_mcp.remote.session_map import Lease, LeaseLost, SessionMap, SessionMapError, SharedRecord, digest
from ptc_mcp.remote.stores.sqlite import SqliteSessionMap
from ptc_mcp.sandboxes.base import ResumableBackend, ResumableSession, SandboxBackend

if TYPE_CHECKING:
    from ptc_mcp.config import Config
    from ptc_mcp.sessions import Session

__all__ = [
    "LeaseLost",
    "SessionMap",
    "SessionMapError",
    "SessionSharing",
    "SharedRecord",
    "SqliteSessionMap",
    "digest",
    "open_session_map",
    "session_sharing",
    "shared_directory",
]

log = logging.getLogger(__name__)


class SessionSharing:
    """The ``SessionDirectory`` of a ``SessionStore`` whose sessions live in a ``SessionMap``: find, lease,
    re-attach, publish, expire."""

    def __init__(
        self, sessions: SessionMap, backend: SandboxBackend, *, lease_s: float, wait_s: float | None = None
    ) -> None:
        self.map = sessions
        self._backend = _resumable(backend)
        self._lease_s = lease_s
        self._wait_s = lease_s if wait_s is None else wait_s
        self.holder = secrets.token_hex(8)
        """This instance's name on the leases it holds."""

    async def exists(self, handle: str, owner: str | None) -> bool:
        record = await self.map.lookup(handle)
        return record is not None and secrets.compare_digest(record.owner, digest(owner))

    async def create(self, session: Session) -> None:
        await self.map.create(session.handle, session.owner)

    async def delete(self, handle: str) -> None:
        await self.map.delete(handle)

    async def leave(self, session: Session) -> None:
        """Another instance (or this one, later) may continue it: let go of the interpreter without stopping it."""
        await session.detach_sandbox()

    async def _acquire(self, session: Session) -> Lease:
        deadline = time.monotonic() + self._wait_s
        pause = 0.02
        while True:
            lease = await self.map.acquire(session.handle, self.holder, self._lease_s)
            if lease is not None:
                return lease
            if await self.map.lookup(session.handle) is None:  # expired everywhere meanwhile: start it afresh
                await session.detach_sandbox()
                await self.map.create(session.handle, session.owner)
                continue
            if time.monotonic() >= deadline:
                raise BusyError("the session is running a program on another instance; try again shortly")
            await anyio.sleep(pause)
            pause = min(pause * 2, 0.5)

    @asynccontextmanager
    async def claim(self, session: Session) -> AsyncIterator[None]:
        """Hold the session's lease for one run, renewing it; a lost lease ends the run with ``LeaseLost``."""
        if not session.handle:  # a stateless run's throwaway session: nobody else can name it
            yield
            return
        lease = await self._acquire(session)
        taken_at = time.monotonic()
        version = -1
        try:
            try:
                async with anyio.create_task_group() as group:
                    # Renewing starts at once: re-attaching may take longer than a short lease under load.
                    group.start_soon(self._keep, session, lease.fence, taken_at)
                    try:
                        await self._catch_up(session, lease.record)
                        yield
                    finally:
                        group.cancel_scope.cancel()
            except BaseExceptionGroup as failures:  # the keeper's LeaseLost (or the run's own failure)
                raise_from_group(failures)
        finally:
            with anyio.CancelScope(shield=True):
                sandbox = session.sandbox
                state = sandbox.session_state() if isinstance(sandbox, ResumableSession) else None
                try:
                    version = await self.map.release(session.handle, self.holder, lease.fence, state)
                except SessionMapError as exc:
                    log.warning("could not release session %s…: %s", session.handle[:12], exc)
                if version < 0:  # not ours any more (or gone): our handle on the interpreter is stale
                    await session.detach_sandbox()
                session.shared_version = version

    async def _catch_up(self, session: Session, record: SharedRecord) -> None:
        """Re-attach when another instance ran (or took over) the session since this one last did."""
        if record.version == session.shared_version:
            return
        await session.detach_sandbox()
        if record.state is None:
            return
        try:
            session.sandbox = await self._backend.resume_session(record.state)
        except SandboxFailure as exc:
            log.info("could not resume session %s…: %s; starting afresh", session.handle[:12], exc)

    async def _keep(self, session: Session, fence: int, taken_at: float) -> None:
        """Renew the lease every third of its length; raise ``LeaseLost`` once it is not ours any more."""
        step = self._lease_s / 3
        valid_until = taken_at + self._lease_s
        while True:
            slept_from = time.monotonic()
            await anyio.sleep(step)
            asked = time.monotonic()
            if asked - slept_from > 2 * step:  # the loop was blocked or starved: the lease came close to running out
                log.warning(
                    "renewing the lease of session %s… ran %.1f s late; lease_s %g leaves little room on this host",
                    session.handle[:12],
                    asked - slept_from - step,
                    self._lease_s,
                )
            try:
                if await self.map.renew(session.handle, self.holder, fence, self._lease_s):
                    valid_until = asked + self._lease_s
                    continue
                reason = "another instance holds its lease now"
            except SessionMapError as exc:
                if time.monotonic() + step < valid_until:
                    log.warning("could not renew the lease of session %s…: %s", session.handle[:12], exc)
                    continue  # the lease still runs: try again before it ends
                reason = f"the session map did not answer before the lease ran out ({exc})"
            sandbox = session.sandbox
            if isinstance(sandbox, ResumableSession):
                sandbox.detach()  # never drive (or stop) the interpreter from here again
            raise LeaseLost(
                f"this instance lost the session's lease ({reason}), so the run was stopped: two instances never "
                "drive one interpreter. Variables set by this run may be missing; continue with the same session."
            )

    async def reap_idle(self, idle_s: float) -> int:
        """Stop the interpreters of sessions nobody used for ``idle_s`` on any instance; returns how many."""
        try:
            reaped = await self.map.reap_idle(idle_s)
        except SessionMapError as exc:  # the reaper must outlive a map that is briefly unavailable
            log.warning("could not expire idle sessions in the shared map: %s", exc)
            return 0
        for _key, state in reaped:
            if state is None:
                continue
            try:
                sandbox = await self._backend.resume_session(state)
            except SandboxFailure:
                continue  # gone already
            await sandbox.aclose()
        return len(reaped)

    async def aclose(self) -> None:
        await self.map.aclose()


def open_session_map(config: SessionMapConfig, *, idle_s: float) -> SessionMap:
    """The store ``remote.session_map`` names (imported lazily: each network store is an optional extra)."""
    if config.kind == "sqlite":
        assert config.path is not None
        return SqliteSessionMap(config.path)
    if config.kind == "redis":
        from ptc_mcp.remote.stores.redis_map import RedisSessionMap

        assert config.url is not None
        return RedisSessionMap(config.url, expire_s=idle_s, prefix=config.key_prefix)
    if config.kind == "dynamodb":
        from ptc_mcp.remote.stores.dynamodb_map import DynamoDbSessionMap

        assert config.table is not None
        return DynamoDbSessionMap(
            config.table,
            region=config.region,
            endpoint_url=config.endpoint_url,
            expire_s=idle_s,
            max_attempts=config.max_attempts,
        )
    raise ConfigError(f"remote.session_map.kind: {config.kind!r} is not a shared store")


def session_sharing(
    config: SessionMapConfig, backend: SandboxBackend, run_timeout_s: float, *, idle_s: float = 900.0
) -> SessionSharing | None:
    """The sharing ``remote.session_map`` asks for (``None`` for ``local``).

    A request for a session that runs on another instance waits for that run (up to ``limits.timeout_s``) and for
    one lease length more (the time a dead holder's lease takes to run out) before it answers ``busy``.
    """
    if config.kind == "local":
        return None
    _resumable(backend)  # refused before any store is opened
    sessions = open_session_map(config, idle_s=idle_s)
    return SessionSharing(sessions, backend, lease_s=config.lease_s, wait_s=run_timeout_s + config.lease_s)


def shared_directory(config: Config, backend: SandboxBackend) -> SessionSharing | None:
    """The sessions' directory ``remote.session_map`` asks for (``None``: ``local``, sessions live in this instance):
    ``open_app(config, session_directory=shared_directory)``."""
    return session_sharing(
        config.remote.session_map, backend, config.limits.timeout_s, idle_s=config.sandbox.session_idle_s
    )


def _resumable(backend: SandboxBackend) -> ResumableBackend:
    if not isinstance(backend, ResumableBackend):
        raise ConfigError(
            f"remote.session_map: the {backend.kind} backend's interpreters live in this process and cannot be "
            "continued by another instance; use the agentcore backend, or kind 'local' with sticky routing"
        )
    return backend
