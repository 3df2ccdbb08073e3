"""``SqliteSessionMap``: the session map in one SQLite file that several processes on one host open at once.

SQLite's locking needs a file system with working POSIX locks: a local disk or a Docker volume. Its documentation
warns against network file systems for concurrent writers, so a fleet across hosts uses Redis or DynamoDB.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio

from ptc_mcp.remote.session_map import Lease, SessionMapError, SharedRecord, digest

__all__ = ["SqliteSessionMap"]

_THREADS = 8
"""Worker threads of the map's own: lease renewals must never queue behind a backend's long blocking calls."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ptc_sessions (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    state TEXT,
    version INTEGER NOT NULL DEFAULT 0,
    last_used REAL NOT NULL,
    lease_holder TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    fence INTEGER NOT NULL DEFAULT 0
)
"""


class SqliteSessionMap:
    """A ``SessionMap`` in one SQLite file (WAL, ``BEGIN IMMEDIATE`` transactions, off the event loop)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._timeout_s = busy_timeout_s
        self._threads: anyio.CapacityLimiter | None = None  # made on the event loop, at first use
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._set_up()
        # Closing the last connection to a WAL database checkpoints it and deletes the WAL (with fsyncs: ~20 ms
        # per transaction measured). One connection held open for the map's life keeps commits at a fraction of that.
        self._anchor: sqlite3.Connection | None = sqlite3.connect(self.path, check_same_thread=False)
        self._anchor.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def _set_up(self) -> None:
        """Switch to WAL and create the table, retrying while other processes do the same.

        Turning WAL on needs the database to itself for a moment, and SQLite answers "database is locked" at once
        (without its busy handler) when another process holds it: instances starting together retry.
        """
        deadline = time.monotonic() + self._timeout_s
        pause = 0.01
        while True:
            try:
                with closing(self._connect()) as db:
                    if str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                        db.execute("PRAGMA journal_mode=WAL")
                    db.execute("BEGIN IMMEDIATE")
                    db.execute(_SCHEMA)
                    columns = {row[1] for row in db.execute("PRAGMA table_info(ptc_sessions)")}
                    if "fence" not in columns:  # a map written by an earlier version
                        db.execute("ALTER TABLE ptc_sessions ADD COLUMN fence INTEGER NOT NULL DEFAULT 0")
                    db.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise SessionMapError(f"remote.session_map: cannot open {self.path}: {exc}") from None
                if time.monotonic() >= deadline:
                    raise SessionMapError(f"remote.session_map: {self.path} stayed locked: {exc}") from None
                time.sleep(pause)  # start-up, before anything is served: nothing else waits on this thread
                pause = min(pause * 2, 0.2)

    def _limiter(self) -> anyio.CapacityLimiter:
        if self._threads is None:
            self._threads = anyio.CapacityLimiter(_THREADS)
        return self._threads

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout={int(self._timeout_s * 1000)}")
        # WAL with NORMAL stays consistent through any crash; a power cut may forget the last commits, which on one
        # host takes every instance (and their leases) down with it.
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _transaction(self, work: Any) -> Any:
        try:
            with closing(self._connect()) as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return result
        except sqlite3.Error as exc:
            raise SessionMapError(f"the session map ({self.path}) failed: {exc}") from None

    async def _run(self, work: Any) -> Any:
        return await anyio.to_thread.run_sync(self._transaction, work, limiter=self._limiter())

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
        found: SharedRecord | None = await self._run(lambda db: _record(db, key))
        return found

    async def acquire(self, handle: str, holder: str, lease_s: float) -> Lease | None:
        key = digest(handle)

        def work(db: sqlite3.Connection) -> Lease | None:
            now = time.time()
            # A lease that was never released (lease_holder still set) is a takeover: it counts as a change.
            taken = db.execute(
                "UPDATE ptc_sessions SET version = version + (lease_holder IS NOT NULL), lease_holder = ?, "
                "lease_until = ?, fence = fence + 1 WHERE key = ? AND (lease_holder IS NULL OR lease_until < ?)",
                (holder, now + lease_s, key, now),
            ).rowcount
            if not taken:
                return None
            record = _record(db, key)
            fence = db.execute("SELECT fence FROM ptc_sessions WHERE key = ?", (key,)).fetchone()[0]
            return Lease(record, int(fence)) if record is not None else None

        lease: Lease | None = await self._run(work)
        return lease

    async def renew(self, handle: str, holder: str, fence: int, lease_s: float) -> bool:
        key = digest(handle)

        def work(db: sqlite3.Connection) -> bool:
            return bool(
                db.execute(
                    "UPDATE ptc_sessions SET lease_until = ? WHERE key = ? AND lease_holder = ? AND fence = ?",
                    (time.time() + lease_s, key, holder, fence),
                ).rowcount
            )

        renewed: bool = await self._run(work)
        return renewed

    async def release(self, handle: str, holder: str, fence: int, state: dict[str, Any] | None) -> int:
        key = digest(handle)
        encoded = json.dumps(state, separators=(",", ":")) if state is not None else None

        def work(db: sqlite3.Connection) -> int:
            released = db.execute(
                "UPDATE ptc_sessions SET state = ?, version = version + 1, last_used = ?, lease_holder = NULL, "
                "lease_until = 0 WHERE key = ? AND lease_holder = ? AND fence = ?",
                (encoded, time.time(), key, holder, fence),
            ).rowcount
            if not released:
                return -1
            return int(db.execute("SELECT version FROM ptc_sessions WHERE key = ?", (key,)).fetchone()[0])

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

    async def aclose(self) -> None:
        """Close the anchor connection (every transaction opens and closes its own)."""
        anchor, self._anchor = self._anchor, None
        if anchor is not None:
            anchor.close()


def _record(db: sqlite3.Connection, key: str) -> SharedRecord | None:
    row = db.execute("SELECT owner, state, version, last_used FROM ptc_sessions WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    return SharedRecord(
        owner=str(row[0]), state=json.loads(row[1]) if row[1] else None, version=int(row[2]), last_used=float(row[3])
    )
