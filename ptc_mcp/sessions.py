"""Sessions: one live interpreter each, found by an unguessable handle, expired when idle.

Every result returns the session's handle, so clients of the stateless 2026-07-28 protocol pass it back. A
connection that owns an implicit session (handshake-era connections, and a stdio connection on every protocol
version) keeps the handle in a ``ConnectionSlot``: ``SessionStore.bind`` resolves the session of one request from
the handle it passed or its connection's, and ``Binding.finish`` binds the session its run started to the
connection (released when the connection ends). A handle is bound to the caller's identity when there is one:
another caller cannot use it.

Where sessions live beyond this instance is a ``SessionDirectory`` given to the store: ``LocalDirectory`` (nowhere
else: leaving a session stops its interpreter), or a map every instance shares
(``ptc_mcp.remote.shared_sessions.SessionSharing``): a handle this instance has never seen is looked up there,
every run holds the session's lease there, and leaving a session (idle, evicted, shutting down) *detaches* its
interpreter instead of stopping it, since another instance may continue it; only closing it for good (or the
map's idle expiry) stops it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ptc_mcp.errors import SessionClosedError
from ptc_mcp.sandboxes.base import ResumableSession, SandboxBackend, SandboxSession

if TYPE_CHECKING:
    from ptc_mcp.results import RunResult

log = logging.getLogger(__name__)

ENDED_REMEMBERED = 10_000
"""Handles of closed sessions remembered with the reason, so a call that passes one back learns why it is gone."""


@dataclass(eq=False)
class Session:
    """One session: its handle, owner, interpreter (started lazily) and a lock that serializes its runs."""

    handle: str
    owner: str | None
    sandbox: SandboxSession | None = None
    lock: anyio.Lock = field(default_factory=lambda: anyio.Lock(fast_acquire=True))
    """Uncontended (the usual run), taken without a trip through the event loop."""
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


class SessionDirectory(Protocol):
    """Where sessions live beyond this instance's ``SessionStore`` (see the module's docstring)."""

    async def exists(self, handle: str, owner: str | None) -> bool:
        """Whether a session this instance does not hold is ``owner``'s elsewhere (it then adopts it)."""
        ...

    async def create(self, session: Session) -> None:
        """Record a new session (before its handle reaches anyone)."""
        ...

    def claim(self, session: Session) -> AbstractAsyncContextManager[None]:
        """Hold the session for one run beyond this instance (with the store's lock on it held)."""
        ...

    async def leave(self, session: Session) -> None:
        """This instance lets go of the session (idle, evicted, shutting down); it may live on elsewhere."""
        ...

    async def delete(self, handle: str) -> None:
        """The session ends for good: nobody can continue it."""
        ...

    async def reap_idle(self, idle_s: float) -> int:
        """End the sessions unused for ``idle_s`` that no instance holds; returns how many."""
        ...

    async def aclose(self) -> None: ...


class LocalDirectory:
    """Sessions live in this instance only: leaving one stops its interpreter."""

    async def exists(self, handle: str, owner: str | None) -> bool:
        return False

    async def create(self, session: Session) -> None:
        return None

    def claim(self, session: Session) -> AbstractAsyncContextManager[None]:
        return nullcontext()

    async def leave(self, session: Session) -> None:
        await session.discard_sandbox()

    async def delete(self, handle: str) -> None:
        return None

    async def reap_idle(self, idle_s: float) -> int:
        return 0

    async def aclose(self) -> None:
        return None


SESSION_STATE_KEY = "ptc_mcp.session"


@dataclass
class ConnectionSlot:
    """Where a connection that owns an implicit session keeps its handle."""

    state: MutableMapping[str, Any]
    """The connection's own state (``SESSION_STATE_KEY`` holds the handle)."""
    on_close: Callable[[Callable[[], None]], object] | None = None
    """Registers a callback for when the connection ends; ``None``: it ends with the server (stdio)."""


@dataclass
class Binding:
    """The session one request continues (``handle``; ``None``: its run starts one), from ``SessionStore.bind``."""

    store: SessionStore
    slot: ConnectionSlot | None
    handle: str | None
    passed: bool
    """Whether the request passed the handle itself (else it came from the connection, or there is none)."""
    notice: str | None = None
    """Why the connection's session was replaced by a fresh one, for the result to say."""

    def finish(self, result: RunResult) -> bool:
        """After the run: says why the connection's session was replaced (if it was), and makes a session the run
        started the connection's (released when the connection ends). Returns whether the run started a session
        that no connection keeps: the client must pass its handle back to continue it."""
        if self.notice is not None:
            result.notice = self.notice
        session = result.session
        if self.slot is None:
            return not self.passed and session is not None
        if not self.passed and session and SESSION_STATE_KEY not in self.slot.state:
            self.slot.state[SESSION_STATE_KEY] = session
            self.store.mark_claimed(session)
            if self.slot.on_close is not None:
                # The handle the result carries keeps working from another connection for a while.
                self.slot.on_close(partial(self.store.release, session))
        return False


class SessionStore:
    """All live sessions of this server instance.

    At most ``max_sessions``: a new session takes the place of the least recently used idle one. When every session
    is running a program, new sessions wait for one to finish, first come first served (the caller bounds the wait).
    ``directory`` says where sessions live beyond this instance (default: nowhere, ``LocalDirectory``).
    """

    def __init__(
        self,
        *,
        idle_s: float,
        max_sessions: int,
        unclaimed_idle_s: float | None = None,
        directory: SessionDirectory | None = None,
    ) -> None:
        self._idle_s = idle_s
        self._unclaimed_idle_s = min(idle_s, unclaimed_idle_s) if unclaimed_idle_s is not None else idle_s
        self._max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._room = anyio.Lock()  # FIFO: new sessions get room in the order they asked
        self._changed = anyio.Event()
        self._ended: OrderedDict[str, tuple[str | None, str]] = OrderedDict()
        self.directory: SessionDirectory = directory or LocalDirectory()

    @property
    def max_sessions(self) -> int:
        return self._max_sessions

    @property
    def waiting_for_room(self) -> bool:
        """Whether a new session is waiting for a session to finish its run."""
        return self._room.locked()

    def __len__(self) -> int:
        return len(self._sessions)

    def live_sandboxes(self) -> int:
        """Sessions whose interpreter is alive now."""
        return sum(1 for s in self._sessions.values() if s.sandbox is not None and s.sandbox.alive)

    async def find(self, handle: str, owner: str | None) -> Session | None:
        """``get``, or the session the directory knows (another instance started it); ``None``: unknown, not yours."""
        session = self.get(handle, owner)
        if session is not None or handle in self._sessions:
            return session
        if not await self.directory.exists(handle, owner):
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
        """Hold ``session`` for one run: its lock (runs of a session take turns) and the directory's claim (with a
        shared map: its lease and an interpreter that is current). Releasing it lets a new session that waits for
        room evict it."""
        try:
            async with session.lock:
                if session.handle and self._sessions.get(session.handle) is not session:
                    # Evicted between being found and being held: running it would start an orphan interpreter.
                    found = self._ended.get(session.handle)
                    raise SessionClosedError(found[1] if found else "closed")
                async with self.directory.claim(session):
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

    def bind(self, handle: str | None, owner: str | None, slot: ConnectionSlot | None) -> Binding:
        """The session of one request: the ``handle`` it passed, else the session its connection owns (``slot``;
        ``None``: no connection owns one). A connection's session that was closed (idle, to make room) is
        forgotten, and the binding's ``notice`` says so; its run starts a fresh one."""
        binding = Binding(self, slot, handle, passed=handle is not None)
        if handle is not None or slot is None:
            return binding
        kept = slot.state.get(SESSION_STATE_KEY)
        if kept is not None and self.get(kept, owner) is None:
            del slot.state[SESSION_STATE_KEY]
            gone = self.ended(kept, owner) or "closed"
            binding.notice = (
                f"this connection's session was {gone}: this program ran in a fresh interpreter, and the variables"
                " of earlier programs are gone"
            )
            kept = None
        binding.handle = kept
        return binding

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
        try:
            await self.directory.create(session)
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
        await self._leave(oldest.handle, reason)
        return True

    def _remember(self, session: Session, reason: str | None) -> None:
        if reason is None or not session.handle:
            return
        self._ended[session.handle] = (session.owner, reason)
        while len(self._ended) > ENDED_REMEMBERED:
            self._ended.popitem(last=False)

    async def close(self, handle: str, reason: str | None = None) -> None:
        """End a session for good: its interpreter stops, and no instance can continue it.

        ``reason`` (e.g. "closed to make room: ...") is what a later call that passes the handle back is told.
        """
        session = self._sessions.pop(handle, None)
        if session is not None:
            self._remember(session, reason)
            self._notify()
        if handle:
            await self.directory.delete(handle)
        if session is not None:
            await session.discard_sandbox()

    async def _leave(self, handle: str, reason: str | None = None) -> None:
        """Let go of a session here; the directory says whether it lives on elsewhere (a shared map)."""
        session = self._sessions.pop(handle, None)
        if session is not None:
            self._remember(session, reason)
            self._notify()
            await self.directory.leave(session)

    async def expire_idle(self) -> int:
        """Let go of sessions idle here for longer than the limit, and end those the directory finds idle everywhere;
        returns how many."""
        now = time.monotonic()
        stale = [
            s
            for s in self._sessions.values()
            if not s.lock.locked() and now - s.last_used > (self._unclaimed_idle_s if s.unclaimed else self._idle_s)
        ]
        for session in stale:
            idle_s, setting = (
                (self._unclaimed_idle_s, "unclaimed_session_idle_s")
                if session.unclaimed
                else (self._idle_s, "session_idle_s")
            )
            await self._leave(session.handle, f"closed after {idle_s:g} s without a call (sandbox.{setting})")
        return len(stale) + await self.directory.reap_idle(self._idle_s)

    async def aclose(self) -> None:
        for handle in list(self._sessions):
            await self._leave(handle)
        await self.directory.aclose()
