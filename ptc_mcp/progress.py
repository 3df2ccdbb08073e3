"""Live runs for MCP clients: progress notifications and the program's output as log notifications.

``RunReporter`` is the executor's ``RunEvents`` for one ``execute_program`` request. Events arrive synchronously
(each nested call started or finished, each chunk the program printed) and only update counters and a buffer;
``pump()`` sends what changed at most every ``min_interval_s`` (10 per second by default), so a program that
prints 100,000 lines costs the client a few notifications per second, not 100,000:

- ``notifications/progress`` against the request's progress token: ``progress`` counts events (nested calls
  started and finished, lines printed) and so only grows; ``message`` says what happened last, e.g.
  ``"12 tool calls · 40 lines · expenses.get_expenses ok (3 ms)"``.
- A heartbeat every ``heartbeat_s`` (5 s) while nothing else happened (a program computing without printing), so
  clients that reset their request timeout on progress (the TypeScript SDK's ``resetTimeoutOnProgress``, the
  Inspector) keep waiting for long programs: ``progress`` grows by one, ``message`` says how long it has run.
- ``notifications/message`` with logger ``ptc-mcp.program``: the output printed since the last one, per stream
  (level ``info`` for stdout, ``warning`` for stderr), ``data = {"stream": ..., "text": ...}``. Capped in total at
  the run's output limit, like the result itself.

Clients that send no progress token get neither (on the 2026-07-28 protocol a request that opts in to log
messages through ``_meta`` gets the log messages). Sending never fails a run: after the first failure (the client
went away) the reporter goes quiet.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ptc_mcp.bridge import CallRecord
from ptc_mcp.sandboxes.base import StreamName

__all__ = ["HEARTBEAT_S", "LOGGER_NAME", "MIN_INTERVAL_S", "RunReporter"]

log = logging.getLogger(__name__)

LOGGER_NAME = "ptc-mcp.program"
MIN_INTERVAL_S = 0.1
HEARTBEAT_S = 5.0
"""Longest silence between progress notifications; half the shortest reset-on-progress timeout seen in clients
(the Inspector's former 10 s request timeout)."""
MAX_LOG_CHUNK = 8192
"""Longest ``text`` of one log notification; a longer batch is sent as several."""

SendProgress = Callable[[float, str], Awaitable[None]]
SendLog = Callable[[str, dict[str, Any]], Awaitable[None]]
_LEVELS: dict[StreamName, str] = {"stdout": "info", "stderr": "warning"}


class RunReporter:
    """Collects one run's events and sends them, coalesced and rate-limited, to the MCP client."""

    def __init__(
        self,
        *,
        send_progress: SendProgress | None,
        send_log: SendLog | None,
        max_log_bytes: int,
        min_interval_s: float = MIN_INTERVAL_S,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self._send_progress = send_progress
        self._send_log = send_log
        self._log_room = max_log_bytes
        self._min_interval_s = min_interval_s
        self._heartbeat_s = heartbeat_s
        self._started = anyio.current_time()
        self.heartbeats = 0
        self.calls_started = 0
        self.calls_finished = 0
        self.lines = 0
        self._last = "started"
        self._pending: list[tuple[StreamName, str]] = []
        self._changed = anyio.Event()
        self._stopping = anyio.Event()
        self._stopped = False
        self._sent_events = -1
        self._quiet = False
        self.progress_sent = 0
        self.logs_sent = 0

    # -- RunEvents ---------------------------------------------------------------------------------------------

    def output(self, stream: StreamName, text: str) -> None:
        self.lines += text.count("\n")
        if self._send_log is not None and self._log_room > 0:
            size = len(text.encode("utf-8"))
            if size > self._log_room:
                text = (
                    text.encode("utf-8")[: self._log_room].decode("utf-8", "ignore") + "\n[... output truncated ...]\n"
                )
            self._log_room -= size
            if self._pending and self._pending[-1][0] == stream:
                self._pending[-1] = (stream, self._pending[-1][1] + text)
            else:
                self._pending.append((stream, text))
        self._changed.set()

    def call_started(self, tool: str) -> None:
        self.calls_started += 1
        self._last = f"calling {tool}"
        self._changed.set()

    def call_finished(self, record: CallRecord) -> None:
        self.calls_finished += 1
        self._last = f"{record.tool} {record.outcome} ({record.duration_ms:.0f} ms)"
        self._changed.set()

    # -- sending -----------------------------------------------------------------------------------------------

    @property
    def events(self) -> int:
        return self.calls_started + self.calls_finished + self.lines + self.heartbeats

    @property
    def message(self) -> str:
        calls = f"{self.calls_finished} tool call{'s' if self.calls_finished != 1 else ''}"
        lines = f"{self.lines} line{'s' if self.lines != 1 else ''}"
        return f"{calls} · {lines} · {self._last}"

    async def pump(self) -> None:
        """Send changes as they come, at most one batch per ``min_interval_s``, and a heartbeat after
        ``heartbeat_s`` of silence; runs until ``stop()`` (or cancelled)."""
        while not self._quiet and not self._stopped:
            with anyio.move_on_after(self._heartbeat_s):
                await self._changed.wait()
            if self._stopped:
                return
            if not self._changed.is_set() and self._send_progress is not None:
                self.heartbeats += 1
                self._last = f"running for {anyio.current_time() - self._started:.0f} s"
            self._changed = anyio.Event()
            await self.flush()
            with anyio.move_on_after(self._min_interval_s):
                await self._stopping.wait()

    def stop(self) -> None:
        """End ``pump()`` at its next step, without cancelling it (cancelling a task costs more than the run's whole
        reporting); the caller then ``flush()``es what is left."""
        self._stopped = True
        self._stopping.set()
        self._changed.set()

    async def flush(self) -> None:
        """Send what changed since the last batch (the caller also calls this once the run is over)."""
        if self._quiet:
            return
        pending, self._pending = self._pending, []
        try:
            if self._send_log is not None:
                for stream, text in pending:
                    for start in range(0, len(text), MAX_LOG_CHUNK):
                        chunk = text[start : start + MAX_LOG_CHUNK]
                        await self._send_log(_LEVELS[stream], {"stream": stream, "text": chunk})
                        self.logs_sent += 1
            events = self.events
            if self._send_progress is not None and events != self._sent_events:
                self._sent_events = events
                await self._send_progress(float(events), self.message)
                self.progress_sent += 1
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, RuntimeError) as exc:
            log.debug("progress: the client stopped listening (%r); no more notifications for this run", exc)
            self._quiet = True
