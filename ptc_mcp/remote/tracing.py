"""Optional OpenTelemetry traces: one span per run, with one child span per nested tool call.

Off by default (``remote.tracing.enabled``); needs the ``otel`` extra (``pip install "ptc-mcp[otel]"``: the API,
the SDK and the OTLP exporter). Spans are built from the audit trail (``AuditLog.observe``): a call's line is held
until its run's line arrives, then the run span and its call spans are recorded with their real start and end
times. The run span's parent is whatever span is current when the run ends (an instrumented HTTP server's, say).
Attributes carry no code, arguments or results: the session prefix, run id, caller, tool, outcome and sizes.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from typing import Any

from ptc_mcp.config.remote import TracingConfig

__all__ = ["RunTracer", "setup_tracing"]

log = logging.getLogger(__name__)

_MAX_PENDING_RUNS = 1024


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f'tracing needs an extra: pip install "ptc-mcp[otel]" ({exc})') from exc


class RunTracer:
    """An ``AuditObserver`` that turns run and call lines into spans on ``tracer``."""

    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer
        self._trace = _require("opentelemetry.trace")
        self._lock = threading.Lock()
        self._calls: dict[str, list[tuple[int, dict[str, Any]]]] = {}

    def observe(self, line: dict[str, Any]) -> None:
        now = time.time_ns()
        run_id = str(line.get("run", ""))
        if line.get("event") == "call":
            with self._lock:
                if len(self._calls) >= _MAX_PENDING_RUNS and run_id not in self._calls:
                    self._calls.pop(next(iter(self._calls)))
                self._calls.setdefault(run_id, []).append((now, line))
            return
        if line.get("event") != "run":
            return
        with self._lock:
            calls = self._calls.pop(run_id, [])
        start = now - int(float(line.get("duration_ms") or 0) * 1_000_000)
        attributes = {
            "ptc_mcp.session": str(line.get("session", "")),
            "ptc_mcp.run_id": run_id,
            "ptc_mcp.status": str(line.get("status")),
            "ptc_mcp.error_type": str(line.get("error_type") or ""),
            "ptc_mcp.tool_calls": int(line.get("tool_calls") or 0),
            "ptc_mcp.code_bytes": int(line.get("code_bytes") or 0),
            "ptc_mcp.output_bytes": int(line.get("output_bytes") or 0),
        }
        if line.get("caller"):
            attributes["enduser.id"] = str(line["caller"])
        span = self._tracer.start_span("ptc_mcp.run", start_time=start, attributes=attributes)
        if line.get("status") != "ok":
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(line.get("error_type"))))
        context = self._trace.set_span_in_context(span)
        for ended, call in calls:
            call_start = ended - int(float(call.get("duration_ms") or 0) * 1_000_000)
            child = self._tracer.start_span(
                "ptc_mcp.tool_call",
                context=context,
                start_time=call_start,
                attributes={
                    "ptc_mcp.tool": str(call.get("tool", "")),
                    "ptc_mcp.outcome": str(call.get("outcome", "")),
                    "ptc_mcp.request_bytes": int(call.get("request_bytes") or 0),
                    "ptc_mcp.response_bytes": int(call.get("response_bytes") or 0),
                    "ptc_mcp.run_id": run_id,
                },
            )
            if call.get("outcome") != "ok":
                child.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(call.get("outcome"))))
            child.end(end_time=ended)
        span.end(end_time=now)


def setup_tracing(config: TracingConfig) -> RunTracer | None:
    """A ``RunTracer`` for ``remote.tracing`` (``None`` when off); installs an SDK provider for ``otlp``/``console``."""
    if not config.enabled:
        return None
    trace = _require("opentelemetry.trace")
    if config.exporter != "none":
        sdk_trace = _require("opentelemetry.sdk.trace")
        export = _require("opentelemetry.sdk.trace.export")
        resources = _require("opentelemetry.sdk.resources")
        provider = sdk_trace.TracerProvider(resource=resources.Resource.create({"service.name": config.service_name}))
        if config.exporter == "otlp":
            otlp = _require("opentelemetry.exporter.otlp.proto.http.trace_exporter")
            exporter = otlp.OTLPSpanExporter()
        else:
            exporter = export.ConsoleSpanExporter()
        provider.add_span_processor(export.BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    return RunTracer(trace.get_tracer("ptc_mcp"))
