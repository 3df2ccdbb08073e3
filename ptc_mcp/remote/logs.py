"""Structured logs: one JSON object per line on stderr (``remote.json_logs`` or ``--json-logs``).

Fields: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, and ``exc`` with the traceback when there is
one. The audit trail's lines are JSON already and go to the same stderr (or ``audit.file``), so a log pipeline
(CloudWatch Logs, Loki, ...) can parse every line of the server.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

__all__ = ["JsonFormatter", "use_json_logs"]


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def use_json_logs(level: int | None = None) -> None:
    """Make every handler of the root logger (one on stderr if there is none) write JSON lines."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
    if level is not None:
        root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
