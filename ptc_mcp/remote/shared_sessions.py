"""A session map that every server instance shares, so any instance can continue any session.

With the ``agentcore`` backend the interpreter (and the program's variables) lives in AWS, not in the server
process. What an instance needs to continue a session is the backend's ``session_state()`` (the AgentCore session
id); this map keeps it, keyed by the session handle, so a request carrying a handle can land on any instance:

1. ``lookup`` finds the session and its owner (a handle is bound to the caller's identity).
2. ``acquire`` takes the session's *lease*: runs of one session are serialized across instances, as they are
   within one. A lease ends on ``release`` or, if its instance died, when it runs out.
3. The instance compares the record's ``version`` with the one it last saw; when another instance ran the session
   since, it drops its own handle on the interpreter and re-attaches (``resume_session(state)``).
4. ``release`` stores the new state and bumps the version.

Handles and owners are stored as SHA-256 digests: reading the map does not let anyone take a session over.

``SqliteSessionMap`` is a real shared store for one host or a shared volume (several processes, or containers
mounting the same directory). SQLite's locking needs a file system with working POSIX locks: a local disk or a
Docker volume, or Amazon EFS (NFSv4 locks); not SMB or NFSv3 without lockd. For ECS across hosts use a network
store: the ``SessionMap`` protocol is small (six calls); DynamoDB (conditional writes for the lease, TTL on
``last_used``) or Redis (``SET NX PX`` for the lease, ``EXPIRE`` for idle expiry) implement it directly.
docs/deploy.md compares them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ptc_mcp.errors import BusyError, ConfigError, SandboxFailure
from ptc_mcp.remote.settings import SessionMapConfig
from ptc_mcp.sandboxes.base import ResumableBackend, ResumableSession, SandboxBackend

if TYPE_CHECKING:
    from ptc_mcp.sessions import Session

__all__ = ["SessionMap", "SessionSharing", "SharedRecord", "SqliteSessionMap", "digest", "session_sharing"]

log = logging.getLogger(__name__)


def digest(value: str | None) -> str:
    """How handles and owners are stored: never in the clear."""
    return hashlib.sha256((value or "").encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class SharedRecord:
    """One session as the map knows it."""

    owner: str
    """SHA-256 of the owner's identity (``digest(None)`` when there was none)."""
    state: dict[str, Any] | None
    """The backend's ``session_state()``; ``None``: no interpreter yet (the next run starts one)."""
    version: int
    """Bumped by every ``release``: an instance whose cached interpreter is older re-attaches."""
    last_used: float


class SessionMap(Protocol):
    """Where instances find sessions. Every method is safe to call from any instance at any time."""

    async def create(self, handle: str, owner: str | None) -> None: ...

    async def lookup(self, handle: str) -> SharedRecord | None: ...

    async def acquire(self, handle: str, holder: str, lease_s: float) -> SharedRecord | None:
        """Take the session's lease for ``lease_s``; ``None`` while another holder has it (or it is gone)."""
        ...

    async def release(self, handle: str, holder: str, state: dict[str, Any] | None) -> int:
        """Store ``state``, end the lease, return the new version (-1 when the session is gone)."""
        ...

    async def delete(self, handle: str) -> None: ...

    async def reap_idle(self, idle_s: float) -> list[tuple[str, dict[str, Any] | None]]:
        """Remove sessions unused for ``idle_s`` and not leased; returns their (key, state) to stop them."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ptc_sessions (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    state TEXT,
    version INTEGER NOT NULL DEFAULT 0,
    last_used REAL NOT NULL,
    lease_holder TEXT,
    lease_until REAL NOT NULL DEFAULT 0
)
"""


class SqliteSessionMap:
    """A ``SessionMap`` in one SQLite file that several processes open at once (WAL, ``BEGIN IMMEDIATE``)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout={int(self._timeout_s * 1000)}")
        return db

    def _transaction(self, work: Any) -> Any:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result
        finally:
            db.close()

    async def _run(self, work: Any) -> Any:
        return await anyio.to_thread.run_sync(self._transaction, work)

    async def create(self, handle: str, owner: str | None) -> None:
        key, owner_key, now = digest(handle), digest(owner), time.time()

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO ptc_sessions (key, owner, state, version, last_used) VALUES (?, ?, NULL, 0, ?)",
                (key, owner_key, now),
            )

        await self._run(work)

    async def lookup(self, handle: str) -> SharedRecord | None:
        key = digest(handle)

        def work(db: sqlite3.Connection) -> SharedRecord | None:
            return _record(db, key)

        found: SharedRecord | None = await self._run(work)
        return found

    async def acquire(self, handle: str, holder: str, lease_s: float) -> SharedRecord | None:
        key = digest(handle)

        def work(db: sqlite3.Connection) -> SharedRecord | None:
            now = time.time()
            taken = db.execute(
                "UPDATE ptc_sessions SET lease_holder = ?, lease_until = ? "
                "WHERE key = ? AND (lease_holder IS NULL OR lease_until < ? OR lease_holder = ?)",
                (holder, now + lease_s, key, now, holder),
            ).rowcount
            return _record(db, key) if taken else None

        found: SharedRecord | None = await self._run(work)
        return found

    async def release(self, handle: str, holder: str, state: dict[str, Any] | None) -> int:
        key = digest(handle)
        encoded = json.dumps(state, separators=(",", ":")) if state is not None else None

        def work(db: sqlite3.Connection) -> int:
            db.execute(
                "UPDATE ptc_sessions SET state = ?, version = version + 1, last_used = ?, lease_holder = NULL, "
                "lease_until = 0 WHERE key = ? AND lease_holder = ?",
                (encoded, time.time(), key, holder),
            )
            row = db.execute("SELECT version FROM ptc_sessions WHERE key = ?", (key,)).fetchone()
            return int(row[0]) if row else -1

        version: int = await self._run(work)
        return version

    async def delete(self, handle: str) -> None:
        key = digest(handle)
        await self._run(lambda db: db.execute("DELETE FROM ptc_sessions WHERE key = ?", (key,)))

    async def reap_idle(self, idle_s: float) -> list[tuple[str, dict[str, Any] | None]]:
        def work(db: sqlite3.Connection) -> list[tuple[str, dict[str, Any] | None]]:
            now = time.time()
            rows = db.execute(
                "SELECT key, state FROM ptc_sessions WHERE last_used < ? AND lease_until < ?", (now - idle_s, now)
            ).fetchall()
            db.executemany("DELETE FROM ptc_sessions WHERE key = ?", [(row[0],) for row in rows])
            return [(str(row[0]), json.loads(row[1]) if row[1] else None) for row in rows]

        reaped: list[tuple[str, dict[str, Any] | None]] = await self._run(work)
        return reaped


def _record(db: sqlite3.Connection, key: str) -> SharedRecord | None:
    row = db.execute("SELECT owner, state, version, last_used FROM ptc_sessions WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    return SharedRecord(
        owner=str(row[0]), state=json.loads(row[1]) if row[1] else None, version=int(row[2]), last_used=float(row[3])
    )


class SessionSharing:
    """What a ``SessionStore`` does with a ``SessionMap``: find, lease, re-attach, publish, expire."""

    def __init__(self, sessions: SessionMap, backend: SandboxBackend, *, lease_s: float) -> None:
        if not isinstance(backend, ResumableBackend):
            raise ConfigError(
                f"remote.session_map: the {backend.kind} backend's interpreters live in this process and cannot be "
                "continued by another instance; use the agentcore backend, or kind 'local' with sticky routing"
            )
        self.map = sessions
        self._backend = backend
        self._lease_s = lease_s
        self.holder = secrets.token_hex(8)
        """This instance's name on the leases it holds."""

    async def exists(self, handle: str, owner: str | None) -> bool:
        record = await self.map.lookup(handle)
        return record is not None and secrets.compare_digest(record.owner, digest(owner))

    async def create(self, session: Session) -> None:
        await self.map.create(session.handle, session.owner)

    async def delete(self, handle: str) -> None:
        await self.map.delete(handle)

    async def _acquire(self, session: Session) -> SharedRecord:
        deadline = time.monotonic() + self._lease_s
        pause = 0.02
        while True:
            record = await self.map.acquire(session.handle, self.holder, self._lease_s)
            if record is not None:
                return record
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
        record = await self._acquire(session)
        try:
            if record.version != session.shared_version:
                await session.detach_sandbox()  # another instance ran it since: our handle on it is stale
                if record.state is not None:
                    try:
                        session.sandbox = await self._backend.resume_session(record.state)
                    except SandboxFailure as exc:
                        log.info("could not resume session %s…: %s; starting afresh", session.handle[:12], exc)
            yield
        finally:
            with anyio.CancelScope(shield=True):
                sandbox = session.sandbox
                state = sandbox.session_state() if isinstance(sandbox, ResumableSession) else None
                session.shared_version = await self.map.release(session.handle, self.holder, state)

    async def reap_idle(self, idle_s: float) -> int:
        """Stop the interpreters of sessions nobody used for ``idle_s`` on any instance; returns how many."""
        try:
            reaped = await self.map.reap_idle(idle_s)
        except (OSError, sqlite3.Error) as exc:  # the reaper must outlive a map that is briefly unavailable
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


def session_sharing(config: SessionMapConfig, backend: SandboxBackend, run_timeout_s: float) -> SessionSharing | None:
    """The sharing ``remote.session_map`` asks for (``None`` for ``local``)."""
    if config.kind == "local":
        return None
    assert config.path is not None
    return SessionSharing(SqliteSessionMap(config.path), backend, lease_s=run_timeout_s + config.lease_s)
