"""The audit trail: one JSON line per run and one per nested tool call.

A line names the session (by a prefix of its handle: enough to correlate, useless to take it over), the run, the
tool, the duration, the sizes and the outcome. Argument values are never written unless ``audit.include_arguments``
is on: they may hold whatever the program read from another tool. ``caller`` is the authenticated caller's
identity on the HTTP transports (``client[:subject][@issuer]``), absent when there is none. Lines go to stderr
(stdout belongs to JSON-RPC in stdio mode) or, with ``audit.file``, are appended to that file. Every line is
also emitted on the ``ptc_mcp.audit`` logger at DEBUG, so tests and embedders can observe it without a file, and
handed to every ``observe``r (metrics and traces are built from these lines: they count what the trail records).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ptc_mcp.bridge import CallRecord
from ptc_mcp.config import AuditConfig
from ptc_mcp.errors import ConfigError

__all__ = ["SESSION_PREFIX_CHARS", "AuditLog"]

logger = logging.getLogger("ptc_mcp.audit")

AuditObserver = Callable[[dict[str, Any]], None]
"""Called with each line (a dict) on the thread that wrote it; must be quick and must not raise."""

SESSION_PREFIX_CHARS = 12
"""``ptc_`` plus 8 characters of the handle's 32: it tells sessions apart and cannot be used to resume one."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """Writes audit lines; thread-safe, never raises into a run (a failing sink is logged once and muted)."""

    def __init__(
        self, *, enabled: bool = True, file: str | Path | None = None, include_arguments: bool = False
    ) -> None:
        self.enabled = enabled
        self.include_arguments = include_arguments
        self._path = Path(file) if file else None
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._broken = False
        self._observers: list[AuditObserver] = []

    @classmethod
    def from_config(cls, config: AuditConfig) -> AuditLog:
        """The audit log a config asks for; an ``audit.file`` that cannot be opened fails start-up."""
        audit = cls(enabled=config.enabled, file=config.file, include_arguments=config.include_arguments)
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
        caller: str | None = None,
    ) -> None:
        """One line for a finished (or cancelled) run."""
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
        }
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
        """One line for a nested tool call that reached the bridge's downstream path."""
        line: dict[str, Any] = {
            "event": "call",
            "ts": _now(),
            "session": session[:SESSION_PREFIX_CHARS],
            "run": run_id,
            "tool": record.tool,
            "outcome": record.outcome,
            "duration_ms": round(record.duration_ms, 3),
            "request_bytes": record.request_bytes,
            "response_bytes": record.response_bytes,
        }
        if caller is not None:
            line["caller"] = caller
        if self.include_arguments and arguments is not None:
            line["arguments"] = arguments
        self._emit(line)

    def _emit(self, line: dict[str, Any]) -> None:
        for observer in self._observers:
            try:
                observer(line)
            except Exception:  # an observer's bug must not end a run
                logging.getLogger(__name__).exception("audit observer failed")
        text = json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":"))
        logger.debug(text)
        if not self.enabled or self._broken:
            return
        with self._lock:
            try:
                self._sink().write(text + "\n")
                if self._file is not None:
                    self._file.flush()
            except (OSError, ValueError) as exc:
                self._broken = True
                logging.getLogger(__name__).error("audit trail disabled: cannot write to %s: %s", self._where, exc)

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
            if self._file is not None:
                self._file.close()
                self._file = None
