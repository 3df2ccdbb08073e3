"""Prometheus metrics in the text exposition format (version 0.0.4), with no dependency.

Counters and histograms are fed by the audit trail (``AuditLog.observe``): a run or a nested call is counted
exactly when the trail records it. Gauges (running and queued runs, sessions, live sandboxes, downstream server
health) are read from the running ``App`` at scrape time.

==========================================  =========  ==============================================
metric                                      type       labels
==========================================  =========  ==============================================
ptc_mcp_runs_total                          counter    status, error_type
ptc_mcp_run_duration_seconds                histogram  status
ptc_mcp_tool_calls_total                    counter    server, outcome
ptc_mcp_tool_call_duration_seconds          histogram  server
ptc_mcp_runs_running / _queued              gauge
ptc_mcp_sessions, ptc_mcp_live_sandboxes    gauge
ptc_mcp_downstream_up                       gauge      server
ptc_mcp_info                                gauge      version, backend
==========================================  =========  ==============================================
"""

from __future__ import annotations

import bisect
import threading
from typing import TYPE_CHECKING, Any

from ptc_mcp import __version__

if TYPE_CHECKING:
    from ptc_mcp.app import App

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RUN_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
CALL_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    pairs = [*labels, *([extra] if extra else [])]
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs) + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def lines(self, name: str, labels: Labels) -> list[str]:
        out, total = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            total += count
            out.append(f"{name}_bucket{_labels(labels, ('le', _number(bound)))} {total}")
        out.append(f"{name}_sum{_labels(labels)} {_number(round(self.sum, 6))}")
        out.append(f"{name}_count{_labels(labels)} {total}")
        return out


class Metrics:
    """The server's metrics; ``observe`` is an ``AuditObserver``, ``render`` the ``/metrics`` body."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[Labels, int] = {}
        self._run_seconds: dict[Labels, _Histogram] = {}
        self._calls: dict[Labels, int] = {}
        self._call_seconds: dict[Labels, _Histogram] = {}

    def observe(self, line: dict[str, Any]) -> None:
        event = line.get("event")
        seconds = float(line.get("duration_ms") or 0.0) / 1000
        with self._lock:
            if event == "run":
                status = str(line.get("status"))
                key: Labels = (("status", status), ("error_type", str(line.get("error_type") or "")))
                self._runs[key] = self._runs.get(key, 0) + 1
                self._run_seconds.setdefault((("status", status),), _Histogram(RUN_BUCKETS_S)).observe(seconds)
            elif event == "call":
                # The configured server, never the program's text: a made-up tool name must not mint a label.
                server = str(line.get("server") or "(none)")
                key = (("server", server), ("outcome", str(line.get("outcome"))))
                self._calls[key] = self._calls.get(key, 0) + 1
                self._call_seconds.setdefault((("server", server),), _Histogram(CALL_BUCKETS_S)).observe(seconds)

    def render(self, app: App | None = None) -> str:
        """The exposition text: what was observed, plus the gauges of ``app`` when given."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        with self._lock:
            family("ptc_mcp_runs_total", "counter", "Programs run, by outcome.")
            out.extend(f"ptc_mcp_runs_total{_labels(k)} {v}" for k, v in sorted(self._runs.items()))
            family("ptc_mcp_run_duration_seconds", "histogram", "Wall time of a run, admission wait excluded.")
            for k, histogram in sorted(self._run_seconds.items()):
                out.extend(histogram.lines("ptc_mcp_run_duration_seconds", k))
            family("ptc_mcp_tool_calls_total", "counter", "Nested tool calls that reached a downstream server.")
            out.extend(f"ptc_mcp_tool_calls_total{_labels(k)} {v}" for k, v in sorted(self._calls.items()))
            family("ptc_mcp_tool_call_duration_seconds", "histogram", "Duration of a nested tool call.")
            for k, histogram in sorted(self._call_seconds.items()):
                out.extend(histogram.lines("ptc_mcp_tool_call_duration_seconds", k))
        if app is not None:
            out.extend(_gauges(app))
        return "\n".join(out) + "\n"


def _gauges(app: App) -> list[str]:
    executor = app.executor
    sessions = executor.sessions
    live = sessions.live_sandboxes()
    out = [
        "# HELP ptc_mcp_runs_running Programs running now.",
        "# TYPE ptc_mcp_runs_running gauge",
        f"ptc_mcp_runs_running {executor.running}",
        "# HELP ptc_mcp_runs_queued Runs admitted and waiting for a run slot or for their session.",
        "# TYPE ptc_mcp_runs_queued gauge",
        f"ptc_mcp_runs_queued {max(executor.queued, 0)}",
        "# HELP ptc_mcp_run_slots Runs this instance runs at once (limits.max_concurrent_runs).",
        "# TYPE ptc_mcp_run_slots gauge",
        f"ptc_mcp_run_slots {executor.limits.max_concurrent_runs}",
        "# HELP ptc_mcp_sessions Sessions this instance holds.",
        "# TYPE ptc_mcp_sessions gauge",
        f"ptc_mcp_sessions {len(sessions)}",
        "# HELP ptc_mcp_live_sandboxes Sandboxes (interpreters) of sessions that are alive now.",
        "# TYPE ptc_mcp_live_sandboxes gauge",
        f"ptc_mcp_live_sandboxes {live}",
        "# HELP ptc_mcp_downstream_up Whether a downstream MCP server is connected (1) or failed (0).",
        "# TYPE ptc_mcp_downstream_up gauge",
    ]
    for name in sorted(app.pool.servers):
        up = 0 if name in app.pool.failures else 1
        out.append(f"ptc_mcp_downstream_up{_labels((('server', name),))} {up}")
    out += [
        "# HELP ptc_mcp_info The running server.",
        "# TYPE ptc_mcp_info gauge",
        f"ptc_mcp_info{_labels((('version', __version__), ('backend', app.backend.kind)))} 1",
    ]
    return out
