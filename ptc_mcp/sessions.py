"""Sessions: one live interpreter each, found by an unguessable handle, expired when idle.

Clients on protocol versions with an MCP session get one implicitly (the server keeps its handle on the
connection); every result also returns the handle, so clients of the stateless 2026-07-28 protocol pass it back.
A handle is bound to the caller's identity when there is one: another caller cannot use it.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field

import anyio

from ptc_mcp.errors import BusyError
from ptc_mcp.sandboxes.base import SandboxBackend, SandboxSession

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Session:
    """One session: its handle, owner, interpreter (started lazily) and a lock that serializes its runs."""

    handle: str
    owner: str | None
    sandbox: SandboxSession | None = None
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    last_used: float = field(default_factory=time.monotonic)
    runs: int = 0

    async def discard_sandbox(self) -> None:
        """Kill the interpreter (after a timeout, a crash or on reset); the next run starts a fresh one."""
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None:
            await sandbox.aclose()

    async def ensure_sandbox(self, backend: SandboxBackend) -> SandboxSession:
        if self.sandbox is None or not self.sandbox.alive:
            await self.discard_sandbox()
            self.sandbox = await backend.start_session()
        return self.sandbox


class SessionStore:
    """All live sessions of this server instance."""

    def __init__(self, *, idle_s: float, max_sessions: int) -> None:
        self._idle_s = idle_s
        self._max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, handle: str, owner: str | None) -> Session | None:
        session = self._sessions.get(handle)
        if session is None or not secrets.compare_digest(session.owner or "", owner or ""):
            return None
        return session

    async def create(self, owner: str | None) -> Session:
        if len(self._sessions) >= self._max_sessions:
            await self._evict_one()
        session = Session(handle="ptc_" + secrets.token_urlsafe(24), owner=owner)
        self._sessions[session.handle] = session
        return session

    async def _evict_one(self) -> None:
        idle = [s for s in self._sessions.values() if not s.lock.locked()]
        if not idle:
            raise BusyError(f"all {self._max_sessions} sessions are running programs")
        oldest = min(idle, key=lambda s: s.last_used)
        log.info("session limit reached: closing the least recently used session")
        await self.close(oldest.handle)

    async def close(self, handle: str) -> None:
        session = self._sessions.pop(handle, None)
        if session is not None:
            await session.discard_sandbox()

    async def expire_idle(self) -> int:
        """Close sessions idle for longer than the limit; returns how many."""
        now = time.monotonic()
        stale = [s.handle for s in self._sessions.values() if not s.lock.locked() and now - s.last_used > self._idle_s]
        for handle in stale:
            await self.close(handle)
        return len(stale)

    async def aclose(self) -> None:
        for handle in list(self._sessions):
            await self.close(handle)
