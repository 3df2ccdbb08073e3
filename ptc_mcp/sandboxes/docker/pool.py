"""The warm pool: containers started ahead of demand, so a new session does not wait for a container start.

A daemon thread keeps ``size`` containers ready (started, runtime handshake done), replaces those older than
``max_age_s``, and backs off when the engine fails. A plain thread rather than an async task because every step
is a blocking Docker call and the backend has no long-lived task group to run a task in; ``take`` never blocks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from ptc_mcp.sandboxes.docker.launch import Launched

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 60.0


class WarmPool:
    """Ready containers for ``DockerBackend.start_session``; thread-safe."""

    def __init__(
        self,
        size: int,
        max_age_s: float,
        launch: Callable[[], Launched],
        discard: Callable[[Launched], None],
        fit: Callable[[Launched], bool],
    ) -> None:
        self.size = size
        self._max_age_s = max_age_s
        self._launch = launch
        self._discard = discard
        self._fit = fit
        self._ready: deque[Launched] = deque()
        self._trash: list[Launched] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.launched = 0
        self.handed_out = 0
        self.last_error: str | None = None

    def start(self) -> None:
        if self.size and self._thread is None:
            self._thread = threading.Thread(target=self._fill, name="ptc-mcp-docker-pool", daemon=True)
            self._thread.start()

    def __len__(self) -> int:
        return len(self._ready)

    def take(self) -> Launched | None:
        """A ready container, or ``None`` when the pool is empty (the caller starts one itself)."""
        with self._wake:
            try:
                while self._ready:
                    item = self._ready.popleft()
                    if self._fresh(item) and self._fit(item):
                        self.handed_out += 1
                        return item
                    self._trash.append(item)
                return None
            finally:
                self._wake.notify_all()

    def _fresh(self, item: Launched) -> bool:
        return time.monotonic() - item.started_at < self._max_age_s

    def _fill(self) -> None:
        backoff = 0.0
        while True:
            with self._wake:
                while not self._closed and not self._trash and len(self._ready) >= self.size and not self._expired():
                    self._wake.wait(timeout=self._next_expiry())
                if self._closed:
                    return
                trash, self._trash = self._trash, []
                self._trash_expired(trash)
                wanted = len(self._ready) < self.size
            for item in trash:
                self._discard(item)
            if not wanted:
                continue
            try:
                item = self._launch()
            except Exception as exc:
                self.last_error = str(exc)
                backoff = min(MAX_BACKOFF_S, backoff * 2 or 1.0)
                log.warning("warm pool: cannot start a sandbox container (retrying in %g s): %s", backoff, exc)
                with self._wake:
                    self._wake.wait_for(lambda: self._closed, timeout=backoff)
                continue
            backoff = 0.0
            self.last_error = None
            with self._wake:
                if self._closed:
                    self._trash.append(item)
                    return
                self.launched += 1
                self._ready.append(item)

    def _expired(self) -> bool:
        return any(not self._fresh(item) for item in self._ready)

    def _trash_expired(self, trash: list[Launched]) -> None:
        keep = [item for item in self._ready if self._fresh(item)]
        trash.extend(item for item in self._ready if not self._fresh(item))
        self._ready = deque(keep)

    def _next_expiry(self) -> float:
        if not self._ready:
            return self._max_age_s
        oldest = min(item.started_at for item in self._ready)
        return max(0.05, oldest + self._max_age_s - time.monotonic())

    def close(self, timeout_s: float) -> list[Launched]:
        """Stop the filler thread (waits for a start in progress) and return what is left, for removal."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._wake:
            left = [*self._ready, *self._trash]
            self._ready.clear()
            self._trash.clear()
        return left
