"""Operations: /healthz, /readyz, /metrics, traces, JSON logs, Host/Origin checks, body limits, graceful shutdown."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.types import Receive, Scope, Send

from ptc_mcp.app import open_app
from ptc_mcp.audit import AuditLog
from ptc_mcp.bridge import CallRecord
from ptc_mcp.config.remote import TracingConfig
from ptc_mcp.remote.health import ServingState
from ptc_mcp.remote.logs import JsonFormatter
from ptc_mcp.remote.metrics import Metrics
from ptc_mcp.remote.serve import QUIET_S, GracefulServer, RequestsInFlight
from tests.conftest import EXPENSES_STDIO, test_config
from tests.remote.helpers import WAIT_S, serving_in_process, serving_subprocess, write_config
from tests.remote.test_scale_out_stores import _running

pytestmark = pytest.mark.anyio

TOKEN = "ops-test-token-5d2a"
PROGRAM = "len(await expenses.get_team_members(department='engineering'))"


def samples(text: str) -> dict[str, float]:
    """``name{labels} value`` lines of an exposition, as a dict."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


async def test_health_readiness_and_metrics_answer_and_count_runs_and_calls() -> None:
    config = test_config(remote={"auth": {"mode": "bearer", "tokens": [TOKEN]}})
    async with serving_in_process(config) as (base, _app, state):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=WAIT_S) as http,
            Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy") as client,
        ):
            ok = await client.call_tool("execute_program", {"code": PROGRAM})
            failed = await client.call_tool("execute_program", {"code": "1/0"})
        async with httpx2.AsyncClient(timeout=WAIT_S) as anonymous:  # probes and scrapes carry no token
            health = await anonymous.get(f"{base}/healthz")
            ready = await anonymous.get(f"{base}/readyz")
            metrics = await anonymous.get(f"{base}/metrics")
            state.draining = True
            draining = await anonymous.get(f"{base}/readyz")
    assert not ok.is_error and failed.is_error
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert ready.status_code == 200 and ready.json()["backend"] == "process"
    assert draining.status_code == 503 and draining.json()["status"] == "draining"
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(metrics.text)
    assert found['ptc_mcp_runs_total{status="ok",error_type=""}'] == 1
    assert found['ptc_mcp_runs_total{status="error",error_type="program_error"}'] == 1
    assert found['ptc_mcp_tool_calls_total{server="expenses",outcome="ok"}'] == 1
    assert found['ptc_mcp_tool_call_duration_seconds_count{server="expenses"}'] == 1
    assert found['ptc_mcp_run_duration_seconds_bucket{status="ok",le="+Inf"}'] == 1
    assert found['ptc_mcp_downstream_up{server="expenses"}'] == 1
    assert found["ptc_mcp_runs_running"] == 0 and found["ptc_mcp_runs_queued"] == 0
    assert found["ptc_mcp_live_sandboxes"] >= 0 and "ptc_mcp_sessions" in found


async def test_metrics_can_require_the_same_auth_as_mcp() -> None:
    config = test_config(remote={"auth": {"mode": "bearer", "tokens": [TOKEN]}, "metrics_auth": True})
    async with serving_in_process(config) as (base, _app, _state), httpx2.AsyncClient(timeout=WAIT_S) as http:
        anonymous = await http.get(f"{base}/metrics")
        scraped = await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        health = await http.get(f"{base}/healthz")
    assert (anonymous.status_code, scraped.status_code, health.status_code) == (401, 200, 200)
    assert "ptc_mcp_runs_running 0" in scraped.text


async def test_host_and_origin_checks_and_the_body_limit_come_from_the_config() -> None:
    remote = {
        "allowed_hosts": ["mcp.example.invalid", "127.0.0.1:*"],
        "allowed_origins": ["https://app.example.invalid"],
        "max_request_body_bytes": 65536,
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    async with (
        serving_in_process(test_config(remote=remote)) as (base, _app, _state),
        httpx2.AsyncClient(timeout=WAIT_S, headers=headers) as http,
    ):
        wrong_host = await http.post(f"{base}/mcp", json=body, headers={"Host": "evil.example.invalid"})
        wrong_origin = await http.post(f"{base}/mcp", json=body, headers={"Origin": "https://evil.example.invalid"})
        too_big = await http.post(f"{base}/mcp", json={**body, "pad": "x" * 100_000})
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy") as client:
            listed = await client.list_tools()
    assert wrong_host.status_code == 421
    assert wrong_origin.status_code == 403
    assert too_big.status_code == 413
    assert [tool.name for tool in listed.tools] == ["execute_program"]


def test_metrics_render_histograms_cumulatively() -> None:
    metrics = Metrics()
    for ms in (5, 50, 5000):
        metrics.observe({"event": "run", "status": "ok", "error_type": None, "duration_ms": ms})
    found = samples(metrics.render())
    assert found['ptc_mcp_run_duration_seconds_bucket{status="ok",le="0.01"}'] == 1
    assert found['ptc_mcp_run_duration_seconds_bucket{status="ok",le="0.1"}'] == 2
    assert found['ptc_mcp_run_duration_seconds_bucket{status="ok",le="+Inf"}'] == 3
    assert found['ptc_mcp_run_duration_seconds_sum{status="ok"}'] == pytest.approx(5.055)


def test_traces_have_one_span_per_run_and_one_child_per_nested_call() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra (opentelemetry-sdk) is not installed")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from ptc_mcp.remote.tracing import RunTracer, setup_tracing

    assert setup_tracing(TracingConfig()) is None  # off by default
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    audit = AuditLog.silent()
    audit.observe(RunTracer(provider.get_tracer("test")).observe)
    for tool in ("expenses.get_team_members", "expenses.get_expenses"):
        record = CallRecord(tool=tool, duration_ms=3.0, outcome="ok", request_bytes=10, response_bytes=20)
        audit.call(session="ptc_abc", run_id="r1", record=record, caller="agent-7:alice")
    audit.run(
        session="ptc_abc",
        run_id="r1",
        status="error",
        error_type="program_error",
        tool_calls=2,
        duration_ms=40.0,
        code_bytes=10,
        output_bytes=0,
        caller="agent-7:alice",
    )
    spans = {span.name: span for span in exporter.get_finished_spans()}
    calls = [span for span in exporter.get_finished_spans() if span.name == "ptc_mcp.tool_call"]
    run = spans["ptc_mcp.run"]
    assert len(calls) == 2
    assert all(call.parent is not None and call.parent.span_id == run.context.span_id for call in calls)
    assert run.attributes is not None and run.attributes["enduser.id"] == "agent-7:alice"
    assert run.status.status_code.name == "ERROR"
    assert run.end_time is not None and run.start_time is not None
    assert run.end_time - run.start_time == pytest.approx(40e6, rel=0.05)


def test_json_logs_are_one_object_per_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("ptc_mcp.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "error" and line["message"] == "failed here" and "ValueError: boom" in line["exc"]
    assert line["ts"].endswith("Z")


async def test_a_draining_server_counts_requests_and_the_quiet_after_the_last_one() -> None:
    release = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()

    requests = RequestsInFlight(app)
    assert not requests.busy(QUIET_S)  # nothing came yet: a drain may end at once
    async with anyio.create_task_group() as group:
        group.start_soon(requests, {"type": "http", "method": "GET"}, None, None)  # an event stream: never counted
        group.start_soon(requests, {"type": "http", "method": "POST"}, None, None)
        await anyio.wait_all_tasks_blocked()
        assert requests.count == 1 and requests.busy(0)
        release.set()
    assert requests.count == 0
    assert requests.busy(60) and not requests.busy(0)  # ended: busy for the quiet period only
    # A draining server with nothing running stays while the last request is that recent, and stops after.
    async with open_app(test_config(servers={}), allow_unisolated=True) as served:
        state = ServingState(ready=True, draining=True)
        server = GracefulServer(
            uvicorn.Config(requests), state=state, executor=served.executor, grace_s=30, requests=requests
        )
        assert served.executor.running == 0 and not await server.on_tick(0)
        requests.last_active -= QUIET_S  # as if the quiet period had passed
        assert await server.on_tick(1)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])  # the SDK's two protocol eras: sessions, or none
async def test_sigterm_lets_a_running_program_finish_then_exits(tmp_path: Path, mode: str) -> None:
    document = {
        "mcpServers": {"expenses": EXPENSES_STDIO},
        "sandbox": {"kind": "process", "allow_unisolated": True},
        "remote": {"shutdown_grace_s": 20},
    }
    config = write_config(tmp_path, document)
    async with serving_subprocess(config) as (base, process):
        async with (
            httpx2.AsyncClient(timeout=WAIT_S) as http,
            Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as client,
        ):
            results = []

            async def run() -> None:
                code = "import time\ntime.sleep(3)\n'finished'"
                results.append(await client.call_tool("execute_program", {"code": code}))

            async with anyio.create_task_group() as group:
                group.start_soon(run)
                with anyio.fail_after(WAIT_S):  # the signal comes once the program runs, however loaded the machine
                    while await _running(base) == 0:
                        await anyio.sleep(0.02)
                process.send_signal(signal.SIGTERM)
                with anyio.fail_after(WAIT_S):  # draining: readiness turns 503 (no new work, please)
                    while (await http.get(f"{base}/readyz")).status_code != 503:
                        await anyio.sleep(0.02)
            # Right after the answer the SDK's client listed the tools (it had not seen the result's schema), and a
            # client may follow up: the draining server answers both before it stops (QUIET_S after the last one).
            results.append(await client.call_tool("execute_program", {"code": "'follow-up'"}))
        started = time.monotonic()
        with anyio.fail_after(WAIT_S):
            await process.wait()
    assert [result.structured_content["result"] for result in results if result.structured_content] == [
        "finished",
        "follow-up",
    ]
    assert process.returncode == 0
    assert time.monotonic() - started < 15


@pytest.mark.slow
async def test_sigterm_cancels_what_outlives_the_grace_period(tmp_path: Path) -> None:
    document = {
        "mcpServers": {},
        "sandbox": {"kind": "process", "allow_unisolated": True},
        "remote": {"shutdown_grace_s": 1},
    }
    config = write_config(tmp_path, document)
    async with serving_subprocess(config) as (base, process):
        outcome: list[object] = []

        async def run() -> None:
            try:
                async with (
                    httpx2.AsyncClient(timeout=WAIT_S) as http,
                    Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy") as client,
                ):
                    outcome.append(await client.call_tool("execute_program", {"code": "import time\ntime.sleep(50)"}))
            except Exception as exc:  # the connection ends with the server: that is the point
                outcome.append(exc)

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            with anyio.fail_after(WAIT_S):
                while await _running(base) == 0:
                    await anyio.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(20):
                await process.wait()
        elapsed = time.monotonic() - started
    assert process.returncode == 0
    assert elapsed < 12  # 1 s of run, 1 s of grace, start-up of nothing: far below the program's 50 s
    assert outcome and not (hasattr(outcome[0], "is_error") and not outcome[0].is_error)  # type: ignore[attr-defined]
