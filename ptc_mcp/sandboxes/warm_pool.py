"""Warm interpreters: a few started sandbox sessions waiting to be taken, so a new session skips start-up.

A backend that owns a ``WarmPool`` takes from it in ``start_session()`` (falling back to a cold start when the pool
is empty) and implements ``KeepsWarm``: the executor runs ``keep_warm()`` in its task group, which fills the pool
in the background, refills it after every take, and replaces interpreters older than ``max_age_s`` (a long-lived
interpreter has nothing wrong with it, but recycling bounds what an interpreter sees of the host's changes, such
as a runtime upgraded on disk), dead ones, and ones its ``fit`` check refuses (a warm container that wrote while
idle). When a start fails the pool backs off, doubling the wait from ``RETRY_AFTER_FAILURE_S`` up to
``MAX_BACKOFF_S``; takes do not cut the wait short, so a failing engine is not hammered. The start function runs on
the event loop: process sessions must be spawned from the loop's thread (bubblewrap's ``--die-with-parent`` ties
the sandbox to the *thread* that spawned it); a backend with blocking calls (Docker) sends them to a worker thread
itself.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import anyio

from ptc_mcp.errors import PtcError

__all__ = ["KeepsWarm", "WarmPool"]

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE_S = 5.0
"""The wait after a first failed start; it doubles with every further failure in a row."""
MAX_BACKOFF_S = 60.0


@runtime_checkable
class KeepsWarm(Protocol):
    """A backend with interpreters to keep warm in ``pool``: ``keep_warm()`` runs until cancelled."""

    pool: WarmPool[Any]

    async def keep_warm(self) -> None: ...


class _Warmable(Protocol):
    @property
    def alive(self) -> bool: ...

    async def aclose(self) -> None: ...


S = TypeVar("S", bound=_Warmable)


class WarmPool(Generic[S]):
    """Up to ``size`` started sessions, oldest taken first; refilled by ``run()``.

    ``fit`` (default: any) is asked, besides age and ``alive``, before a session is handed out or kept.
    """

    def __init__(
        self,
        start: Callable[[], Awaitable[S]],
        *,
        size: int,
        max_age_s: float,
        fit: Callable[[S], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._start = start
        self.size = size
        self.max_age_s = max_age_s
        self._fit = fit
        self._clock = clock
        self._ready: deque[tuple[float, S]] = deque()
        self._stale: list[S] = []
        self._wake = anyio.Event()
        self._stop = anyio.Event()
        self._closed = False
        self.backoff_s = 0.0
        """The wait before the next start after failures in a row (0 after a success)."""
        self.failures = 0
        """Starts that failed."""
        self.started = 0
        """Sessions started for the pool."""
        self.taken = 0
        """Takes served from the pool."""
        self.missed = 0
        """Takes that found the pool empty (the caller started a session cold)."""
        self.recycled = 0
        """Sessions closed unused: too old or dead."""

    def __len__(self) -> int:
        return len(self._ready)

    def take(self) -> S | None:
        """A warm session, or ``None`` when there is none (start one cold). Never waits."""
        session: S | None = None
        now = self._clock()
        while self._ready:
            born, candidate = self._ready.popleft()
            if self._usable(born, candidate, now):
                session = candidate
                break
            self._stale.append(candidate)
        if session is None:
            self.missed += 1
        else:
            self.taken += 1
        self._wake.set()
        return session

    def _usable(self, born: float, session: S, now: float) -> bool:
        return now - born <= self.max_age_s and session.alive and (self._fit is None or self._fit(session))

    async def run(self) -> None:
        """Keep the pool full until cancelled; then close what it holds."""
        try:
            while not self._closed:
                self._wake = anyio.Event()
                await self._recycle()
                await self._fill()
                if self.backoff_s:
                    with anyio.move_on_after(self.backoff_s):  # takes do not wake it: only closing does
                        await self._stop.wait()
                    continue
                with anyio.move_on_after(self._next_check_s()):
                    await self._wake.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await self._drain()

    async def _fill(self) -> None:
        while len(self._ready) < self.size and not self._closed:
            try:
                session = await self._start()
            except (PtcError, OSError) as exc:
                if self._closed:  # the backend closed under the start: nothing to retry, nothing to report
                    return
                self.failures += 1
                self.backoff_s = min(MAX_BACKOFF_S, self.backoff_s * 2 or RETRY_AFTER_FAILURE_S)
                log.warning("cannot start a warm interpreter (retrying in %g s): %s", self.backoff_s, exc)
                return
            self.backoff_s = 0.0
            self.started += 1
            if self._closed:  # closed while it started
                await session.aclose()
                return
            self._ready.append((self._clock(), session))

    def _next_check_s(self) -> float:
        if not self._ready:
            return self.max_age_s
        oldest = self._ready[0][0]
        return max(0.05, oldest + self.max_age_s - self._clock())

    async def _recycle(self) -> None:
        now = self._clock()
        keep: deque[tuple[float, S]] = deque()
        for born, session in self._ready:
            if self._usable(born, session, now):
                keep.append((born, session))
            else:
                self._stale.append(session)
        self._ready = keep
        stale, self._stale = self._stale, []
        for session in stale:
            self.recycled += 1
            await session.aclose()

    async def aclose(self) -> None:
        """Close every session the pool holds; ``run()`` stops filling for good. Idempotent."""
        self._closed = True
        self._wake.set()
        self._stop.set()
        await self._drain()

    async def _drain(self) -> None:
        sessions = [session for _, session in self._ready] + self._stale
        self._ready.clear()
        self._stale = []
        for session in sessions:
            await session.aclose()
