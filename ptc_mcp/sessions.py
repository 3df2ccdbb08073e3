"""Sessions: one live interpreter each, found by an unguessable handle, expired when idle.

Clients on protocol versions with an MCP session get one implicitly (the server keeps its handle on the
connection); every result also returns the handle, so clients of the stateless 2026-07-28 protocol pass it back.
A handle is bound to the caller's identity when there is one: another caller cannot use it.

With a shared session map (``share``, ``ptc_mcp.remote.shared_sessions``) sessions are not tied to this instance:
a handle this instance has never seen is looked up in the map, and every run holds the session's lease there.
Leaving such a session (idle, evicted, shutting down) *detaches* its interpreter instead of stopping it, since
another instance may continue it; only closing it for good (or the map's idle expiry) stops it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from ptc_mcp.errors import SessionClosedError
from ptc_mcp.sandboxes.base import ResumableSession, SandboxBackend, SandboxSession

if TYPE_CHECKING:
    from ptc_mcp.remote.shared_sessions import SessionSharing

log = logging.getLogger(__name__)

ENDED_REMEMBERED = 10_000
"""Handles of closed sessions remembered with the reason, so a call that passes one back learns why it is gone."""


@dataclass(eq=False)
class Session:
    """One session: its handle, owner, interpreter (started lazily) and a lock that serializes its runs."""

    handle: str
    owner: str | None
    sandbox: SandboxSession | None = None
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    last_used: float = field(default_factory=time.monotonic)
    runs: int = 0
    shared_version: int = -1
    """With a shared session map: the map's version this instance's ``sandbox`` belongs to (-1: none)."""
    unclaimed: bool = False
    """Started without a handle and neither continued by its handle nor bound to a connection yet: clients of the
    stateless protocol that never pass handles back leave such sessions behind, so they expire sooner."""

    async def discard_sandbox(self) -> None:
        """Kill the interpreter (after a timeout, a crash or on reset); the next run starts a fresh one."""
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None:
            await sandbox.aclose()

    async def detach_sandbox(self) -> None:
        """Let go of the interpreter without stopping it when it lives elsewhere (``ResumableSession``)."""
        sandbox, self.sandbox = self.sandbox, None
        self.shared_version = -1
        if isinstance(sandbox, ResumableSession):
            sandbox.detach()
        elif sandbox is not None:
            await sandbox.aclose()

    async def ensure_sandbox(self, backend: SandboxBackend) -> SandboxSession:
        if self.sandbox is None or not self.sandbox.alive:
            await self.discard_sandbox()
            self.sandbox = await backend.start_session()
        return self.sandbox


class SessionStore:
    """All live sessions of this server instance.

    At most ``max_sessions``: a new session takes the place of the least recently used idle one. When every session
    is running a program, new sessions wait for one to finish, first come first served (the caller bounds the wait).
    """

    def __init__(self, *, idle_s: float, max_sessions: int, unclaimed_idle_s: float | None = None) -> None:
        self._idle_s = idle_s
        self._unclaimed_idle_s = min(idle_s, unclaimed_idle_s) if unclaimed_idle_s is not None else idle_s
        self._max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._room = anyio.Lock()  # FIFO: new sessions get room in the order they asked
        self._changed = anyio.Event()
        self._ended: OrderedDict[str, tuple[str | None, str]] = OrderedDict()
        self.sharing: SessionSharing | None = None

    @property
    def max_sessions(self) -> int:
        return self._max_sessions

    @property
    def waiting_for_room(self) -> bool:
        """Whether a new session is waiting for a session to finish its run."""
        return self._room.locked()

    def __len__(self) -> int:
        return len(self._sessions)

    def share(self, sharing: SessionSharing) -> None:
        """Keep sessions in a map shared with other instances (see the module's docstring)."""
        self.sharing = sharing

    def live_sandboxes(self) -> int:
        """Sessions whose interpreter is alive now."""
        return sum(1 for s in self._sessions.values() if s.sandbox is not None and s.sandbox.alive)

    async def find(self, handle: str, owner: str | None) -> Session | None:
        """``get``, or, with a shared map, the session another instance started (``None``: unknown, not yours)."""
        session = self.get(handle, owner)
        if session is not None or self.sharing is None or handle in self._sessions:
            return session
        if not await self.sharing.exists(handle, owner):
            return None
        async with self._room:
            if handle in self._sessions:  # found meanwhile by a concurrent request
                return self.get(handle, owner)
            await self._wait_for_room()
            session = Session(handle=handle, owner=owner)
            self._sessions[handle] = session
        return session

    @asynccontextmanager
    async def hold(self, session: Session) -> AsyncIterator[Session]:
        """Hold ``session`` for one run: its lock (runs of a session take turns) and, with a shared map, its lease
        and an interpreter that is current. Releasing it lets a new session that waits for room evict it."""
        try:
            async with session.lock:
                if session.handle and self._sessions.get(session.handle) is not session:
                    # Evicted between being found and being held: running it would start an orphan interpreter.
                    found = self._ended.get(session.handle)
                    raise SessionClosedError(found[1] if found else "closed")
                if self.sharing is None or not session.handle:
                    yield session
                else:
                    async with self.sharing.claim(session):
                        yield session
        finally:
            self._notify()

    def mark_claimed(self, handle: str) -> None:
        """The session's handle reached someone who keeps it (a connection, or a call that passed it back)."""
        session = self._sessions.get(handle)
        if session is not None:
            session.unclaimed = False

    def release(self, handle: str) -> None:
        """The connection that owned the session ended: its handle still works from any connection, but the
        session now expires like one nobody claimed (``unclaimed_idle_s`` from now) unless a call continues it."""
        session = self._sessions.get(handle)
        if session is not None:
            session.unclaimed = True
            session.last_used = time.monotonic()

    def get(self, handle: str, owner: str | None) -> Session | None:
        session = self._sessions.get(handle)
        if session is None or not secrets.compare_digest(session.owner or "", owner or ""):
            return None
        return session

    async def create(self, owner: str | None) -> Session:
        """A new session; when the server holds ``max_sessions`` and all are running, waits for one to finish."""
        async with self._room:
            await self._wait_for_room()
            session = Session(handle="ptc_" + secrets.token_urlsafe(24), owner=owner)
            self._sessions[session.handle] = session  # its place is taken before the next await
        if self.sharing is not None:
            try:
                await self.sharing.create(session)
            except BaseException:
                self._sessions.pop(session.handle, None)
                self._notify()
                raise
        return session

    def ended(self, handle: str, owner: str | None) -> str | None:
        """Why the session ``handle`` (of ``owner``) was closed, if this server closed it recently."""
        found = self._ended.get(handle)
        if found is None or not secrets.compare_digest(found[0] or "", owner or ""):
            return None
        return found[1]

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _wait_for_room(self) -> None:
        """Until there is room for one more session (call holding ``_room``): evict an idle one, or wait for one."""
        while len(self._sessions) >= self._max_sessions:
            if not await self._evict_one():
                changed = self._changed
                await changed.wait()

    async def _evict_one(self) -> bool:
        """Close the least recently used idle session; False if every session is running a program."""
        idle = [s for s in self._sessions.values() if not s.lock.locked()]
        if not idle:
            return False
        oldest = min(idle, key=lambda s: s.last_used)
        log.info("session limit reached: closing the least recently used session")
        held = f"{self._max_sessions} session{'s' if self._max_sessions != 1 else ''}"
        reason = f"closed to make room: the server holds at most {held} (sandbox.max_sessions)"
        await (self._drop(oldest.handle, reason) if self.sharing is not None else self.close(oldest.handle, reason))
        return True

    def _remember(self, session: Session, reason: str | None) -> None:
        if reason is None or not session.handle:
            return
        self._ended[session.handle] = (session.owner, reason)
        while len(self._ended) > ENDED_REMEMBERED:
            self._ended.popitem(last=False)

    async def close(self, handle: str, reason: str | None = None) -> None:
        """End a session for good: its interpreter stops (and, with a shared map, no instance can continue it).

        ``reason`` (e.g. "closed to make room: ...") is what a later call that passes the handle back is told.
        """
        session = self._sessions.pop(handle, None)
        if session is not None:
            self._remember(session, reason)
            self._notify()
        if self.sharing is not None and handle:
            await self.sharing.delete(handle)
        if session is not None:
            await session.discard_sandbox()

    async def _drop(self, handle: str, reason: str | None = None) -> None:
        """Forget a shared session here only; another instance (or this one, later) can continue it."""
        session = self._sessions.pop(handle, None)
        if session is not None:
            self._remember(session, reason)
            self._notify()
            await session.detach_sandbox()

    async def expire_idle(self) -> int:
        """Close sessions idle for longer than the limit; returns how many."""
        now = time.monotonic()
        stale = [
            s
            for s in self._sessions.values()
            if not s.lock.locked() and now - s.last_used > (self._unclaimed_idle_s if s.unclaimed else self._idle_s)
        ]
        if self.sharing is not None:
            # Idle here is not idle everywhere: let go locally; the map's expiry stops what nobody used.
            for session in stale:
                await self._drop(session.handle)
            return len(stale) + await self.sharing.reap_idle(self._idle_s)
        for session in stale:
            idle_s, setting = (
                (self._unclaimed_idle_s, "unclaimed_session_idle_s")
                if session.unclaimed
                else (self._idle_s, "session_idle_s")
            )
            await self.close(session.handle, f"closed after {idle_s:g} s without a call (sandbox.{setting})")
        return len(stale)

    async def aclose(self) -> None:
        for handle in list(self._sessions):
            await (self._drop(handle) if self.sharing is not None else self.close(handle))
        if self.sharing is not None:
            await self.sharing.aclose()
