"""The audit trail: one JSON line per run, one per nested tool call and one per approval decision.

A line names the session (by a prefix of its handle: enough to correlate, useless to take it over), the run, the
tool, the duration, the sizes and the outcome. Argument values are never written unless ``audit.include_arguments``
is on: they may hold whatever the program read from another tool. ``caller`` is the authenticated caller's
identity on the HTTP transports (``client[:subject][@issuer]``), absent when there is none. Lines go to stderr
(stdout belongs to JSON-RPC in stdio mode) or, with ``audit.file``, are appended to that file. Every line is
also emitted on the ``ptc_mcp.audit`` logger at DEBUG, so tests and embedders can observe it without a file, and
handed to every ``observe``r (metrics and traces are built from these lines: they count what the trail records).

No data can switch the trail off: lines are serialized safely (valid UTF-8; a value that cannot be written is
replaced, never the line dropped). If the sink itself fails (disk full, file removed, stderr closed), the trail says
so loudly (an ERROR log at once and every ``REPORT_INTERVAL_S`` while it lasts), holds up to ``BACKLOG_LINES``
lines and retries on every new line, writing the backlog first once the sink works again. With
``audit.fail_closed`` the server refuses runs and tool calls while the sink fails (``refusal()``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ptc_mcp.bridge import CallRecord
from ptc_mcp.config import AuditConfig
from ptc_mcp.errors import ConfigError
from ptc_mcp.text import valid_text

__all__ = ["SESSION_PREFIX_CHARS", "AuditLog"]

logger = logging.getLogger("ptc_mcp.audit")
log = logging.getLogger(__name__)

BACKLOG_LINES = 10_000
"""Lines held while the sink fails, written once it works again (older ones are dropped, and counted, past it)."""
REPORT_INTERVAL_S = 10.0
MAX_ARGUMENT_BYTES = 64 * 1024
"""Arguments larger than this are not copied into the trail (``arguments_omitted`` gives their size): one call
with megabytes of arguments must not cost the host seconds of serializing and writing."""

AuditObserver = Callable[[dict[str, Any]], None]
"""Called with each line (a dict) on the thread that wrote it; must be quick and must not raise."""

SESSION_PREFIX_CHARS = 12
"""``ptc_`` plus 8 characters of the handle's 32: it tells sessions apart and cannot be used to resume one."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """Writes audit lines; thread-safe, never raises into a run, never goes quiet (see the module's docstring)."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        file: str | Path | None = None,
        include_arguments: bool = False,
        fail_closed: bool = False,
    ) -> None:
        self.enabled = enabled
        self.include_arguments = include_arguments
        self.fail_closed = fail_closed
        self._path = Path(file) if file else None
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._backlog: deque[str] = deque()
        self.lost = 0
        """Lines dropped because the backlog was full while the sink failed."""
        self._failure: str | None = None
        self._reported_at = 0.0
        self._observers: list[AuditObserver] = []

    @classmethod
    def from_config(cls, config: AuditConfig) -> AuditLog:
        """The audit log a config asks for; an ``audit.file`` that cannot be opened fails start-up."""
        audit = cls(
            enabled=config.enabled,
            file=config.file,
            include_arguments=config.include_arguments,
            fail_closed=config.fail_closed,
        )
        if audit.enabled and audit._path is not None:
            try:
                audit._sink()
            except OSError as exc:
                raise ConfigError(f"audit.file: cannot open {audit._path}: {exc.strerror}") from None
        return audit

    @classmethod
    def silent(cls) -> AuditLog:
        """Only the ``ptc_mcp.audit`` logger, no stderr or file (embedders and tests)."""
        return cls(enabled=False)

    def observe(self, observer: AuditObserver) -> None:
        """Also hand every line to ``observer`` (whether or not the trail itself is enabled)."""
        self._observers.append(observer)

    def run(
        self,
        *,
        session: str,
        run_id: str,
        status: str,
        error_type: str | None,
        tool_calls: int,
        duration_ms: float,
        code_bytes: int,
        output_bytes: int,
        output_dropped_bytes: int = 0,
        call_attempts: int | None = None,
        caller: str | None = None,
    ) -> None:
        """One line for a finished (or cancelled) run. ``output_bytes`` counts every field returned to the client
        (``ptc_mcp.budget``), ``output_dropped_bytes`` what the output budget cut; ``call_attempts`` every call the
        program made (the budget's count), ``tool_calls`` the count its result reports."""
        line: dict[str, Any] = {
            "event": "run",
            "ts": _now(),
            "session": session[:SESSION_PREFIX_CHARS],
            "run": run_id,
            "status": status,
            "error_type": error_type,
            "tool_calls": tool_calls,
            "duration_ms": round(duration_ms, 2),
            "code_bytes": code_bytes,
            "output_bytes": output_bytes,
            "output_dropped_bytes": output_dropped_bytes,
        }
        if call_attempts is not None:
            line["call_attempts"] = call_attempts
        if caller is not None:
            line["caller"] = caller
        self._emit(line)

    def call(
        self,
        *,
        session: str,
        run_id: str,
        record: CallRecord,
        arguments: dict[str, Any] | None = None,
        caller: str | None = None,
    ) -> None:
        """One line for a call attempt: downstream, discovery (``@search``, ``@describe``) or refused."""
        line: dict[str, Any] = {
            "event": "call",
            "ts": _now(),
            "session": session[:SESSION_PREFIX_CHARS],
            "run": run_id,
            "tool": record.tool,
            "server": record.server or None,
            "outcome": record.outcome,
            "duration_ms": round(record.duration_ms, 3),
            "request_bytes": record.request_bytes,
            "response_bytes": record.response_bytes,
        }
        if caller is not None:
            line["caller"] = caller
        if self.include_arguments and arguments is not None:
            if record.request_bytes <= MAX_ARGUMENT_BYTES:
                line["arguments"] = arguments
            else:
                line["arguments_omitted"] = f"{record.request_bytes} bytes, over {MAX_ARGUMENT_BYTES}"
        self._emit(line)

    def refusal(self) -> str | None:
        """Why runs and calls are refused now (``fail_closed`` and the sink is failing), else ``None``."""
        if not (self.fail_closed and self.enabled and self._failure is not None):
            return None
        with self._lock:
            self._drain()  # the sink may work again
            failure = self._failure
        if failure is None:
            return None
        return f"the audit trail cannot be written ({failure}); runs are refused until it can (audit.fail_closed)"

    @property
    def failing(self) -> bool:
        """Whether the last write to the sink failed."""
        return self._failure is not None

    def approval(
        self,
        *,
        session: str,
        run_id: str,
        tool: str,
        decision: str,
        reason: str | None = None,
        caller: str | None = None,
    ) -> None:
        """One line for each approval decision (``ptc_mcp.approvals.Decision``); ``reason`` says why none was given."""
        line: dict[str, Any] = {
            "event": "approval",
            "ts": _now(),
            "session": session[:SESSION_PREFIX_CHARS],
            "run": run_id,
            "tool": tool,
            "decision": decision,
        }
        if reason is not None:
            line["reason"] = reason  # made valid with the whole line
        if caller is not None:
            line["caller"] = caller
        self._emit(line)

    def _emit(self, line: dict[str, Any]) -> None:
        for observer in self._observers:
            try:
                observer(line)
            except Exception:  # an observer's bug must not end a run
                log.exception("audit observer failed")
        text = _serialize(line)
        logger.debug(text)
        if not self.enabled:
            return
        with self._lock:
            if len(self._backlog) >= BACKLOG_LINES:
                self._backlog.popleft()
                self.lost += 1
            self._backlog.append(text)
            self._drain()

    def _drain(self) -> None:
        """Write the backlog (under the lock); on failure keep it, close the file (reopened next time), say so."""
        try:
            sink = self._sink()
            while self._backlog:
                sink.write(self._backlog[0] + "\n")
                self._backlog.popleft()
            sink.flush()
        except (OSError, ValueError) as exc:
            self._failed(exc)
            return
        if self._failure is not None:
            log.warning("audit trail: writing to %s again (%d lines lost meanwhile)", self._where, self.lost)
            self._failure = None

    def _failed(self, exc: BaseException) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError, ValueError):
                self._file.close()
            self._file = None
        first = self._failure is None
        self._failure = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if first or now - self._reported_at >= REPORT_INTERVAL_S:
            self._reported_at = now
            log.error(
                "AUDIT TRAIL FAILING: cannot write to %s: %s; %d lines held, %d lost; retrying with every line%s",
                self._where,
                self._failure,
                len(self._backlog),
                self.lost,
                " (runs are refused meanwhile: audit.fail_closed)" if self.fail_closed else "",
            )

    @property
    def _where(self) -> str:
        return str(self._path) if self._path else "stderr"

    def _sink(self) -> IO[str]:
        if self._path is None:
            return sys.stderr  # looked up per line: pytest and embedders swap it
        if self._file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._path.open("a", encoding="utf-8")
        return self._file

    def close(self) -> None:
        with self._lock:
            if self._backlog:
                self._drain()
            if self._backlog:
                log.error("audit trail: %d lines could not be written to %s", len(self._backlog), self._where)
            if self._file is not None:
                self._file.close()
                self._file = None


_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})
"""Characters that tools splitting text into lines (``str.splitlines``, some log shippers) take for line ends: inside
JSON strings they are written escaped, so one line of the trail stays one line."""


def _serialize(line: dict[str, Any]) -> str:
    """One JSON line, always: valid UTF-8; a value that cannot be serialized is named, never the line lost."""
    try:
        text = json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":"))
    except (ValueError, RecursionError) as exc:
        fields = {key: value for key, value in line.items() if key != "arguments"}
        fields["arguments_unwritable"] = f"{type(exc).__name__}: {exc}"
        text = json.dumps(fields, default=str, ensure_ascii=False, separators=(",", ":"))
    if text.isascii():  # nothing to replace or escape (the usual line: names, numbers, hex ids)
        return text
    return valid_text(text).translate(_LINE_BREAKS)
